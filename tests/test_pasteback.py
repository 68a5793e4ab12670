"""Paste-back: an unedited face comes back (nearly) unchanged, pixels outside the mask come back
byte for byte, and a change reaches only the masked face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoic_cli.alignment import MODEL_SIZE, align_face, alignment_matrix, crop_scale, template_points
from stoic_cli.pasteback import apply_change, face_mask, paste_crop
from tests.conftest import LONDON_NAMES


def native_size(landmarks: np.ndarray) -> int:
    """Crop side at which one crop pixel is one photo pixel."""
    return round(MODEL_SIZE / crop_scale(alignment_matrix(landmarks, MODEL_SIZE)))


def photo_mask(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The crop-space mask seen in the photo (0 outside the crop square)."""
    h, w = shape[:2]
    return cv2.warpAffine(mask.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_coords(matrix: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Crop x, y of every photo pixel."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return (matrix[0, 0] * xx + matrix[0, 1] * yy + matrix[0, 2],
            matrix[1, 0] * xx + matrix[1, 1] * yy + matrix[1, 2])


def test_face_mask_covers_the_face_not_the_background():
    size = 128
    m = face_mask(size)
    assert m.shape == (size, size)
    assert m.min() >= 0 and m.max() <= 1 + 1e-6
    for x, y in np.rint(template_points(size)).astype(int):  # eyes, nose, mouth corners
        assert m[y, x] > 0.99
    for y, x in [(0, 0), (0, size - 1), (size - 1, 0), (size - 1, size - 1), (0, size // 2)]:
        assert m[y, x] == 0  # corners (hair, background) and the top of the head
    assert m[:, 0].max() == 0 and m[:, -1].max() == 0  # ears and cheeks' surroundings
    assert m[0].max() == 0 and m[-1].max() == 0  # fades out before the square ends
    assert 0.25 < m.mean() < 0.6


@pytest.mark.parametrize("name", LONDON_NAMES)
def test_round_trip_without_edit(london_faces, london_rgb, name):
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    size = native_size(lm)
    crop, matrix = align_face(img, lm, size)
    assert abs(crop_scale(matrix) - 1) < 0.01
    out = paste_crop(img, crop, matrix)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out is not img

    m = photo_mask(face_mask(size), matrix, img.shape)
    inside, outside = m > 0, m == 0
    assert inside.sum() > 0.1 * m.size  # the face is a real part of the photo
    change = np.abs(out.astype(int) - img.astype(int))
    assert change[inside].mean() < 2.0, change[inside].mean()
    # wherever the mask is zero the photo is copied byte for byte
    assert np.array_equal(out[outside], img[outside])

    # No seam along the crop square's edges: the mask fades to zero before the square ends, so
    # the photo is never blended with whatever lies beyond the crop.
    cx, cy = crop_coords(matrix, img.shape)
    edge_band = (cy > size - 1.5) & (cy < size + 0.5) & (cx > 0) & (cx < size)
    assert edge_band.sum() > 20
    assert change[edge_band].max() == 0


def test_paste_crop_really_pastes(london_faces, london_rgb):
    name = "042_smiling.jpg"
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    crop, matrix = align_face(img, lm, 128)
    out = paste_crop(img, np.zeros_like(crop), matrix)
    m = photo_mask(face_mask(128), matrix, img.shape)
    assert out[m > 0.999].max() <= 1  # fully masked: the (black) crop replaces the face
    assert np.array_equal(out[m == 0], img[m == 0])
    half = (m > 0.4) & (m < 0.6)
    expected = np.rint(img[half].astype(float) * (1 - m[half, None]))
    assert np.abs(out[half] - expected).max() <= 1


@pytest.mark.parametrize("name", ["005_neutral.jpg", "094_smiling.jpg"])
def test_zero_change_is_byte_identical(london_faces, london_rgb, name):
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    for size in (128, native_size(lm)):
        _, matrix = align_face(img, lm, size)
        out = apply_change(img, np.zeros((size, size, 3), np.float32), matrix)
        assert out is not img
        assert np.array_equal(out, img)


def test_constant_change_moves_only_masked_pixels(london_faces, london_rgb):
    name = "038_neutral.jpg"
    img = (london_rgb[name].astype(np.float32) * 0.7).astype(np.uint8)  # room for +40 without clipping
    lm = london_faces[name][0].landmarks
    _, matrix = align_face(img, lm, 128)
    out = apply_change(img, np.full((128, 128, 3), 40.0, np.float32), matrix)
    delta = out.astype(int) - img.astype(int)
    m = photo_mask(face_mask(128), matrix, img.shape)
    assert np.array_equal(out[m == 0], img[m == 0])
    assert (delta >= 0).all() and (delta <= 40).all()
    assert (delta[m > 0.999] >= 39).all()
    # in the feathered rim the change follows the mask (away from the crop's edge, where the
    # change itself fades out with the interpolation)
    cx, cy = crop_coords(matrix, img.shape)
    well_inside = (cx >= 0) & (cx <= 127) & (cy >= 0) & (cy <= 127)
    assert np.abs(delta - 40 * m[..., None])[well_inside].max() <= 1.5
    changed = (delta > 0).any(2)
    assert changed.sum() > 0.1 * changed.size
    assert changed.sum() <= (m > 0).sum()


def test_change_respects_a_custom_mask(london_faces, london_rgb):
    name = "011_neutral.jpg"
    img = london_rgb[name]
    _, matrix = align_face(img, london_faces[name][0].landmarks, 128)
    mask = np.zeros((128, 128), np.float32)
    mask[60:70, 40:90] = 1.0  # a band across the nose
    out = apply_change(img, np.full((128, 128, 3), -30.0, np.float32), matrix, mask)
    m = photo_mask(mask, matrix, img.shape)
    assert np.array_equal(out[m == 0], img[m == 0])
    assert (out[m > 0.999].astype(int) - img[m > 0.999] <= -29).all()


def test_face_outside_the_photo_changes_nothing(london_rgb):
    img = london_rgb["025_neutral.jpg"]
    lm = template_points(60) + 5000  # a face far outside the picture
    _, matrix = align_face(img, lm, 128)
    assert np.array_equal(apply_change(img, np.full((128, 128, 3), 50.0), matrix), img)
    assert np.array_equal(paste_crop(img, np.zeros((128, 128, 3), np.uint8), matrix), img)


def test_face_at_the_border_pastes_back(london_faces, london_rgb):
    name = "094_neutral.jpg"
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    dx = int(london_faces[name][0].box[0]) + 30  # the face's left side is cut off
    cut = np.ascontiguousarray(img[:, dx:])
    lm_cut = lm - (dx, 0)
    size = native_size(lm_cut)
    crop, matrix = align_face(cut, lm_cut, size)
    out = paste_crop(cut, crop, matrix)
    m = photo_mask(face_mask(size), matrix, cut.shape)
    assert np.array_equal(out[m == 0], cut[m == 0])
    assert np.abs(out.astype(int) - cut)[m > 0].mean() < 2.0


def test_replacement_drops_the_photos_fine_detail_only_where_asked(london_faces, london_rgb):
    """Where an edit replaces the face (weight 1) and drops detail (detail weight 1), the photo
    becomes the replacement exactly, with none of its own detail finer than the crop left (those
    would be the old teeth and lip edges); with detail weight 0 the photo's fine detail stays."""
    name = "094_smiling.jpg"  # 400 px photo, face ~2x the 128 crop: detail finer than the crop
    img = london_rgb[name]
    crop, matrix = align_face(img, london_faces[name][0].landmarks, 128)
    grey = np.full((128, 128, 3), 128.0, np.float32)
    zero = np.zeros((128, 128, 3), np.float32)
    ones, none = np.ones((128, 128), np.float32), np.zeros((128, 128), np.float32)
    m = photo_mask(face_mask(128), matrix, img.shape)
    inside = m > 0.999

    clean = apply_change(img, zero, matrix, None, grey, ones, crop, ones)
    assert np.abs(clean[inside].astype(int) - 128).max() <= 1
    assert np.array_equal(clean[m == 0], img[m == 0])

    kept = apply_change(img, zero, matrix, None, grey, ones, crop, none)
    # grey plus (photo - upsampled crop): the photo's own fine detail is still there
    assert kept[inside].astype(float).std() > 3 * clean[inside].astype(float).std() + 1
    assert np.array_equal(kept[m == 0], img[m == 0])


def test_fidelity_sets_how_much_detail_an_edit_drops():
    from stoic_cli.pipeline import blend_change

    rng = np.random.default_rng(0)
    crop = rng.uniform(60, 200, (128, 128, 3)).astype(np.float32)
    own = np.full((128, 128, 3), 120.0, np.float32)
    new = own.copy()
    new[70:90, 44:84] += 60  # a big change at the mouth
    sharp = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=1.0)
    assert sharp.detail_weight is None
    clean = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=0.0)
    half = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=0.5)
    assert clean.detail_weight[80, 64] > 0.8 and clean.detail_weight[10, 10] == 0
    assert np.allclose(half.detail_weight, 0.5 * clean.detail_weight)
    # the change is grey: the same on R, G and B (a decoder's colour drift never reaches the photo)
    assert np.allclose(sharp.add[..., 0], sharp.add[..., 1]) and np.allclose(sharp.add[..., 1], sharp.add[..., 2])


