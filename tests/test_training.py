"""A tiny end-to-end training run on CPU: prepare a cache from two shared datasets, train the VAE,
the neutralizer and the renderer for a few steps, resume, export to ONNX, check ONNX against PyTorch, and neutralize a photo
with the exported models through the CLI."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, read_log

DATASETS = REPO.parent / "shared" / "datasets"
NEEDED = [DATASETS / "jaffe" / "images", DATASETS / "taiwanese" / "images"]
if not all(p.is_dir() for p in NEEDED):
    pytest.skip(f"the shared face datasets are not at {DATASETS} (expected jaffe/images and "
                f"taiwanese/images next to the repository, in ../shared/datasets); "
                f"the training test needs them", allow_module_level=True)

import torch  # noqa: E402

from stoic_cli.train import data, export  # noqa: E402
from stoic_cli.train.config import TrainConfig  # noqa: E402
from stoic_cli.train.neutralizer_stage import train_neutralizer  # noqa: E402
from stoic_cli.train.vae_stage import train_vae  # noqa: E402

NETWORKS = ("encoder", "neutralizer", "decoder")


def assert_numeric(rows: list[dict], columns: list[str]) -> None:
    assert rows, "empty log"
    for row in rows:
        for col in columns:
            value = float(row[col])  # raises if not a number
            assert math.isfinite(value), (col, row)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs the whole tiny training once; the tests below check what it left behind."""
    base = tmp_path_factory.mktemp("training")
    cache, run_dir, models = base / "cache", base / "run", base / "models"
    facts: dict = {"cache": cache, "run": run_dir, "models": models}

    facts["counts"] = data.prepare(DATASETS, cache, datasets=["jaffe", "taiwanese"], limit=3, workers=1)

    cfg = TrainConfig(cache=str(cache), run=str(run_dir), batch_size=4, vae_steps=3, neutralizer_steps=20,
                      checkpoint_every=2, log_every=1, threads=1)
    cpu = torch.device("cpu")
    train_vae(cfg, cpu)
    first = torch.load(run_dir / "vae.pt", map_location="cpu", weights_only=False)
    facts["vae_step_first"] = first["step"]
    facts["vae_weights_first"] = {k: v.clone() for k, v in first["encoder"].items()}
    facts["vae_log_first"] = read_log(run_dir / "vae_log.csv")

    cfg = dataclasses.replace(cfg, vae_steps=5)
    train_vae(cfg, cpu)  # resumes from step 3
    train_neutralizer(cfg, cpu)
    facts["exported"] = export.export_all(run_dir, models)

    # The renderer, a few steps on 256 px crops, with the codes of the models just exported.
    from stoic_cli.train.renderer_export import export_renderer
    from stoic_cli.train.renderer_stage import RendererConfig, train_renderer
    cache256, run_r = base / "cache256", base / "renderer"
    data.prepare(DATASETS, cache256, datasets=["jaffe"], limit=3, workers=1, size=256)
    rcfg = RendererConfig(cache=str(cache256), models=str(models), run=str(run_r), steps=2, batch_size=2,
                          checkpoint_every=2, log_every=1, threads=1, gan_start=1, cycle_datasets=["jaffe"],
                          cycle_batch=1, flow_weight=0.1)
    train_renderer(rcfg)
    facts["renderer_step_first"] = torch.load(run_r / "renderer.pt", weights_only=False)["step"]
    train_renderer(dataclasses.replace(rcfg, steps=3))  # resumes from step 2
    export_renderer(run_r, models / "renderer.onnx", models)
    facts.update(cfg=cfg, cache256=cache256, renderer_run=run_r, renderer_cfg=rcfg)
    return facts


def test_prepare_writes_a_cache(run):
    counts = run["counts"]
    assert set(counts) == {"jaffe", "taiwanese"}
    crops, labels = data.load_cache(run["cache"])
    assert crops.dtype == np.uint8 and crops.shape[1:] == (128, 128, 3)
    assert len(crops) == len(labels) == sum(c.get(s, 0) for c in counts.values() for s in ("train", "val", "test"))
    assert len(crops) >= 8
    assert {r["dataset"] for r in labels} == {"jaffe", "taiwanese"}
    assert all(not Path(r["source"]).is_absolute() for r in labels)  # portable cache
    assert (run["cache"] / "failures.csv").exists()
    # the crops are faces, not padding
    assert np.asarray(crops).reshape(len(crops), -1).std(1).min() > 10


