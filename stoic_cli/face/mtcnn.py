"""MTCNN's detection without torch: facenet-pytorch 2.5.3's `detect_face` re-done in numpy, the
three networks given as callables (stoic_cli.runtime.detector runs them on ONNX Runtime).

Every step is computed as facenet-pytorch computes it, in float32 and in the same order, so the
result agrees with facenet-pytorch's MTCNN up to the networks' own rounding (ONNX Runtime vs
torch, ~1e-6):

- resampling is torch's `interpolate(mode="area")` (adaptive average pooling: output pixel i
  averages input pixels floor(i*n/m) .. ceil((i+1)*n/m)-1, the sum divided by the window's
  height, then by its width); the windows' sums are exact integers (uint8 pixels), taken here
  from an integral image. cv2's INTER_AREA weighs fractional pixels and is not the same.
- NMS is torchvision's `batched_nms` (IoU without the +1, a box suppresses those with IoU above
  the threshold, stable descending sort by score; images apart by offsetting their boxes, or one
  by one above 1000 boxes, as torchvision chooses), and for the O-net stage facenet-pytorch's own
  numpy NMS with the 'Min' overlap (+1 areas, numpy's default argsort).
- divisions by a pyramid scale are float32 divisions by the scale rounded to float32, like
  torch's tensor / Python float.

A network is `net(x) -> y`: x float32 NCHW in [-1, 1] (MTCNN's (v - 127.5) / 128); y the
network's outputs concatenated on axis 1 (P-net (N,6,H',W'): regression 4, softmax 2; R-net
(N,6); O-net (N,16): regression 4, landmarks 10, softmax 2), as stoic_cli.train.export_mtcnn
exports them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Net = Callable[[np.ndarray], np.ndarray]
F32 = np.float32

MIN_FACE_SIZE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709
# torchvision runs batched NMS class by class above this many coordinates (on CPU).
VANILLA_NMS_ABOVE = 4000


def pyramid_scales(h: int, w: int, min_face_size: int = MIN_FACE_SIZE, factor: float = FACTOR) -> list[float]:
    """The image pyramid's scales, in Python floats as facenet-pytorch computes them."""
    m = 12.0 / min_face_size
    minl = min(h, w) * m
    scales, scale = [], m
    while minl >= 12:
        scales.append(scale)
        scale, minl = scale * factor, minl * factor
    return scales


# ---- resampling -----------------------------------------------------------------------------

def integral(img: np.ndarray) -> np.ndarray:
    """(H+1, W+1, C) running sums of a uint8 HWC image, exact."""
    h, w = img.shape[:2]
    dtype = np.int32 if 255 * h * w < 2 ** 31 else np.int64
    s = np.zeros((h + 1, w + 1, img.shape[2]), dtype)
    body = s[1:, 1:]
    # Down the rows a row at a time: numpy's cumsum along axis 0 walks one column at a time,
    # striding across the whole image, which is several times slower.
    body[0] = img[0]
    for i in range(1, h):
        np.add(body[i - 1], img[i], out=body[i])
    np.cumsum(body, axis=1, out=body)
    return s


