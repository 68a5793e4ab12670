"""Face detection on ONNX Runtime, without torch: MTCNN's three networks exported from
facenet-pytorch (models/mtcnn_{pnet,rnet,onet}.onnx, stoic_cli.train.export_mtcnn) run by
stoic_cli.face.mtcnn's numpy re-implementation of facenet-pytorch's detection.

`OnnxFaceDetector` has `stoic_cli.face.detection.FaceDetector`'s interface and answers: the same
faces, boxes and landmarks within a pixel, probabilities within 1e-3 (tests/test_mtcnn_onnx.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stoic_cli.face import mtcnn
from stoic_cli.face.detection import DETECT_MAX_SIDE, Face, detect_in_groups
from stoic_cli.runtime.models import find_model_dir
from stoic_cli.runtime.onnx import OnnxModel

NETWORKS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
# Crops per R/O-net run (facenet-pytorch runs 512); the P-net gets a pyramid level's images at once.
CROP_BATCH = 512


class OnnxFaceDetector:
    """Finds every face in an RGB uint8 image: box, score and five landmarks (MTCNN on ONNX
    Runtime). device: cpu | auto | cuda, as for the other models."""

    def __init__(self, device: str = "cpu", min_face_size: int = mtcnn.MIN_FACE_SIZE, threshold: float = 0.9,
                 model_dir: str | Path | None = None, threads: int = 0):
        folder = find_model_dir(model_dir, required=NETWORKS)
        self.pnet, self.rnet, self.onet = (OnnxModel(folder / f"{n}.onnx", device=device, threads=threads)
                                           for n in NETWORKS)
        self.device = device
        self.min_face_size = min_face_size
        self.threshold = threshold

    @property
    def provider(self) -> str:
        return self.pnet.provider

    def detect(self, rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE, min_eye_distance: float = 0.0) -> list[Face]:
        return self.detect_batch([rgb], max_side=max_side, min_eye_distance=min_eye_distance)[0]

    def detect_batch(self, images: list[np.ndarray], max_side: int = DETECT_MAX_SIDE,
                     min_eye_distance: float = 0.0) -> list[list[Face]]:
        """Images of one size are detected together (one P-net run per pyramid scale); mixed
        sizes one by one, like FaceDetector. With `min_eye_distance` the pyramid's finest levels,
        which only find faces too small to edit, are not searched."""
        return detect_in_groups(images, self.detect_raw, max_side=max_side, threshold=self.threshold,
                                min_eye_distance=min_eye_distance)

    def detect_raw(self, batch: np.ndarray, smallest_face: float = 0.0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """MTCNN.detect(batch, landmarks=True) for uint8 RGB images of one size (N,H,W,3): per
        image (boxes (K,4), probs (K,), landmarks (K,5,2)), K possibly 0; pyramid levels for
        faces below `smallest_face` pixels left out (mtcnn.detect_faces)."""
        return mtcnn.detect_faces(batch, lambda x: self.pnet(x, batch_size=len(x)),
                                  lambda x: self.rnet(x, batch_size=CROP_BATCH),
                                  lambda x: self.onet(x, batch_size=CROP_BATCH),
                                  min_face_size=self.min_face_size, smallest_face=smallest_face)


def detector_for(model_dir: str | Path | None, device: str = "cpu", threads: int = 0,
                 min_face_size: int = mtcnn.MIN_FACE_SIZE) -> OnnxFaceDetector:
    """MTCNN from the models' folder, or from the installed models when that folder holds only
    freshly exported StoicNet networks (`stoic train export` writes no MTCNN)."""
    from stoic_cli.runtime.models import ModelNotFound

    try:
        return OnnxFaceDetector(device=device, model_dir=model_dir, threads=threads, min_face_size=min_face_size)
    except ModelNotFound:
        return OnnxFaceDetector(device=device, threads=threads, min_face_size=min_face_size)
