"""Lowering and narrowing a smile's mouth corners, or raising and widening them, by moving the
photo's own pixels.

A smile lifts the mouth corners and pulls them apart; a neutral mouth's line is nearly straight.
The renderer's fill lowers the corners by drawing over them (a blur); here the lip line is found
in the crop (the darkest row between red lips, column by column), a parabola is fitted to it, and
where the corners lie above the middle the mouth and the skin around it move down and inwards
until the line is straight. Never up: a mouth whose corners already hang is left alone, so a
neutral face stays itself. A smile edit bends the same line the other way (`raise_sources`):
the renderer's fill draws a smile's lips as a pale blur, the photo's own lips moved do not."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoic_cli.render.imageops import blur, close, grey, in_pixels, redness


@dataclass(frozen=True)
class CornerGeometry:
    """Where the lip line is looked for and how far the motion spreads, in fractions of the
    crop's side (the alignment template puts the mouth corners at y = 0.68)."""
    box: tuple[float, float, float, float] = (0.26, 0.60, 0.74, 0.78)  # x0, y0, x1, y1
    least_lip: float = 0.012  # lip rows a column needs to count as mouth
    band: float = 0.035  # rows above and below the lip line that move fully
    reach_up: float = 0.05  # then fading out above ...
    reach_down: float = 0.09  # ... and below (the chin follows the lower lip)
    reach_side: float = 0.08  # and beyond the corners (the cheek next to each corner)
    narrow_per_lift: float = 1.0  # each corner moves inwards by this much of its lowering
    most_narrow: float = 0.12  # of the mouth's half width, so the motion never folds over
    most_lift: float = 0.04  # corners lowered or raised by at most this (a misread line moves little)
    # A line read with its corners higher than this above its middle is misread (a shadow, the
    # lower lip's edge): no smile lifts them that far, and lowering it would draw a frown.
    most_believed: float = 0.08


def lip_line(crop: np.ndarray, geometry: CornerGeometry = CornerGeometry()):
    """The lip line of an aligned RGB crop as (columns, rows, weights), or None: for each
    column holding enough lip (redder, LAB a*, than the mouth box), the darkest row between its
    first and last lip row. Only the run of columns through the middle counts."""
    size = crop.shape[0]
    x0, y0, x1, y1 = in_pixels(geometry.box, size)
    patch = crop[y0:y1, x0:x1]
    red = redness(patch)
    lip = (red - np.median(red)) / (red.std() + 1e-3) > 0.5
    count = lip.sum(0)
    is_mouth = count >= max(2, geometry.least_lip * size)
    # The run of mouth columns through the middle, gaps of a few columns bridged.
    is_mouth = close(is_mouth[None], 1, 5)[0]
    mid = (x1 - x0) // 2
    if not is_mouth[mid]:
        return None
    left = mid - np.argmin(is_mouth[mid::-1]) + 1 if not is_mouth[: mid + 1].all() else 0
    right = mid + np.argmin(is_mouth[mid:]) if not is_mouth[mid:].all() else x1 - x0
    if right - left < 0.15 * size:
        return None
    light = grey(patch)
    light = np.concatenate([light[1:2], light, light[-2:-1]])  # mirrored, then [1, 2, 1] / 4 down each column
    light = 0.25 * light[:-2] + 0.5 * light[1:-1] + 0.25 * light[2:]
    cols, rows, weights = [], [], []
    for c in range(left, right):
        lips = np.flatnonzero(lip[:, c])
        if lips.size < 2:
            continue
        lo, hi = lips[0], lips[-1] + 1
        rows.append(lo + int(np.argmin(light[lo:hi, c])) + y0)
        cols.append(c + x0)
        weights.append(float(lips.size))
    if len(cols) < 8:
        return None
    return np.asarray(cols, np.float32), np.asarray(rows, np.float32), np.asarray(weights, np.float32)


def corner_sources(crop: np.ndarray, amount: float = 1.0, geometry: CornerGeometry = CornerGeometry()):
    """(source_x, source_y), each (S, S) float, the crop position every output pixel reads to
    straighten a lifted lip line by `amount` (0..1); None where the corners do not lie above
    the middle, or lie implausibly far above it."""
    amount = float(np.clip(amount, 0, 1))
    fit = _fitted_line(crop, geometry) if amount > 0 else None
    if fit is None:
        return None
    size = crop.shape[0]
    if -fit[4] > geometry.most_believed * size:
        return None
    lift = min(-fit[4], geometry.most_lift * size) * amount  # the corners' height above the middle's
    return _bend(fit, lift, size, geometry) if lift >= 0.5 else None


def raise_sources(crop: np.ndarray, height: float, geometry: CornerGeometry = CornerGeometry()):
    """As corner_sources, but the corners rise by `height` (a fraction of the crop's side) and
    move apart: a smile drawn with the photo's own lips. None where no lips are found."""
    fit = _fitted_line(crop, geometry)
    size = crop.shape[0]
    lift = min(height, geometry.most_lift) * size
    return None if fit is None or lift < 0.5 else _bend(fit, -lift, size, geometry)


def _fitted_line(crop, geometry):
    """(middle, half, a, b, k) of the lip line rows ~ a + b u + k u^2 (u -1..1 across the
    mouth), weighted by how much lip each column holds; k < 0 is a smile. None without lips."""
    line = lip_line(crop, geometry)
    if line is None:
        return None
    cols, rows, weights = line
    middle = (cols.min() + cols.max()) / 2
    half = (cols.max() - cols.min()) / 2
    u = (cols - middle) / half
    design = np.stack([np.ones_like(u), u, u * u], 1) * np.sqrt(weights)[:, None]
    (a, b, k), *_ = np.linalg.lstsq(design, rows * np.sqrt(weights), rcond=None)
    return middle, half, a, b, k


def _bend(fit, lift: float, size: int, geometry: CornerGeometry):
    """The motion that lowers the corners by `lift` pixels and narrows the mouth by as much
    (raises the corners and widens it where `lift` is negative)."""
    middle, half, a, b, _ = fit
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    uu = (xs - middle) / half
    line_y = a + b * np.clip(uu, -1, 1)  # the line without its bend, where the motion is centred
    beyond = np.maximum(np.abs(uu) - 1, 0) * half  # pixels past the corners
    side = np.clip(1 - beyond / (geometry.reach_side * size), 0, 1)
    drop = lift * np.minimum(uu * uu, 1) * side  # how far each column comes down
    offset = ys - line_y
    band = geometry.band * size
    up, down = max(geometry.reach_up * size, 2 * abs(lift)), max(geometry.reach_down * size, 2 * abs(lift))
    vertical = np.where(offset < -band, np.clip(1 - (-offset - band) / up, 0, 1),
                        np.where(offset > band, np.clip(1 - (offset - band) / down, 0, 1), 1.0))
    vertical = blur(vertical, 0.01 * size)
    source_y = ys - drop * vertical
    # Inwards: each output column reads from further out, by the corners' lowering at the
    # corners and in proportion nearer the middle (outwards, from further in, when raised).
    narrow = float(np.clip(geometry.narrow_per_lift * lift / half, -geometry.most_narrow, geometry.most_narrow))
    source_x = xs + (xs - middle) * narrow * side * vertical
    return source_x.astype(np.float32), source_y.astype(np.float32)
