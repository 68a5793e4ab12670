"""The shipped renderer: ONNX against its PyTorch weights, and what it does to real faces."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

WEIGHTS = REPO / "models" / "training_logs" / "renderer"


@pytest.fixture(scope="module")
def crops_and_codes(shipped_models, london_faces, london_rgb):
    from stoic_cli.face.alignment import align_face
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.face.alignment import encoder_sized

    models = FaceModels(shipped_models, device="cpu")
    names = ["094_smiling.jpg", "011_smiling.jpg", "025_neutral.jpg"]
    crops = np.stack([align_face(london_rgb[n], london_faces[n][0].landmarks, models.render_size)[0] for n in names])
    z = models.encode(encoder_sized(crops, models.image_size))
    return models, crops, z, models.neutralize(z)


def test_shipped_renderer_onnx_matches_pytorch_on_real_crops(shipped_models, crops_and_codes):
    pytest.importorskip("torch")
    from stoic_cli.train.renderer_export import max_renderer_difference

    _, crops, z, zn = crops_and_codes
    diff = max_renderer_difference(WEIGHTS, Path(shipped_models) / "renderer.onnx", crops, z, zn, shipped_models)
    assert diff < 1e-3


def test_equal_codes_leave_the_face_as_it_is(crops_and_codes):
    """Asked for no change, the renderer moves almost nothing and draws almost nothing."""
    from stoic_cli.render.pasteback import face_mask, render_face
    from stoic_cli.render.pasteback import IDENTITY

    models, crops, z, _ = crops_and_codes
    r = models.render(crops, z, z)
    face = face_mask(models.render_size) > 0.5
    for i, crop in enumerate(crops):
        assert np.abs(r.motion[i])[face].max() * models.render_size < 1.0  # pixels
        assert r.mask[i].mean() < 0.03
        out = render_face(crop, r.motion[i], r.mask[i], r.fill[i], IDENTITY)
        assert np.abs(out.astype(int) - crop)[face].mean() < 1.0  # grey levels


def test_neutralizing_a_smile_moves_the_mouth_and_draws_only_a_little(crops_and_codes):
    models, crops, z, zn = crops_and_codes
    r = models.render(crops[:2], z[:2], zn[:2])
    n = models.render_size
    mouth = (slice(int(0.6 * n), int(0.8 * n)), slice(int(0.3 * n), int(0.7 * n)))
    moved = np.abs(r.motion[(slice(None), *mouth)]).max(axis=(1, 2, 3)) * n
    assert (moved > 1.5).all(), moved  # the mouth corners move by more than a pixel and a half
    assert (r.mask.mean(axis=(1, 2)) < 0.15).all()  # the fill stays small: the photo's own pixels do the work
    top = (slice(0, int(0.3 * n)), slice(None))  # forehead and hair: never drawn
    assert r.mask[(slice(None), *top)].mean() < 0.05


def test_the_gpu_benchmark_runs_the_shipped_stack_through_torch_on_the_cpu(tmp_path):
    """scripts/bench_gpu.py is what a lent GPU runs; here it must give the ONNX stack's outputs."""
    import subprocess
    import sys

    pytest.importorskip("onnx")
    script, state = REPO / "scripts" / "bench_gpu.py", tmp_path / "stack.pt"
    subprocess.run([sys.executable, str(script), "prepare", str(state)], check=True, capture_output=True)
    res = subprocess.run([sys.executable, str(script), "run", str(state), "--device", "cpu", "-b", "2",
                          "--repeats", "1"], check=True, capture_output=True, text=True)
    diff = float(res.stdout.split("max |torch - ONNX| on the check crops: ")[1].split()[0])
    assert diff < 1e-3 and "batch    2:" in res.stdout, res.stdout


def test_the_pairs_own_flow_is_where_the_target_came_from_and_is_trusted_where_it_explains_it(crops_and_codes):
    """A target that is its source moved 4 px to the right: the flow says each target pixel came
    from 4 px to its left, moving the source by it gives the target back, and where the target
    holds something the source never had (a patch painted over) the flow is not trusted."""
    torch = pytest.importorskip("torch")
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_losses import motion_l1, true_motion

    _, crops, _, _ = crops_and_codes
    source = torch.from_numpy(crops[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1
    real = source.roll(4, dims=3)
    real[..., 150:180, 100:140] = 1.0  # white, in none of the source
    flow, trust = true_motion(source, real)
    inner = (slice(None), slice(None), slice(40, 120), slice(40, 216))
    assert abs(float(flow[:, 0][inner[0], inner[2], inner[3]].median()) * R.SIZE + 4) < 0.5
    assert float(flow[:, 1][inner[0], inner[2], inner[3]].abs().median()) * R.SIZE < 0.5
    assert float((R.warp(source, flow) - real)[inner].abs().mean()) < 0.05
    assert float(trust[inner].mean()) > 0.5 and float(trust[..., 155:175, 105:135].mean()) < 0.2

    weight = torch.ones(1, 1, R.SIZE, R.SIZE)
    motion = torch.zeros(1, 2, R.SIZE, R.SIZE, requires_grad=True)
    loss = motion_l1(motion, flow, trust, weight)
    assert 1.0 < float(loss) < 4.5  # about the 4 px the zero motion misses by, where trusted
    loss.backward()
    assert float(motion.grad[0, 0][40:120, 40:216].mean()) > 0  # descent moves it toward the flow's -4 px
    assert float(motion_l1(flow, flow, trust, weight)) == 0
