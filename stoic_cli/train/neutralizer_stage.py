"""Stage `neutralizer`: StoicNet's one dense layer on the frozen encoder's codes, trained on
(expressive, neutral) photos of the same person: || E(x_n) - Ntr(E(x_e)) ||^2. Cheap, so it is
always retrained from scratch."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from stoic_cli.train import nets
from stoic_cli.train.checkpoints import CsvLog, load_vae, save_state, setup_run
from stoic_cli.train.config import TrainConfig
from stoic_cli.train.data import load_cache
from stoic_cli.train.samplers import encode_rows, neutral_pairs


def train_neutralizer(cfg: TrainConfig, device: torch.device, progress=None) -> Path:
    """Fits Ntr on codes of the frozen encoder. Targets are the mean code of the person's
    neutral photos (same view); neutral photos map to that mean (or to themselves, see
    `neutralizer_neutral_target`), which teaches the layer to leave an already neutral face
    alone."""
    run = setup_run(cfg)
    crops, labels = load_cache(cfg.cache)
    enc, _ = load_vae(run, device)
    data = {}
    for split in ("train", "val"):
        groups = neutral_pairs(labels, split, tuple(cfg.neutralizer_datasets))
        if not groups:
            if split == "train":
                raise ValueError("no (expressive, neutral) pairs of one person in the training split")
            data[split] = (torch.zeros(0, nets.LATENT_DIM), torch.zeros(0, nets.LATENT_DIM),
                           torch.zeros(0, dtype=torch.bool))
            continue
        src_rows, tgt_keys = [], []
        for key, g in groups.items():
            for row in g["expressive"] + g["neutral"]:
                src_rows.append(row)
                tgt_keys.append(key)
        all_rows = sorted({r for g in groups.values() for r in g["neutral"]} | set(src_rows))
        codes = dict(zip(all_rows, encode_rows(enc, crops, all_rows, device)))
        targets = {k: np.mean([codes[r] for r in g["neutral"]], 0) for k, g in groups.items()}
        is_expr = np.array([row in set(groups[k]["expressive"]) for row, k in zip(src_rows, tgt_keys)])
        to_self = cfg.neutralizer_neutral_target == "self"
        data[split] = (torch.tensor(np.stack([codes[r] for r in src_rows])),
                       torch.tensor(np.stack([codes[r] if (to_self and not e) else targets[k]
                                              for r, k, e in zip(src_rows, tgt_keys, is_expr)])),
                       torch.tensor(is_expr))
    if len(data["val"][0]) == 0 or not data["val"][2].any():
        data["val"] = data["train"]  # tiny caches (tests) may hold no validation pairs
    ntr = nets.Neutralizer().to(device)
    opt = torch.optim.Adam(ntr.parameters(), lr=cfg.neutralizer_lr)
    log = CsvLog(run / "neutralizer_log.csv")
    if (run / "neutralizer_log.csv").exists():
        (run / "neutralizer_log.csv").unlink()  # cheap stage: always retrained from scratch
    xs, ys, is_expr = (t.to(device) for t in data["train"])
    # Expressive pairs are the point; neutral-to-neutral pairs keep neutral faces unchanged.
    w = torch.where(is_expr, 1.0, cfg.neutralizer_neutral_weight)
    vx, vy, v_expr = (t.to(device) for t in data["val"])
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state = math.inf, None
    for step in range(1, cfg.neutralizer_steps + 1):
        idx = torch.randint(0, len(xs), (min(256, len(xs)),), generator=gen).to(device)
        pred = ntr(xs[idx])
        loss = (w[idx] * (pred - ys[idx]).pow(2).sum(1)).mean()
        if cfg.neutralizer_ridge:
            eye = torch.eye(nets.LATENT_DIM, device=device)
            loss = loss + cfg.neutralizer_ridge * ((ntr.fc.weight - eye).pow(2).sum() + ntr.fc.bias.pow(2).sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.neutralizer_steps:
            with torch.no_grad():
                val = (ntr(vx) - vy).pow(2).sum(1)
                baseline = (vx - vy).pow(2).sum(1)  # "do nothing"
                moved = (ntr(vx) - vx).pow(2).sum(1)
                row = {"step": step, "train": round(loss.item(), 4),
                       "val_expressive": round(val[v_expr].mean().item(), 4),
                       "val_expressive_identity_baseline": round(baseline[v_expr].mean().item(), 4),
                       "val_neutral": round(val[~v_expr].mean().item(), 4),
                       "val_neutral_moved": round(moved[~v_expr].mean().item(), 4),
                       "val_expressive_moved": round(moved[v_expr].mean().item(), 4)}
            log.write(row)
            if row["val_expressive"] < best:
                best, best_state = row["val_expressive"], {k: v.clone() for k, v in ntr.state_dict().items()}
    ntr.load_state_dict(best_state)
    ckpt = run / "neutralizer.pt"
    save_state(ckpt, neutralizer=ntr.state_dict(), step=cfg.neutralizer_steps, best_val=best,
          pairs_train=int(is_expr.sum()), pairs_val=int(v_expr.sum()))
    return ckpt
