"""MTCNN on ONNX Runtime (stoic_cli.runtime.detector, stoic_cli.face.mtcnn) against
facenet-pytorch's MTCNN: the same faces in the same order, boxes and landmarks within a pixel,
probabilities within 1e-3, on the London photos and variants; its pieces (area resampling, the
NMS variants) equal to torch's; and no torch in the process that uses it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stoic_cli.face import mtcnn
from tests.conftest import LONDON, LONDON_NAMES, REPO

PX = 1.0
PROB = 1e-3


@pytest.fixture(scope="module")
def onnx_detector():
    from stoic_cli.runtime.detector import OnnxFaceDetector

    return OnnxFaceDetector(device="cpu", threads=1)


def assert_same_raw(torch_detector, onnx_detector, batch: np.ndarray) -> list[int]:
    """MTCNN.detect's boxes, probs and landmarks per image, both ways; the faces found."""
    import torch

    with torch.inference_mode():
        boxes, probs, points = torch_detector.mtcnn.detect(batch, landmarks=True)
    got = onnx_detector.detect_raw(batch)
    assert len(got) == len(batch)
    counts = []
    for i, (b, p, l) in enumerate(got):
        if boxes[i] is None:
            assert len(b) == 0, f"image {i}: {len(b)} faces, facenet-pytorch none"
            counts.append(0)
            continue
        assert b.shape == np.shape(boxes[i]), f"image {i}: {len(b)} faces, facenet-pytorch {len(boxes[i])}"
        np.testing.assert_allclose(b, np.asarray(boxes[i], np.float32), atol=PX, rtol=0)
        np.testing.assert_allclose(l, np.asarray(points[i], np.float32), atol=PX, rtol=0)
        np.testing.assert_allclose(p, np.asarray(probs[i], np.float32), atol=PROB, rtol=0)
        counts.append(len(b))
    return counts


def assert_same_faces(expected: list, got: list) -> None:
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g.box, e.box, atol=PX, rtol=0)
        np.testing.assert_allclose(g.landmarks, e.landmarks, atol=PX, rtol=0)
        assert abs(g.score - e.score) <= PROB


def two_faces(london_rgb) -> np.ndarray:
    a = london_rgb["025_neutral.jpg"]
    b = cv2.resize(london_rgb["094_smiling.jpg"], (280, 280), interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 700, 3), 200, np.uint8)
    canvas[:, :400] = a
    canvas[60:340, 410:690] = b
    return canvas


def test_the_london_photos_as_one_batch(torch_detector, onnx_detector, london_rgb, london_faces):
    batch = np.stack([london_rgb[n] for n in LONDON_NAMES])
    assert assert_same_raw(torch_detector, onnx_detector, batch) == [1] * 12
    got = onnx_detector.detect_batch(list(batch))
    for name, faces in zip(LONDON_NAMES, got):
        assert_same_faces(london_faces[name], faces)


@pytest.mark.parametrize("name", LONDON_NAMES)
def test_each_london_photo_alone(torch_detector, onnx_detector, london_rgb, name):
    assert assert_same_raw(torch_detector, onnx_detector, london_rgb[name][None]) == [1]


def variants(london_rgb) -> dict[str, np.ndarray]:
    photo = london_rgb["011_smiling.jpg"]
    tiny = np.full((600, 600, 3), 128, np.uint8)
    tiny[270:330, 270:330] = cv2.resize(london_rgb["011_neutral.jpg"], (60, 60), interpolation=cv2.INTER_AREA)
    return {
        "downscaled": cv2.resize(photo, (200, 200), interpolation=cv2.INTER_AREA),
        "upscaled": cv2.resize(london_rgb["038_neutral.jpg"], (800, 800), interpolation=cv2.INTER_CUBIC),
        "two faces": two_faces(london_rgb),
        "tiny face": tiny,
        "mirrored": np.ascontiguousarray(london_rgb["042_smiling.jpg"][:, ::-1]),
        "rotated": cv2.rotate(london_rgb["038_smiling.jpg"], cv2.ROTATE_90_CLOCKWISE),
        "dark": (london_rgb["042_neutral.jpg"] * 0.3).astype(np.uint8),
        "wide": cv2.resize(london_rgb["005_smiling.jpg"], (523, 211), interpolation=cv2.INTER_AREA),
        "blank": np.full((400, 400, 3), 180, np.uint8),
    }


