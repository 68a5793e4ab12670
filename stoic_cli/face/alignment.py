"""5-point alignment: a similarity transform maps MTCNN's landmarks onto one canonical template
so every model sees faces at the same place, size and rotation."""
from __future__ import annotations

import numpy as np

from stoic_cli.face.resample import invert_affine, resize_area, warp_affine, warp_area

# Template in crop units (0..1): left eye, right eye, nose tip, left and right mouth corner,
# as seen in the image (the person's right eye is on the image's left). The eyes are a quarter
# of the crop apart, which leaves the chin, the forehead and some hair inside the square.
TEMPLATE = np.array(
    [
        [0.375, 0.415],
        [0.625, 0.415],
        [0.500, 0.555],
        [0.400, 0.680],
        [0.600, 0.680],
    ],
    dtype=np.float64,
)

MODEL_SIZE = 128


def template_points(size: int) -> np.ndarray:
    return TEMPLATE * size


# The eyes weigh most in the fit: they are the most reliable landmarks, and a smile moves
# the mouth corners, which must not tilt or shrink the crop.
POINT_WEIGHTS = np.array([3.0, 3.0, 1.0, 0.5, 0.5])


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares rotation+uniform scale+translation taking src points to dst
    (Umeyama 1991). Returns a 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    src_mean, dst_mean = w @ src, w @ dst
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = (dst_c * w[:, None]).T @ src_c
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1  # no reflections: a mirrored face is a different face
    rot = u @ np.diag(d) @ vt
    var_src = (w * (src_c ** 2).sum(1)).sum()
    scale = (s * d).sum() / var_src
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def alignment_matrix(landmarks: np.ndarray, size: int = MODEL_SIZE) -> np.ndarray:
    """2x3 matrix from photo pixels to crop pixels for a crop of `size`."""
    return similarity_transform(landmarks, template_points(size), POINT_WEIGHTS)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Aligned square crop. Faces near the photo's border are padded by repeating edge pixels,
    which keeps the model's input free of black wedges."""
    return warp_affine(image, invert_affine(matrix), (size, size), "replicate")


def _scale(matrix: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def crop_scale(matrix: np.ndarray) -> float:
    """Crop pixels per photo pixel."""
    return _scale(matrix)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = MODEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    matrix = alignment_matrix(landmarks, size)
    if crop_scale(matrix) < 1:
        # Shrinking a big face: blur first so the small crop is not aliased.
        return _downscaled_crop(image, landmarks, size), matrix
    return warp_crop(image, matrix, size), matrix


def _downscaled_crop(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp at native resolution first, then resize with area averaging (no aliasing)."""
    native = alignment_matrix(landmarks, size)
    scale = crop_scale(native)
    big = max(size, int(round(size / scale)))
    big_matrix = alignment_matrix(landmarks, big)
    return warp_area(image, invert_affine(big_matrix), big, size, "replicate")


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return invert_affine(matrix)


def encoder_sized(crops: np.ndarray, size: int) -> np.ndarray:
    """Aligned crops (N,S,S,3) area-averaged to another side: the encoder reads the renderer's
    crop this way, at inference and in training alike."""
    if crops.shape[1] == size:
        return crops
    return np.stack([resize_area(c, (size, size)) for c in crops])


def crop_region(matrix: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) in the photo of the crop square aligned by `matrix`,
    clipped to the photo; None when it lies outside."""
    inv = invert_affine(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    h, w = shape
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


CORE = 0.6  # the face's core, as a fraction of its ellipse's radii


def face_ellipse(size: int) -> tuple[float, float, float, float]:
    """The face (brows to chin, cheek to cheek) as an ellipse in crop pixels: centre x, y and
    radii x, y. The paste-back mask and the cut-off check share it."""
    eye_y, mouth_y = TEMPLATE[0, 1], TEMPLATE[3, 1]
    cy = (eye_y + mouth_y) / 2 * size + 0.02 * size
    ry = (mouth_y - eye_y) * 1.45 * size
    rx = (TEMPLATE[1, 0] - TEMPLATE[0, 0]) * 1.1 * size
    return size / 2, cy, rx, ry


def outside_fraction(landmarks: np.ndarray, shape: tuple[int, int], samples: int = 48) -> float:
    """The share of the face's core (the central part of its ellipse: eyes, nose, mouth, the top
    of the chin) that lies outside a photo of this (height, width). Tightly framed faces keep
    their core inside; a face cut in half or at the mouth does not, and cannot be edited
    credibly (the missing part would be invented)."""
    size = 100
    cx, cy, rx, ry = face_ellipse(size)
    rx, ry = rx * CORE, ry * CORE
    u = (np.arange(samples) + 0.5) / samples * 2 - 1
    gx, gy = np.meshgrid(u, u)
    inside = gx ** 2 + gy ** 2 <= 1
    points = np.stack([cx + gx[inside] * rx, cy + gy[inside] * ry], 1)
    photo = transform_points(points, invert(alignment_matrix(landmarks, size)))
    h, w = shape
    out = (photo[:, 0] < 0) | (photo[:, 1] < 0) | (photo[:, 0] > w) | (photo[:, 1] > h)
    return float(out.mean())
