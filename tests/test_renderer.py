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


def test_the_mouth_fill_loss_asks_for_the_target_only_where_the_warp_misses_it_in_the_mouth():
    torch = pytest.importorskip("torch")
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_losses import face_weight, mouth_fill_l1

    n = R.SIZE
    weight = face_weight(n)
    real = torch.zeros(1, 3, n, n)
    fill = torch.full((1, 3, n, n), 0.5, requires_grad=True)
    assert mouth_fill_l1(fill, real.clone(), real, weight) == 0  # the warp explains the target: nothing asked
    r0, r1, c0, c1 = R.mouth_box(n)
    outside = real.clone()
    outside[..., :r0, :] = 1.0  # the warp misses only above the mouth box
    assert mouth_fill_l1(fill, outside, real, weight) == 0
    inside = real.clone()
    inside[..., r0:r1, c0:c1] = 1.0  # teeth where the target's lips are
    loss = mouth_fill_l1(fill, inside, real, weight)
    assert loss > 0.4
    loss.backward()
    grad = fill.grad.abs().sum(1)[0]
    assert grad[r0:r1, c0:c1].min() > 0 and grad[:r0].max() == 0 and grad[r1:].max() == 0


def test_a_renderer_that_fills_from_the_moved_crop_exports_with_parity(shipped_models, crops_and_codes, tmp_path):
    """fill_source 'warped': the fill reads the crop after the motion (ONNX GridSample), and the
    ONNX file gives PyTorch's numbers."""
    torch = pytest.importorskip("torch")
    from stoic_cli.runtime.onnx import OnnxModel
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_export import export_network
    from stoic_cli.train.renderer_stage import load_decoder

    models, crops, z, zn = crops_and_codes
    torch.manual_seed(0)
    net = R.Renderer(load_decoder(Path(shipped_models)), fill_source="warped").eval()
    torch.nn.init.normal_(net.motion.weight, std=0.05)  # a motion large enough to matter
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = net(x, torch.from_numpy(z), torch.from_numpy(zn)).numpy()
    path = export_network(net, tmp_path / "renderer.onnx")
    decoder = OnnxModel(Path(shipped_models) / "decoder.onnx", device="cpu")
    got = OnnxModel(path, device="cpu")(x.numpy(), decoder(z), decoder(zn))
    assert np.abs(expected[:, :2]).max() > 0.01
    assert np.abs(got - expected).max() < 1e-3
    with pytest.raises(ValueError, match="fill_source"):
        R.Renderer(load_decoder(Path(shipped_models)), fill_source="photo")


def test_a_mouth_network_starts_as_the_renderer_it_joins_and_changes_only_the_mouth_region(
        shipped_models, crops_and_codes, tmp_path):
    """The mouth network's last layer starts at zero, so added to a trained renderer it changes
    nothing; once trained it changes the mask and fill inside its region only (never the
    motion), and the ONNX file still gives PyTorch's numbers."""
    torch = pytest.importorskip("torch")
    from stoic_cli.runtime.onnx import OnnxModel
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_export import export_network
    from stoic_cli.train.renderer_stage import load_decoder, load_renderer

    _, crops, z, zn = crops_and_codes
    base = load_renderer(WEIGHTS, Path(shipped_models))
    net = R.Renderer(load_decoder(Path(shipped_models)), mouth_width=8).eval()
    net.load_state_dict(base.trained_state(), strict=False)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    own, target = torch.from_numpy(z), torch.from_numpy(zn)
    r0, r1, c0, c1 = R.mouth_region(R.SIZE)
    outside = torch.ones(R.SIZE, R.SIZE, dtype=torch.bool)
    outside[r0:r1, c0:c1] = False
    with torch.no_grad():
        before = base(x, own, target)
        assert (net(x, own, target) - before).abs().max() < 2e-4
        torch.manual_seed(0)
        torch.nn.init.normal_(net.mouth_net.out.weight, std=0.05)
        after = net(x, own, target)
    change = (after - before).abs()
    assert torch.equal(after[:, :2], before[:, :2])  # the motion is the main network's
    assert change[..., outside].max() == 0
    assert change[:, 2:, r0 + R.MOUTH_FADE:r1 - R.MOUTH_FADE, c0 + R.MOUTH_FADE:c1 - R.MOUTH_FADE].mean() > 0.01
    path = export_network(net, tmp_path / "renderer.onnx")
    decoder = OnnxModel(Path(shipped_models) / "decoder.onnx", device="cpu")
    got = OnnxModel(path, device="cpu")(x.numpy(), decoder(z), decoder(zn))
    assert np.abs(got - after.numpy()).max() < 1e-3


