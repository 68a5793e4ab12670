"""Closing the lips over what lies between them, with the photo's own lip pixels.

A neutral face's lips meet. The renderer's smooth motion can squeeze an open smile's teeth into
a thin line but cannot remove it (it would need a jump in the motion), and its fill draws lips
as a blur. Here the mouth interior (teeth and the dark inside: unlike lips and skin, not red) is
found in each column of the rendered crop, and the rows above and below it are moved together
until they meet: the upper lip comes down a little, the lower lip and jaw come up (a mouth
closes mostly by the jaw). The result is a vertical motion in crop space, composed with the
renderer's own (`close_lips`), so the full-resolution paste-back moves real lip texture as it
does everything else. Only the few rows where the lips meet are drawn (`draw_seam`): their
edges are half teeth.

Neutralize runs it after the renderer (the pipeline): the fill is kept off the lips where lips
are found, the lips are closed, and a smile's lifted corners are lowered (stoic_cli.render
.corners), all as motion of the photo's own pixels (docs/experiments.md, sessions 35 - 36). A
smile edit keeps the fill off the whole mouth and raises the corners instead (`raise_corners`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoic_cli.render.corners import CornerGeometry, corner_sources, lip_line, raise_sources
from stoic_cli.render.imageops import any_within, blur, close, components, grey, in_pixels, redness, remap
from stoic_cli.render.pasteback import IDENTITY, render_face


@dataclass(frozen=True)
class LipGeometry:
    """Where the mouth lies in the aligned crop and how the closing spreads, in fractions of the
    crop's side (the alignment template puts the mouth corners at y = 0.68)."""
    box: tuple[float, float, float, float] = (0.30, 0.58, 0.70, 0.80)  # x0, y0, x1, y1
    middle: float = 0.68  # the mouth line's height
    upper_share: float = 1 / 3  # of the closing done by the upper lip (the jaw does the rest)
    upper_reach: float = 0.06  # rows above the mouth that move with the upper lip, fading out
    lower_reach: float = 0.16  # rows below that move with the lower lip and chin, fading out
    least: float = 0.008  # interiors thinner than this are a closed mouth's seam: left alone
    fill_box: tuple[float, float, float, float] = (0.37, 0.63, 0.63, 0.75)  # the lips: the fill stays out
    enclosed: float = 0.05  # how far above and below a lip must lie for a pixel to be inside
    # An open mouth's interior begins under the upper lip, near the corners' line: a less red
    # patch that begins lower is the lower lip's highlight, a narrow one that begins higher the
    # shadow above the upper lip (both found on neutral faces and closed smiles, where closing
    # them pulled the chin up). A wide smile's upper lip can lift its interior's top that high.
    interior_top: tuple[float, float] = (0.60, 0.69)
    wide_interior: float = 0.16  # of the side: an interior this wide may begin above interior_top[0]
    corner_margin: float = 0.012  # beyond the interior's own rows, how far its dark corners may reach
    inside_red: float = -0.3  # inside pixels are less red than this (z-score of the mouth box's LAB a*)


