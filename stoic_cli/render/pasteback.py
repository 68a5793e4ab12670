"""Putting rendered faces back into the full-resolution photo (GFPGAN-style inverse warp).

The renderer's motion moves the photo's *own* pixels at the photo's resolution (not the
crop's), so lips, skin and teeth keep their real texture; its fill is blended in only where its
mask says something new appears. A feathered face mask bounds both; pixels outside it are
copied byte for byte."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from stoic_cli.face.alignment import crop_region, face_ellipse, invert
from stoic_cli.face.resample import BAND_PIXELS, cast, gaussian_blur, sample, sample_cubic, value_range
from stoic_cli.render.imageops import grey


IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float64)  # crop -> crop: render a crop onto itself
# A vertical flow changing by more than this (crop pixels) from one crop row to the next, and
# JUMP_RATIO times more than between the rows next to them, is a jump, not a stretch: only the
# lips' closing makes one (the renderer's own motion can be as steep, but smoothly, over many
# rows).
JUMP_PIXELS, JUMP_RATIO = 1.0, 2.5


def _read_only(mask: np.ndarray) -> np.ndarray:
    mask.setflags(write=False)  # cached and shared between faces and callers
    return mask


@lru_cache(maxsize=16)
def face_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """Soft ellipse over the face (brows to chin, cheek to cheek) in crop coordinates, float 0..1,
    read-only. Hair, ears and background lie outside it."""
    cx, cy, rx, ry = face_ellipse(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.sqrt(((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2)
    # 1 inside, linear ramp to 0 over `feather` of the radius, then smoothed.
    mask = np.clip((1.0 - d) / feather + 0.5, 0, 1)
    mask = gaussian_blur(mask, max(3, int(size * feather) | 1))
    # Fade to exactly 0 before the crop's edges so no seam appears where the square ends.
    ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) - 1.0) / (0.06 * size), 0, 1)
    return _read_only((mask * np.minimum(ramp[:, None], ramp[None, :])).astype(np.float32))


def paste_crop(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               inplace: bool = False) -> np.ndarray:
    """Blend an edited crop (uint8 or float 0..255, any size, aligned by `matrix`) into a copy of
    `image` under the mask (the face mask by default): photo * (1 - mask) + crop * mask. Edge
    pixels are repeated beyond the crop so that interpolation at the square's border never
    pulls in black."""
    mask = face_mask(crop.shape[0]) if mask is None else mask
    return _render(image, matrix, None, mask, crop, inplace)


def colourless(crop: np.ndarray, tolerance: float = 2.0) -> bool:
    """Whether an RGB crop holds no colour (a greyscale photo stored as RGB): its channels
    differ by less than `tolerance` levels on average."""
    c = np.asarray(crop, np.float32)
    return float(np.abs(c[..., 0] - c[..., 1]).mean() + np.abs(c[..., 1] - c[..., 2]).mean()) < tolerance


def grey_like(crop: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The renderer's fill, made grey where the photo is: a greyscale photo must not come back
    with skin-coloured lips and cheeks drawn into it."""
    if not colourless(crop):
        return fill
    return np.repeat(grey(fill)[..., None], 3, -1)


def settled(motion: np.ndarray, least: float) -> np.ndarray:
    """The motion with every vector shortened by `least` (none reverses): what moves less
    than that stays still, bigger motions keep their direction."""
    if least <= 0:
        return motion
    length = np.linalg.norm(motion, axis=-1, keepdims=True)
    return (motion * np.clip(1 - least / np.maximum(length, 1e-12), 0, 1)).astype(np.float32)


def render_face(image: np.ndarray, motion: np.ndarray, mask: np.ndarray, fill: np.ndarray,
                matrix: np.ndarray, inplace: bool = False) -> np.ndarray:
    """One face's rendering (crop space: `motion` (S,S,2) in fractions of the side, `mask` (S,S)
    0..1, `fill` (S,S,3) 0..255) applied to a copy of the photo aligned by `matrix`: first the
    photo's pixels move, then the fill is blended in under the mask. Both fade out at the face
    mask's edge, so hair and background never move. `inplace` writes into `image` itself (a
    photo of 100+ megapixels is then never copied per face)."""
    size = motion.shape[0]
    face = face_mask(size)
    weight = np.asarray(mask, np.float32) * face
    paste = (weight > 1e-3).any()
    return _render(image, matrix, motion * size * face[..., None], weight if paste else None,
                   fill if paste else None, inplace)