def _windows(start: np.ndarray, size: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling windows [lo, hi) for `out` outputs over inputs start..start+size (arrays)."""
    o = np.arange(out)
    size = np.asarray(size)[..., None]
    lo = (o * size) // out
    hi = -((-(o + 1) * size) // out)
    return np.asarray(start)[..., None] + lo, np.asarray(start)[..., None] + hi


def area_resize(s: np.ndarray, y0, x0, h, w, out_h: int, out_w: int) -> np.ndarray:
    """torch `interpolate(mode="area")` of the windows [y0, y0+h) x [x0, x0+w) of the image
    whose integral image is `s`: (K, out_h, out_w, C) float32 for K windows (scalars: K = 1)."""
    y0, x0, h, w = (np.atleast_1d(np.asarray(v, np.int64)) for v in (y0, x0, h, w))
    ylo, yhi = _windows(y0, h, out_h)  # (K, out_h)
    xlo, xhi = _windows(x0, w, out_w)  # (K, out_w)
    a, b = ylo[:, :, None], yhi[:, :, None]
    c, d = xlo[:, None, :], xhi[:, None, :]
    sums = s[b, d] - s[a, d] - s[b, c] + s[a, c]  # (K, out_h, out_w, C), exact integers
    kh = (yhi - ylo).astype(F32)[:, :, None, None]
    kw = (xhi - xlo).astype(F32)[:, None, :, None]
    return sums.astype(F32) / kh / kw


def area_resize_whole(s: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """area_resize of the whole image, (1, out_h, out_w, C): the same sums taken a row band and
    then a column band at a time, which gathers whole rows instead of single pixels (the
    pyramid's big levels are most of detection's resampling)."""
    h, w = s.shape[0] - 1, s.shape[1] - 1
    ylo, yhi = _windows(0, h, out_h)
    xlo, xhi = _windows(0, w, out_w)
    rows = np.take(s, yhi, axis=0)
    rows -= np.take(s, ylo, axis=0)  # (out_h, W+1, C)
    sums = np.take(rows, xhi, axis=1)
    sums -= np.take(rows, xlo, axis=1)  # (out_h, out_w, C), exact integers
    out = sums.astype(F32)
    out /= (yhi - ylo).astype(F32)[:, None, None]
    out /= (xhi - xlo).astype(F32)[None, :, None]
    return out[None]


def normalise(images: np.ndarray) -> np.ndarray:
    """(K, H, W, C) float32 pixels -> network input (K, C, H, W)."""
    return np.ascontiguousarray(((images - F32(127.5)) * F32(0.0078125)).transpose(0, 3, 1, 2))


# ---- NMS ------------------------------------------------------------------------------------

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.nms on CPU: kept indices, highest score first."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(order), bool)
    keep = []
    zero = F32(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = order[k + 1:]
            rest = rest[~suppressed[rest]]
            if not len(rest):
                break
            w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest[ovr.astype(np.float64) > threshold]] = True
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.batched_nms on CPU (NMS within each index), highest score first."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    if boxes.size > VANILLA_NMS_ABOVE:
        keep_mask = np.zeros(len(scores), bool)
        for c in np.unique(idxs):
            current = np.flatnonzero(idxs == c)
            keep_mask[current[nms(boxes[current], scores[current], threshold)]] = True
        keep = np.flatnonzero(keep_mask)
        # torch sorts these with an unstable sort: exact ties may come in another order there.
        return keep[np.argsort(-scores[keep], kind="stable")]
    offsets = idxs.astype(F32) * (boxes.max() + F32(1))
    return nms(boxes + offsets[:, None], scores, threshold)


def nms_min(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, threshold: float) -> np.ndarray:
    """facenet-pytorch's batched_nms_numpy(..., 'Min'): overlap over the smaller (+1) area."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    boxes = boxes + (idxs.astype(F32) * (boxes.max() + F32(1)))[:, None]
    x1, y1, x2, y2 = (boxes[:, i].copy() for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = []
    while order.size > 0:
        i = order[-1]
        pick.append(i)
        idx = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        o = w * h / np.minimum(area[i], area[idx])
        order = order[np.where(o <= threshold)]
    return np.asarray(pick, np.int64)


# ---- boxes ----------------------------------------------------------------------------------

def generate_boxes(out: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """P-net output (N,6,H',W') -> candidate boxes (K,9): x1 y1 x2 y2 score, regression 4; and
    their image indices."""
    reg, prob = out[:, :4], out[:, 5]
    n, yy, xx = np.nonzero(prob >= F32(threshold))
    bb = np.stack([xx, yy], axis=1).astype(F32)
    s = F32(scale)
    q1 = np.floor((2 * bb + 1) / s)
    q2 = np.floor((2 * bb + 12) / s)
    score = prob[n, yy, xx][:, None]
    return np.concatenate([q1, q2, score, reg[n, :, yy, xx]], axis=1).astype(F32), n


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet-pytorch's bbreg: move the corners by the regression times the (+1) size."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    for i, size in enumerate((w, h, w, h)):
        boxes[:, i] = boxes[:, i] + reg[:, i] * size
    return boxes


def square(boxes: np.ndarray) -> np.ndarray:
    """facenet-pytorch's rerec: the square of the longer side around each box's centre."""
    boxes = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * F32(0.5) - side * F32(0.5)
    boxes[:, 1] = boxes[:, 1] + h * F32(0.5) - side * F32(0.5)
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def pad(boxes: np.ndarray, w: int, h: int) -> tuple[np.ndarray, ...]:
    """facenet-pytorch's pad: integer (1-based start, end) rows and columns inside the image."""
    b = np.trunc(boxes[:, :4]).astype(np.int32)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    return y, ey, x, ex


def crops(sums: list[np.ndarray], inds: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The boxes' pixels resampled to size x size, as network input, and which boxes had any
    (facenet-pytorch skips empty crops, then fails; here those boxes are dropped)."""
    h, w = sums[0].shape[0] - 1, sums[0].shape[1] - 1
    y, ey, x, ex = pad(boxes, w, h)
    ok = (ey > y - 1) & (ex > x - 1)
    out = np.empty((len(boxes), size, size, 3), F32)
    for i in np.unique(inds[ok]):
        k = np.flatnonzero(ok & (inds == i))
        out[k] = area_resize(sums[i], y[k] - 1, x[k] - 1, ey[k] - y[k] + 1, ex[k] - x[k] + 1, size, size)
    return normalise(out[ok]), ok


# ---- the three stages -----------------------------------------------------------------------

def _scored(boxes: np.ndarray, inds: np.ndarray, out: np.ndarray, column: int, threshold: float):
    """The boxes a stage's network scores above `threshold` (its score in `column` of `out`),
    with that score as their fifth column, their image indices and their rows of `out`."""
    score = out[:, column]
    keep = score > F32(threshold)
    return np.concatenate([boxes[keep, :4], score[keep, None]], axis=1), inds[keep], out[keep]


def detect_faces(images: np.ndarray, pnet: Net, rnet: Net, onet: Net, min_face_size: int = MIN_FACE_SIZE,
                 thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = FACTOR, smallest_face: float = 0.0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """facenet-pytorch's detect_face + MTCNN.detect(landmarks=True) with select_largest=False,
    for a batch of uint8 RGB images of one size (N,H,W,3): per image (boxes (K,4), probs (K,),
    landmarks (K,5,2)), float32, in facenet-pytorch's order (K may be 0).

    `smallest_face` (pixels) leaves out the pyramid levels whose 12 px window is a smaller face
    than that; the other levels keep facenet-pytorch's scales, so a face those levels find comes
    out as it would from the whole pyramid unless a left-out level's box would have merged with
    it. The big levels are most of the work and only find small faces."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    n_images, h, w = images.shape[:3]
    sums = [integral(im) for im in images]

    # First stage: P-net over the pyramid, all images of a scale in one run.
    boxes, inds = [], []
    for scale in pyramid_scales(h, w, min_face_size, factor):
        if 12.0 / scale < smallest_face:
            continue
        oh, ow = int(h * scale + 1), int(w * scale + 1)
        level = np.concatenate([area_resize_whole(s, oh, ow) for s in sums])
        b, i = generate_boxes(pnet(normalise(level)), scale, thresholds[0])
        pick = batched_nms(b[:, :4], b[:, 4], i, 0.5)
        boxes.append(b[pick])
        inds.append(i[pick])
    empty = (np.zeros((0, 4), F32), np.zeros(0, F32), np.zeros((0, 5, 2), F32))
    if not boxes or not sum(len(b) for b in boxes):
        return [empty for _ in range(n_images)]
    boxes, inds = np.concatenate(boxes), np.concatenate(inds)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
    boxes, inds = boxes[pick], inds[pick]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    corners = [boxes[:, i] + boxes[:, 5 + i] * size for i, size in enumerate((regw, regh, regw, regh))]
    boxes = square(np.stack(corners + [boxes[:, 4]], axis=1))

    # Second stage: R-net on 24 px crops.
    x, ok = crops(sums, inds, boxes, 24)
    boxes, inds = boxes[ok], inds[ok]
    if len(boxes):
        boxes, inds, out = _scored(boxes, inds, rnet(x), 5, thresholds[1])
        reg = out[:, :4]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes = square(regress(boxes[pick], reg[pick]))
        inds = inds[pick]

    # Third stage: O-net on 48 px crops; landmarks; the 'Min' NMS.
    points = np.zeros((0, 5, 2), F32)
    if len(boxes):
        x, ok = crops(sums, inds, boxes, 48)
        boxes, inds = boxes[ok], inds[ok]
    if len(boxes):
        boxes, inds, out = _scored(boxes, inds, onet(x), 15, thresholds[2])
        reg, marks = out[:, :4], out[:, 4:14]
        w_i = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h_i = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        px = w_i * marks[:, :5] + boxes[:, 0:1] - 1
        py = h_i * marks[:, 5:] + boxes[:, 1:2] - 1
        points = np.stack([px, py], axis=2)
        boxes = regress(boxes, reg)
        pick = nms_min(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds, points = boxes[pick], inds[pick], points[pick]

    result = []
    for i in range(n_images):
        mine = inds == i
        result.append((boxes[mine, :4], boxes[mine, 4], points[mine]))
    return result
