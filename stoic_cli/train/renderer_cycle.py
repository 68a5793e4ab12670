"""Cycle consistency for the renderer on unpaired photos (CycleGAN, StarGAN's reconstruction).

An unpaired photo (UTKFace: one photo a person, no second expression to aim at) is edited the
way a job would edit it, then rendered back with its own code as the target, and the round
trip must return the photo. Same-person pairs come from a few mostly East Asian people; on
faces unlike them the fill learnt to repaint the mouth, which the person's identity pays for.
The way back can only restore what the way out kept, so repainting what could have been moved
costs here, on exactly those faces. The round trip alone is won by editing less (the way out
that does nothing comes back perfectly), so the edited photo must also carry the outward code's
expression as the project's own frozen encoder reads it (StarGAN's classification term; the
encoder is ours, no judge of the evaluation)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stoic_cli.train import renderer_net as R
from stoic_cli.train.losses import ssim_loss, weighted_l1

# What the way out does to an unpaired photo: neutralize it, give it a training person's
# expression (LEED's transfer), or move it along an expression direction.
OUTWARD = ("neutralize", "transfer", "edit")
OUTWARD_SHARES = (0.5, 0.3, 0.2)


class CycleDrawer:
    """Unpaired photos and the codes of their way out, drawn as the jobs make them."""

    def __init__(self, singles: list[dict], donors: list[dict], table, seed: int):
        self.singles = [r["row"] for r in singles]
        # Expressive photos of the paired training people: the references a transfer takes.
        self.donors = [r["row"] for r in donors if r["expression"] != "neutral"]
        self.directions = [d for e, d in table.direction.items() if e != "neutral" and d is not None]
        self.table = table
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
        rows = np.array([self.singles[self.rng.integers(len(self.singles))] for _ in range(n)])
        flip = self.rng.random(n) < 0.5
        t = self.table
        own, neutral = t.code_and_neutral(rows, flip)
        out = neutral.copy()
        for i in range(n):
            job = self.rng.choice(len(OUTWARD), p=OUTWARD_SHARES)
            if OUTWARD[job] == "transfer" and self.donors:
                d = self.donors[self.rng.integers(len(self.donors))]
                out[i] = neutral[i] + t.codes[d] - t.neutral[d]
            elif OUTWARD[job] == "edit" and self.directions:
                amount = self.rng.uniform(0.5, 1.0)
                out[i] = own[i] + amount * self.directions[self.rng.integers(len(self.directions))]
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return rows, flip, as_tensor(own), as_tensor(out)


def frozen_encoder(models) -> torch.nn.Module:
    """The shipped encoder (encoder.onnx) as a PyTorch module that passes gradients to its input
    only."""
    from stoic_cli.train.export import import_onnx_vae
    encoder, _ = import_onnx_vae(models)
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval()


def cycle_losses(net, encoder, photo, own, outward, weight, cfg, expression_dims: int) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """The round trip's loss (L1 and SSIM of the photo rendered out and back to itself), the
    outward code's miss (L1 over the expression part, the last `expression_dims` entries, of the
    edited photo's code as the encoder reads its half-size crop; none without an encoder) and
    the edited photo. The way back reads the code the way out aimed at: that is the code the
    edited photo should have."""
    edited, _ = R.compose(photo, net(photo, own, outward))
    # Detached, the round trip teaches only the way back (a real target for what the fill draws
    # on these faces) and cannot be won by a way out that edits less.
    start = edited if cfg.cycle_trains_way_out else edited.detach()
    back, _ = R.compose(start, net(start, outward, own))
    terms = {"cycle": weighted_l1(back, photo, weight) + cfg.ssim_weight * ssim_loss(back, photo)}
    total = cfg.cycle_weight * terms["cycle"]
    if encoder is not None:
        expression = slice(-expression_dims, None) if expression_dims else slice(None)
        reached = encoder(F.avg_pool2d(edited, 2))[0]
        terms["cycle_code"] = (reached[:, expression] - outward[:, expression]).abs().mean()
        total = total + cfg.cycle_code_weight * terms["cycle_code"]
    return total, terms, edited