def test_detail_region_limits_where_the_models_face_is_used():
    """With a detail region (the mouth), fidelity < 1 drops the photo's detail and uses the
    model's tones and colours only inside it; elsewhere the change stays grey detail-keeping."""
    from stoic_cli.pipeline import blend_change

    rng = np.random.default_rng(1)
    crop = rng.uniform(60, 200, (128, 128, 3)).astype(np.float32)
    own = np.full((128, 128, 3), 120.0, np.float32)
    new = own.copy()
    new[80:100, 44:84] += (80, 40, 20)  # an open mouth closing: brighter and redder
    new[45:60, 40:56] += (80, 40, 20)  # the same change at the left eye
    mouth = (0.5, 0.70, 0.19, 0.13)
    edit = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=0.0, detail_region=mouth)
    whole = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=0.0)
    assert edit.detail_weight[90, 64] > 0.5 and edit.detail_weight[52, 48] < 0.01
    assert whole.detail_weight[52, 48] > 0.5
    # inside the mouth the model's colour arrives (red rises more than blue), at the eye it does not
    assert edit.add[90, 64, 0] - edit.add[90, 64, 2] > 20
    assert abs(edit.add[52, 48, 0] - edit.add[52, 48, 2]) < 1e-3
    kept = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=1.0, detail_region=mouth)
    assert kept.detail_weight is None and abs(kept.add[90, 64, 0] - kept.add[90, 64, 2]) < 1e-3
    # the low-frequency brightening reaches the middle of the mouth, not only its edges
    assert edit.add[90, 64].mean() > kept.add[90, 64].mean() + 10