def interior_mask(crop: np.ndarray, geometry: LipGeometry = LipGeometry()) -> np.ndarray:
    """(S, S) bool: the mouth interior (teeth, tongue, the dark inside) of an aligned RGB crop.
    Lips are redder (LAB a*) than the mouth's surroundings; teeth and the dark inside are less
    red, and lie between lips above and below. Only the component around the mouth's middle
    counts, so nostrils and shadows elsewhere never do."""
    size = crop.shape[0]
    x0, y0, x1, y1 = in_pixels(geometry.box, size)
    red = redness(crop[y0:y1, x0:x1])
    z_red = (red - np.median(red)) / (red.std() + 1e-3)
    lip = z_red > 0.3
    # Between the lips: lip within reach above and below in the same column (skin above the
    # upper lip or below the lower one has lip on one side only).
    reach = max(2, int(round(geometry.enclosed * size)))
    candidate = (~lip) & (z_red < geometry.inside_red) & any_within(lip, reach, above=True) & any_within(lip, reach, above=False)
    labels, stats = components(close(candidate))
    box = np.zeros((size, size), bool)
    if not stats:
        return box
    # The interior straddles the mouth's middle: the component nearest it that is wider than tall.
    cx, cy = (x1 - x0) / 2, (geometry.middle * size - y0)
    best, best_cost = 0, np.inf
    for k, (left, top, width, height, area) in enumerate(stats, 1):
        if width < 0.15 * (x1 - x0) or width < 1.5 * height:
            continue
        high, low = geometry.interior_top
        if y0 + top > low * size or (y0 + top < high * size and width < geometry.wide_interior * size):
            continue
        cost = abs(left + width / 2 - cx) / (x1 - x0) + abs(top + height / 2 - cy) / (y1 - y0)
        if cost < 0.35 and cost < best_cost:
            best, best_cost = k, cost
    if best:
        # The dark corners of an open smile (the shadow beside the teeth) are often as red as the
        # lips around them, so the colour test leaves them out and closing left a dark dot at each
        # corner: dark pixels joined to the interior, within its rows, are inside too.
        margin = max(1, int(round(geometry.corner_margin * size)))
        found = _with_dark_corners(labels == best, grey(crop[y0:y1, x0:x1]), margin)
        # Everything between the component's top and bottom in each column is inside too: teeth
        # and a tongue can read as red as lips (yellowed teeth, a wide-open mouth), so only the
        # ring around them may be found, and closing the ring alone left them standing.
        found = _column_spans(found)
        # One row more above and below: the interior's edge rows are half teeth, half lip.
        box[y0:y1, x0:x1] = found | any_within(found, 1, above=True) | any_within(found, 1, above=False)
    return box


def _with_dark_corners(found: np.ndarray, light: np.ndarray, margin: int) -> np.ndarray:
    """`found` with the dark pixels joined to it (8-connected) added, within its rows and
    `margin` rows either side: darker than the darker part of the interior and than most of
    the mouth box (lips are darker than skin, but not half as dark)."""
    rows = np.flatnonzero(found.any(1))
    near = np.zeros_like(found)
    near[max(rows[0] - margin, 0):rows[-1] + margin + 1] = True
    dark = near & (light < min(np.percentile(light[found], 30), 0.5 * np.median(light)))
    labels, _ = components(found | dark)
    joined = np.unique(labels[found])
    return np.isin(labels, joined[joined > 0])


def _column_spans(mask: np.ndarray) -> np.ndarray:
    """`mask` filled in each column from its first to its last set row."""
    rows = np.arange(mask.shape[0])[:, None]
    has = mask.any(0)
    first = np.where(has, np.argmax(mask, 0), mask.shape[0])
    last = np.where(has, mask.shape[0] - 1 - np.argmax(mask[::-1], 0), -1)
    return (rows >= first[None]) & (rows <= last[None])


@dataclass(frozen=True)
class SeamGeometry:
    """The seam redrawn where the closed lips meet, in crop pixels of a 256 px crop (scaled
    with the crop). The paste-back reads the closing's jump from one side or the other
    (pasteback.JUMP_PIXELS), but the rows beside the line are the teeth's and the lips' edges,
    half of each: a thin dark line flecked with teeth was left. The rows around the line are
    drawn instead: the lip colours above and below blended, with a soft shadow in the middle,
    as where real lips meet. Drawn at the crop's resolution, so kept narrow."""
    half_width: float = 1.0  # rows each side of the meeting line that are redrawn
    shade: float = 0.5  # the shadow's depth at the line (a share of the lips' brightness)
    sigma: float = 0.8  # the shadow's spread
    taper: float = 0.2  # share of the seam's length over which the shadow fades out at each end