def _render(image: np.ndarray, matrix: np.ndarray, flow: np.ndarray | None, weight: np.ndarray | None,
            values: np.ndarray | None, inplace: bool) -> np.ndarray:
    """The (uint8) photo's pixels moved by the crop-space `flow` (read where the flow says,
    mirrored at the photo's border), then blended with the crop-space `values` under `weight`;
    either part may be None. Only the photo pixels whose crop position touches a nonzero flow
    or weight are computed, a band of rows at a time; the rest stay byte-identical."""
    out = image if inplace else image.copy()
    if not out.flags.c_contiguous:  # a view written in place: render a compact copy, copy back
        out[...] = _render(out, matrix, flow, weight, values, False)
        return out
    size = (flow if flow is not None else weight).shape[0]
    roi = crop_region(matrix, size, out.shape[:2])
    if roi is None:
        return out
    # The crop's layers padded by one pixel (zero; the values repeat their edge), so that every
    # bilinear neighbour of a touched pixel lies inside them.
    layers = np.zeros((size + 2, size + 2, 3), np.float32)  # flow x, flow y (crop pixels), weight
    if flow is not None:
        layers[1:-1, 1:-1, :2] = flow
    if weight is not None:
        layers[1:-1, 1:-1, 2] = weight
        padded_values = np.empty((size + 2, size + 2) + np.shape(values)[2:], np.float32)
        padded_values[1:-1, 1:-1] = values
        padded_values[0], padded_values[-1] = padded_values[1], padded_values[-2]
        padded_values[:, 0], padded_values[:, -1] = padded_values[:, 1], padded_values[:, -2]
        # A weight this small moves no photo pixel (0..255) by half a level: those are left alone.
        faint = 0.49 / max(1.0, float(padded_values.max()), 255.0 - float(padded_values.min()))
    live = (layers[..., 0] != 0) | (layers[..., 1] != 0) | (layers[..., 2] != 0)
    # Where the vertical flow jumps between two crop rows (closed lips meeting), a photo pixel
    # between them reads the flow of the nearer row: interpolated, it would read the rows the
    # jump skips (the teeth between the lips), a smear a photo pixel or two tall.
    jumps = None
    if flow is not None:
        change = np.abs(np.diff(layers[..., 1], axis=0))  # row j to j + 1
        beside = np.maximum(np.pad(change[:-1], ((1, 0), (0, 0))), np.pad(change[1:], ((0, 1), (0, 0))))
        step = (change > JUMP_PIXELS) & (change > JUMP_RATIO * beside)
        if step.any():
            jumps = np.zeros((size + 2, size + 2), bool)  # padded cell (row j, col i) to row j + 1
            jumps[:-1] = step
            jumps[:, :-1] |= jumps[:, 1:]
    cells = np.zeros((size + 3, size + 3), bool)  # padded cell (j, i) at [j + 1, i + 1]; False around
    cells[1:-1, 1:-1] = live[:-1, :-1] | live[1:, :-1] | live[:-1, 1:] | live[1:, 1:]  # a nonzero corner
    if not cells.any():
        return out
    x0, y0, x1, y1 = _touched_box(cells[1:-1, 1:-1], matrix, roi)
    if x1 <= x0 or y1 <= y0:
        return out
    inv = np.linalg.inv(matrix[:, :2]).astype(np.float32)  # crop displacement -> photo pixels
    most = max(float(flow.max()), -float(flow.min())) if flow is not None else 0.0
    reach = int(np.ceil(most * np.abs(inv).sum(1).max())) + 3  # and the bicubic taps' two rows beyond
    w = out.shape[1]
    channels = out.shape[2] if out.ndim == 3 else 1
    pixels = _pixels(out, channels)
    bw = x1 - x0
    xs = np.arange(x0, x1, dtype=np.float64)
    rows = max(1, BAND_PIXELS // bw)
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    for r0 in range(y0, y1, rows):
        # Pixels moved by the flow read the photo up to `reach` rows away: a band is written
        # once no band still to come reads its rows.
        while pending and pending[0][0] <= r0 - reach:
            _, where, new = pending.pop(0)
            np.put(pixels, where, _pixels(new, channels))
        r1 = min(y1, r0 + rows)
        ys = np.arange(r0, r1, dtype=np.float64)[:, None]
        u = (matrix[0, 0] * xs + (matrix[0, 1] * ys + matrix[0, 2] + 1)).ravel()  # padded crop x
        v = (matrix[1, 0] * xs + (matrix[1, 1] * ys + matrix[1, 2] + 1)).ravel()
        iu = np.clip(np.floor(u), -1, size + 1).astype(np.intp)
        iv = np.clip(np.floor(v), -1, size + 1).astype(np.intp)
        iv += 1
        iv *= size + 3
        iv += iu
        at = np.flatnonzero(np.take(cells.ravel(), iv + 1))
        if at.size == 0:
            continue
        u, v = np.take(u, at), np.take(v, at)
        py, px = np.divmod(at, bw)
        px += x0
        py += r0
        where = py * w + px
        f = sample(layers, u, v)  # flow x, flow y (crop pixels), weight
        if jumps is not None:
            cell = np.take(jumps, np.clip(np.floor(v), 0, size + 1).astype(np.intp) * (size + 2)
                           + np.clip(np.floor(u), 0, size + 1).astype(np.intp))
            across = np.flatnonzero(cell)
            if across.size:
                f[:2, across] = sample(layers[..., :2], np.take(u, across), np.round(np.take(v, across)))
        dx = inv[0, 0] * f[0] + inv[0, 1] * f[1]
        dy = inv[1, 0] * f[0] + inv[1, 1] * f[1]
        still = np.maximum(np.abs(dx), np.abs(dy)) <= 1e-3
        dx[still] = 0
        dy[still] = 0
        # The photo read where the flow says, bicubic (bilinear reading would soften every moved
        # pixel): the pixels it leaves still read themselves, exactly.
        new = np.rint(sample_cubic(out, px + dx, py + dy, "reflect").reshape(channels, -1))
        np.clip(new, *value_range(out.dtype), out=new)  # bicubic reading overshoots a little
        if weight is not None:
            hit = np.flatnonzero(f[2] >= faint)
            m = np.take(f[2], hit)
            blend = np.take(new, hit, axis=1)
            blend *= 1 - m
            blend += sample(padded_values, np.take(u, hit), np.take(v, hit)).reshape(channels, -1) * m
            new[:, hit] = blend
        pending.append((r1, where, np.ascontiguousarray(cast(new, out.dtype).T)))
    for _, where, new in pending:
        np.put(pixels, where, _pixels(new, channels))
    return out


def _pixels(values: np.ndarray, channels: int) -> np.ndarray:
    """Contiguous pixels (an image, or values (N, channels)) as one item each: gathering and
    scattering whole pixels is then one fast 1-D take or put."""
    item = np.dtype((np.void, values.dtype.itemsize * channels))
    return np.ascontiguousarray(values).reshape(-1).view(item)


def _touched_box(cells: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The photo box (x0, y0, x1, y1) around the padded crop cells that may touch something,
    within the ROI."""
    rows, cols = np.flatnonzero(cells.any(1)), np.flatnonzero(cells.any(0))
    # padded cell (j, i) spans crop coordinates [i-1, i] x [j-1, j]
    corners = np.array([[cols[0] - 1, rows[0] - 1], [cols[-1], rows[0] - 1], [cols[0] - 1, rows[-1]],
                        [cols[-1], rows[-1]]], np.float64)
    inv = invert(matrix)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    bx0, by0 = np.floor(pts.min(0)).astype(int) - 1
    bx1, by1 = np.ceil(pts.max(0)).astype(int) + 2
    x0, y0, x1, y1 = roi
    return max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