def test_mouth_takes_the_models_lip_colour_not_the_old_one():
    """Inside the mouth region, where the model's face takes over, its colour detail replaces the
    photo's: the red of the old (wide-open) lips must not stay behind, and the new lips are red."""
    from stoic_cli.pipeline import blend_change

    crop = np.full((128, 128, 3), 128.0, np.float32)
    crop[94:97, 44:84] = (200, 80, 80)  # the old lower lip, red
    own = np.full((128, 128, 3), 120.0, np.float32)
    new = own.copy()
    new[80:100, 44:84] += 50  # the open mouth closes: brighter
    new[84:87, 44:84] += (40, -30, -30)  # with its lips higher up
    edit = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=0.0,
                        detail_region=(0.5, 0.70, 0.19, 0.13))
    assert edit.weight[95, 64] > 0.99 and edit.weight[85, 64] > 0.99

    def redness(img, y):
        return img[y, 64, 0] - img[y, 64, 2]

    assert redness(crop, 95) == 120
    assert redness(edit.replace, 95) < 25  # the old lip's colour is mostly gone
    assert redness(edit.replace, 85) > 35  # the model's lip colour arrived
    kept = blend_change(crop, own, new, replace_level=12, detail_level=16, fidelity=1.0,
                        detail_region=(0.5, 0.70, 0.19, 0.13))
    assert redness(kept.replace, 95) > 90  # at fidelity 1 the photo's colours all stay


def test_strengthen_mouth_pushes_only_mouths_that_move():
    """The further-decoded face is used inside the mouth region where the edit moves the mouth,
    and nowhere else: not at an eye that moves as much, not at a mouth that barely moves."""
    from stoic_cli.pipeline import strengthen_mouth

    own = np.full((2, 128, 128, 3), 120.0, np.float32)
    new = own.copy()
    new[0, 80:100, 44:84] += 40  # face 0: the mouth changes a lot
    new[0, 45:60, 40:56] += 40  # ... and so does an eye
    new[1, 80:100, 44:84] += 2  # face 1: a neutral mouth, nudged
    further = own + 2 * (new - own)
    out = strengthen_mouth(own, new, further, (0.5, 0.70, 0.19, 0.13), gate=12)
    assert out[0, 90, 64, 0] > new[0, 90, 64, 0] + 30  # pushed close to `further` (+80)
    assert out[0, 52, 48, 0] == pytest.approx(new[0, 52, 48, 0], abs=1e-3)  # the eye is as asked
    assert abs(out[1, 90, 64, 0] - new[1, 90, 64, 0]) < 0.5  # the small change stays small
    assert np.allclose(out[:, :20], new[:, :20])  # and nothing changes away from the face