@dataclass
class LipClosing:
    """What `closing` found: per output pixel the crop row it reads, and per column where the
    closed lips meet and how strongly the seam is redrawn there (0 - 1)."""
    rows: np.ndarray  # (S, S)
    line: np.ndarray  # (S,) output row of the meeting line
    top: np.ndarray  # (S,) the first and last output rows redrawn around it
    bottom: np.ndarray
    redraw: np.ndarray  # (S,) the seam's rows replaced (the interior's whole width)
    shade: np.ndarray  # (S,) the shadow drawn (fading out towards the ends)


def closing(crop: np.ndarray, amount: float = 1.0, geometry: LipGeometry = LipGeometry(),
            seam: SeamGeometry = SeamGeometry()) -> LipClosing | None:
    """The lips' closing by `amount` (0 = open as they are, 1 = the lips meet): for each output
    pixel the crop row it reads, and where the seam lies; None where nothing needs to close."""
    size = crop.shape[0]
    inside = interior_mask(crop, geometry)
    amount = float(np.clip(amount, 0, 1))
    if amount <= 0 or not inside.any():
        return None
    rows = np.arange(size, dtype=np.float32)[:, None]
    height = inside.sum(0).astype(np.float32)
    open_cols = height >= geometry.least * size  # thinner: a closed mouth's seam, left alone
    height[~open_cols] = 0
    top = np.where(open_cols, np.argmax(inside, 0), 0).astype(np.float32)
    # The darkest interior row of each column (the shadow between teeth and lip, or the dark
    # inside): the seam the closed lips show is read from there.
    light = grey(crop)
    darkest = np.argmin(np.where(inside, light, np.inf), 0).astype(np.float32)
    # Smoothed across the mouth so the lip line stays a curve; columns outside weigh nothing.
    sigma = 0.01 * size
    weight = _smooth(open_cols * 1.0, sigma)
    keep = weight > 0.05
    if not keep.any():
        return None

    def spread(values):
        return _smooth(np.where(open_cols, values, 0), sigma) / np.maximum(weight, 1e-3)
    # Each column's seam is read from its own darkest row (smoothed, it would drift onto teeth).
    darkest = np.where(open_cols, darkest, spread(darkest))
    top, height = spread(top), _smooth(height, sigma)
    bottom = top + height  # first lip row below the interior
    kept = (1 - amount) * height  # interior rows left (the seam is drawn over the line: draw_seam)
    gap = height - kept
    if gap.max() < 0.5:
        return None
    centre = (1 - amount) * (top + height / 2) + amount * darkest
    first = np.clip(centre - kept / 2, top, np.maximum(bottom - kept, top))  # first interior row kept
    # Where the lips meet: a third of the way down each column's gap, smoothed across the mouth
    # as a parabola (a seam that follows every step of the teeth's edge looks drawn).
    up = _parabola(top + gap * geometry.upper_share, height * open_cols, keep) - top
    up = np.clip(up, 0, gap)
    down = gap - up
    start = top + up  # where the kept rows begin in the output
    end = start + kept
    reach_up = np.maximum(geometry.upper_reach * size, 1.5 * up)
    reach_down = np.maximum(geometry.lower_reach * size, 1.5 * down)
    above = np.clip(1 - (start[None] - rows) / reach_up[None], 0, 1)
    below = np.clip(1 - (rows - end[None]) / reach_down[None], 0, 1)
    source = np.where(rows < start[None], rows - up[None] * above,
                      np.where(rows < end[None], first[None] + (rows - start[None]), rows + down[None] * below))
    source = np.where(keep[None], source, rows)
    line, top, bottom, redraw, shade = _seam(inside, source, keep, (start + end) / 2, kept, sigma, seam)
    return LipClosing(source.astype(np.float32), line, top, bottom, redraw, shade)


