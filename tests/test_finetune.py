"""Fine-tuning a shipped VAE with the expression-aware perceptual loss: importing the ONNX
networks back into PyTorch, the expression classifier stage, and the VAE stage that uses both,
with and without a split code; and the shipped training configs still loading.
A synthetic cache stands in for the datasets, so these run everywhere (CI too)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from stoic_cli.runtime.onnx import OnnxModel
from stoic_cli.train import nets
from stoic_cli.train.checkpoints import load_vae
from stoic_cli.train.classifier_stage import classifier_accuracy, load_classifier, train_classifier
from stoic_cli.train.config import RETIRED_KEYS, TrainConfig
from stoic_cli.train.data import load_cache
from stoic_cli.train.export import import_onnx_vae
from stoic_cli.train.losses import expression_feature_loss
from stoic_cli.train.samplers import PairSampler, expression_rows
from stoic_cli.train.vae_stage import train_vae
from tests.conftest import REPO, read_log, write_cache

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory):
    """Two 'expressions' anyone can tell apart (a dark or a bright lower half), two people each
    in train and val."""
    root = tmp_path_factory.mktemp("toy_cache")
    rng = np.random.default_rng(0)
    crops, rows = [], []
    for split, people in (("train", ("a", "b")), ("val", ("c", "d"))):
        for person in people:
            for expression, level in (("neutral", 40), ("happiness", 215)):
                for view in range(6):
                    img = rng.integers(90, 160, (128, 128, 3)).astype(np.uint8)
                    img[64:] = np.clip(img[64:].astype(int) - 125 + level, 0, 255)
                    rows.append({"row": len(crops), "dataset": "taiwanese", "person": person,
                                 "expression": expression, "age": -1, "gender": "", "view": view,
                                 "split": split, "source": f"{person}_{expression}_{view}.jpg"})
                    crops.append(img)
    return write_cache(root, crops, rows)


def split_config(toy_cache, tmp_path, **options) -> TrainConfig:
    """Two VAE steps of a split code (16 expression entries) on the toy cache, logged and
    checkpointed every step, with `options` (the terms under test) on top."""
    return TrainConfig(cache=str(toy_cache), run=str(tmp_path / "run"), batch_size=4, vae_steps=2,
                       expression_dims=16, swap_batch=2, kl_ramp_steps=0, checkpoint_every=1,
                       log_every=1, threads=1, oversample={}, neutralizer_datasets=["taiwanese"], **options)


def test_shipped_vae_imports_as_the_same_function(shipped_models):
    enc, dec = import_onnx_vae(shipped_models)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    z_onnx = OnnxModel(shipped_models / "encoder.onnx", device="cpu")(x)
    y_onnx = OnnxModel(shipped_models / "decoder.onnx", device="cpu")(z_onnx)
    with torch.no_grad():
        mu, logvar = enc(torch.from_numpy(x))
        y = dec(torch.from_numpy(z_onnx))
    assert np.abs(mu.numpy() - z_onnx).max() < 1e-4
    assert np.abs(y.numpy() - y_onnx).max() < 1e-4
    assert torch.all(logvar == -4.0)  # the exporter dropped the variance head
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())


def test_import_refuses_networks_of_another_shape(tmp_path, shipped_models):
    import shutil
    shutil.copy(shipped_models / "decoder.onnx", tmp_path / "encoder.onnx")  # a decoder posing as encoder
    shutil.copy(shipped_models / "decoder.onnx", tmp_path / "decoder.onnx")
    with pytest.raises(ValueError):
        import_onnx_vae(tmp_path)


def test_expression_feature_loss_is_zero_only_for_the_same_image():
    torch.manual_seed(0)
    classifier = nets.ExpressionClassifier().eval()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert expression_feature_loss(classifier, x, x).item() == 0.0
    y = x.clone()
    y[:, :, 80:] = -y[:, :, 80:]
    assert expression_feature_loss(classifier, y, x).item() > 0.05


@pytest.fixture(scope="module")
def finetuned(toy_cache, tmp_path_factory, shipped_models):
    run = tmp_path_factory.mktemp("finetune_run")
    cfg = TrainConfig(cache=str(toy_cache), run=str(run), batch_size=4, vae_steps=2, vae_lr=0.0,
                      classifier_steps=60, classifier_batch_size=16, classifier_lr=3e-3,
                      expression_feature_weight=1.0, vae_init=str(shipped_models),
                      kl_ramp_steps=0, checkpoint_every=30, log_every=1, threads=1,
                      oversample={})
    train_classifier(cfg, CPU)
    train_vae(cfg, CPU)
    return cfg, run


def test_classifier_learns_and_keeps_its_best_weights(finetuned, toy_cache):
    cfg, run = finetuned
    log = read_log(run / "classifier_log.csv")
    assert [int(r["step"]) for r in log] == [30, 60]
    state = torch.load(run / "classifier.pt", map_location="cpu", weights_only=False)
    assert state["best_score"] == max(float(r["val_balanced_accuracy"]) for r in log)
    classifier = load_classifier(run, CPU)
    crops = np.load(toy_cache / "crops.npy")
    rows, classes = expression_rows(load_cache(toy_cache)[1], "val")
    accuracy, balanced = classifier_accuracy(classifier, crops, rows, classes, CPU)
    assert balanced > 0.9, balanced  # the two toy expressions are easy; people c and d are unseen


def test_vae_finetune_starts_from_the_shipped_encoder(finetuned, shipped_models, toy_cache):
    cfg, run = finetuned
    log = read_log(run / "vae_log.csv")
    assert len(log) == 2 and float(log[0]["expression"]) > 0
    enc, _ = load_vae(run, CPU)  # rebuilt without batch norm, as it was saved
    x = (np.load(toy_cache / "crops.npy")[:2].astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)
    with torch.no_grad():
        mu = enc(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()
    shipped = OnnxModel(shipped_models / "encoder.onnx", device="cpu")(np.ascontiguousarray(x))
    assert np.abs(mu - shipped).max() < 1e-4  # learning rate 0: still the shipped encoder


def test_vae_finetune_resumes_and_needs_its_classifier(finetuned, tmp_path):
    cfg, run = finetuned
    more = dataclasses.replace(cfg, vae_steps=3)
    train_vae(more, CPU)
    assert torch.load(run / "vae.pt", map_location="cpu", weights_only=False)["step"] == 3
    elsewhere = dataclasses.replace(cfg, run=str(tmp_path / "no_classifier"))
    with pytest.raises(FileNotFoundError, match="classifier"):
        train_vae(elsewhere, CPU)


def test_cli_says_which_vae_init_files_are_missing(toy_cache, tmp_path):
    from typer.testing import CliRunner

    from stoic_cli.cli import app

    result = CliRunner().invoke(app, ["train", "run", "vae", "--cache", str(toy_cache), "--run", str(tmp_path / "run"),
                                      "--set", f"vae_init={tmp_path / 'nowhere'}", "--device", "cpu"])
    assert result.exit_code == 2
    assert "encoder.onnx" in result.output and "nowhere" in result.output
    assert not (tmp_path / "run" / "vae.pt").exists()


def test_pair_sampler_pairs_one_persons_neutral_and_expressive_photos_flipped_alike():
    # Each crop says who it is (red = 10 x group), whether it is expressive (green), and has a mark
    # in its top-left corner, so a flip shows.
    crops, groups = [], {}
    for g in range(5):
        rows = {"neutral": [], "expressive": []}
        for kind, green in (("neutral", 0), ("neutral", 0), ("expressive", 200), ("expressive", 200)):
            img = np.zeros((8, 8, 3), np.uint8)
            img[..., 0], img[..., 1], img[0, 0, 2] = 10 * g, green, 255
            rows[kind].append(len(crops))
            crops.append(img)
        groups[("p", g)] = rows
    groups[("lonely", 0)] = {"neutral": [0], "expressive": []}  # no expressive photo: never drawn
    neutral, expressive = PairSampler(np.stack(crops), groups, seed=0)(64)
    assert np.all(neutral[:, 4, 4, 1] == 0) and np.all(expressive[:, 4, 4, 1] == 200)
    assert np.array_equal(neutral[:, 4, 4, 0], expressive[:, 4, 4, 0])  # the same person
    flipped = neutral[:, 0, -1, 2] == 255
    assert np.array_equal(flipped, expressive[:, 0, -1, 2] == 255)  # flipped together
    assert 0 < flipped.sum() < 64
    with pytest.raises(ValueError, match="neutral and expressive"):
        PairSampler(np.stack(crops), {("lonely", 0): groups[("lonely", 0)]}, seed=0)


def test_split_code_and_heads_are_logged_and_resume(toy_cache, tmp_path):
    cfg = split_config(toy_cache, tmp_path, neutral_expression_weight=0.1, expression_code_weight=0.5,
                       uniform_posterior_weight=0.5)
    train_vae(cfg, CPU)
    state = torch.load(tmp_path / "run" / "vae.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2 and {"heads", "opt_heads"} <= set(state)
    train_vae(dataclasses.replace(cfg, vae_steps=3), CPU)
    resumed = torch.load(tmp_path / "run" / "vae.pt", map_location="cpu", weights_only=False)
    assert resumed["step"] == 3
    # trained on after the resume
    assert any(not torch.equal(a, resumed["heads"][k]) for k, a in state["heads"].items())
    log = read_log(tmp_path / "run" / "vae_log.csv")
    assert [int(r["step"]) for r in log] == [1, 2, 3]
    for row in log:
        for column in ("swap", "neutral_expression", "code_expression", "code_adversary"):
            assert np.isfinite(float(row[column])) and float(row[column]) > 0, (column, row)


@pytest.mark.parametrize("path", ["models/training_logs/v5/config.json", "models/training_logs/v4/config.json",
                                  "models/training_logs/config.json", "configs/stoicnet_v5.json"])
def test_shipped_training_configs_load_without_their_retired_keys(path):
    values = json.loads((REPO / path).read_text())
    cfg = TrainConfig.load(REPO / path)
    for key, value in values.items():
        if key not in RETIRED_KEYS:
            assert getattr(cfg, key) == value, key
    assert values.keys() & RETIRED_KEYS  # the files still name the removed stages' options


def test_retired_keys_are_refused_as_overrides():
    with pytest.raises(ValueError, match="enhancer_steps"):
        TrainConfig.load(None, enhancer_steps=3)


def test_shipped_renderer_config_loads_without_its_retired_key():
    from stoic_cli.train.renderer_stage import RendererConfig
    weights = REPO / "models" / "training_logs" / "renderer"
    values = json.loads((weights / "config.json").read_text())
    cfg = RendererConfig.load(weights / "config.json")
    assert all(getattr(cfg, k) == v for k, v in values.items() if k != "design")


def test_renderer_configs_and_checkpoints_naming_retired_options_still_load(tmp_path):
    """Options of dropped designs are skipped on load (older runs name them) but refused as
    overrides; the shipped checkpoint gives the same config with them in it."""
    from stoic_cli.train import renderer_stage
    from stoic_cli.train.renderer_stage import RendererConfig, run_config
    retired = {"mouth_width": 32, "copy_fill": True, "copy_flow_weight": 0.05, "train_base": False,
               "detail_weight": 0.1, "coarse_warp_weight": 0.5, "critic_condition": True,
               "mouth_fill_weight": 0.5, "fill_source": "warped", "edit_intensity": True, "ema_decay": 0.995}
    assert set(retired) <= renderer_stage.RETIRED_KEYS
    state = torch.load(REPO / "models" / "training_logs" / "renderer" / "renderer.pt", weights_only=False)
    (tmp_path / "config.json").write_text(json.dumps({**state["config"], **retired}))
    cfg = RendererConfig.load(tmp_path / "config.json")
    assert cfg == RendererConfig.load(None, **state["config"])
    torch.save({**state, "config": {**state["config"], **retired}}, tmp_path / "renderer.pt")
    assert run_config(tmp_path) == cfg
    with pytest.raises(ValueError, match="ema_decay"):
        RendererConfig.load(None, ema_decay=0.9)
