"""Stage `neutralizer`: StoicNet's one dense layer on the frozen encoder's codes, trained on
(expressive, neutral) photos of the same person: || E(x_n) - Ntr(E(x_e)) ||^2; then, with
`neutralizer_subspace_dims`, its change to the expression part kept along the directions in
which expressions differ (`restrict_change`), folded into the same layer. Cheap, so it is
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
    enc = frozen_encoder(run, cfg, device)
    encoded: dict[int, np.ndarray] = {}  # row -> code, shared with the subspace step below
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
        codes = _codes(enc, crops, all_rows, device, encoded)
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
    subspace = {}
    if cfg.neutralizer_subspace_dims and cfg.expression_dims:
        blocks = [expression_differences(enc, crops, labels, tuple(ds), device, cfg.expression_dims, encoded)
                  for ds in (cfg.neutralizer_datasets, cfg.neutralizer_subspace_datasets) if ds]
        directions, share = principal_directions(blocks, cfg.neutralizer_subspace_dims)
        with torch.no_grad():
            weight, bias = restrict_change(ntr.fc.weight.double().cpu().numpy(), ntr.fc.bias.double().cpu().numpy(),
                                           directions, cfg.expression_dims)
            ntr.fc.weight.copy_(torch.from_numpy(weight).float())
            ntr.fc.bias.copy_(torch.from_numpy(bias).float())
        subspace = {"subspace_dims": len(directions), "subspace_variance_share": round(share, 4),
                    "subspace_differences": [len(b) for b in blocks]}
    ckpt = run / "neutralizer.pt"
    save_state(ckpt, neutralizer=ntr.state_dict(), step=cfg.neutralizer_steps, best_val=best,
               pairs_train=int(is_expr.sum()), pairs_val=int(v_expr.sum()), **subspace)
    return ckpt


def frozen_encoder(run: Path, cfg: TrainConfig, device: torch.device) -> nets.Encoder:
    """The run's own VAE encoder, else the ONNX encoder of `vae_init` (a neutralizer fitted to
    an encoder that already ships)."""
    if (run / "vae.pt").exists() or not cfg.vae_init:
        return load_vae(run, device)[0]
    from stoic_cli.train.export import import_onnx_vae
    return import_onnx_vae(cfg.vae_init)[0].to(device).eval()


def _codes(enc: nets.Encoder, crops: np.ndarray, rows: list[int], device: torch.device,
           encoded: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The codes of `rows`, encoding only those not already in `encoded` (which keeps them)."""
    missing = [r for r in rows if r not in encoded]
    encoded.update(zip(missing, encode_rows(enc, crops, missing, device)))
    return {r: encoded[r] for r in rows}


def expression_differences(enc: nets.Encoder, crops: np.ndarray, labels: list[dict], datasets: tuple,
                           device: torch.device, expression_dims: int,
                           encoded: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Expression part of each training expressive code minus its person's mean neutral code."""
    groups = neutral_pairs(labels, "train", datasets)
    rows = sorted({r for g in groups.values() for r in g["neutral"] + g["expressive"]})
    if not rows:
        return np.zeros((0, expression_dims))
    codes = {r: z[-expression_dims:].astype(np.float64)
             for r, z in _codes(enc, crops, rows, device, {} if encoded is None else encoded).items()}
    out = [codes[r] - np.mean([codes[n] for n in g["neutral"]], 0) for g in groups.values() for r in g["expressive"]]
    return np.array(out).reshape(-1, expression_dims)


def principal_directions(blocks: list[np.ndarray], k: int) -> tuple[np.ndarray, float]:
    """The first k principal directions (k, dims) of the rows of all blocks, each block weighted
    as much as the others whatever its size (uncentred: a difference's size is what counts),
    and the share of the differences' energy they hold."""
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        raise ValueError("no expression differences to find the expression subspace from")
    stacked = np.concatenate([b / math.sqrt(len(b)) for b in blocks])
    _, singular, vt = np.linalg.svd(stacked, full_matrices=False)
    k = min(k, len(vt))
    return vt[:k], float((singular[:k] ** 2).sum() / (singular ** 2).sum())


def restrict_change(weight: np.ndarray, bias: np.ndarray, directions: np.ndarray,
                    expression_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """An affine map z -> W z + b whose change W z + b - z to the last `expression_dims` entries
    is projected onto `directions`; the other entries are left as they were. Still one layer."""
    n = len(bias)
    project = np.eye(n)
    project[-expression_dims:, -expression_dims:] = directions.T @ directions
    return np.eye(n) + project @ (weight - np.eye(n)), project @ bias