def _seam(inside: np.ndarray, source: np.ndarray, keep: np.ndarray, meeting: np.ndarray, kept: np.ndarray,
          sigma: float, seam: SeamGeometry):
    """Per column, the closed lips' meeting line and the rows to redraw around it (LipClosing's
    line, top, bottom, redraw, shade), from the interior, the rows read (`source`), the columns
    closed (`keep`), where they meet and how many interior rows each kept."""
    size = inside.shape[0]
    rows = np.arange(size, dtype=np.float32)[:, None]
    # The seam is redrawn across the interior's whole width: its thin ends (left open above)
    # are a dark line too. Beyond the closed columns the line follows the interior's middle.
    has = inside.any(0)
    middle = (inside * rows).sum(0) / np.maximum(inside.sum(0), 1)
    line = np.where(keep, meeting, middle)
    found_cols = np.flatnonzero(has | keep)
    line = np.interp(np.arange(size), found_cols, line[found_cols])  # held level past the ends
    # Every output row that still reads the interior (an edge column closed less than its
    # smoothed neighbours) is redrawn too, not only the band around the line.
    half = seam.half_width * size / 256
    reads_inside = inside[np.clip(np.rint(source), 0, size - 1).astype(int), np.arange(size)[None]]
    any_read = reads_inside.any(0)
    lo = np.where(any_read, np.argmax(reads_inside, 0), size)
    hi = np.where(any_read, size - 1 - np.argmax(reads_inside[::-1], 0), -1)
    top = np.minimum(line - half, lo)
    bottom = np.maximum(line + half, hi)
    redraw = np.clip(2 * _smooth((has | keep) * 1.0, sigma), 0, 1)  # whole at the interior's last columns
    redraw *= kept < 0.5  # only where the lips meet: a partial closing leaves the interior to show
    first, last = found_cols[0], found_cols[-1]
    from_end = np.minimum(np.arange(size) - first, last - np.arange(size)) / max(last - first, 1)
    shade = np.clip(from_end / seam.taper, 0, 1) * redraw
    return tuple(v.astype(np.float32) for v in (line, top, bottom, redraw, shade))


