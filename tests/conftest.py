"""Shared fixtures: the London test photos and one MTCNN detector for the whole session
(loading MTCNN and detecting on CPU are the slow parts of the suite)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

# Rich sizes its consoles from COLUMNS when stoic_cli.cli is first imported; pin it so table
# output in the tests does not depend on the terminal (or CI runner) the suite happens to use.
os.environ["COLUMNS"] = "120"

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
LONDON = TESTS / "data" / "london"
LONDON_NAMES = [f"{pid}_{expr}.jpg" for pid in ("005", "011", "025", "038", "042", "094")
                for expr in ("neutral", "smiling")]


@pytest.fixture(scope="session")
def london_paths() -> list[Path]:
    paths = [LONDON / n for n in LONDON_NAMES]
    missing = [p.name for p in paths if not p.exists()]
    assert not missing, f"test fixtures missing from {LONDON}: {missing}"
    return paths


@pytest.fixture(scope="session")
def london_rgb(london_paths) -> dict[str, np.ndarray]:
    from stoic_cli.face.images import load_photo

    return {p.name: load_photo(p).rgb for p in london_paths}


@pytest.fixture(scope="session")
def shipped_models() -> Path:
    """The committed models folder. The trained models are part of the product: their absence
    is a failure, not a skip."""
    from stoic_cli.runtime.models import find_model_dir

    return find_model_dir(REPO / "models")


@pytest.fixture(scope="session")
def detector():
    """One MTCNN (on ONNX Runtime, as the CLI runs it) for every test (and for the CLI, see
    `cli_detector`)."""
    from stoic_cli.runtime.detector import OnnxFaceDetector

    return OnnxFaceDetector(device="cpu", model_dir=REPO / "models")


@pytest.fixture(scope="session")
def torch_detector():
    """facenet-pytorch's MTCNN, the reference the ONNX detector is held to."""
    import torch

    from stoic_cli.face.detection import FaceDetector

    # One intra-op thread: on a small, busy CI machine two threads that spin-wait for each
    # other make MTCNN ten times slower, and on an idle one it costs little.
    torch.set_num_threads(1)
    return FaceDetector(device="cpu")


@pytest.fixture(scope="session")
def london_faces(detector, london_rgb) -> dict:
    """name -> faces found by MTCNN (all 12 photos have one size: one batched call)."""
    names = list(london_rgb)
    found = detector.detect_batch([london_rgb[n] for n in names])
    return dict(zip(names, found))


@pytest.fixture
def cli_detector(monkeypatch, detector):
    """Make the CLI's commands reuse the session's detector instead of loading their own."""
    import stoic_cli.runtime.detector

    monkeypatch.setattr(stoic_cli.runtime.detector, "OnnxFaceDetector", lambda *a, **k: detector)
    return detector


def read_log(path: Path) -> list[dict]:
    """A training stage's CSV log, one dict per row."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_cache(folder: Path, crops: list, rows: list[dict]) -> Path:
    """A training cache as `stoic data prepare` writes it (crops.npy, labels.csv), for toy data."""
    import csv

    np.save(folder / "crops.npy", np.stack(crops))
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder
