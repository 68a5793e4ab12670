"""Edits in latent space. Every editing command is one function from the face's own code to an
edited code; decoding both and pasting the difference is the pipeline's job.

- neutralize (StoicNet): z + s * (Ntr(z) - z); s=1 is the learned neutral code, s>1 extrapolates.
- transfer (LEED): Ntr(z_in) + alpha * (z_ref - Ntr(z_ref)); the reference's expression is its
  displacement from its own neutral code, so no expression labels are needed. The input's
  neutral code may have the neutralizer's pull on neutral faces taken back (take_back_pull).
- attributes (EGGAN-style continuous amounts): z + sum_k amount_k * direction_k, with directions
  estimated from labelled photos (see stoic_cli.train.attributes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# (own codes, neutral codes) -> edited codes, all (n_faces, latent_dim)
LatentEdit = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Edit:
    """What a job asks of every face: a latent edit and, optionally, a motion: a crop-space flow
    field ((h, w, 2), in fractions of the crop side, any resolution) saying where each pixel of
    the edited face comes from in the photo. The decoder carries an expression's look (the dark
    of an open mouth, teeth) but little of its motion (a jaw that drops, brows that rise), so
    motion comes from real faces (stoic_cli.train.motion; a transfer reference's own) and moves
    the photo's own pixels."""
    codes: LatentEdit
    motion: np.ndarray | None = None


def neutralize_codes(z: np.ndarray, z_neutral: np.ndarray, strength: float = 1.0) -> np.ndarray:
    return z + strength * (z_neutral - z)


def take_back_pull(z_neutral: np.ndarray, z_neutral_again: np.ndarray, amount: float = 1.0,
                   keep: np.ndarray | None = None) -> np.ndarray:
    """A neutral code with the neutralizer's pull on already neutral faces taken back.

    The learned neutralizer removes the expression but also pulls every code part of the way
    toward its training people's average face (neutral validation photos, neutralized, end up
    0.30 from themselves in dlib distance). Applied once more to its own output (`z_neutral_again` = Ntr(Ntr(z))),
    where little expression is left, it moves the code by that pull, so stepping back by it
    (`amount` 1: 2 Ntr(z) - Ntr(Ntr(z))) keeps more of the person. For a layer that scales
    identity by r toward the average, the identity kept rises from r to 2r - r^2.

    The step also holds whatever expression the first pass left, which it would scale up by
    1 + amount; `keep` (orthonormal columns, see expression_basis) names directions the step
    leaves alone, so the correction restores the person, not the old expression."""
    step = z_neutral - z_neutral_again
    if keep is not None:
        step = step - (step @ keep) @ keep.T
    return z_neutral + np.float32(amount) * step


def expression_basis(attributes: dict[str, "Attribute"]) -> np.ndarray | None:
    """Orthonormal columns ((latent_dim, k)) spanning the expression attributes' directions
    (smile, surprise, ...), or None if there are none."""
    directions = [a.direction for a in attributes.values() if a.kind == "expression"]
    if not directions:
        return None
    basis, _ = np.linalg.qr(np.stack(directions, 1).astype(np.float64))
    return basis.astype(np.float32)


def expression_displacement(z_ref: np.ndarray, z_ref_neutral: np.ndarray) -> np.ndarray:
    """LEED's expression code of the reference: E(ref) - N(E(ref))."""
    return z_ref - z_ref_neutral


def first_reaching(judged: np.ndarray, want: float, amounts: np.ndarray) -> float:
    """The smallest of `amounts` (ascending, from 0) whose judged score reaches `want`: 0 when
    the first already does, the largest when none does. Used to top up a transfer reference's
    smile until the smile judge sees as much on the decoded face as on the photo."""
    if judged[0] >= want:
        return 0.0
    reached = np.flatnonzero(judged >= want)
    return float(amounts[reached[0]] if len(reached) else amounts[-1])


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
    motion: np.ndarray | None = None  # crop-space flow for one unit (see Edit), if measured
    kind: str = ""  # "expression" (smile, surprise, ...) or "appearance" (age, gender)

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "Attribute":
        return cls(name=name, direction=np.asarray(d["direction"], np.float32), minimum=float(d["min"]),
                   maximum=float(d["max"]), unit=d.get("unit", ""), help=d.get("help", ""),
                   motion=np.asarray(d["motion"], np.float32) if d.get("motion") is not None else None,
                   kind=d.get("kind", ""))


def load_attributes(table: dict) -> dict[str, Attribute]:
    return {name: Attribute.from_dict(name, d) for name, d in table.get("attributes", {}).items()}


def canonical_code(table: dict) -> np.ndarray | None:
    """attributes.json's canonical face ((1, latent_dim)), where transfer measures a reference's
    motion; None in files fitted before it existed."""
    face = table.get("canonical_face")
    return None if face is None else np.asarray(face["code"], np.float32)[None]


def edit_codes(z: np.ndarray, attributes: dict[str, Attribute], amounts: dict[str, float]) -> np.ndarray:
    """Move each code by the requested amounts; several attributes add up."""
    out = z.astype(np.float32).copy()
    for name, amount in amounts.items():
        out = out + np.float32(amount) * attributes[name].direction
    return out


def attribute_motion(attributes: dict[str, Attribute], amounts: dict[str, float]) -> np.ndarray | None:
    """The summed motion of the requested amounts (None when no attribute has one)."""
    fields = [np.float32(a) * attributes[n].motion for n, a in amounts.items() if attributes[n].motion is not None]
    return sum(fields[1:], fields[0]) if fields else None


def attribute_edit(attributes: dict[str, Attribute], amounts: dict[str, float]) -> Edit:
    return Edit(lambda z, zn: edit_codes(z, attributes, amounts), attribute_motion(attributes, amounts))


def transfer_edit(displacement: np.ndarray, motion: np.ndarray | None, alpha: float = 1.0) -> Edit:
    """LEED's transfer of a reference's expression (its displacement and motion) at `alpha`."""
    return Edit(lambda z, zn: transfer_codes(zn, displacement, alpha),
                None if motion is None else np.float32(alpha) * motion)