def _parabola(values: np.ndarray, weights: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`values` replaced by the weighted least-squares parabola through them, where `where`."""
    cols = np.arange(values.size, dtype=np.float64)
    if (weights > 0).sum() < 3:
        return values
    fitted = np.polyval(np.polyfit(cols, values, 2, w=np.sqrt(weights)), cols)
    return np.where(where, fitted, values).astype(np.float32)


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(values, kernel / kernel.sum(), mode="same").astype(np.float32)


def close_lips(crop: np.ndarray, motion: np.ndarray, mask: np.ndarray, fill: np.ndarray,
               amount: float = 1.0, lowering: float | None = None, geometry: LipGeometry = LipGeometry(),
               corners: CornerGeometry = CornerGeometry(), seam: SeamGeometry = SeamGeometry()
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One face's rendering (crop space, as `render_face` takes it) with the lips closed after
    it by `amount`, their seam redrawn, and a smile's lifted corners lowered by `lowering` (0..1;
    `amount` when None): each is found in the crop
    as the rendering leaves it and composed with the rendering's motion, mask and fill. The
    fill is kept off the lips first: the renderer's drawn lips are a blur, the photo's own
    (moved, then closed) are not."""
    size = crop.shape[0]
    kept_off = _fill_kept_off(crop, mask, geometry.fill_box, corners)
    if kept_off is None:
        return motion, mask, fill
    mask = kept_off
    xs = np.broadcast_to(np.arange(size, dtype=np.float32)[None], (size, size))
    found = closing(render_face(crop, motion, mask, fill, IDENTITY), amount, geometry, seam)
    if found is not None:
        motion, mask, fill = compose(motion, mask, fill, xs, found.rows)
        mask, fill = draw_seam(render_face(crop, motion, mask, fill, IDENTITY), mask, fill, found, seam)
    sources = corner_sources(render_face(crop, motion, mask, fill, IDENTITY),
                             amount if lowering is None else lowering, corners)
    if sources is not None:
        motion, mask, fill = compose(motion, mask, fill, *sources)
    return motion, mask, fill


def draw_seam(closed: np.ndarray, mask: np.ndarray, fill: np.ndarray, found: LipClosing,
              seam: SeamGeometry = SeamGeometry()) -> tuple[np.ndarray, np.ndarray]:
    """The mask and fill with the rows around the closed lips' meeting line drawn over (the
    crop `closed` as the closing leaves it): each column's lip colour two rows above and below
    the band, blended down the band, darkened by a soft shadow along the line."""
    size = closed.shape[0]
    rows = np.arange(size, dtype=np.float32)[:, None]
    cols = np.arange(size)
    image = np.asarray(closed, np.float32)
    first = np.clip(np.floor(found.top) - 1, 1, size - 2).astype(int)  # the last lip row above
    last = np.clip(np.ceil(found.bottom) + 1, 1, size - 2).astype(int)  # the first below
    above = (image[first, cols] + image[first - 1, cols]) / 2
    below = (image[last, cols] + image[last + 1, cols]) / 2
    t = np.clip((rows - first[None]) / np.maximum(last - first, 1)[None], 0, 1)[..., None]
    shadow = 1 - found.shade[None] * seam.shade * np.exp(-0.5 * ((rows - found.line[None]) / (seam.sigma * size / 256)) ** 2)
    colour = ((1 - t) * above[None] + t * below[None]) * shadow[..., None]
    inside = np.minimum(rows - found.top[None], found.bottom[None] - rows)  # >= 0 within the band
    band = np.clip(inside + 1, 0, 1) * found.redraw[None]
    new_mask = np.maximum(mask, band)
    share = (band / np.maximum(new_mask, 1e-6))[..., None]  # of the new fill that is the seam's
    return new_mask.astype(np.float32), (share * colour + (1 - share) * fill).astype(np.float32)


def raise_corners(crop: np.ndarray, motion: np.ndarray, mask: np.ndarray, fill: np.ndarray, height: float,
                  geometry: LipGeometry = LipGeometry(), corners: CornerGeometry = CornerGeometry()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smile edit's rendering (as close_lips takes it) with the fill kept off the whole mouth
    box and the mouth corners raised by `height` (a fraction of the crop's side) as motion of
    the photo's own lips and skin; left alone where no lips are found. (Neutralize keeps the
    fill on the skin around the lips: there it lowers what the corners' motion leaves.)"""
    kept_off = _fill_kept_off(crop, mask, geometry.box, corners)
    if kept_off is None:
        return motion, mask, fill
    mask = kept_off
    sources = raise_sources(render_face(crop, motion, mask, fill, IDENTITY), height, corners)
    if sources is not None:
        motion, mask, fill = compose(motion, mask, fill, *sources)
    return motion, mask, fill


def _fill_kept_off(crop: np.ndarray, mask: np.ndarray, box: tuple[float, float, float, float],
                   corners: CornerGeometry):
    """The fill mask kept off the box (fractions of the side), so the photo's own pixels show;
    None where no lips are found (a greyscale photo, a covered mouth): there the fill stays and
    nothing is moved."""
    if lip_line(crop, corners) is None:
        return None
    return mask * (1 - mouth_box(crop.shape[0], box))


def compose(motion: np.ndarray, mask: np.ndarray, fill: np.ndarray, source_x: np.ndarray,
            source_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rendering followed by a crop-space motion: each output pixel reads the rendering at
    (source_x, source_y); its motion is that position's motion plus the step there (both in
    fractions of the side)."""
    size = motion.shape[0]
    layers = np.concatenate([motion, mask[..., None], fill], -1).astype(np.float32)
    moved = remap(layers, source_x, source_y)
    grid = np.arange(size, dtype=np.float32)
    moved[..., 0] += (source_x - grid[None, :]) / size
    moved[..., 1] += (source_y - grid[:, None]) / size
    return moved[..., 0:2], moved[..., 2], moved[..., 3:6]


def mouth_box(size: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """(S, S) float 0..1: the box (fractions of the side) with feathered edges."""
    x0, y0, x1, y1 = in_pixels(box, size)
    inside = np.zeros((size, size), np.float32)
    inside[y0:y1, x0:x1] = 1
    return blur(inside, 0.016 * size)

