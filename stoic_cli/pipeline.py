"""One photo through stoic: detect -> align -> encode -> latent edit -> render -> paste back.

The latent edit (a function of the faces' own and neutral codes) decides what each face should
become; the renderer decides how the photo's own pixels get there (a motion field applied at
the photo's full resolution and a fill where something new appears). Neutralize, transfer and
edit differ only in the latent edit."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from stoic_cli.face.alignment import align_face
from stoic_cli.face.detection import Face, FaceDetector, split_small_faces
from stoic_cli.face.images import Photo
from stoic_cli.edit.latent import LatentEdit, expression_displacement, load_attributes
from stoic_cli.runtime.models import FaceModels, ModelNotFound
from stoic_cli.render.pasteback import render_face

IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float64)  # crop -> crop


class NoFaceError(Exception):
    """No usable face in a photo; the message says why."""


@dataclass
class Reference:
    """A transfer reference's expression (see Pipeline.read_reference), with the aligned crop it
    was read from and that crop's own code decoded (for measuring where an expression is lost)."""
    displacement: np.ndarray  # (1, latent_dim)
    crop: np.ndarray  # uint8 aligned crop, encoder-sized
    reconstruction: np.ndarray  # float, its own code decoded


@dataclass
class FaceEdit:
    face: Face
    crop: np.ndarray  # uint8 aligned input crop (render_size)
    edited_crop: np.ndarray  # uint8 crop with the rendering applied (for sheets and strips)
    matrix: np.ndarray


@dataclass
class EditResult:
    rgb: np.ndarray
    faces: list[FaceEdit] = field(default_factory=list)
    skipped_small: int = 0


def encoder_sized(crops: np.ndarray, size: int) -> np.ndarray:
    """The encoder reads the renderer's crop area-averaged to its own size."""
    if crops.shape[1] == size:
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


class Pipeline:
    def __init__(self, models: FaceModels, detector: FaceDetector | None = None, min_eye_distance: float = 20.0):
        self.models = models
        self.detector = detector or FaceDetector()
        self.min_eye_distance = min_eye_distance
        self.size = models.image_size  # the encoder's input
        self.render_size = models.render_size  # the renderer's input

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
        """Own and neutral codes of aligned crops (any size; read at the encoder's)."""
        z = self.models.encode(encoder_sized(crops, self.size))
        return z, self.models.neutralize(z)

    @functools.cached_property
    def attributes(self) -> dict:
        """attributes.json's directions by name ({} without it)."""
        try:
            return load_attributes(self.models.attributes())
        except ModelNotFound:
            return {}

    def read_reference(self, photo: Photo) -> Reference:
        """The photo's largest usable face as a transfer reference: its displacement from its own
        neutral code (LEED). Raises NoFaceError."""
        faces, _ = self.find_faces(photo, largest=True)
        crop, _ = align_face(photo.rgb, faces[0].landmarks, self.size)
        z, zn = self.codes(crop[None])
        return Reference(expression_displacement(z, zn), crop, self.models.decode(z)[0])

    def apply(self, photo: Photo, faces: list[Face], edit: LatentEdit) -> EditResult:
        aligned = [align_face(photo.rgb, f.landmarks, self.render_size) for f in faces]
        crops = np.stack([c for c, _ in aligned])
        z, zn = self.codes(crops)
        rendering = self.models.render(crops, z, edit(z, zn).astype(np.float32))
        out = photo.rgb
        edits = []
        for i, (face, (crop, matrix)) in enumerate(zip(faces, aligned)):
            parts = rendering.motion[i], rendering.mask[i], rendering.fill[i]
            out = render_face(out, *parts, matrix)
            edits.append(FaceEdit(face, crop, render_face(crop, *parts, IDENTITY), matrix))
        return EditResult(out, edits)

    def run(self, photo: Photo, edit: LatentEdit, largest: bool = False) -> EditResult:
        faces, small = self.find_faces(photo, largest)
        result = self.apply(photo, faces, edit)
        result.skipped_small = small
        return result
