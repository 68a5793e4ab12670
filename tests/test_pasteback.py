"""Paste-back: an unedited face comes back (nearly) unchanged, pixels outside the mask come back
byte for byte, and a change reaches only the masked face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoic_cli.face.alignment import MODEL_SIZE, align_face, alignment_matrix, crop_scale, template_points
from stoic_cli.render.pasteback import face_mask, grey_like, paste_crop, render_face
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


def rendering(size: int, shift=(0.0, 0.0), mask: float = 0.0, fill: float = 0.0):
    """A renderer's output for one face: constant motion, mask and fill colour."""
    motion = np.zeros((size, size, 2), np.float32) + np.float32(shift)
    return motion, np.full((size, size), mask, np.float32), np.full((size, size, 3), fill, np.float32)


@pytest.mark.parametrize("name", ["005_neutral.jpg", "094_smiling.jpg"])
def test_an_empty_rendering_is_byte_identical(london_faces, london_rgb, name):
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    for size in (256, native_size(lm)):
        _, matrix = align_face(img, lm, size)
        out = render_face(img, *rendering(size), matrix)
        assert out is not img
        assert np.array_equal(out, img)


def test_motion_moves_the_photos_own_pixels_inside_the_face_only(london_faces, london_rgb):
    """A motion of 2 % of the side: inside the face each photo pixel comes from where the motion
    says (in photo pixels: the crop shift divided by the crop's scale), outside it nothing moves."""
    name = "038_neutral.jpg"
    img = london_rgb[name]
    _, matrix = align_face(img, london_faces[name][0].landmarks, 256)
    out = render_face(img, *rendering(256, shift=(0.0, 0.02)), matrix)
    m = photo_mask(face_mask(256), matrix, img.shape)
    assert np.array_equal(out[m == 0], img[m == 0])
    # The alignment barely rotates these portraits: the crop's y is the photo's y, scaled.
    dy = 0.02 * 256 / crop_scale(matrix)
    core = m > 0.999
    ys, xs = np.nonzero(core)
    src = cv2.remap(img, xs.astype(np.float32)[None], (ys + dy).astype(np.float32)[None], cv2.INTER_LINEAR)[0]
    assert np.abs(out[ys, xs].astype(int) - src.astype(int)).mean() < 4
    assert np.abs(out[core].astype(int) - img[core].astype(int)).mean() > 2  # it did move


def test_fill_replaces_the_photo_only_under_its_mask(london_faces, london_rgb):
    name = "011_neutral.jpg"
    img = london_rgb[name]
    _, matrix = align_face(img, london_faces[name][0].landmarks, 256)
    motion, _, fill = rendering(256, fill=0.0)
    mask = np.zeros((256, 256), np.float32)
    mask[150:190, 90:170] = 1.0  # a band over the mouth
    out = render_face(img, motion, mask, fill, matrix)
    m = photo_mask(mask * face_mask(256), matrix, img.shape)
    assert np.array_equal(out[m == 0], img[m == 0])
    assert out[m > 0.999].max() <= 1  # the (black) fill replaces the photo there


def test_face_outside_the_photo_changes_nothing(london_rgb):
    img = london_rgb["025_neutral.jpg"]
    lm = template_points(60) + 5000  # a face far outside the picture
    _, matrix = align_face(img, lm, 128)
    assert np.array_equal(render_face(img, *rendering(128, shift=(0.05, 0.0), mask=1.0, fill=50.0), matrix), img)
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