@pytest.mark.parametrize("variant", ["downscaled", "upscaled", "two faces", "tiny face", "mirrored", "rotated",
                                     "dark", "wide", "blank"])
def test_variants(torch_detector, onnx_detector, london_rgb, variant):
    image = variants(london_rgb)[variant]
    counts = assert_same_raw(torch_detector, onnx_detector, image[None])
    assert counts[0] == {"blank": 0, "two faces": 2}.get(variant, counts[0])
    if variant != "blank":
        assert counts[0] >= 1
    assert_same_faces(torch_detector.detect(image), onnx_detector.detect(image))


def test_downscaling_for_detection_and_mixed_sizes(torch_detector, onnx_detector, london_rgb):
    """Through detect_batch: a copy at most max_side long, mixed sizes one by one, back in the
    photo's pixels, largest first."""
    big = cv2.resize(london_rgb["011_smiling.jpg"], (800, 800), interpolation=cv2.INTER_CUBIC)
    assert_same_faces(torch_detector.detect(big, max_side=400), onnx_detector.detect(big, max_side=400))
    images = [big, two_faces(london_rgb), london_rgb["094_neutral.jpg"], np.zeros((8, 300, 3), np.uint8)]
    expected, got = torch_detector.detect_batch(images), onnx_detector.detect_batch(images)
    assert [len(f) for f in got] == [1, 2, 1, 0]
    for e, g in zip(expected, got):
        assert_same_faces(e, g)


def test_a_search_for_editable_faces_skips_the_finest_levels_and_finds_the_same_faces(onnx_detector, london_rgb,
                                                                                     monkeypatch):
    """With min_eye_distance the pyramid's finest levels (faces too small to edit) go unsearched,
    and every face whose eyes are that far apart comes out exactly as from the whole pyramid."""
    levels = []
    pnet = onnx_detector.pnet
    monkeypatch.setattr(onnx_detector, "pnet", lambda x, **kw: levels.append(x.shape[-1]) or pnet(x, **kw))
    images = [london_rgb[n] for n in LONDON_NAMES] + [v for k, v in variants(london_rgb).items() if k != "blank"]
    for image in images:
        levels.clear()
        whole = [f for f in onnx_detector.detect(image) if f.eye_distance >= 20]
        full_levels = list(levels)
        levels.clear()
        searched = onnx_detector.detect(image, min_eye_distance=20)
        assert levels == full_levels[len(full_levels) - len(levels):] and len(levels) < len(full_levels)
        assert [f.eye_distance >= 20 for f in searched].count(True) == len(whole)
        for e, g in zip(whole, [f for f in searched if f.eye_distance >= 20]):
            np.testing.assert_array_equal(g.landmarks, e.landmarks)
            np.testing.assert_array_equal(g.box, e.box)
    tiny = variants(london_rgb)["tiny face"]
    assert onnx_detector.detect(tiny) and not onnx_detector.detect(tiny, min_eye_distance=40)


def test_a_batch_with_many_candidates_takes_torchvisions_other_nms(torch_detector, onnx_detector, london_rgb):
    """Above 1000 boxes torchvision's batched NMS runs image by image: 24 photos get there."""
    imgs = [london_rgb[n] for n in LONDON_NAMES]
    batch = np.stack(imgs + [np.ascontiguousarray(im[:, ::-1]) for im in imgs])
    assert assert_same_raw(torch_detector, onnx_detector, batch) == [1] * 24


