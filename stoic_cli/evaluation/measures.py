"""Pure measures more than one evaluation uses, on the judges' numbers (no images, no models):
how far an output went from the input towards a goal, whether a face follows an attribute's
amount, and which blendshapes stand for an attribute."""
from __future__ import annotations

import math
from typing import Iterable

from stoic_cli.evaluation.judges import expression_intensity, smile

MONOTONIC_TOL = 0.01  # a step down this small is a flat step, not a reversal


def progress(start: float | None, end: float | None, goal: float | None, min_gap: float,
             direction: int = 1) -> float | None:
    """(end - start) / (goal - start): the share of the way from `start` to `goal` that `end`
    went (1 = reached, 0 = unchanged, negative = the wrong way). None when a value is missing or
    the goal is too close to the start for the ratio to be more than noise: with direction +1 it
    must lie more than `min_gap` above the start, with -1 more than `min_gap` below, with 0 at
    least `min_gap` away on either side."""
    if start is None or end is None or goal is None:
        return None
    gap = goal - start
    if direction:
        if not direction * gap > min_gap:
            return None
    elif abs(gap) < min_gap:
        return None
    if direction < 0:  # the same ratio, written so that no change is +0.0 rather than -0.0
        return (start - end) / (start - goal)
    return (end - start) / gap


def is_monotonic(values: Iterable[float | None], tol: float = MONOTONIC_TOL) -> bool | None:
    """True when the sequence never drops by more than `tol` from one value to the next (it
    may stay flat). None when a value is missing or there are fewer than two."""
    vals = list(values)
    if len(vals) < 2 or any(v is None or not math.isfinite(v) for v in vals):
        return None
    return all(b - a >= -tol - 1e-9 for a, b in zip(vals, vals[1:]))  # 1e-9: 0.20 -> 0.19 is a 0.01 drop


def measure_names(attribute: str) -> tuple[str, ...]:
    """The blendshape numbers reported for `attribute` (see attribute_measures)."""
    return {"smile": ("smile",), "surprise": ("jawOpen", "browInnerUp")}.get(attribute.lower(), ("intensity",))


def measure_label(attribute: str) -> str:
    """How the report names the number checked for `attribute`."""
    return {"smile": "smile = mean(mouthSmileLeft, mouthSmileRight)",
            "surprise": "mean(jawOpen, browInnerUp)"}.get(attribute.lower(),
                                                          "expression intensity (blendshape sum)")


def attribute_measures(bs: dict[str, float] | None, attribute: str) -> dict[str, float | None]:
    """The blendshape numbers that should follow `attribute`, plus `score`, the one checked for
    monotonicity: smile -> mean(mouthSmileLeft, mouthSmileRight); surprise -> jawOpen,
    browInnerUp and their mean; anything else -> the expression intensity."""
    names = measure_names(attribute)
    if bs is None:
        return {n: None for n in names + ("score",)}
    key = attribute.lower()
    if key == "smile":
        s = smile(bs)
        return {"smile": s, "score": s}
    if key == "surprise":
        jaw, brow = float(bs.get("jawOpen", 0.0)), float(bs.get("browInnerUp", 0.0))
        return {"jawOpen": jaw, "browInnerUp": brow, "score": (jaw + brow) / 2}
    i = expression_intensity(bs)
    return {"intensity": i, "score": i}
