"""5-point alignment: every face lands on the template, whatever its size, tilt or position."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoic_cli.face.alignment import (MODEL_SIZE, TEMPLATE, align_face, alignment_matrix, crop_scale, invert,
                                 similarity_transform, template_points, transform_points)
from tests.conftest import LONDON_NAMES

EYES = slice(0, 2)


def eye_error(landmarks: np.ndarray, matrix: np.ndarray, size: int = MODEL_SIZE) -> float:
    """Largest distance in crop pixels between a transformed eye and its template position."""
    moved = transform_points(landmarks, matrix)[EYES]
    return float(np.linalg.norm(moved - template_points(size)[EYES], axis=1).max())


def angle_deg(matrix: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (5, 2))
    a, s, t = np.radians(-23.0), 0.37, np.array([12.5, -40.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst, np.array([3, 3, 1, 0.5, 0.5]))
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    np.testing.assert_allclose(crop_scale(m), s)


def test_similarity_transform_never_mirrors():
    src = TEMPLATE * 100
    mirrored = src * np.array([-1, 1])  # left and right swapped
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("name", LONDON_NAMES)
def test_eyes_land_on_the_template(london_faces, london_rgb, name):
    lm = london_faces[name][0].landmarks
    crop, matrix = align_face(london_rgb[name], lm)
    assert crop.shape == (MODEL_SIZE, MODEL_SIZE, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(matrix, alignment_matrix(lm))
    assert eye_error(lm, matrix) < 2.0
    # the crop really is the photo seen through that matrix: the pixel at the left eye's
    # template position is the photo's pixel under the eye (blurred by the downscale)
    ex, ey = np.rint(template_points(MODEL_SIZE)[0]).astype(int)
    px, py = np.rint(transform_points([[ex, ey]], invert(matrix))[0]).astype(int)
    photo_patch = london_rgb[name][py - 2:py + 3, px - 2:px + 3].reshape(-1, 3).mean(0)
    assert np.abs(crop[ey, ex].astype(float) - photo_patch).max() < 40


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_eyes_land_on_the_template_at_every_crop_size(london_faces, london_rgb, size):
    name = "038_smiling.jpg"
    lm = london_faces[name][0].landmarks
    crop, matrix = align_face(london_rgb[name], lm, size)
    assert crop.shape == (size, size, 3)
    assert eye_error(lm, matrix, size) < 2.0 * size / MODEL_SIZE


@pytest.mark.parametrize("name", ["011_smiling.jpg", "042_smiling.jpg"])
def test_rotated_photo_still_aligns(detector, london_faces, london_rgb, name):
    img = london_rgb[name]
    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)  # 20 degrees counter-clockwise
    tilted = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    faces = detector.detect(tilted)
    assert len(faces) == 1
    lm = faces[0].landmarks
    crop, matrix = align_face(tilted, lm)
    assert eye_error(lm, matrix) < 2.0
    # The alignment undoes the tilt ...
    upright_crop, upright_matrix = align_face(img, london_faces[name][0].landmarks)
    assert abs(angle_deg(matrix) - angle_deg(upright_matrix) - 20) < 4
    # ... so the crop shows the same face as the crop of the upright photo.
    diff = np.abs(crop.astype(float) - upright_crop).mean()
    assert diff < 12, diff
    # whereas not undoing it would not (the comparison can tell them apart)
    wrong = cv2.warpAffine(tilted, upright_matrix, (MODEL_SIZE, MODEL_SIZE))
    assert np.abs(wrong.astype(float) - upright_crop).mean() > 2 * diff


def test_face_at_the_border_is_padded(london_faces, london_rgb):
    name = "094_neutral.jpg"
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    x1, y1 = london_faces[name][0].box[:2]
    # Cut the photo so the face box touches the top-left corner.
    dx, dy = int(np.ceil(x1)), int(np.ceil(y1))
    shifted = np.ascontiguousarray(img[dy:, dx:])
    lm_shifted = lm - (dx, dy)
    crop, matrix = align_face(shifted, lm_shifted)
    assert crop.shape == (MODEL_SIZE, MODEL_SIZE, 3)
    assert eye_error(lm_shifted, matrix) < 2.0

    # Crop pixels whose source lies outside the cut photo (a wedge along the top and left)...
    yy, xx = np.mgrid[0:MODEL_SIZE, 0:MODEL_SIZE]
    src = transform_points(np.stack([xx.ravel(), yy.ravel()], 1), invert(matrix)).reshape(MODEL_SIZE, MODEL_SIZE, 2)
    outside = (src[..., 0] < -3) | (src[..., 1] < -3)
    inside = (src[..., 0] > 3) & (src[..., 1] > 3)
    assert outside.mean() > 0.1, "the test photo does not put the face near the border"
    # ... are filled from the photo's edge, not left black ...
    edge = np.concatenate([shifted[0], shifted[:, 0]])
    assert (edge.max(1) < 20).mean() < 0.01  # the photo's own edge is not black
    assert (crop[outside].max(1) < 20).mean() < 0.01
    # ... and the rest of the crop is the same as from the uncut photo.
    full_crop, _ = align_face(img, lm)
    assert np.abs(crop[inside].astype(float) - full_crop[inside]).mean() < 2


def test_face_partly_outside_the_photo_does_not_crash(london_faces, london_rgb):
    name = "025_smiling.jpg"
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    # only the right half of the face remains
    cut = int(lm[:, 0].mean())
    half = np.ascontiguousarray(img[:, cut:])
    crop, matrix = align_face(half, lm - (cut, 0))
    assert crop.shape == (MODEL_SIZE, MODEL_SIZE, 3)
    assert eye_error(lm - (cut, 0), matrix) < 2.0
