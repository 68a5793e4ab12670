"""A transfer's mouth from the reference photo (stoic_cli.render.reference_mouth): cut around
its corners, blended in the face's tone, pasted at the output photo's resolution."""
import numpy as np

from stoic_cli.render.reference_mouth import ReferenceMouth, mouth_region, reference_mouth_layer
from tests.test_lips import SIZE, mouth

CORNERS = np.array([[0.40 * SIZE, 0.68 * SIZE], [0.60 * SIZE, 0.68 * SIZE]])
HALF = np.array([[0.5, 0, 0], [0, 0.5, 0]], np.float64)  # a photo twice the crop's size -> crop


def upscaled(crop: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(crop, 2, 0), 2, 1)


def still_face(tone: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A plain crop of skin at `tone` and an empty rendering of it."""
    crop = np.full((SIZE, SIZE, 3), (tone, tone - 40, tone - 70), np.uint8)
    return crop, np.zeros((SIZE, SIZE, 2), np.float32), np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE, 3), np.float32)


def test_the_region_covers_the_lips_between_the_corners_only():
    region = mouth_region(SIZE, CORNERS)
    y, x0, x1 = int(0.68 * SIZE), int(0.40 * SIZE), int(0.60 * SIZE)
    assert region[y, x0:x1].min() > 0.9 and region[y - 6:y + 7, SIZE // 2].min() > 0.9
    assert region[: int(0.58 * SIZE)].max() < 0.01 and region[int(0.8 * SIZE):].max() < 0.01
    assert region[:, : int(0.34 * SIZE)].max() < 0.01


def test_the_mouth_is_cut_from_the_reference_photo():
    ref = ReferenceMouth.cut(upscaled(mouth(12)), mouth(12), HALF, CORNERS)
    # The patch is the photo's own pixels: crop pixel (x, y) is photo pixel (2x, 2y).
    assert ref.patch.shape[0] > 2 * 20 and np.allclose(ref.crop_to_patch[:, :2], 2 * np.eye(2))


def test_the_mouth_takes_the_faces_tone_and_shows_the_references_teeth():
    open_mouth = mouth(12)
    ref = ReferenceMouth.cut(upscaled(open_mouth), open_mouth, HALF, CORNERS)
    crop, motion, mask, fill = still_face(150)  # darker skin than the reference's
    layer = reference_mouth_layer(crop, motion, mask, fill, ref)
    out = layer.on_crop(crop).astype(np.float32)
    y = int(0.68 * SIZE)
    assert out[y - 3, SIZE // 2].sum() > crop[y, SIZE // 2].astype(np.float32).sum() + 150, "teeth, brighter than skin"
    assert np.array_equal(out[: int(0.58 * SIZE)], crop[: int(0.58 * SIZE)]), "nothing changes away from the mouth"
    edge = (layer.weight > 0.05) & (layer.weight < 0.3)
    assert np.abs(out[edge] - crop[edge]).mean() < 6, "at the mask's edge the face's own tone"


def test_the_paste_reads_the_reference_photo_at_the_output_resolution():
    open_mouth = mouth(12, seed=4)
    photo_ref = upscaled(open_mouth)
    photo_ref[1::2, 1::2] = 255 - photo_ref[1::2, 1::2] // 4  # detail only the photo holds, not the crop
    ref = ReferenceMouth.cut(photo_ref, open_mouth, HALF, CORNERS)
    crop, motion, mask, fill = still_face(190)
    layer = reference_mouth_layer(crop, motion, mask, fill, ref)
    photo = upscaled(crop)
    before = photo.copy()
    layer.paste(photo, HALF)
    changed = np.any(photo != before, axis=-1)
    assert changed.any() and not changed[: int(2 * 0.58 * SIZE)].any() and not changed[int(2 * 0.8 * SIZE):].any()
    y, x = 2 * int(0.68 * SIZE) - 4, SIZE
    patch = photo[y - 8:y + 8, x - 8:x + 8].astype(np.float32)
    # Neighbouring photo pixels alternate as the reference photo's do: its resolution, not the crop's.
    assert np.abs(np.diff(patch, axis=1)).mean() > 20


def test_the_references_lips_take_the_faces_own_lip_colour():
    open_mouth = mouth(12, seed=5)  # red lips (170, 60, 70)
    ref = ReferenceMouth.cut(upscaled(open_mouth), open_mouth, HALF, CORNERS)
    face = mouth(0, seed=6).astype(np.float32)
    lips = np.abs(face - np.array((170, 60, 70))).sum(-1) < 40
    face[lips] = face[lips] * 0.6 + np.array((120, 30, 60)) * 0.4  # the face's own, darker and bluer lips
    face = face.astype(np.uint8)
    motion, mask, fill = np.zeros((SIZE, SIZE, 2), np.float32), np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE, 3), np.float32)
    layer = reference_mouth_layer(face, motion, mask, fill, ref)
    out = open_mouth.astype(np.float32) + layer.correction  # what the layer pastes, before its feather
    ref_lips = np.abs(open_mouth.astype(np.float32) - np.array((170, 60, 70))).sum(-1) < 40
    own_colour = face[lips].astype(np.float32).mean(0)
    before = np.abs(open_mouth[ref_lips].astype(np.float32).mean(0) - own_colour)
    after = np.abs(out[ref_lips].mean(0) - own_colour)
    assert (after < 0.35 * before).all(), (after, before)  # most of the way to the face's own


def test_a_mouth_without_clear_lips_is_not_taken():
    pale = mouth(12).astype(np.float32)
    lips = np.abs(pale - np.array((170, 60, 70))).sum(-1) < 40
    pale[lips] = pale[lips] * 0.15 + np.array((200, 150, 120)) * 0.85  # lips the skin's colour
    assert ReferenceMouth.cut(upscaled(pale.astype(np.uint8)), pale.astype(np.uint8), HALF, CORNERS) is None
