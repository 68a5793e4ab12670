"""The latent algebra of the three jobs, on (n_faces, latent_dim) codes:

- neutralize (StoicNet): z + s * (Ntr(z) - z); s=1 is the learned neutral code, s>1 extrapolates.
- transfer (LEED): Ntr(z_in) + alpha * (z_ref - Ntr(z_ref)); the reference's expression is its
  displacement from its own neutral code, so no expression labels are needed.
- attributes (EGGAN-style continuous amounts): z + sum_k amount_k * direction_k, with directions
  estimated from labelled photos (see stoic_cli.train.attributes).
"""
from __future__ import annotations

import numpy as np


def neutralize_codes(z: np.ndarray, z_neutral: np.ndarray, strength: float = 1.0) -> np.ndarray:
    return z + strength * (z_neutral - z)


def expression_displacement(z_ref: np.ndarray, z_ref_neutral: np.ndarray) -> np.ndarray:
    """LEED's expression code of the reference: E(ref) - N(E(ref))."""
    return z_ref - z_ref_neutral


def transfer_codes(z_in_neutral: np.ndarray, displacement: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return z_in_neutral + alpha * displacement


def edit_codes(z: np.ndarray, directions: dict[str, np.ndarray], amounts: dict[str, float]) -> np.ndarray:
    """Move each code by the requested amounts along the named directions; several add up."""
    out = z.astype(np.float32).copy()
    for name, amount in amounts.items():
        out = out + np.float32(amount) * directions[name]
    return out
