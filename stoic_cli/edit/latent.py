"""Edits in latent space. Every editing command is one function from the face's own code (and
its neutral code) to an edited code; rendering the change into the photo is the pipeline's job.

- neutralize (StoicNet): z + s * (Ntr(z) - z); s=1 is the learned neutral code, s>1 extrapolates.
- transfer (LEED): Ntr(z_in) + alpha * (z_ref - Ntr(z_ref)); the reference's expression is its
  displacement from its own neutral code, so no expression labels are needed.
- attributes (EGGAN-style continuous amounts): z + sum_k amount_k * direction_k, with directions
  estimated from labelled photos (see stoic_cli.train.attributes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# (own codes, neutral codes) -> edited codes, all (n_faces, latent_dim)
LatentEdit = Callable[[np.ndarray, np.ndarray], np.ndarray]


def neutralize_codes(z: np.ndarray, z_neutral: np.ndarray, strength: float = 1.0) -> np.ndarray:
    return z + strength * (z_neutral - z)


def expression_displacement(z_ref: np.ndarray, z_ref_neutral: np.ndarray) -> np.ndarray:
    """LEED's expression code of the reference: E(ref) - N(E(ref))."""
    return z_ref - z_ref_neutral


def transfer_codes(z_in_neutral: np.ndarray, displacement: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return z_in_neutral + alpha * displacement


@dataclass
class Attribute:
    name: str
    direction: np.ndarray  # latent change for one unit of `unit`
    minimum: float
    maximum: float
    unit: str
    help: str
    kind: str = ""  # "expression" (smile, surprise, ...) or "appearance" (age, gender)

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "Attribute":
        return cls(name=name, direction=np.asarray(d["direction"], np.float32), minimum=float(d["min"]),
                   maximum=float(d["max"]), unit=d.get("unit", ""), help=d.get("help", ""),
                   kind=d.get("kind", ""))


def load_attributes(table: dict) -> dict[str, Attribute]:
    return {name: Attribute.from_dict(name, d) for name, d in table.get("attributes", {}).items()}


def edit_codes(z: np.ndarray, attributes: dict[str, Attribute], amounts: dict[str, float]) -> np.ndarray:
    """Move each code by the requested amounts; several attributes add up."""
    out = z.astype(np.float32).copy()
    for name, amount in amounts.items():
        out = out + np.float32(amount) * attributes[name].direction
    return out


def neutralize_edit(strength: float = 1.0) -> LatentEdit:
    """StoicNet's neutralization at `strength`."""
    return lambda z, zn: neutralize_codes(z, zn, strength)


def attribute_edit(attributes: dict[str, Attribute], amounts: dict[str, float]) -> LatentEdit:
    return lambda z, zn: edit_codes(z, attributes, amounts)


def transfer_edit(displacement: np.ndarray, alpha: float = 1.0) -> LatentEdit:
    """LEED's transfer of a reference's expression (its displacement) at `alpha`."""
    return lambda z, zn: transfer_codes(zn, displacement, alpha)
