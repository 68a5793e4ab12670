"""One photo through stoic, the same for every job (GFPGANer.enhance-style facade):
find the usable faces -> align -> encode -> edit the codes -> render -> paste back.

The edit (stoic_cli.edit.edits: neutralize, transfer or attribute amounts) decides what each
face should become; the renderer decides how the photo's own pixels get there (a motion field
applied at the photo's full resolution and a fill where something new appears)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from stoic_cli.edit.edits import Edit, Reference
from stoic_cli.edit.latent import amount_along, neutral_codes
from stoic_cli.face.alignment import align_face, encoder_sized, transform_points
from stoic_cli.face.detection import MIN_EYE_DISTANCE, Face, Skipped, usable_faces
from stoic_cli.face.images import Photo
from stoic_cli.render.lips import close_lips, raise_corners
from stoic_cli.render.pasteback import IDENTITY, grey_like, render_face, settled
from stoic_cli.render.reference_mouth import MouthLayer, ReferenceMouth, reference_mouth_layer
from stoic_cli.runtime.models import FaceModels

_STAGE_LOCK = threading.Lock()


@dataclass
class FaceEdit:
    face: Face
    crop: np.ndarray  # uint8 aligned input crop (render_size)
    matrix: np.ndarray
    rendering: tuple  # the renderer's (motion, mask, fill) for this face
    mouth: MouthLayer | None = None  # a transfer's reference mouth, pasted after the rendering

    @cached_property
    def edited_crop(self) -> np.ndarray:
        """The crop with the rendering applied (for sheets); made only when asked for."""
        rendered = render_face(self.crop, *self.rendering, IDENTITY)
        return rendered if self.mouth is None else self.mouth.on_crop(rendered)


@dataclass
class EditResult:
    rgb: np.ndarray
    faces: list[FaceEdit] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)  # faces found but left alone


class Pipeline:
    def __init__(self, models: FaceModels, detector=None,
                 min_eye_distance: float = MIN_EYE_DISTANCE):
        self.models = models
        if detector is None:  # MTCNN on ONNX Runtime, from the models' folder
            from stoic_cli.runtime.detector import OnnxFaceDetector
            detector = OnnxFaceDetector(device=models.device, model_dir=models.dir)
        self.detector = detector
        self.min_eye_distance = min_eye_distance
        self.size = models.image_size  # the encoder's input
        self.render_size = models.render_size  # the renderer's input
        # Seconds spent in each stage, summed over photos, when a benchmark asks (a dict);
        # None leaves the timers out.
        self.stage_seconds: dict[str, float] | None = None

    @contextmanager
    def _stage(self, name: str):
        if self.stage_seconds is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            with _STAGE_LOCK:
                self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - start

    def find_faces(self, photo: Photo, largest: bool = False) -> tuple[list[Face], Skipped]:
        """The usable faces (largest first) and those skipped; raises NoFaceError."""
        with self._stage("detect"):
            found = self.detector.detect(photo.rgb, min_eye_distance=self.min_eye_distance)
        return usable_faces(found, self.min_eye_distance, largest, photo.rgb.shape[:2])

    def codes(self, crops: np.ndarray, at_most_own_smile: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Own and neutral codes of aligned crops (any size; read at the encoder's); with
        `at_most_own_smile`, neutral codes that never smile more than their faces
        (latent.neutral_codes)."""
        z = self.models.encode(encoder_sized(crops, self.size))
        smile = self.models.smile_direction if at_most_own_smile else None
        return z, neutral_codes(z, self.models.neutralize(z), self.models.settings.expression_dims, smile)

    def read_reference(self, photo: Photo, source: str = "") -> Reference:
        """The photo's largest usable face as a transfer reference. Raises NoFaceError."""
        faces, _ = self.find_faces(photo, largest=True)
        crop, matrix = align_face(photo.rgb, faces[0].landmarks, self.render_size)  # its mouth is used
        z, zn = self.codes(crop[None])
        corners = transform_points(np.asarray(faces[0].landmarks, np.float64)[3:5], matrix)
        return Reference.from_codes(z, zn, crop, source, ReferenceMouth.cut(photo.rgb, crop, matrix, corners))

    def apply(self, photo: Photo, faces: list[Face], edit: Edit, inplace: bool = False) -> EditResult:
        """The edited photo. `inplace` renders into photo.rgb itself instead of a copy, for
        callers that need no original afterwards (a big photo is then held once)."""
        with self._stage("align + encode"):
            aligned = [align_face(photo.rgb, f.landmarks, self.render_size) for f in faces]
            crops = np.stack([c for c, _ in aligned])
            z, zn = self.codes(crops, at_most_own_smile=edit.removes_expression)
            smile = self.models.smile_direction if edit.lip_closing > 0 else None
            smile_shown = None if smile is None else amount_along(z, zn, smile)  # what the lip steps go by
        with self._stage("render"):
            rendering = self.models.render(crops, z, edit.codes(z, zn).astype(np.float32))
        with self._stage("paste back"):
            out = photo.rgb if inplace else photo.rgb.copy()  # every face renders into this one array
            edits = []
            for i, (face, (crop, matrix)) in enumerate(zip(faces, aligned)):
                parts = settled(rendering.motion[i], edit.settle), rendering.mask[i], grey_like(crop, rendering.fill[i])
                if edit.lip_closing > 0:
                    lowering = edit.corner_lowering(None if smile_shown is None else float(smile_shown[i]))
                    parts = close_lips(crop, *parts, amount=edit.lip_closing, lowering=lowering)
                if edit.corner_raise > 0:
                    parts = raise_corners(crop, *parts, height=edit.corner_raise)
                layer = None if edit.mouth_source is None else reference_mouth_layer(crop, *parts, edit.mouth_source)
                render_face(out, *parts, matrix, inplace=True)
                if layer is not None:
                    layer.paste(out, matrix)
                edits.append(FaceEdit(face, crop, matrix, parts, layer))
        return EditResult(out, edits)

    def run(self, photo: Photo, edit: Edit, largest: bool = False, inplace: bool = False) -> EditResult:
        faces, skipped = self.find_faces(photo, largest)
        result = self.apply(photo, faces, edit, inplace)
        result.skipped = skipped
        return result