def test_the_mouth_networks_copy_takes_the_photos_own_pixels_from_its_own_motion(
        shipped_models, crops_and_codes, tmp_path):
    """With the copy's share at one, the fill inside the mouth region is the crop itself, moved
    by the main motion plus the copy's offset (real texture, not drawn colours); outside the
    region nothing changes, and the ONNX file gives PyTorch's numbers."""
    torch = pytest.importorskip("torch")
    from stoic_cli.runtime.onnx import OnnxModel
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_export import export_network
    from stoic_cli.train.renderer_stage import load_decoder, load_renderer

    _, crops, z, zn = crops_and_codes
    base = load_renderer(WEIGHTS, Path(shipped_models))
    net = R.Renderer(load_decoder(Path(shipped_models)), mouth_width=8, copy_fill=True).eval()
    net.load_state_dict(base.trained_state(), strict=False)
    offset = (0.02, -0.03)  # fractions of the side, x then y
    with torch.no_grad():
        net.mouth_net.copy.bias.copy_(torch.tensor([float(np.arctanh(offset[0] / R.MAX_COPY)),
                                                    float(np.arctanh(offset[1] / R.MAX_COPY)), 30.0]))
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    extras: dict = {}
    with torch.no_grad():
        before = base(x, torch.from_numpy(z), torch.from_numpy(zn))
        after = net(x, torch.from_numpy(z), torch.from_numpy(zn), extras)
    shift = torch.tensor(offset).view(1, 2, 1, 1)
    copied = R.warp(x, after[:, :2] + shift)
    r0, r1, c0, c1 = R.mouth_region(R.SIZE)
    inner = (slice(None), slice(None), slice(r0 + R.MOUTH_FADE, r1 - R.MOUTH_FADE),
             slice(c0 + R.MOUTH_FADE, c1 - R.MOUTH_FADE))
    assert (after[:, 3:6][inner] - copied[inner]).abs().max() < 1e-4
    assert (extras["copy_motion"][inner] - (after[:, :2] + shift)[inner]).abs().max() < 1e-6
    outside = torch.ones(R.SIZE, R.SIZE, dtype=torch.bool)
    outside[r0:r1, c0:c1] = False
    assert (after - before).abs()[..., outside].max() == 0
    path = export_network(net, tmp_path / "renderer.onnx")
    decoder = OnnxModel(Path(shipped_models) / "decoder.onnx", device="cpu")
    got = OnnxModel(path, device="cpu")(x.numpy(), decoder(z), decoder(zn))
    assert np.abs(got - after.numpy()).max() < 1e-3
    with pytest.raises(ValueError, match="set mouth_width"):
        R.Renderer(load_decoder(Path(shipped_models)), copy_fill=True)


def test_the_coarse_warp_loss_reaches_motion_that_the_full_size_warp_cannot_see():
    """Bilinear sampling's gradient reaches one pixel: where the crop is flat for a dozen pixels
    the full-size warp loss says nothing to the motion, the halved copies do."""
    torch = pytest.importorskip("torch")
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.losses import weighted_l1
    from stoic_cli.train.renderer_losses import coarse_warp_l1

    crop = torch.zeros(1, 3, R.SIZE, R.SIZE)
    crop[..., 128:] = 1.0  # a vertical edge
    real = torch.zeros_like(crop)
    real[..., 116:] = 1.0  # the same edge 12 px to the left
    weight = torch.ones(1, 1, R.SIZE, R.SIZE)
    grads = []
    full_size = lambda m: weighted_l1(R.warp(crop, m), real, weight)
    for loss_of in (full_size, lambda m: coarse_warp_l1(crop, m, real, weight)):
        motion = torch.zeros(1, 2, R.SIZE, R.SIZE, requires_grad=True)
        loss_of(motion).backward()
        grads.append(motion.grad[0, 0, :, 116:124].abs().sum())  # 4 - 12 px left of the crop's edge
    assert grads[0] == 0 and grads[1] > 0


def test_the_detail_loss_prices_a_blurred_mouth_and_not_the_real_one(crops_and_codes):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from stoic_cli.train.renderer_losses import mouth_detail_l1

    _, crops, _, _ = crops_and_codes
    real = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    blurred = F.avg_pool2d(F.pad(real, (2, 2, 2, 2), mode="replicate"), 5, 1)
    assert mouth_detail_l1(real, real) == 0
    assert mouth_detail_l1(blurred, real) > 0.01
    sharpened = real + (real - blurred)  # too much detail costs too
    assert mouth_detail_l1(sharpened, real) > 0.01


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
