"""Stage `vae`: StoicNet's encoder and decoder. L1 + SSIM reconstruction + KL (its weight ramped
up from 0), optionally the expression classifier's perceptual loss and a code split into a
person part and an expression part (see TrainConfig)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import nets
from stoic_cli.train.checkpoints import CsvLog, load_state, save_state, setup_run, time_up
from stoic_cli.train.classifier_stage import load_classifier
from stoic_cli.train.config import TrainConfig
from stoic_cli.train.data import load_cache
from stoic_cli.train.losses import expression_feature_loss, face_weight, kl_divergence, ssim_loss, weighted_l1
from stoic_cli.train.samplers import PairSampler, expression_rows, make_sampler, neutral_pairs, to_tensor


def _initial_vae(cfg: TrainConfig, state: dict | None) -> tuple[nets.Encoder, nets.Decoder]:
    """The networks to train: as the checkpoint was saved, else from `vae_init`'s ONNX files,
    else new."""
    if state:
        return nets.Encoder(batchnorm=state.get("encoder_batchnorm", True)), nets.Decoder()
    if cfg.vae_init:
        from stoic_cli.train.export import import_onnx_vae
        missing = [n for n in ("encoder.onnx", "decoder.onnx") if not (Path(cfg.vae_init) / n).exists()]
        if missing:
            raise FileNotFoundError(f"vae_init: {cfg.vae_init} has no {' or '.join(missing)} (a models folder to "
                                    f"start from; for v4, v3's files: see models/README.md)")
        return import_onnx_vae(cfg.vae_init, logvar=cfg.vae_init_logvar)
    return nets.Encoder(), nets.Decoder()


def train_vae(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    run = setup_run(cfg)
    sampler = make_sampler(cfg)
    step = 0
    ckpt = run / "vae.pt"
    state = load_state(ckpt, device)
    enc, dec = _initial_vae(cfg, state)
    enc, dec = enc.to(device), dec.to(device)
    batchnorm = any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=cfg.vae_lr)
    classifier = load_classifier(run, device) if cfg.expression_feature_weight else None
    if state:
        enc.load_state_dict(state["encoder"])
        dec.load_state_dict(state["decoder"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        sampler.rng = np.random.default_rng(cfg.seed + step)
    pairs = heads = None
    split_at = nets.LATENT_DIM - cfg.expression_dims
    if cfg.expression_dims:
        crops, labels = load_cache(cfg.cache)
        pairs = PairSampler(crops, neutral_pairs(labels, "train", tuple(cfg.neutralizer_datasets)), cfg.seed + step + 1)
        if cfg.expression_code_weight or cfg.uniform_posterior_weight:
            rows, classes = expression_rows(labels, "train")
            row_class = np.full(len(crops), -1, np.int64)  # -1: no basic-expression label
            row_class[rows] = classes
            heads = nets.CodeHeads(cfg.expression_dims).to(device)
            opt_heads = torch.optim.Adam(heads.parameters(), lr=cfg.vae_lr)
            if state and "heads" in state:
                heads.load_state_dict(state["heads"]); opt_heads.load_state_dict(state["opt_heads"])
    log = CsvLog(run / "vae_log.csv")
    weight = face_weight(device, expression=cfg.expression_weight)

    def reconstruction(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = weighted_l1(y, x, weight) + cfg.ssim_weight * ssim_loss(y, x)
        if classifier is not None:
            loss = loss + cfg.expression_feature_weight * expression_feature_loss(classifier, y, x)
        return loss

    enc.train(), dec.train()
    start, acc = time.time(), {"l1": 0.0, "ssim": 0.0, "kl": 0.0}
    if classifier is not None:
        acc["expression"] = 0.0
    if pairs is not None:
        acc.update(swap=0.0, neutral_expression=0.0)
    if heads is not None:
        acc.update(code_expression=0.0, code_adversary=0.0)

    def save():
        extra = {"heads": heads.state_dict(), "opt_heads": opt_heads.state_dict()} if heads is not None else {}
        save_state(ckpt, encoder=enc.state_dict(), decoder=dec.state_dict(), opt=opt.state_dict(), step=step,
                   encoder_batchnorm=batchnorm, **extra)

    task = progress.add_task("vae", total=cfg.vae_steps, completed=step) if progress else None
    while step < cfg.vae_steps and not time_up(start, cfg):
        # Cosine decay of the learning rate over the stage's steps.
        lr = cfg.vae_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch, pos = sampler.draw(cfg.batch_size)
        x = to_tensor(batch, device)
        mu, logvar = enc(x)
        y = dec(nets.reparameterize(mu, logvar))
        l1 = weighted_l1(y, x, weight)
        ss = ssim_loss(y, x)
        kl = kl_divergence(mu, logvar)
        kl_w = cfg.kl_weight * min(1.0, step / max(1, cfg.kl_ramp_steps))
        loss = l1 + cfg.ssim_weight * ss + kl_w * kl
        if classifier is not None:
            expr = expression_feature_loss(classifier, y, x)
            loss = loss + cfg.expression_feature_weight * expr
            acc["expression"] += expr.item()
        if pairs is not None:
            xn, xe = (to_tensor(b, device) for b in pairs(cfg.swap_batch))
            mu_p, logvar_p = enc(torch.cat([xn, xe]))
            zn_, ze_ = nets.reparameterize(mu_p, logvar_p).chunk(2)
            mixed = torch.cat([torch.cat([zn_[:, :split_at], ze_[:, split_at:]], 1),  # -> the expressive photo
                               torch.cat([ze_[:, :split_at], zn_[:, split_at:]], 1)])  # -> the neutral photo
            swap = reconstruction(dec(mixed), torch.cat([xe, xn]))
            neutral_expr = mu_p[:len(xn), split_at:].pow(2).mean()
            loss = loss + cfg.swap_weight * swap + cfg.neutral_expression_weight * neutral_expr
            acc["swap"] += swap.item(); acc["neutral_expression"] += neutral_expr.item()
        adversary_loss = None
        if heads is not None:
            target = torch.from_numpy(row_class[sampler.rows[pos]]).to(device)
            if (target >= 0).any():
                code_expr = F.cross_entropy(heads.expression(mu[:, split_at:]), target, ignore_index=-1)
                # Uniform posterior: cross-entropy of the adversary's guess against 1/C for every class.
                guess = F.log_softmax(heads.adversary(mu[:, :split_at]), 1)
                uniform = -guess.mean(1).mean() - math.log(guess.shape[1])
                loss = loss + cfg.expression_code_weight * code_expr + cfg.uniform_posterior_weight * uniform
                adversary_loss = F.cross_entropy(heads.adversary(mu[:, :split_at].detach()), target, ignore_index=-1)
                acc["code_expression"] += code_expr.item(); acc["code_adversary"] += adversary_loss.item()
        opt.zero_grad(set_to_none=True)
        if heads is not None:
            opt_heads.zero_grad(set_to_none=True)
        loss.backward()
        if adversary_loss is not None:
            # The adversary learns only to read the person part, not to be fooled.
            for p in heads.adversary.parameters():
                p.grad = None
            adversary_loss.backward()
        opt.step()
        if heads is not None:
            opt_heads.step()
        step += 1
        acc["l1"] += l1.item(); acc["ssim"] += ss.item(); acc["kl"] += kl.item()
        if step % cfg.log_every == 0:
            row = {"step": step, "seconds": round(time.time() - start, 1), "lr": round(lr, 6),
                   "kl_weight": kl_w, **{k: round(v / cfg.log_every, 5) for k, v in acc.items()}}
            log.write(row)
            acc = dict.fromkeys(acc, 0.0)
        if progress:
            progress.update(task, completed=step)
        if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
            save()
    save()
    return ckpt
