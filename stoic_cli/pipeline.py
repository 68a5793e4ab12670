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


def blend_change(crop: np.ndarray, own: np.ndarray, new: np.ndarray, replace_level: float | None) -> np.ndarray:
    """The change to add to the original crop. Where the model barely changes the face we add
    only its difference (the photo keeps its own texture); where it changes a lot (an open
    smile closing) adding a difference would leave ghosts of the old teeth and lips, so there
    we take the model's face itself. `replace_level` is the change (grey levels) at which the
    model's face fully takes over; None keeps the difference everywhere."""
    import cv2

    change = new - own
    if replace_level is None:
        return change
    magnitude = np.abs(change).mean(axis=2)
    k = max(3, (crop.shape[0] // 16) | 1)
    weight = cv2.GaussianBlur(np.clip(magnitude / replace_level, 0, 1), (k, k), 0)[..., None]
    return change * (1 - weight) + (new - crop.astype(np.float32)) * weight


class Pipeline:
    def __init__(self, models: FaceModels, detector: FaceDetector | None = None,
                 min_eye_distance: float = 20.0, replace_level: float | None = 24.0):
        self.models = models
        self.replace_level = replace_level
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
