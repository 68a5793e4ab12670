"""Putting rendered faces back into the full-resolution photo (GFPGAN-style inverse warp).

The renderer's motion moves the photo's *own* pixels at the photo's resolution (not the
crop's), so lips, skin and teeth keep their real texture; its fill is blended in only where its
mask says something new appears. A feathered face mask bounds both; pixels outside it are
copied byte for byte."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from stoic_cli.face.alignment import crop_region, face_ellipse


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
    k = max(3, int(size * feather) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    # Fade to exactly 0 before the crop's edges so no seam appears where the square ends.
    ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) - 1.0) / (0.06 * size), 0, 1)
    return _read_only((mask * np.minimum(ramp[:, None], ramp[None, :])).astype(np.float32))


def _to_photo(crop: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int],
              border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Inverse-warp a crop-sized array into the photo's ROI (zero outside the crop unless
    `border` says otherwise)."""
    x0, y0, x1, y1 = roi
    m = matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # ROI origin -> crop coords
    return cv2.warpAffine(crop, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def _update_under_mask(image: np.ndarray, values: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None,
                       combine, border: int, inplace: bool = False) -> np.ndarray:
    """Warp crop-space `values` and the mask into the photo and write combine(photo, values, mask)
    into a copy (or `image` itself), only where the mask is above zero (elsewhere pixels stay
    byte-identical)."""
    size = values.shape[0]
    mask = face_mask(size) if mask is None else mask
    out = image if inplace else image.copy()
    roi = crop_region(matrix, size, image.shape[:2])
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    warped = _to_photo(values.astype(np.float32), matrix, roi, border)
    m = _to_photo(mask.astype(np.float32), matrix, roi)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    updated = np.clip(np.rint(combine(region, warped, m)), 0, 255).astype(np.uint8)
    touched = m[..., 0] > 0
    out[y0:y1, x0:x1][touched] = updated[touched]
    return out


def paste_crop(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               inplace: bool = False) -> np.ndarray:
    """Blend an edited crop (uint8 or float 0..255, any size, aligned by `matrix`) into a copy of
    `image` under the mask. Edge pixels are repeated beyond the crop so that interpolation at
    the square's border never pulls in black."""
    return _update_under_mask(image, crop, matrix, mask, lambda photo, crop_, m: photo * (1 - m) + crop_ * m,
                              cv2.BORDER_REPLICATE, inplace)


def warp_photo(image: np.ndarray, flow: np.ndarray, matrix: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Move the photo's own pixels as the model's face moves: `flow` (crop-space, (size, size, 2),
    in crop pixels) says where each crop pixel of the edited face comes from in the unedited one,
    and is zero outside the face. Brows that rise and a jaw that drops then keep the photo's own
    texture instead of being painted as brightness changes. Pixels the flow leaves alone stay
    byte-identical."""
    size = flow.shape[0]
    out = image if inplace else image.copy()
    roi = crop_region(matrix, size, image.shape[:2])
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    moved = _to_photo(flow.astype(np.float32), matrix, roi)  # crop pixels, at photo positions
    # A crop-space displacement in photo pixels: the inverse of the alignment's linear part.
    inv = np.linalg.inv(matrix[:, :2]).astype(np.float32)
    shift = moved @ inv.T
    touched = np.abs(shift).max(axis=2) > 1e-3
    if not touched.any():
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    src = cv2.remap(image, xx + shift[..., 0], yy + shift[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[y0:y1, x0:x1][touched] = src[touched]
    return out


def render_face(image: np.ndarray, motion: np.ndarray, mask: np.ndarray, fill: np.ndarray,
                matrix: np.ndarray, inplace: bool = False) -> np.ndarray:
    """One face's rendering (crop space: `motion` (S,S,2) in fractions of the side, `mask` (S,S)
    0..1, `fill` (S,S,3) 0..255) applied to a copy of the photo aligned by `matrix`: first the
    photo's pixels move, then the fill is blended in under the mask. Both fade out at the face
    mask's edge, so hair and background never move. `inplace` writes into `image` itself (a
    photo of 100+ megapixels is then never copied per face)."""
    size = motion.shape[0]
    face = face_mask(size)
    moved = warp_photo(image if inplace else image.copy(), motion * size * face[..., None], matrix, inplace=True)
    weight = np.asarray(mask, np.float32) * face
    if not (weight > 1e-3).any():
        return moved
    return paste_crop(moved, fill, matrix, weight, inplace=True)
