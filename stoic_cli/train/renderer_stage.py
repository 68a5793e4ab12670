"""Training stage of the renderer (stoic_cli.train.renderer_net): `stoic train renderer`.

Same-person pairs from the same session (Taiwanese, JAFFE: one sitting, one camera, so the
motion between two expressions is a warp plus what appears or disappears) teach it to turn a
face with its own code into the same face with the other photo's code. Losses: L1 and SSIM to
the real photo, L1 of the warp alone (so the motion does the work and the mask stays for what
is new), a mouth critic (LSGAN) and its feature maps as a learned perceptual loss, a mask
penalty (GANimation's masks saturate without one) and smoothness of motion and mask. Some pairs
are a photo with itself, which must come back unchanged; unpaired photos can also go out and
back (renderer_cycle).

Resumable: a checkpoint every `checkpoint_every` steps; `max_minutes` stops it cleanly."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from stoic_cli.train import renderer_net as R
from stoic_cli.train.checkpoints import CsvLog, save_state, setup_run
from stoic_cli.train.config import device_for
from stoic_cli.train.data import load_cache
from stoic_cli.train.renderer_cycle import CycleDrawer, cycle_losses, frozen_encoder
from stoic_cli.train.renderer_losses import LOGGED, face_weight, losses
from stoic_cli.train.renderer_pairs import (CodeTable, PairDrawer, crop_tensors, pair_groups,
                                           validation_pairs)

# Options of designs tried and dropped (git history and docs/experiments.md keep them): no shipped
# renderer used them, and configs and checkpoints written before then still name them, so
# loading skips these keys.
RETIRED_KEYS = frozenset({"design", "mouth_width", "copy_fill", "copy_flow_weight", "train_base", "detail_weight",
                          "coarse_warp_weight", "critic_condition", "mouth_fill_weight", "fill_source",
                          "edit_intensity", "ema_decay"})


@dataclass
class RendererConfig:
    cache: str = "cache256"  # `stoic data prepare --size 256`
    models: str = "models"  # encoder.onnx (the codes) and decoder.onnx (the renderer's drawings)
    run: str = "runs/renderer"
    width: int = 32
    datasets: list = field(default_factory=lambda: ["taiwanese", "jaffe"])
    # Unpaired photos (one per person, e.g. UTKFace's many skin tones and ages) used only as a
    # photo with itself, `identity_share` of the pairs: the renderer and its fill colours must
    # return any face unchanged, not only the paired sets' mostly East Asian people.
    identity_datasets: list = field(default_factory=list)
    identity_share: float = 0.25
    # Unpaired photos edited out and rendered back (renderer_cycle), `cycle_batch` of them a step
    # beside the pairs: a target for the fill on faces no pair shows.
    cycle_datasets: list = field(default_factory=list)
    cycle_batch: int = 0
    cycle_weight: float = 1.0
    cycle_code_weight: float = 0.2
    cycle_trains_way_out: bool = True
    steps: int = 3000
    batch_size: int = 6
    lr: float = 2e-4
    critic_lr: float = 2e-4
    identity_fraction: float = 0.2  # pairs of a photo with itself
    # The target code as the jobs make it, instead of the target photo's own code: LEED's
    # transfer N(E(a)) + E(b) - N(E(b)), or an attribute edit E(a) + dir(b) - dir(a); the
    # renderer must turn those codes, not only encoded photos, into the real photo.
    transfer_fraction: float = 0.4
    # Of the pairs whose target photo is neutral (a neutral photo with itself among them), the
    # share that uses neutralize's code N(E(a)): otherwise a neutral photo through neutralize
    # meets a code it never learnt means "no change", and moves.
    neutralize_fraction: float = 0.5
    edit_fraction: float = 0.2
    neutral_fraction: float = 0.6  # pairs with a neutral photo on one side (neutralize, transfer)
    ssim_weight: float = 0.5
    warp_weight: float = 0.5
    # L1 of the motion to the pair's own optical flow, in pixels, where that flow explains the
    # target (renderer_losses.true_motion): the motion learns how far lips and corners move.
    flow_weight: float = 0.0
    gan_weight: float = 0.05
    feature_weight: float = 1.0
    # L1 of the fill colours themselves to the target photo outside the mouth box: the mask's
    # gradient alone leaves the fill arbitrary where the mask is faint, and faint masks over the
    # whole face then mix those arbitrary colours in (blotches on faces unlike the training people).
    fill_weight: float = 0.5
    # A run whose renderer and critic weights start this one (a fine-tune in its own folder,
    # counting its own steps); ignored once this run has a checkpoint.
    start_from: str = ""
    mask_weight: float = 0.4
    mouth_mask_weight: float = 0.05  # inside the mouth box, where teeth appear and lips close over them
    mask_tv_weight: float = 0.05
    motion_tv_weight: float = 2.0
    gan_start: int = 300  # reconstruction only before this step
    checkpoint_every: int = 200
    log_every: int = 20
    threads: int = 0
    seed: int = 0
    max_minutes: float = 0.0
    device: str = "auto"  # auto | cpu | cuda

    @classmethod
    def load(cls, path: str | Path | None, **overrides) -> "RendererConfig":
        values = json.loads(Path(path).read_text()) if path else {}
        values = {k: v for k, v in values.items() if k not in RETIRED_KEYS}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown renderer config keys: {sorted(unknown)}")
        return cls(**values)


def load_decoder(models: Path):
    from stoic_cli.train.export import import_onnx_vae
    _, dec = import_onnx_vae(models)
    return dec.eval()


def build(cfg: RendererConfig) -> R.Renderer:
    return R.Renderer(load_decoder(Path(cfg.models)), width=cfg.width)


def run_config(run: Path, state: dict | None = None) -> RendererConfig:
    state = state or torch.load(run / "renderer.pt", map_location="cpu", weights_only=False)
    return RendererConfig(**{k: v for k, v in state["config"].items() if k not in RETIRED_KEYS})


def load_renderer(run: Path, models: Path | None = None) -> R.Renderer:
    state = torch.load(run / "renderer.pt", map_location="cpu", weights_only=False)
    cfg = run_config(run, state)
    if models is not None:
        cfg.models = str(models)
    net = build(cfg)
    net.load_state_dict(_without_decoder(state["renderer"]), strict=False)
    return net.eval()


def _without_decoder(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("decoder.")}


def validate(net, crops, codes, pairs: list[tuple[int, int]], weight) -> dict:
    """Mean L1 over the face and over the mouth box, and the mask's mean, on fixed pairs of
    validation people."""
    net.eval()
    l1, mouth_l1, mask_mean = [], [], []
    with torch.no_grad():
        for i in range(0, len(pairs), 8):
            a = np.array([p[0] for p in pairs[i:i + 8]])
            b = np.array([p[1] for p in pairs[i:i + 8]])
            no = np.zeros(len(a), bool)
            dev = weight.device
            crop, real = crop_tensors(crops, a, no).to(dev), crop_tensors(crops, b, no).to(dev)
            packed = net(crop, torch.from_numpy(codes[a]).to(dev), torch.from_numpy(codes[b]).to(dev))
            out, _ = R.compose(crop, packed)
            l1.append((((out - real).abs() * weight).mean((1, 2, 3)) / weight.mean()).cpu().numpy())
            mouth_l1.append((R.mouth(out) - R.mouth(real)).abs().mean((1, 2, 3)).cpu().numpy())
            mask_mean.append(packed[:, 2].mean((1, 2)).cpu().numpy())
    net.train()
    return {"val_l1": float(np.concatenate(l1).mean()), "val_mouth_l1": float(np.concatenate(mouth_l1).mean()),
            "val_mask": float(np.concatenate(mask_mean).mean())}


def train_renderer(cfg: RendererConfig, progress=None) -> Path:
    run = setup_run(cfg)
    crops, labels = load_cache(cfg.cache)
    if crops.shape[1] != R.SIZE:
        raise ValueError(f"{cfg.cache} holds {crops.shape[1]} px crops; the renderer needs {R.SIZE} "
                         f"(stoic data prepare --size {R.SIZE})")
    crops = np.asarray(crops)
    table = CodeTable(crops, labels, Path(cfg.models), run, np.random.default_rng(cfg.seed + 1))
    codes = table.codes
    groups = pair_groups(labels, "train", cfg.datasets)
    if not groups:
        raise ValueError(f"no same-person pairs of {cfg.datasets} in the training split of {cfg.cache}")
    val = validation_pairs(pair_groups(labels, "val", cfg.datasets))
    singles = [r for r in labels if r["split"] == "train" and r["dataset"] in cfg.identity_datasets]
    draw = PairDrawer(groups, cfg, cfg.seed, singles)
    unpaired = [r for r in labels if r["split"] == "train" and r["dataset"] in cfg.cycle_datasets]
    if cfg.cycle_batch and not unpaired:
        raise ValueError(f"cycle_batch {cfg.cycle_batch}: no training photos of {cfg.cycle_datasets} in {cfg.cache}")
    cycle = CycleDrawer(unpaired, [r for g in groups for r in g], table, cfg.seed + 2) if cfg.cycle_batch else None
    device = device_for(cfg.device)
    encoder = frozen_encoder(Path(cfg.models)).to(device) if cycle and cfg.cycle_code_weight else None
    net = build(cfg).to(device)
    critic = R.MouthCritic().to(device)
    ckpt = run / "renderer.pt"
    if cfg.start_from and not ckpt.exists():
        begin = torch.load(Path(cfg.start_from) / "renderer.pt", map_location=device, weights_only=False)
        net.load_state_dict(_without_decoder(begin["renderer"]), strict=False)
        # A new critic when the start is a slim checkpoint (the shipped one in models/training_logs
        # keeps only the renderer's weights) or had a conditioned critic (a retired option).
        if "critic" in begin and not begin["config"].get("critic_condition", False):
            critic.load_state_dict(begin["critic"])
    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), cfg.critic_lr, betas=(0.5, 0.999))
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(_without_decoder(state["renderer"]), strict=False)
        critic.load_state_dict(state["critic"])
        opt.load_state_dict(state["opt"])
        opt_d.load_state_dict(state["opt_d"])
        for optimizer, lr in ((opt, cfg.lr), (opt_d, cfg.critic_lr)):  # the config rules on resume
            for group in optimizer.param_groups:
                group["lr"] = lr
        step = state["step"]
        draw.rng = np.random.default_rng(cfg.seed + step)
        table.rng = np.random.default_rng(cfg.seed + 1 + step)
        if cycle:
            cycle.rng = np.random.default_rng(cfg.seed + 2 + step)

    def save():
        save_state(ckpt, renderer=net.trained_state(), critic=critic.state_dict(), opt=opt.state_dict(),
                   opt_d=opt_d.state_dict(), step=step, config=asdict(cfg))

    weight = face_weight().to(device)
    start, t0 = time.time(), time.time()
    task = progress.add_task("renderer", total=cfg.steps, completed=step) if progress else None
    net.train()
    while step < cfg.steps:
        a, b, flip = draw(cfg.batch_size)
        crop, real = crop_tensors(crops, a, flip).to(device), crop_tensors(crops, b, flip).to(device)
        own, target = (t.to(device) for t in table.own_and_target(a, b, flip, cfg))
        adversarial = cfg.gan_weight > 0 and step >= cfg.gan_start
        total, terms, out = losses(net, critic, crop, own, target, real, weight, cfg, adversarial)
        if cycle:
            rows, flipped, own_c, outward = cycle(cfg.cycle_batch)
            photo = crop_tensors(crops, rows, flipped).to(device)
            cycled, cycle_terms, _ = cycle_losses(net, encoder, photo, own_c.to(device), outward.to(device),
                                                       weight, cfg, table.expression_dims)
            # The critic stays out: with the unedited photos as its real ones, the least edit wins.
            total, terms = total + cycled, {**terms, **cycle_terms}
        terms = {k: v.detach() for k, v in terms.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
        if cfg.gan_weight > 0:
            d_real, d_fake = critic(R.mouth(real)), critic(R.mouth(out.detach()))
            d_loss = ((d_real - 1) ** 2).mean() + (d_fake ** 2).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            terms["critic"] = d_loss.detach()
        step += 1
        if progress:
            progress.advance(task)
        if step % cfg.log_every == 0:
            CsvLog(run / "renderer_log.csv").write({"step": step, "total": round(float(total.detach()), 5),
                                            **{k: round(float(terms.get(k, 0.0)), 5) for k in LOGGED},
                                            "seconds": round(time.time() - t0, 1)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
            if val:
                CsvLog(run / "renderer_val.csv").write({"step": step, **validate(net, crops, codes, val, weight)})
        if cfg.max_minutes and (time.time() - start) / 60 > cfg.max_minutes:
            save()
            break
    return ckpt
