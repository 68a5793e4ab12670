"""Resampling in numpy: bilinear and bicubic sampling with border modes, affine warps, area
downscaling and a Gaussian blur. The editing path needs nothing else from OpenCV, so `pip install stoic-cli`
carries none.

The conventions are OpenCV's, which the models were trained with: pixel centres lie at integer
coordinates, and a warp's matrix maps each output pixel to the input point it comes from (cv2's
WARP_INVERSE_MAP). Big outputs are made in bands of rows, so float temporaries stay small (and
in the CPU's cache) whatever the photo's size."""
from __future__ import annotations

import numpy as np

BORDERS = ("constant", "replicate", "reflect")
# Pixels per band: a band's temporaries stay within the CPU's cache, which is faster than big arrays.
BAND_PIXELS = 1 << 15
# Input pixels per band of an area resize: tens of MB of temporaries at most, few Python loops.
AREA_BAND_PIXELS = 1 << 18


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix, computed as cv2.invertAffineTransform does (a
    singular one gives zeros)."""
    m = np.asarray(matrix, np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    d = 1.0 / det if det != 0 else 0.0
    a11, a12, a21, a22 = m[1, 1] * d, -m[0, 1] * d, -m[1, 0] * d, m[0, 0] * d
    return np.array([[a11, a12, -a11 * m[0, 2] - a12 * m[1, 2]],
                     [a21, a22, -a21 * m[0, 2] - a22 * m[1, 2]]])


def _inside(i: np.ndarray, n: int, border: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices brought inside 0..n-1 as `border` says, and for "constant" which were inside."""
    if border == "replicate":
        return np.clip(i, 0, n - 1), None
    if border == "reflect":  # cv2.BORDER_REFLECT: the edge pixel is repeated (..cba|abc..)
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i), None
    if border == "constant":
        return np.clip(i, 0, n - 1), (i >= 0) & (i < n)
    raise ValueError(f"border must be one of {BORDERS}, not {border!r}")


