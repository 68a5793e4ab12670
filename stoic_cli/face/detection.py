"""Face detection with MTCNN (facenet-pytorch; its P/R/O-net weights ship inside the wheel)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoic_cli.face.resample import resize_area

# Faces whose eyes are closer than this (in photo pixels) are too small to edit credibly.
MIN_EYE_DISTANCE = 20.0
# MTCNN's box is about twice the eye distance (docs/experiments.md, session 30); a search for
# faces whose eyes are at least `min_eye_distance` apart keeps the pyramid levels down to this
# many eye distances, one level finer than the smallest such box, and skips the costly finer ones.
SEARCHED_FACE_PER_EYE_DISTANCE = 1.4
# Detection runs on a copy whose longer side is at most this; landmarks are scaled back.
DETECT_MAX_SIDE = 1024
# MTCNN's first network reads 12 px windows; a thinner image holds no face and would make it fail.
MIN_DETECT_SIDE = 12


@dataclass
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in photo pixels
    score: float
    landmarks: np.ndarray  # 5x2: left eye, right eye, nose, mouth left, mouth right (image sides)

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }


class FaceDetector:
    """Finds every face in an RGB uint8 image: box, score and five landmarks."""

    def __init__(self, device: str = "cpu", min_face_size: int = 20, threshold: float = 0.9):
        import torch
        from facenet_pytorch import MTCNN

        self.device = device
        self.threshold = threshold
        self.mtcnn = MTCNN(keep_all=True, device=torch.device(device), min_face_size=min_face_size,
                           post_process=False, select_largest=False)

    def detect(self, rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE, min_eye_distance: float = 0.0) -> list[Face]:
        return self.detect_batch([rgb], max_side=max_side, min_eye_distance=min_eye_distance)[0]

    def detect_batch(self, images: list[np.ndarray], max_side: int = DETECT_MAX_SIDE,
                     min_eye_distance: float = 0.0) -> list[list[Face]]:
        """Images of one size are detected in one MTCNN call; mixed sizes one by one."""
        return detect_in_groups(images, self._detect_raw, max_side=max_side, threshold=self.threshold,
                                min_eye_distance=min_eye_distance)

    def _detect_raw(self, batch: np.ndarray, smallest_face: float = 0.0) -> list[tuple]:
        """facenet-pytorch always searches its whole pyramid (`smallest_face` is not used):
        this detector prepares training data and is the ONNX detector's reference."""
        import torch

        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        return list(zip(boxes, probs, points))


def detect_in_groups(images: list[np.ndarray], detect_raw, max_side: int = DETECT_MAX_SIDE,
                     threshold: float = 0.9, min_eye_distance: float = 0.0) -> list[list[Face]]:
    """What every detector does around MTCNN: images of one size go in one call, mixed sizes one
    by one; each is detected on a copy at most `max_side` long (none in one thinner than
    MIN_DETECT_SIDE), and the faces come back in the photo's pixels, above `threshold`, the
    largest first. `detect_raw(batch (N,H,W,3) uint8, smallest_face)` gives per image
    MTCNN.detect's (boxes, probs, landmarks), searching for faces of at least `smallest_face`
    pixels: those whose eyes could be `min_eye_distance` photo pixels apart (0: every size)."""
    results: list[list[Face]] = []
    same_size = len({im.shape for im in images}) == 1
    groups = [images] if same_size else [[im] for im in images]
    for group in groups:
        h, w = group[0].shape[:2]
        scale = min(1.0, max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = [resize_area(im, size) for im in group]
        else:
            small = group
        if min(small[0].shape[:2]) < MIN_DETECT_SIDE:
            results.extend([] for _ in group)
            continue
        smallest_face = SEARCHED_FACE_PER_EYE_DISTANCE * min_eye_distance * scale
        for b, p, l in detect_raw(np.stack(small), smallest_face):
            results.append(to_faces(b, p, l, scale, threshold))
    return results


def to_faces(boxes, probs, landmarks, scale: float = 1.0, threshold: float = 0.9) -> list[Face]:
    """One image's MTCNN output (boxes, probs, landmarks; None or empty when nothing was found),
    detected at `scale`, as Faces in the photo's pixels above `threshold`, the largest first."""
    faces = []
    if boxes is not None:
        for box, prob, lm in zip(boxes, probs, landmarks):
            if prob is None or prob < threshold:
                continue
            faces.append(Face(box=np.asarray(box, np.float64) / scale, score=float(prob),
                              landmarks=np.asarray(lm, np.float64) / scale))
    faces.sort(key=lambda f: -f.area)
    return faces


def split_small_faces(faces: list[Face], min_eye_distance: float = MIN_EYE_DISTANCE) -> tuple[list[Face], list[Face]]:
    """(usable, too small)."""
    usable = [f for f in faces if f.eye_distance >= min_eye_distance]
    small = [f for f in faces if f.eye_distance < min_eye_distance]
    return usable, small


class NoFaceError(Exception):
    """No usable face in a photo; the message says why."""


# A face with more of its core than this outside the photo is cut by the frame (tightly framed
# dataset crops stay well below it): editing it would mean inventing the missing part, so it is
# skipped like a face too small to edit.
MAX_OUTSIDE = 0.25


@dataclass
class Skipped:
    """Faces found but left alone, by reason."""
    small: int = 0
    cut_off: int = 0

    def __bool__(self) -> bool:
        return bool(self.small or self.cut_off)

    @property
    def message(self) -> str:
        parts = [f"{self.small} small face(s)"] if self.small else []
        parts += [f"{self.cut_off} face(s) cut off by the photo's edge"] if self.cut_off else []
        return " and ".join(parts) + " skipped" if parts else ""


def usable_faces(faces: list[Face], min_eye_distance: float = MIN_EYE_DISTANCE, largest: bool = False,
                 shape: tuple[int, int] | None = None) -> tuple[list[Face], Skipped]:
    """The faces an editing command works on (the largest first) and those it skips: too small,
    or (given the photo's shape) cut off by its edge. Raises NoFaceError when none is usable:
    every command reports that the same way."""
    from stoic_cli.face.alignment import outside_fraction

    if not faces:
        raise NoFaceError("no face found")
    usable, small = split_small_faces(faces, min_eye_distance)
    whole = [f for f in usable if shape is None or outside_fraction(f.landmarks, shape) <= MAX_OUTSIDE]
    skipped = Skipped(len(small), len(usable) - len(whole))
    if not whole:
        if skipped.cut_off:
            raise NoFaceError(f"{skipped.cut_off} face(s) found but cut off by the photo's edge"
                              + (f", {skipped.small} too small" if skipped.small else ""))
        raise NoFaceError(f"{len(small)} face(s) found but all too small to edit "
                          f"(eyes under {min_eye_distance:.0f} px apart)")
    return (whole[:1] if largest else whole), skipped
