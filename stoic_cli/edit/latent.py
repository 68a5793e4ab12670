"""The latent algebra of the three jobs, on (n_faces, latent_dim) codes:

- the neutral code: Ntr(z)'s expression part beside z's own person part (the code's split,
  Browatzki & Wallraven): Ntr also pulls the person part toward an average face, and keeping
  it keeps who the person is.
- neutralize (StoicNet): z + s * (N(z) - z); s=1 is the neutral code, s>1 extrapolates.
- transfer (LEED): N(z_in) + alpha * (z_ref - Ntr(z_ref)); the reference's expression is its
  displacement from its own neutral code, so no expression labels are needed.
- attributes (EGGAN-style continuous amounts): z + sum_k amount_k * direction_k, with directions
  estimated from labelled photos (see stoic_cli.train.attributes).
"""
from __future__ import annotations

import numpy as np


def neutral_codes(z: np.ndarray, z_neutralized: np.ndarray, expression_dims: int,
                  smile: np.ndarray | None = None) -> np.ndarray:
    """The neutral code of each face: the neutralizer's last `expression_dims` entries (the
    expression part) after the face's own person part; 0 means the code has no split. With the
    smile direction, a neutral code never smiles more than the face itself: on a face unlike
    the neutralizer's training people (or a frown) its change can point toward a smile, and that
    part of it is left out."""
    if not expression_dims:
        out = np.array(z_neutralized, dtype=np.float32, copy=True)
    else:
        out = np.array(z, dtype=np.float32, copy=True)
        out[:, -expression_dims:] = z_neutralized[:, -expression_dims:]
    if smile is not None:
        part = slice(-expression_dims, None) if expression_dims else slice(None)
        d = np.asarray(smile, np.float64).reshape(-1)[part]
        shown = amount_along(z[:, part], out[:, part], d)
        out[:, part] += (np.minimum(shown, 0.0)[:, None] * d[None]).astype(np.float32)
    return out


def neutralize_codes(z: np.ndarray, z_neutral: np.ndarray, strength: float = 1.0) -> np.ndarray:
    return z + strength * (z_neutral - z)


def expression_displacement(z_ref: np.ndarray, z_ref_neutral: np.ndarray) -> np.ndarray:
    """LEED's expression code of the reference: E(ref) - N(E(ref))."""
    return z_ref - z_ref_neutral


def transfer_codes(z_in_neutral: np.ndarray, displacement: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return z_in_neutral + alpha * displacement


def amount_along(z: np.ndarray, z_neutral: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(n_faces,) how far each face's expression (z - N(z)) reaches along an attribute's
    direction, in that attribute's amounts: what an edit of that amount would add to the
    neutral code."""
    d = np.asarray(direction, np.float64).reshape(-1)
    shown = (np.asarray(z, np.float64) - np.asarray(z_neutral, np.float64)).reshape(len(z), -1)
    return shown @ d / max(float(d @ d), 1e-12)


def edit_codes(z: np.ndarray, directions: dict[str, np.ndarray], amounts: dict[str, float]) -> np.ndarray:
    """Move each code by the requested amounts along the named directions; several add up."""
    out = z.astype(np.float32).copy()
    for name, amount in amounts.items():
        out = out + np.float32(amount) * directions[name]
    return out
