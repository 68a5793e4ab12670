"""The edits the commands apply. Each is a small immutable object that carries its own settings
and their documented ranges, and turns the faces' own and neutral codes into the codes the
renderer draws; the pipeline runs every one of them the same way.

`scaled(f)` is the same edit at a fraction f of its amount (0 = no change): strips and GIFs
are made of those."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from stoic_cli.edit.latent import edit_codes, expression_displacement, neutralize_codes, transfer_codes
from stoic_cli.runtime.settings import Attribute


class Edit(Protocol):
    name: str
    # How far the lips close over what lies between them after rendering (0..1): a neutral
    # face's lips meet, so only neutralize closes them (stoic_cli.render.lips).
    lip_closing: float
    # Motions shorter than this (fractions of the crop's side) are left out: on a face already
    # near its target the renderer still moves every pixel a little, which only blurs who it is.
    settle: float
    # What the edited face takes of a reference photo's own mouth (a transfer's), or None.
    mouth_source: object | None
    # Whether the edit takes the face toward its own neutral code (neutralize): that code then
    # never smiles more than the face does (stoic_cli.edit.latent.neutral_codes).
    removes_expression: bool
    # How far the mouth corners rise after rendering, with the photo's own lips (a fraction of
    # the crop's side): a smile edit's (stoic_cli.render.lips.raise_corners); 0 for the others.
    corner_raise: float

    def codes(self, z: np.ndarray, z_neutral: np.ndarray) -> np.ndarray: ...

    def corner_lowering(self, smile_shown: float | None) -> float:
        """How far (0..1) a face's lifted mouth corners come down after rendering, given how
        much smile its code shows (stoic_cli.edit.latent.amount_along on the smile direction;
        None when the models have no smile direction)."""
        ...

    def scaled(self, fraction: float) -> "Edit": ...

    def describe(self) -> dict:
        """The settings an output's provenance tag records (and a rerun compares)."""
        ...


@dataclass(frozen=True)
class Range:
    """A knob's documented range: values outside it are refused, never silently clipped."""
    minimum: float
    maximum: float

    def check(self, flag: str, value: float) -> float:
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise ValueError(f"{flag}={value:g} is outside {self.minimum:g}..{self.maximum:g}")
        return float(value)


@dataclass(frozen=True)
class Neutralize:
    """StoicNet's learned neutral code, reached at `strength` (0 = unchanged, 1 = neutral,
    above 1 goes past neutral)."""
    STRENGTH = Range(0.0, 2.0)
    strength: float = 1.0
    name: str = field(default="neutralize", init=False)

    mouth_source = None
    removes_expression = True
    corner_raise = 0.0
    settle = 1.0 / 256  # a pixel of the renderer's crop: a neutral photo stays itself

    def __post_init__(self):
        self.STRENGTH.check("--strength", self.strength)

    # The corners come down only as far as the code says the face smiles: a neutral mouth's
    # line often bends up a little too, and straightening it changes how the person looks.
    # The ramp runs from where validation people's neutral photos lie to below their smiles.
    SMILE_NONE, SMILE_FULL = 0.0, 0.5  # smile amounts shown: no lowering at or below, all of it at or above

    @property
    def lip_closing(self) -> float:
        return min(self.strength, 1.0)

    def corner_lowering(self, smile_shown: float | None) -> float:
        if smile_shown is None:  # nothing to go by: every lifted lip line comes down
            return self.lip_closing
        share = (smile_shown - self.SMILE_NONE) / (self.SMILE_FULL - self.SMILE_NONE)
        return self.lip_closing * float(np.clip(share, 0.0, 1.0))

    def codes(self, z: np.ndarray, z_neutral: np.ndarray) -> np.ndarray:
        return neutralize_codes(z, z_neutral, self.strength)

    def scaled(self, fraction: float) -> "Neutralize":
        return replace(self, strength=self.strength * fraction)

    def describe(self) -> dict:
        return {"strength": self.strength}


