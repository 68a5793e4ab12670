"""A transfer's new mouth taken from the reference photo itself.

A smile that opens shows teeth the input photo does not have, and the renderer's fill draws them
as a pink blur; a closed smile's lips the renderer's motion hardly lifts. The reference photo
has both: the two faces are aligned to the same template, so the reference's mouth (lips, and
teeth and the dark inside when open) lies where the edited face's mouth goes.
It is blended into the rendered face in the gradient domain (Poisson), so it takes the face's
own skin tone and light at its border, inside a feathered mask around the reference's lips
(from its mouth corners), leaving the cheeks, a moustache's top and the chin as the renderer
leaves them. The blend's correction is smooth, so it is solved on the crop; the pixels it
corrects are the reference photo's own, read at the output photo's resolution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoic_cli.face.alignment import invert, transform_points
from stoic_cli.face.resample import cast, sample, sample_cubic
from stoic_cli.render.imageops import blur, close, components, poisson_blend, redness
from stoic_cli.render.pasteback import IDENTITY, render_face


MIN_LIP_PIXELS = 30  # fewer lip pixels than this found: no lip colour to match
MIN_LIP_CONTRAST = 4.5  # LAB a* the reddest pixels must lie above the region's median to be taken as lips


@dataclass(frozen=True)
class MouthGeometry:
    """The mask around the reference's mouth, from its two corners (MTCNN's, in crop pixels):
    an ellipse along the line between them, in fractions of the corners' distance."""
    beyond: float = 0.15  # past each corner (the corner's shadow)
    above: float = 0.30  # up to the upper lip's top, above the corners' line
    below: float = 0.42  # down to the lower lip's bottom (an open mouth hangs lower)
    feather: float = 0.06


def mouth_region(size: int, corners: np.ndarray, geometry: MouthGeometry = MouthGeometry()) -> np.ndarray:
    """(S, S) float 0..1: a feathered half-ellipse above and below the line between the mouth's
    corners ((2, 2) crop pixels, left then right), covering the lips and what lies between."""
    left, right = np.asarray(corners, np.float32)
    width = float(np.linalg.norm(right - left))
    along = (right - left) / max(width, 1e-6)
    down = np.array([-along[1], along[0]], np.float32)  # image y points down
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - (left[0] + right[0]) / 2, yy - (left[1] + right[1]) / 2
    u = (dx * along[0] + dy * along[1]) / (width * (0.5 + geometry.beyond))
    v = (dx * down[0] + dy * down[1]) / (width * np.where(dx * down[0] + dy * down[1] < 0, geometry.above, geometry.below))
    inside = (u * u + v * v <= 1).astype(np.float32)
    return blur(inside, geometry.feather * width)


@dataclass(frozen=True)
class ReferenceMouth:
    """What a transfer takes from its reference photo: the aligned crop (for the blend), its
    mouth corners in crop pixels, the mouth region and the lips in it (found once, for every face
    the reference goes to), and the photo's own pixels around the mouth with the affine map from
    crop pixels into them (the mouth is pasted from those, at the photo's resolution, not the
    crop's)."""
    crop: np.ndarray
    corners: np.ndarray  # (2, 2) left, right
    region: np.ndarray  # (S, S) 0..1, mouth_region's
    lips: np.ndarray  # (S, S) bool, lip_pixels'
    lipness: np.ndarray  # (S, S) 0..1, lip_weight's
    patch: np.ndarray  # uint8 (h, w, 3): the reference photo around the mouth
    crop_to_patch: np.ndarray  # (2, 3)

    @classmethod
    def cut(cls, rgb: np.ndarray, crop: np.ndarray, matrix: np.ndarray, corners: np.ndarray,
            geometry: MouthGeometry = MouthGeometry()) -> "ReferenceMouth | None":
        """From the reference photo, its aligned crop and the photo -> crop matrix; None when its
        lips are not clearly found (a moustache, lips hardly redder than the skin): pasted, such a
        mouth comes out a pale ghost. A closed smile is taken: the renderer's motion alone hardly
        lifts a face's own lips, the reference's lips do."""
        region = mouth_region(crop.shape[0], corners, geometry)
        red = redness(crop)
        inside = red[region > 0.5]
        # The reddest twentieth of the region against its median: the lips against the skin.
        if inside.size == 0 or np.percentile(inside, 95) - np.median(inside) < MIN_LIP_CONTRAST:
            return None
        to_photo = invert(matrix)
        x0, y0, x1, y1 = _photo_box(region > 0.02, to_photo, rgb.shape, crop_margin=2, photo_margin=2)
        crop_to_patch = to_photo.copy()
        crop_to_patch[:, 2] -= (x0, y0)
        return cls(crop, np.asarray(corners, np.float64), region, lip_pixels(red, corners, region),
                   lip_weight(red, region), np.ascontiguousarray(rgb[y0:y1, x0:x1, :3]), crop_to_patch)


def _photo_box(mask: np.ndarray, to_photo: np.ndarray, shape: tuple[int, ...], crop_margin: int,
               photo_margin: int) -> tuple[int, int, int, int]:
    """The photo pixels (x0, y0, x1, y1, clipped to the photo) covering a nonempty crop-space mask's
    bounding box grown by `crop_margin` crop pixels, mapped by `to_photo` and grown by
    `photo_margin` photo pixels."""
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min() - crop_margin, ys.min() - crop_margin], [xs.max() + crop_margin, ys.min() - crop_margin],
                    [xs.min() - crop_margin, ys.max() + crop_margin], [xs.max() + crop_margin, ys.max() + crop_margin]],
                   np.float64)
    seen = transform_points(box, to_photo)
    h, w = shape[:2]
    x0, y0 = np.clip(np.floor(seen.min(0)).astype(int) - photo_margin, 0, [w, h])
    x1, y1 = np.clip(np.ceil(seen.max(0)).astype(int) + 1 + photo_margin, 0, [w, h])
    return int(x0), int(y0), int(x1), int(y1)