# ---- the pieces, exactly ----------------------------------------------------------------------

def test_area_resize_is_torchs_area_interpolation():
    import torch
    from torch.nn.functional import interpolate

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (137, 211, 3), dtype=np.uint8)
    t = torch.as_tensor(img[None].copy()).permute(0, 3, 1, 2).float()  # as facenet-pytorch makes it
    s = mtcnn.integral(img)
    for size in [(83, 127), (24, 24), (48, 48), (12, 13), (200, 300)]:
        expected = interpolate(t, size=size, mode="area").permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(mtcnn.area_resize(s, 0, 0, 137, 211, *size), expected)
        np.testing.assert_array_equal(mtcnn.area_resize_whole(s, *size), expected)  # the pyramid's path
    boxes = [(10, 20, 80, 130), (0, 0, 5, 7), (100, 150, 37, 61), (3, 4, 48, 48)]
    ys, xs, hs, ws = (np.array(v) for v in zip(*boxes))
    for size in (24, 48):
        got = mtcnn.area_resize(s, ys, xs, hs, ws, size, size)
        for k, (y, x, h, w) in enumerate(boxes):
            crop = t[:, :, y:y + h, x:x + w]
            expected = interpolate(crop, size=(size, size), mode="area").permute(0, 2, 3, 1).numpy()[0]
            np.testing.assert_array_equal(got[k], expected)


def random_boxes(rng, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 80, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = (rng.choice([0.9, 0.99, 1.0], n) if ties else rng.uniform(0.5, 1, n)).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("n", [1, 50, 400, 1500])
def test_nms_is_torchvisions(n):
    import torch
    from torchvision.ops import batched_nms, nms

    rng = np.random.default_rng(n)
    boxes, scores = random_boxes(rng, n, ties=n == 400)
    idxs = rng.integers(0, 3, n)
    for thr in (0.5, 0.7):
        expected = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(mtcnn.nms(boxes, scores, thr), expected)
        expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs), thr)
        np.testing.assert_array_equal(mtcnn.batched_nms(boxes, scores, idxs, thr), expected.numpy())


def test_min_nms_is_facenet_pytorchs():
    import torch
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 300, ties=False)
    idxs = rng.integers(0, 2, 300)
    expected = batched_nms_numpy(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs),
                                 0.7, "Min").numpy()
    np.testing.assert_array_equal(mtcnn.nms_min(boxes, scores, idxs, 0.7), expected)


def test_the_shipped_networks_are_facenet_pytorchs():
    from stoic_cli.train.export_mtcnn import max_difference

    assert max(max_difference(REPO / "models").values()) < 1e-5


# ---- no torch -----------------------------------------------------------------------------------

def run_without_torch(code: str) -> str:
    prelude = ("import sys\n"
               "from stoic_cli.face.images import load_photo\n"
               "import stoic_cli.face.mtcnn, stoic_cli.runtime.detector\n"
               "imported = sorted(m for m in ('torch', 'facenet_pytorch', 'torchvision') if m in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", prelude + code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_importing_the_onnx_detector_imports_no_torch():
    assert run_without_torch("print(imported)") == "[]"


@pytest.mark.xfail(any(Path("/dev").glob("nvidia[0-9]*")), strict=False,
                   reason="stoic_cli.runtime.onnx.gpu_present asks torch about CUDA where a GPU is present")
def test_detecting_with_the_onnx_detector_imports_no_torch():
    code = (f"faces = stoic_cli.runtime.detector.OnnxFaceDetector(threads=1).detect("
            f"load_photo({str(LONDON / '025_smiling.jpg')!r}).rgb)\n"
            "assert len(faces) == 1, faces\n"
            "print(sorted(m for m in ('torch', 'facenet_pytorch', 'torchvision') if m in sys.modules))")
    assert run_without_torch(code) == "[]"