@dataclass(frozen=True)
class Reference:
    """A transfer reference: the expression of its largest face, as LEED's displacement of its
    code from its own neutral code, and the aligned crop it was read from."""
    displacement: np.ndarray  # (1, latent_dim)
    crop: np.ndarray  # uint8 aligned crop at the renderer's size: its mouth is the transfer's
    source: str = ""  # the reference photo's path, for the provenance of outputs
    # The reference photo's mouth for the renderer to paste (stoic_cli.render.reference_mouth
    # .ReferenceMouth; the edits do not look inside it), or None.
    mouth: object | None = None

    @classmethod
    def from_codes(cls, z: np.ndarray, z_neutral: np.ndarray, crop: np.ndarray, source: str = "",
                   mouth: object | None = None) -> "Reference":
        return cls(expression_displacement(z, z_neutral), crop, source, mouth)


@dataclass(frozen=True)
class Transfer:
    """LEED's transfer: each face's own neutral code plus the reference's displacement at
    `alpha` (0 = neutral, 1 = the reference's intensity, above 1 exaggerates)."""
    ALPHA = Range(0.0, 2.0)
    reference: Reference
    alpha: float = 1.0
    name: str = field(default="transfer", init=False)
    lip_closing: float = field(default=0.0, init=False)
    settle: float = field(default=0.0, init=False)
    corner_raise: float = field(default=0.0, init=False)
    removes_expression = False

    def __post_init__(self):
        self.ALPHA.check("--alpha", self.alpha)

    @property
    def mouth_source(self) -> object | None:
        """The reference's mouth, which a transfer that reaches its expression (alpha 1 or more)
        takes; a partial transfer (strips, GIFs), or a reference without expression (a zero
        displacement), keeps the face's own mouth as the renderer moves it."""
        if self.alpha < 1.0 or not np.any(self.reference.displacement):
            return None
        return self.reference.mouth

    def codes(self, z: np.ndarray, z_neutral: np.ndarray) -> np.ndarray:
        return transfer_codes(z_neutral, self.reference.displacement, self.alpha)

    def corner_lowering(self, smile_shown: float | None) -> float:
        return 0.0

    def scaled(self, fraction: float) -> "Transfer":
        return replace(self, alpha=self.alpha * fraction)

    def describe(self) -> dict:
        return {"alpha": self.alpha, "reference": self.reference.source}


@dataclass(frozen=True)
class AttributeEdit:
    """Continuous amounts along attributes.json's directions; amounts of several attributes add
    up. Each amount must lie in its attribute's documented range unless `force`."""
    attributes: dict[str, Attribute]
    amounts: dict[str, float]
    force: bool = False
    name: str = field(default="edit", init=False)
    lip_closing: float = field(default=0.0, init=False)
    settle: float = field(default=0.0, init=False)  # small amounts must still move
    mouth_source = None
    removes_expression = False
    # The corners' rise per unit of a positive smile amount: the renderer's own smile keeps the
    # lips nearly where they were and draws over them, and its fill is kept off the mouth.
    CORNER_RAISE_PER_SMILE = 0.015

    def __post_init__(self):
        for key, amount in self.amounts.items():
            if key not in self.attributes:
                raise ValueError(f"unknown attribute {key!r}; known: {', '.join(sorted(self.attributes))}")
            a = self.attributes[key]
            if not math.isfinite(amount):
                raise ValueError(f"--attr {key}={amount} is not a number")
            if not self.force:
                Range(a.minimum, a.maximum).check(f"--attr {key}", amount)

    @property
    def corner_raise(self) -> float:
        """A positive smile amount's rise; none where the smile direction moves no code (the
        post-step follows what the codes ask for)."""
        amount = self.amounts.get("smile", 0.0)
        if amount <= 0 or not np.any(self.attributes["smile"].direction):
            return 0.0
        return amount * self.CORNER_RAISE_PER_SMILE

    def codes(self, z: np.ndarray, z_neutral: np.ndarray) -> np.ndarray:
        return edit_codes(z, {k: self.attributes[k].direction for k in self.amounts}, self.amounts)

    def corner_lowering(self, smile_shown: float | None) -> float:
        return 0.0

    def scaled(self, fraction: float) -> "AttributeEdit":
        return replace(self, amounts={k: v * fraction for k, v in self.amounts.items()})

    def describe(self) -> dict:
        return dict(self.amounts)
