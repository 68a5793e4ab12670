"""The few image operations the mouth's post-steps need (lip closing, corner lowering, the
reference's mouth), in numpy: the editing path has no OpenCV. They work on small crops, so
clarity wins over speed."""
from __future__ import annotations

import numpy as np

from stoic_cli.face.resample import gaussian_blur, sample


def in_pixels(box: tuple[float, ...], size: int) -> tuple[int, ...]:
    """A box given in fractions of a crop's side, in that crop's pixels (the same order)."""
    return tuple(int(round(v * size)) for v in box)


def grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601, as cv2.COLOR_RGB2GRAY) of an RGB image, float32 0..255."""
    return (np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def redness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB a* (green - red axis; lips score high, teeth and the dark inside low) of an sRGB
    uint8 image, float32. Only differences within a crop are used, so the offset is free."""
    c = np.asarray(rgb, np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    x = linear @ np.array([0.412453, 0.357580, 0.180423], np.float32) / 0.950456
    y = linear @ np.array([0.212671, 0.715160, 0.072169], np.float32)

    def f(t):
        return np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return (500 * (f(x) - f(y))).astype(np.float32)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a kernel three sigmas each side, mirrored at the borders."""
    return gaussian_blur(np.asarray(image, np.float32), 2 * max(1, int(np.ceil(3 * sigma))) + 1, sigma)


def any_within(mask: np.ndarray, reach: int, above: bool) -> np.ndarray:
    """(H, W) bool: whether `mask` holds a True pixel in the same column within `reach` rows
    above (or below) each pixel, the pixel itself not counted."""
    m = np.asarray(mask, bool)
    h = m.shape[0]
    count = np.concatenate([np.zeros((1, m.shape[1]), np.int32), np.cumsum(m, 0, dtype=np.int32)])  # rows < r
    rows = np.arange(h)
    if above:
        lo, hi = np.clip(rows - reach, 0, h), rows
    else:
        lo, hi = rows + 1, np.clip(rows + 1 + reach, 0, h)
    return (count[hi] - count[lo]) > 0


def _shifted(m: np.ndarray, dy: int, dx: int, fill: bool) -> np.ndarray:
    out = np.full_like(m, fill)
    h, w = m.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = m[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def close(mask: np.ndarray, height: int = 3, width: int = 3) -> np.ndarray:
    """Morphological closing (dilate, then erode) with a height x width box: bridges gaps."""
    m = np.asarray(mask, bool)
    offsets = [(dy, dx) for dy in range(-(height // 2), height // 2 + 1) for dx in range(-(width // 2), width // 2 + 1)]
    grown = np.zeros_like(m)
    for dy, dx in offsets:
        grown |= _shifted(m, dy, dx, False)
    shrunk = np.ones_like(m)
    for dy, dx in offsets:
        shrunk &= _shifted(grown, dy, dx, True)
    return shrunk


def components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """8-connected components of a small bool mask: labels (0 = background, 1.. each component)
    and per component (left, top, width, height, area), as cv2.connectedComponentsWithStats."""
    m = np.asarray(mask, bool)
    h, w = m.shape
    labels = np.where(m, np.arange(1, h * w + 1).reshape(h, w), 0)
    big = h * w + 1
    # Each pixel takes its neighbours' smallest label until nothing changes (a small mask's
    # components are a few dozen pixels across, so this ends quickly).
    while True:
        padded = np.pad(np.where(m, labels, big), 1, constant_values=big)
        least = labels.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                least = np.minimum(least, padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w])
        least = np.where(m, least, 0)
        if np.array_equal(least, labels):
            break
        labels = least
    ids = np.unique(labels[labels > 0])
    relabelled = np.zeros((h, w), np.int32)
    stats = []
    for k, i in enumerate(ids, 1):
        ys, xs = np.nonzero(labels == i)
        relabelled[ys, xs] = k
        stats.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1), int(xs.size)))
    return relabelled, stats


def remap(image: np.ndarray, source_x: np.ndarray, source_y: np.ndarray) -> np.ndarray:
    """The image read at (source_x, source_y) for every output pixel, bilinear, the edge
    repeated beyond the border (cv2.remap with BORDER_REPLICATE); float32, same layout."""
    out = sample(np.asarray(image, np.float32), source_x, source_y, "replicate")
    return np.moveaxis(out, 0, -1) if out.ndim == 3 else out


def poisson_blend(source: np.ndarray, target: np.ndarray, inside: np.ndarray, steps: int = 400) -> np.ndarray:
    """The source's pixels inside the bool mask, blended into the target in the gradient domain
    (Perez et al. 2003): the result keeps the source's gradients inside and meets the target at
    the mask's border, so it takes the target's tone and light. Float32, the target outside.
    Solved for the correction (a membrane: harmonic inside, target - source on the border) by
    conjugate gradients on the mask's bounding box."""
    src = np.asarray(source, np.float32)
    dst = np.asarray(target, np.float32)
    ys, xs = np.nonzero(inside)
    out = dst.copy()
    if ys.size == 0:
        return out
    y0, y1 = max(ys.min() - 1, 0), min(ys.max() + 2, dst.shape[0])
    x0, x1 = max(xs.min() - 1, 0), min(xs.max() + 2, dst.shape[1])
    m = np.asarray(inside, bool)[y0:y1, x0:x1].copy()
    m[0], m[-1], m[:, 0], m[:, -1] = False, False, False, False  # the box's edge is border
    difference = dst[y0:y1, x0:x1] - src[y0:y1, x0:x1]  # what the correction is on the border
    known = np.where(m[..., None], 0, difference)

    def laplacian(f):  # 4-neighbour, on the unknowns only (the border is held at zero here)
        g = np.where(m[..., None], f, 0)
        return np.where(m[..., None], _minus_neighbours(4 * g, g), 0)
    # A x = b with A the negative Laplacian on the unknowns and b the border's pull on them:
    # the sum of each unknown's fixed (border) neighbours.
    k = np.where(m[..., None], 0, known)
    b = -np.where(m[..., None], _minus_neighbours(np.zeros_like(k), k), 0)
    x = np.zeros_like(b)
    r = b - laplacian(x)
    p = r.copy()
    rs = (r * r).sum((0, 1))
    for _ in range(steps):
        ap = laplacian(p)
        alpha = rs / np.maximum((p * ap).sum((0, 1)), 1e-12)
        x += alpha * p
        r -= alpha * ap
        new_rs = (r * r).sum((0, 1))
        if float(new_rs.max()) < 1e-4 * m.sum():
            break
        p = r + (new_rs / np.maximum(rs, 1e-12)) * p
        rs = new_rs
    correction = np.where(m[..., None], x, 0)
    region = out[y0:y1, x0:x1]
    region[m] = (src[y0:y1, x0:x1] + correction)[m]
    return out


def _minus_neighbours(start: np.ndarray, f: np.ndarray) -> np.ndarray:
    """`start` (changed in place) less the sum of each pixel's four neighbours in `f` (zero beyond
    the edge)."""
    start[1:] -= f[:-1]
    start[:-1] -= f[1:]
    start[:, 1:] -= f[:, :-1]
    start[:, :-1] -= f[:, 1:]
    return start