def test_vae_log_and_checkpoint(run):
    assert run["vae_step_first"] == 3
    first = run["vae_log_first"]
    assert [int(r["step"]) for r in first] == [1, 2, 3]
    assert_numeric(first, ["l1", "ssim", "kl", "lr", "kl_weight"])
    assert all(float(r["l1"]) > 0 for r in first)


def test_vae_resumes_from_its_checkpoint(run):
    state = torch.load(run["run"] / "vae.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 5
    rows = read_log(run["run"] / "vae_log.csv")
    # steps 4 and 5 were appended to the log: training went on from step 3, not from 0
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert_numeric(rows, ["l1", "ssim", "kl"])
    changed = [k for k, v in state["encoder"].items()
               if v.dtype.is_floating_point and not torch.equal(v, run["vae_weights_first"][k])]
    assert changed, "resumed training did not update the weights"


def test_neutralizer_log(run):
    rows = read_log(run["run"] / "neutralizer_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    assert_numeric(rows, ["train", "val_expressive", "val_expressive_identity_baseline", "val_neutral"])
    state = torch.load(run["run"] / "neutralizer.pt", map_location="cpu", weights_only=False)
    assert state["pairs_train"] > 0
    assert math.isfinite(state["best_val"])


def test_neutralizer_for_shipped_codes_changes_only_expression_directions(run, tmp_path):
    """A neutralizer fitted to an exported encoder (no VAE in its run), its change to the
    expression part kept along the training people's first principal directions; exporting that
    run writes the neutralizer alone."""
    cfg = dataclasses.replace(run["cfg"], run=str(tmp_path / "ntr"), vae_init=str(run["models"]), expression_dims=64,
                              neutralizer_subspace_dims=2, neutralizer_subspace_datasets=["taiwanese"])
    state = torch.load(train_neutralizer(cfg, torch.device("cpu")), map_location="cpu", weights_only=False)
    assert state["subspace_dims"] == 2 and 0 < state["subspace_variance_share"] <= 1
    assert all(n > 0 for n in state["subspace_differences"])
    weight, bias = state["neutralizer"]["fc.weight"].double(), state["neutralizer"]["fc.bias"].double()
    z = torch.randn(50, 256, dtype=torch.float64) * 3
    change = z @ weight.T + bias - z
    assert torch.linalg.matrix_rank(change[:, -64:], tol=1e-4) <= 2
    assert change[:, :-64].abs().max() > 1e-3  # the person part is the layer's own, untouched
    written = export.export_all(tmp_path / "ntr", tmp_path / "out")
    assert sorted(p.name for p in written) == ["neutralizer.onnx", "stoic.json"]


def test_export_writes_three_networks_and_metadata(run):
    models = run["models"]
    assert sorted(p.name for p in run["exported"]) == sorted([f"{n}.onnx" for n in NETWORKS] + ["stoic.json"])
    for n in NETWORKS:
        assert (models / f"{n}.onnx").stat().st_size > 1000
    meta = json.loads((models / "stoic.json").read_text())
    assert meta["image_size"] == 128 and meta["latent_dim"] == 256
    from stoic_cli.runtime.settings import ModelSettings

    assert set(meta) <= {"format", "image_size", "render_size", "latent_dim", "expression_dims", "pixel_range",
                         "template", "models"}
    assert ModelSettings.read(Path(run["models"]) / "stoic.json").image_size == 128  # every key is read


def test_onnx_matches_pytorch_on_real_crops(run):
    crops, _ = data.load_cache(run["cache"])
    diffs = export.max_onnx_difference(run["run"], run["models"], np.array(crops[:8]))
    assert set(diffs) == set(NETWORKS)
    assert all(d < 1e-3 for d in diffs.values()), diffs


def test_cli_neutralize_with_the_exported_models(run, cli_detector, london_paths, london_faces, tmp_path):
    from typer.testing import CliRunner

    from stoic_cli.face.alignment import alignment_matrix
    from stoic_cli.cli import app
    from stoic_cli.render.pasteback import face_mask

    name = "094_smiling.jpg"
    src = next(p for p in london_paths if p.name == name)
    original = np.asarray(Image.open(src).convert("RGB"))
    photo = tmp_path / "portrait.png"  # lossless, so untouched pixels can be compared exactly
    Image.fromarray(original).save(photo)
    jpeg = tmp_path / "portrait2.jpg"
    shutil.copy(src, jpeg)

    result = CliRunner().invoke(app, ["neutralize", "--device", "cpu", "--models", str(run["models"]),
                                      str(photo), str(jpeg)])
    assert result.exit_code == 0, result.output
    assert str(run["models"]) in " ".join(result.stderr.split())

    out = tmp_path / "portrait_neutral.png"
    assert out.exists()
    with Image.open(out) as img:
        assert img.size == (400, 400) and img.mode == "RGB"
        edited = np.asarray(img)

    # Pixels outside the (slightly grown) face mask are the input's, byte for byte.
    matrix = alignment_matrix(london_faces[name][0].landmarks, 128)
    mask = cv2.warpAffine(face_mask(128).astype(np.float32), matrix, (400, 400),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0)
    face = cv2.dilate((mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert 0.1 < face.mean() < 0.6
    assert np.array_equal(edited[~face], original[~face])

    # A few steps of training leave the decoder almost blind to its code, so a strength-1 edit
    # may change nothing at all. Pushed past neutral (the largest strength the CLI takes) the edit
    # shows, and still stays inside.
    result = CliRunner().invoke(app, ["neutralize", "--device", "cpu", "--models", str(run["models"]),
                                      "--strength", "2", "--overwrite", str(photo)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        pushed = np.asarray(img)
    changed = (pushed != original).any(2)
    assert changed.sum() > 0.05 * face.sum(), "the exported models did not change the face at all"
    assert not changed[~face].any()

    out_jpeg = tmp_path / "portrait2_neutral.jpg"
    with Image.open(out_jpeg) as img:
        assert img.size == (400, 400) and img.format == "JPEG"
        edited_jpeg = np.asarray(img.convert("RGB"))
    # re-encoded, so only close outside the face
    assert np.abs(edited_jpeg[~face].astype(int) - original[~face]).mean() < 2


def test_renderer_log_checkpoint_and_resume(run):
    rows = read_log(run["renderer_run"] / "renderer_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # the second call resumed at step 2
    assert run["renderer_step_first"] == 2
    assert_numeric(rows, ["l1", "ssim", "warp", "mask", "motion_tv", "gan", "feature", "critic", "fill", "flow"])
    assert float(rows[0]["flow"]) > 0
    assert float(rows[0]["gan"]) == 0 and float(rows[1]["gan"]) > 0  # the critic joins at gan_start
    state = torch.load(run["renderer_run"] / "renderer.pt", weights_only=False)
    assert state["step"] == 3 and not any(k.startswith("decoder.") for k in state["renderer"])


def test_renderer_onnx_matches_pytorch_on_real_crops(run):
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.train.renderer_export import max_renderer_difference

    crops, _ = data.load_cache(run["cache256"])
    crops = np.array(crops[:4])
    models = FaceModels(run["models"], device="cpu")
    z = models.encode(np.stack([cv2.resize(c, (128, 128), interpolation=cv2.INTER_AREA) for c in crops]))
    diff = max_renderer_difference(run["renderer_run"], run["models"] / "renderer.onnx", crops, z,
                                   models.neutralize(z), run["models"])
    assert diff < 1e-3


def test_renderer_refuses_a_cycle_without_unpaired_photos(run, tmp_path):
    from stoic_cli.train.renderer_stage import train_renderer
    cfg = dataclasses.replace(run["renderer_cfg"], run=str(tmp_path), cycle_datasets=["utkface"])
    with pytest.raises(ValueError, match="no training photos of \\['utkface'\\]"):
        train_renderer(cfg)


def test_renderer_refuses_crops_of_the_wrong_size(run, tmp_path):
    from stoic_cli.train.renderer_stage import train_renderer
    cfg = dataclasses.replace(run["renderer_cfg"], cache=str(run["cache"]), run=str(tmp_path))  # 128 px
    with pytest.raises(ValueError, match="--size 256"):
        train_renderer(cfg)


def test_a_sample_of_people_keeps_the_split_of_the_whole_set():
    from stoic_cli.train.data import Record, _sample_people, assign_splits

    records = [Record("utkface", f"utk:{i}", "unknown", f"{i}.jpg") for i in range(400)]
    assign_splits(records)
    split_of = {r.person: r.split for r in records}
    sample = _sample_people(records, 50)
    assert len({r.person for r in sample}) == 50
    assert all(r.split == split_of[r.person] for r in sample)
    assert [r.person for r in _sample_people(records, 50)] == [r.person for r in sample]  # fixed seed


def test_unpaired_photos_are_drawn_only_as_themselves():
    pytest.importorskip("torch")
    from stoic_cli.train.renderer_pairs import PairDrawer
    from stoic_cli.train.renderer_stage import RendererConfig

    paired = [[{"row": 0, "expression": "neutral"}, {"row": 1, "expression": "happiness"}]]
    singles = [{"row": r, "expression": "unknown"} for r in range(10, 20)]
    cfg = RendererConfig(identity_datasets=["utkface"], identity_share=0.5)
    src, dst, _ = PairDrawer(paired, cfg, seed=0, singles=singles)(400)
    unpaired = src >= 10
    assert 120 < unpaired.sum() < 280  # about half
    assert (src[unpaired] == dst[unpaired]).all()
    assert set(src[~unpaired]) | set(dst[~unpaired]) <= {0, 1}


def test_cycle_drawer_edits_unpaired_photos_the_way_the_jobs_do():
    pytest.importorskip("torch")
    from stoic_cli.train.renderer_cycle import CycleDrawer
    from stoic_cli.train.renderer_pairs import CodeTable

    rng = np.random.default_rng(0)
    codes = rng.normal(size=(30, 8)).astype(np.float32)
    neutral = codes.copy()
    neutral[:, 4:] = 0  # the expression part of a neutral code
    smile = np.zeros(8, np.float32)
    smile[7] = 1
    table = CodeTable.__new__(CodeTable)  # the table's lookups without encoding a cache
    vars(table).update(codes=codes, flipped=codes + 100, neutral=neutral, neutral_flipped=neutral + 100,
                       direction={"happiness": smile, "neutral": np.zeros(8, np.float32), "fear": None})
    singles = [{"row": r} for r in range(20, 30)]
    donors = [{"row": 0, "expression": "neutral"}, {"row": 1, "expression": "happiness"}]
    rows, flip, own, out = CycleDrawer(singles, donors, table, seed=0)(600)
    own, out = own.numpy(), out.numpy()
    assert set(rows) <= set(range(20, 30))
    assert np.allclose(own, np.where(flip[:, None], codes[rows] + 100, codes[rows]))
    n = np.where(flip[:, None], neutral[rows] + 100, neutral[rows])
    neutralized = np.isclose(out, n).all(1)
    transferred = np.isclose(out, n + codes[1] - neutral[1]).all(1)
    edited = np.isclose(out[:, :7], own[:, :7]).all(1) & (out[:, 7] - own[:, 7] >= 0.5 - 1e-6)
    assert (neutralized | transferred | edited).all()
    assert 0.4 < neutralized.mean() < 0.6 and 0.2 < transferred.mean() < 0.4 and 0.1 < edited.mean() < 0.3
    assert np.allclose(out[:, :4], own[:, :4], atol=1e-5)  # every way out keeps the person part


def test_the_cycle_loss_reaches_the_renderer_through_both_passes_unless_the_way_out_is_detached():
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace
    from stoic_cli.train import renderer_net as R
    from stoic_cli.train.renderer_cycle import cycle_losses

    class TinyDecoder(torch.nn.Module):
        def forward(self, z):
            return torch.tanh(z[:, :3, None, None]).expand(-1, 3, 128, 128)

    torch.manual_seed(0)
    net = R.Renderer(TinyDecoder(), width=8)
    torch.nn.init.normal_(net.motion.weight, std=0.05)
    photo = torch.rand(2, 3, R.SIZE, R.SIZE) * 2 - 1
    own, out = torch.randn(2, 8), torch.randn(2, 8)
    class TinyEncoder(torch.nn.Module):  # reads the mean colour of the lower half: the "expression"
        def forward(self, x):
            lower = x[:, :, x.shape[2] // 2:].mean((2, 3))
            return torch.cat([torch.zeros(len(x), 5), lower], 1), None

    cfg = SimpleNamespace(ssim_weight=0.5, cycle_weight=1.0, cycle_code_weight=0.2, cycle_trains_way_out=True)
    loss, terms, edited = cycle_losses(net, TinyEncoder(), photo, own, out, torch.ones(1, 1, R.SIZE, R.SIZE), cfg, 3)
    assert terms["cycle"] > 0 and edited.shape == photo.shape
    lower = photo[:, :, R.SIZE // 2:].mean((2, 3))  # untrained, the edit is small: the code misses by about this
    assert abs(float(terms["cycle_code"]) - float((lower - out[:, 5:]).abs().mean())) < 0.05
    assert torch.autograd.grad(terms["cycle"], edited, retain_graph=True)[0].abs().sum() > 0
    loss.backward()
    assert net.motion.weight.grad.abs().sum() > 0 and net.enc1[0].weight.grad.abs().sum() > 0

    # Detached, the round trip trains the way back only.
    cfg.cycle_trains_way_out = False
    _, terms, edited = cycle_losses(net, TinyEncoder(), photo, own, out, torch.ones(1, 1, R.SIZE, R.SIZE), cfg, 3)
    assert torch.autograd.grad(terms["cycle"], edited, allow_unused=True)[0] is None
    _, terms, _ = cycle_losses(net, None, photo, own, out, torch.ones(1, 1, R.SIZE, R.SIZE), cfg, 3)
    assert set(terms) == {"cycle"}  # no encoder, no code term


def test_a_run_starts_from_another_runs_renderer_and_critic(run, tmp_path):
    """start_from begins a run with another run's weights (at lr 0 they stay exactly those) and
    its critic; from a slim checkpoint (renderer weights alone, like the shipped one in
    models/training_logs) or one whose critic was conditioned (a retired option) the critic is new."""
    from stoic_cli.train.renderer_stage import train_renderer
    cfg = dataclasses.replace(run["renderer_cfg"], run=str(tmp_path / "tuned"), steps=1, lr=0.0, critic_lr=0.0,
                              start_from=str(run["renderer_run"]), cycle_batch=0, gan_start=0)
    train_renderer(cfg)
    full = torch.load(run["renderer_run"] / "renderer.pt", weights_only=False)
    state = torch.load(tmp_path / "tuned" / "renderer.pt", weights_only=False)
    assert state["step"] == 1 and float(read_log(tmp_path / "tuned" / "renderer_log.csv")[0]["gan"]) > 0
    assert all(torch.equal(state["renderer"][k], v) for k, v in full["renderer"].items())
    assert all(torch.equal(state["critic"][k], v) for k, v in full["critic"].items())
    critic = full["critic"]["layers.0.0.weight"]
    starts = {"slim": {k: full[k] for k in ("renderer", "config", "step")},
              "conditioned": {**full, "config": {**full["config"], "critic_condition": True},
                              "critic": {**full["critic"], "layers.0.0.weight": critic.repeat(1, 2, 1, 1)}}}
    for name, start in starts.items():
        (tmp_path / name).mkdir()
        torch.save(start, tmp_path / name / "renderer.pt")
        train_renderer(dataclasses.replace(cfg, run=str(tmp_path / f"from_{name}"), start_from=str(tmp_path / name)))
        seeded = torch.load(tmp_path / f"from_{name}" / "renderer.pt", weights_only=False)
        assert seeded["step"] == 1 and seeded["critic"]["layers.0.0.weight"].shape == critic.shape, name
        assert not torch.equal(seeded["critic"]["layers.0.0.weight"], critic), name
        assert all(torch.equal(seeded["renderer"][k], v) for k, v in full["renderer"].items()), name


def test_a_loss_log_resumed_by_a_version_that_logs_more_terms_keeps_every_value_under_its_name(tmp_path):
    from stoic_cli.train.checkpoints import CsvLog
    log = CsvLog(tmp_path / "log.csv")
    log.write({"step": 1, "l1": 0.5, "seconds": 2.0})
    log.write({"step": 2, "l1": 0.4, "flow": 1.5, "seconds": 4.0})  # a new term, before "seconds"
    log.write({"step": 3, "l1": 0.3, "seconds": 6.0})  # and an older version again
    rows = read_log(tmp_path / "log.csv")
    assert [(r["step"], r["l1"], r["seconds"], r["flow"]) for r in rows] == [
        ("1", "0.5", "2.0", ""), ("2", "0.4", "4.0", "1.5"), ("3", "0.3", "6.0", "")]