def _points(image: np.ndarray, x: np.ndarray, y: np.ndarray):
    """The image made contiguous with its channel count, and the points: their shape, then
    flattened, the pixel each lies past (x0, y0) and how far past it (fx, fy, float32)."""
    image = np.ascontiguousarray(image)
    c = image.shape[2] if image.ndim == 3 else 1
    shape = np.shape(x)
    x, y = np.ravel(x), np.ravel(y)
    xf, yf = np.floor(x), np.floor(y)
    return (image, c, shape, xf.astype(np.intp), yf.astype(np.intp),
            (x - xf).astype(np.float32), (y - yf).astype(np.float32))


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Bilinear samples of `image` (H, W) or (H, W, C) at the points (x, y), float arrays of one
    shape: float32, channel first ((C,) + x.shape, or x.shape for a 2-D image). Neighbours
    outside the image are zero ("constant"), the edge pixel ("replicate") or mirrored
    ("reflect"). This is how cv2.remap and cv2.warpAffine read pixels. Channel by channel, each
    neighbour is one 1-D take, which numpy does far faster than gathering whole pixels."""
    image, c, shape, x0, y0, fx, fy = _points(image, x, y)
    h, w = image.shape[:2]
    flat = image.reshape(-1)
    keep = None
    if x0.size == 0 or (x0.min() >= 0 and y0.min() >= 0 and x0.max() < w - 1 and y0.max() < h - 1):
        k = y0 * w
        k += x0
        k *= c  # every neighbour inside: one index, read through shifted views
        index, shifts = (k, k, k, k), (0, c, w * c, (w + 1) * c)
    else:
        (xa, kxa), (xb, kxb) = _inside(x0, w, border), _inside(x0 + 1, w, border)
        (ya, kya), (yb, kyb) = _inside(y0, h, border), _inside(y0 + 1, h, border)
        index, shifts = tuple((yi * w + xi) * c for yi in (ya, yb) for xi in (xa, xb)), (0, 0, 0, 0)
        if border == "constant":
            keep = (kya & kxa, kya & kxb, kyb & kxa, kyb & kxb)
    out = np.empty((c, x0.size), np.float32)
    for ch in range(c):
        p00, p01, p10, p11 = (np.take(flat[d + ch:], k) for k, d in zip(index, shifts))
        if keep is not None:
            for p, kp in zip((p00, p01, p10, p11), keep):
                p[~kp] = 0
        top = np.subtract(p01, p00, dtype=np.float32)
        top *= fx
        top += p00  # along x on the upper row
        bottom = np.subtract(p11, p10, dtype=np.float32)
        bottom *= fx
        bottom += p10
        np.subtract(bottom, top, out=out[ch])
        out[ch] *= fy
        out[ch] += top
    return out.reshape((c,) + shape if image.ndim == 3 else shape)


def sample_cubic(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Bicubic samples (Keys, a = -0.75, as cv2.INTER_CUBIC) of `image` at the points (x, y),
    laid out as `sample`'s. Bilinear reading between pixels averages neighbours, softening fine
    detail (teeth, lip lines, skin) by up to half; this keeps most of it, and a point on a pixel
    centre reads that pixel exactly. Values may overshoot the image's range a little."""
    image, c, shape, x0, y0, fx, fy = _points(image, x, y)
    h, w = image.shape[:2]
    wx, wy = _keys(fx), _keys(fy)
    flat = image.reshape(-1)
    if x0.size == 0 or (x0.min() >= 1 and y0.min() >= 1 and x0.max() < w - 2 and y0.max() < h - 2):
        # Every tap inside: one index, read through shifted views of the image.
        k = (y0 - 1) * w
        k += x0 - 1
        k *= c
        taps = [(k, (j * w + i) * c, None) for j in range(4) for i in range(4)]
    else:
        cols = [_inside(x0 + i - 1, w, border) for i in range(4)]
        rows = [_inside(y0 + j - 1, h, border) for j in range(4)]
        taps = [((ri * w + ci) * c, 0, None if rk is None else rk & ck) for ri, rk in rows for ci, ck in cols]
    out = np.empty((c, x0.size), np.float32)
    line = np.empty(x0.size, np.float32)
    term = np.empty(x0.size, np.float32)
    for ch in range(c):
        out[ch] = 0
        for j in range(4):
            line[:] = 0
            for i in range(4):
                index, shift, keep = taps[4 * j + i]
                values = np.take(flat[shift + ch:], index)
                if keep is not None:  # "constant": taps outside read zero
                    values[~keep] = 0
                np.multiply(wx[i], values, out=term)
                line += term
            line *= wy[j]
            out[ch] += line
    return out.reshape((c,) + shape if image.ndim == 3 else shape)


def _keys(t: np.ndarray) -> list[np.ndarray]:
    """The four bicubic weights (Keys' kernel, a = -0.75) of the taps at distances 1 + t, t,
    1 - t and 2 - t from the point."""
    a = np.float32(-0.75)
    one, two = np.float32(1), np.float32(2)
    far, near = (one + t, two - t), (t, one - t)
    w_far = [((a * s - 5 * a) * s + 8 * a) * s - 4 * a for s in far]
    w_near = [((a + 2) * s - (a + 3)) * s * s + 1 for s in near]
    return [w_far[0], w_near[0], w_near[1], w_far[1]]