def test_editing_in_place_gives_the_same_photo_as_editing_a_copy(shipped_models, detector, london_rgb):
    from stoic_cli.edit.edits import Neutralize
    from stoic_cli.face.images import Photo
    from stoic_cli.pipeline import Pipeline
    from stoic_cli.runtime.models import FaceModels

    pipe = Pipeline(FaceModels(shipped_models, device="cpu"), detector)
    original = london_rgb["094_smiling.jpg"]
    photo = Photo(original.copy())
    copied = pipe.run(photo, Neutralize())
    assert np.array_equal(photo.rgb, original)  # not in place: the input is untouched
    in_place = pipe.run(photo, Neutralize(), inplace=True)
    assert in_place.rgb is photo.rgb and np.array_equal(in_place.rgb, copied.rgb)
    assert not np.array_equal(copied.rgb, original)
    assert copied.faces[0].edited_crop.shape == copied.faces[0].crop.shape


def test_a_greyscale_photo_gets_a_grey_fill(london_rgb):
    photo = london_rgb[LONDON_NAMES[0]]
    h, w = photo.shape[0] // 2, photo.shape[1] // 2
    colour = np.ascontiguousarray(photo[h - 128:h + 128, w - 128:w + 128])  # the face
    grey = np.repeat(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
    fill = np.zeros((256, 256, 3), np.float32)
    fill[..., 0], fill[..., 1], fill[..., 2] = 200, 120, 90  # skin-coloured
    assert grey_like(colour, fill) is fill
    made = grey_like(grey, fill)
    assert np.ptp(made, axis=-1).max() < 1e-3
    assert abs(float(made[0, 0, 0]) - (0.299 * 200 + 0.587 * 120 + 0.114 * 90)) < 0.5


def test_settled_motion_keeps_big_moves_and_stills_small_ones():
    from stoic_cli.render.pasteback import settled

    motion = np.zeros((4, 4, 2), np.float32)
    motion[0, 0] = (0.5 / 256, 0)  # half a pixel: the renderer's noise
    motion[1, 1] = (3 / 256, 4 / 256)  # five pixels
    out = settled(motion, 1 / 256)
    assert not out[0, 0].any() and not out[2:].any()
    assert np.allclose(out[1, 1], np.array([3, 4]) / 256 * (4 / 5)), "one pixel shorter, same direction"
    assert settled(motion, 0) is motion


def test_a_jump_in_the_flow_is_read_from_one_side_never_between():
    """Closed lips meet where the vertical flow jumps over the teeth's rows. A photo at three
    times the crop's resolution has photo pixels between two crop rows; reading an interpolated
    flow there would read the skipped rows (a white smear between the lips)."""
    size, scale = 256, 3
    photo = np.full((size * scale, size * scale, 3), 90, np.uint8)
    # The rows the jump skips ("teeth"): the jump between crop rows 127 and 128 is read at its
    # middle, 127.5, so crop rows 127.5 - 137.5 are skipped (a photo pixel's margin left for the
    # bicubic reading's taps).
    photo[int(127.5 * scale) + 1:int(137.5 * scale) - 1] = 250
    matrix = np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]], np.float64)
    motion = np.zeros((size, size, 2), np.float32)
    motion[128:, :, 1] = 10 / size  # from crop row 128 on, read ten rows further down
    out = render_face(photo, motion, np.zeros((size, size), np.float32), np.zeros((size, size, 3), np.float32), matrix)
    middle = out[100 * scale:160 * scale, 128 * scale]
    assert middle.max() < 150, "no pixel near the jump reads the skipped rows"
    smooth = motion.copy()
    # A steep stretch (1.7 crop pixels a row, as steep as the renderer's own motion gets) is
    # not a jump: it is read smoothly, every photo row a little further down than the last
    # (read as steps, it would stay put within each crop row, then leap).
    smooth[..., 1] = np.clip((np.arange(size)[:, None] - 125) / 6, 0, 1) * 10 / size
    ramp = np.broadcast_to((np.arange(size * scale) % 256)[:, None, None], photo.shape).astype(np.uint8)
    stretched = render_face(ramp, smooth, np.zeros((size, size), np.float32), np.zeros((size, size, 3), np.float32), matrix)
    steps = np.diff(stretched[370:420, 128 * scale, 0].astype(int))
    assert steps.min() >= 1 and steps.max() <= 4, steps
