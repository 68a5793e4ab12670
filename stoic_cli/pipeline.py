"""One photo through stoic: detect -> align -> encode -> latent edit -> decode -> enhance ->
paste back. The latent edit is a function from the faces' own codes (and their neutral codes)
to edited codes, so neutralize, transfer and edit share everything else."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from stoic_cli.alignment import align_face
from stoic_cli.detection import Face, FaceDetector, split_small_faces
from stoic_cli.images import Photo
from stoic_cli.models import FaceModels
from stoic_cli.pasteback import apply_change, face_mask

# (own codes, neutral codes) -> edited codes, all (n_faces, latent_dim)
LatentEdit = Callable[[np.ndarray, np.ndarray], np.ndarray]


class NoFaceError(Exception):
    """No usable face in a photo; the message says why."""


@dataclass
class FaceEdit:
    face: Face
    crop: np.ndarray  # uint8 aligned input crop
    edited_crop: np.ndarray  # uint8 crop with the change applied (for sheets and strips)
    matrix: np.ndarray


@dataclass
class EditResult:
    rgb: np.ndarray
    faces: list[FaceEdit] = field(default_factory=list)
    skipped_small: int = 0


def _lowpass(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2
    return cv2.GaussianBlur(img, (0, 0), sigma)


def blend_change(crop: np.ndarray, own: np.ndarray, new: np.ndarray, replace_level: float | None,
                 tone_sigma: float | None = 8.0) -> np.ndarray:
    """The change to add to the original crop (all float, 0..255, crop-sized).

    - Tones stay the photo's: expression lives in mid frequencies (mouth, brows, cheeks) while
      skin tone and lighting live in low ones, and a blurry decoder drifts there toward the
      training average. So only the change above a Gaussian of `tone_sigma` px is applied.
    - Where the model changes the face a lot (an open smile closing), adding a difference leaves
      ghosts of the old teeth and lips, so there the model's own structure is used, on the
      photo's low-frequency tones. `replace_level` is the change (grey levels) at which that
      takes over fully; None adds the difference everywhere."""
    crop = crop.astype(np.float32)
    change = new - own
    if tone_sigma:
        change = change - _lowpass(change, tone_sigma)
    if replace_level is None:
        return change
    magnitude = np.abs(change).mean(axis=2)
    weight = np.clip(_lowpass(magnitude, crop.shape[0] / 32) / replace_level, 0, 1)[..., None]
    if tone_sigma:
        structure = _lowpass(crop, tone_sigma) + (new - _lowpass(new, tone_sigma))
    else:
        structure = new
    return change * (1 - weight) + (structure - crop) * weight


class Pipeline:
    """`change_gain` compensates for the decoder reconstructing expressions muted (a blurry
    D(E(x)) smiles less than x): the decoded change is scaled by it before it reaches the photo.
    It is calibrated on validation people and stored in the models' stoic.json."""

    def __init__(self, models: FaceModels, detector: FaceDetector | None = None,
                 min_eye_distance: float = 20.0, replace_level: float | None = None,
                 change_gain: float | None = None):
        self.models = models
        self.replace_level = float(models.meta.get("replace_level", 24.0)) if replace_level is None else replace_level
        self.change_gain = float(models.meta.get("change_gain", 1.0)) if change_gain is None else change_gain
        self.detector = detector or FaceDetector()
        self.min_eye_distance = min_eye_distance
        self.size = models.image_size
        self.mask = face_mask(self.size)

    def find_faces(self, photo: Photo, largest: bool = False) -> tuple[list[Face], int]:
        faces = self.detector.detect(photo.rgb)
        if not faces:
            raise NoFaceError("no face found")
        usable, small = split_small_faces(faces, self.min_eye_distance)
        if not usable:
            raise NoFaceError(f"{len(small)} face(s) found but all too small to edit "
                              f"(eyes under {self.min_eye_distance:.0f} px apart)")
        if largest:
            usable = usable[:1]
        return usable, len(small)

    def codes(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self.models.encode(crops)
        return z, self.models.neutralize(z)

    def apply(self, photo: Photo, faces: list[Face], edit: LatentEdit) -> EditResult:
        aligned = [align_face(photo.rgb, f.landmarks, self.size) for f in faces]
        crops = np.stack([c for c, _ in aligned])
        z, zn = self.codes(crops)
        z_edit = edit(z, zn)
        # Decode own and edited codes in one batch; only their difference reaches the photo.
        decoded = self.models.decode(np.concatenate([z, z_edit]).astype(np.float32))
        own, new = decoded[: len(z)], decoded[len(z):]
        new = own + self.change_gain * (new - own)
        out = photo.rgb
        edits = []
        for face, (crop, matrix), a, b in zip(faces, aligned, own, new):
            change = blend_change(crop, a, b, self.replace_level)
            out = apply_change(out, change, matrix, self.mask)
            edited_crop = np.clip(np.rint(crop + change * self.mask[..., None]), 0, 255).astype(np.uint8)
            edits.append(FaceEdit(face, crop, edited_crop, matrix))
        return EditResult(out, edits)

    def run(self, photo: Photo, edit: LatentEdit, largest: bool = False) -> EditResult:
        faces, small = self.find_faces(photo, largest)
        result = self.apply(photo, faces, edit)
        result.skipped_small = small
        return result