def value_range(dtype) -> tuple[float, float]:
    """The values a pixel of `dtype` holds: an integer type's range, any float for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        return float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    return -np.inf, np.inf


def cast(values: np.ndarray, dtype) -> np.ndarray:
    """Float samples as `dtype`: integers rounded to nearest (cv2's saturate_cast)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        rounded = np.rint(values)
        return np.clip(rounded, *value_range(dtype), out=rounded).astype(dtype)
    return values.astype(dtype, copy=False)


def _warp_planes(image: np.ndarray, to_source: np.ndarray, width: int, rows: range, border: str) -> np.ndarray:
    """Output rows `rows` of an affine warp (see warp_affine), channel first, float32; rounded
    when the image holds integers (a blend of pixels never leaves their range)."""
    m = np.asarray(to_source, np.float64)
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
    planes = sample(image, m[0, 0] * xs + (m[0, 1] * ys + m[0, 2]), m[1, 0] * xs + (m[1, 1] * ys + m[1, 2]), border)
    if image.dtype.kind in "ui":
        np.rint(planes, out=planes)
    return planes.reshape((-1, len(rows), width))


def _store(out: np.ndarray, planes: np.ndarray) -> None:
    """Channel-first float planes into an image's rows, one channel at a time (far faster than
    one transposing copy)."""
    if out.ndim == 2:
        out[...] = planes[0]
    for ch in range(out.shape[2] if out.ndim == 3 else 0):
        out[..., ch] = planes[ch]


def warp_affine(image: np.ndarray, to_source: np.ndarray, size: tuple[int, int], border: str = "replicate") -> np.ndarray:
    """`image` seen through an affine map: output pixel (x, y) is the bilinear sample at
    to_source @ (x, y, 1) (cv2.warpAffine with WARP_INVERSE_MAP). `size` is (width, height);
    the result has the image's dtype."""
    w, h = size
    out = np.empty((h, w) + image.shape[2:], image.dtype)
    rows = max(1, BAND_PIXELS // max(1, w))
    for r0 in range(0, h, rows):
        band = range(r0, min(h, r0 + rows))
        _store(out[band.start:band.stop], _warp_planes(image, to_source, w, band, border))
    return out


def warp_area(image: np.ndarray, to_source: np.ndarray, big: int, size: int, border: str = "replicate") -> np.ndarray:
    """warp_affine to a big x big square, then resize_area to size x size, made a band at a time
    so the big square never exists whole (it may be thousands of pixels a side)."""
    taps = _area_taps(big, size)
    out = np.empty((size, size) + image.shape[2:], image.dtype)
    rows = max(1, int(BAND_PIXELS // big * size / big))  # output rows per band
    for r0 in range(0, size, rows):
        r1 = min(size, r0 + rows)
        top, bottom = int(taps[0][0][r0]), int(max(t[0][r1 - 1] for t in taps)) + 1
        planes = _warp_planes(image, to_source, big, range(top, bottom), border)
        if size < big:
            planes = _area_axis(_area_axis(planes, [(p[r0:r1] - top, c[r0:r1]) for p, c in taps], axis=1), taps, axis=2)
        _store(out[r0:r1], cast(planes, image.dtype))
    return out


def _area_bounds(n_in: int, n_out: int) -> np.ndarray:
    """Where the footprints of n_out pixels over n_in begin and end (n_out + 1 bounds); bounds
    within float noise of a whole pixel are that pixel."""
    bounds = np.arange(n_out + 1) * (n_in / n_out)
    near = np.rint(bounds)
    return np.where(np.abs(bounds - near) < 1e-6, near, bounds)


def _area_taps(n_in: int, n_out: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Area resampling of n_in pixels to n_out as a few taps: per tap, the input pixel of every
    output pixel and the part of its footprint it covers (as a weight summing to 1 over the
    taps; 0 where the footprint is shorter)."""
    bounds = _area_bounds(n_in, n_out)
    lo, hi = bounds[:-1], bounds[1:]
    first = np.floor(lo).astype(np.intp)
    taps = []
    for t in range(int((np.ceil(hi) - first).max())):
        pixel = first + t
        cover = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0, None) / (hi - lo)
        taps.append((np.minimum(pixel, n_in - 1), cover.astype(np.float32)))
    return taps


def _area_axis(x: np.ndarray, taps: list[tuple[np.ndarray, np.ndarray]], axis: int) -> np.ndarray:
    """Area resampling of `x` along `axis` by `taps` (see _area_taps; pixels relative to x),
    float32. A tap is one take along the axis and one product over long runs."""
    rest = x.shape[axis + 1:]
    wide = 1 < int(np.prod(rest)) < 16  # a short trailing axis (channels): weights as wide as it
    out = None
    for pixel, cover in taps:
        term = np.take(x, pixel, axis=axis)
        if wide:
            term = term.reshape(term.shape[:axis] + (-1,))
            cover = np.repeat(cover, int(np.prod(rest)))
        else:
            cover = cover.reshape((-1,) + (1,) * len(rest))
        if out is None:
            out = np.multiply(term, cover, dtype=np.float32)
        else:
            out += np.multiply(term, cover, dtype=np.float32)
    return out.reshape(x.shape[:axis] + (len(taps[0][0]),) + rest)


def _block_sum(x: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Sums of `factor` neighbours along `axis`, exact in int32."""
    n = x.shape[axis] // factor
    out = np.take(x, np.arange(n) * factor, axis=axis).astype(np.int32)
    for t in range(1, factor):
        out += np.take(x, np.arange(n) * factor + t, axis=axis)
    return out


def resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` shrunk to `size` (width, height), each output pixel the mean of its footprint,
    partial pixels weighted by the part they cover (cv2.INTER_AREA): no aliasing, unlike point
    sampling. Same dtype; it only shrinks."""
    w, h = size
    ih, iw = image.shape[:2]
    if w > iw or h > ih or w < 1 or h < 1:
        raise ValueError(f"resize_area shrinks: {iw}x{ih} -> {w}x{h}")
    if (w, h) == (iw, ih):
        return image.copy()
    whole = iw % w == 0 and ih % h == 0 and image.dtype.kind in "ui"
    ytaps, xtaps = _area_taps(ih, h), _area_taps(iw, w)
    out = np.empty((h, w) + image.shape[2:], image.dtype)
    rows = max(1, int(AREA_BAND_PIXELS // iw * h / ih))  # output rows per band
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        top, bottom = int(ytaps[0][0][r0]), int(max(t[0][r1 - 1] for t in ytaps)) + 1
        band = image[top:bottom]
        if whole:  # whole blocks: an exact integer mean, rounded half up (cv2's fast path)
            fy, fx = ih // h, iw // w
            sums = _block_sum(_block_sum(band, fy, 0), fx, 1)
            out[r0:r1] = (sums + fy * fx // 2) // (fy * fx)
            continue
        if h < ih:  # rows first: whole rows are the cheapest to take, and the rest has fewer
            band = _area_axis(band, [(p[r0:r1] - top, c[r0:r1]) for p, c in ytaps], axis=0)
        if w < iw:
            band = _area_axis(band, xtaps, axis=1)
        out[r0:r1] = cast(band, image.dtype)
    return out


# cv2's fixed kernels for the small sizes when sigma is derived from the size.
_SMALL_KERNELS = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                  7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}


def gaussian_kernel(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """The normalised 1-D Gaussian of cv2.getGaussianKernel (sigma <= 0: derived from ksize)."""
    if sigma <= 0 and ksize in _SMALL_KERNELS:
        return np.array(_SMALL_KERNELS[ksize])
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    k = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * sigma * sigma))
    return k / k.sum()


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float = 0.0) -> np.ndarray:
    """A float image blurred by a separable ksize x ksize Gaussian, mirrored at the borders
    without repeating the edge pixel (cv2.GaussianBlur's defaults). For small images such as
    masks: it pads a float64 copy."""
    k = gaussian_kernel(ksize, sigma)
    r = ksize // 2
    h, w = image.shape[:2]
    pad = [(r, r), (r, r)] + [(0, 0)] * (image.ndim - 2)
    x = np.pad(np.asarray(image, np.float64), pad, mode="reflect")
    rows = sum(k[i] * x[:, i:i + w] for i in range(ksize))
    out = sum(k[i] * rows[i:i + h] for i in range(ksize))
    return out.astype(image.dtype if image.dtype.kind == "f" else np.float32)