@dataclass(frozen=True)
class MouthLayer:
    """A reference's mouth blended into one face, in crop space: its weight, and the smooth
    correction (Poisson's membrane) that gives the reference's pixels the face's tone."""
    mouth: ReferenceMouth
    weight: np.ndarray  # (S, S) 0..1
    correction: np.ndarray  # (S, S, 3) added to the reference's pixels

    def on_crop(self, rendered: np.ndarray) -> np.ndarray:
        """The layer over a rendered crop (uint8), at the crop's resolution (for sheets)."""
        w = self.weight[..., None]
        value = np.asarray(self.mouth.crop, np.float32) + self.correction
        return np.clip(np.rint(rendered * (1 - w) + value * w), 0, 255).astype(np.uint8)

    def paste(self, image: np.ndarray, matrix: np.ndarray) -> None:
        """Into the photo (uint8, in place; `matrix` maps it to this face's crop): each photo
        pixel under the layer reads the reference photo where its crop position lies there."""
        touched = self.weight > 1e-3
        if not touched.any():
            return
        x0, y0, x1, y1 = _photo_box(touched, invert(matrix), image.shape, crop_margin=1, photo_margin=0)
        if x1 <= x0 or y1 <= y0:
            return
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        cx = matrix[0, 0] * px + matrix[0, 1] * py + matrix[0, 2]
        cy = matrix[1, 0] * px + matrix[1, 1] * py + matrix[1, 2]
        weight = sample(self.weight, cx, cy, "constant")[..., None]
        a = self.mouth.crop_to_patch
        value = np.moveaxis(sample_cubic(self.mouth.patch, a[0, 0] * cx + a[0, 1] * cy + a[0, 2],
                                         a[1, 0] * cx + a[1, 1] * cy + a[1, 2]), 0, -1)
        value += np.moveaxis(sample(self.correction, cx, cy, "replicate"), 0, -1)
        region = image[y0:y1, x0:x1, :3].astype(np.float32)
        image[y0:y1, x0:x1, :3] = cast(region * (1 - weight) + value * weight, image.dtype)


def reference_mouth_layer(crop: np.ndarray, motion: np.ndarray, mask: np.ndarray, fill: np.ndarray,
                          mouth: ReferenceMouth) -> MouthLayer | None:
    """The reference's mouth blended into one face's rendering (crop space, as `render_face`
    takes it; both crops aligned alike): None when the mouth lies at the crop's edge."""
    if mouth.crop.shape != crop.shape:
        raise ValueError(f"reference crop {mouth.crop.shape} does not match the face's {crop.shape}")
    size = crop.shape[0]
    region = mouth.region
    hard = region > 0.02
    ys, xs = np.nonzero(hard)
    if xs.size == 0 or xs.min() < 1 or ys.min() < 1 or xs.max() > size - 2 or ys.max() > size - 2:
        return None  # nothing around it to blend it into
    reference = np.asarray(mouth.crop, np.float32)
    blended = poisson_blend(reference, render_face(crop, motion, mask, fill, IDENTITY), hard)
    # The blend matches the skin at the border, not the lips: a darker reference's lips would
    # come out pale on a lighter face. They take the face's own lip colour, keeping their texture.
    theirs, own = mouth.lips, lip_pixels(redness(crop), mouth.corners, region)
    if theirs.sum() >= MIN_LIP_PIXELS and own.sum() >= MIN_LIP_PIXELS:
        shift = np.asarray(crop, np.float32)[own].mean(0) - blended[theirs].mean(0)
        # Applied by how lip-like each pixel is (its redness against the region's skin, smoothed),
        # so both lips shift whole and no speck of reddish skin stands out.
        blended += mouth.lipness[..., None] * shift
    return MouthLayer(mouth, (region * hard).astype(np.float32), (blended - reference).astype(np.float32))


def _redness_z(red: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Redness (LAB a*, as imageops.redness gives it) in standard deviations above the mouth
    region's median; None for an empty region."""
    values = red[region > 0.5]
    if values.size == 0:
        return None
    return (red - np.median(values)) / (values.std() + 1e-3)


def lip_pixels(red: np.ndarray, corners: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(S, S) bool: the lips in the mouth region, from a crop's redness: pixels clearly redder
    than the rest of it, in blobs around the line between the corners (reddish skin above the
    upper lip or on the chin lies further off), small specks left out."""
    inside = region > 0.5
    z = _redness_z(red, region)
    if z is None:
        return inside
    lip = close(inside & (z > 1.0))
    labels, stats = components(lip)
    left, right = np.asarray(corners, np.float64)
    width = float(np.linalg.norm(right - left))
    line_y = (left[1] + right[1]) / 2
    largest = max((area for *_, area in stats), default=0)
    keep = np.zeros_like(lip)
    for k, (*_, area) in enumerate(stats, 1):
        blob = labels == k
        if area >= 0.15 * largest and abs(float(np.nonzero(blob)[0].mean()) - line_y) < 0.22 * width:
            keep |= blob
    return keep


def lip_weight(red: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(S, S) float 0..1: how lip-like each pixel of the mouth region is, from a crop's redness
    between the region's median (skin, 0) and a standard deviation above it (lip, 1), smoothed;
    0 outside the region."""
    z = _redness_z(red, region)
    if z is None:
        return np.zeros(region.shape, np.float32)
    return (blur(np.clip(z, 0, 1), 1.5) * np.clip(region, 0, 1)).astype(np.float32)
