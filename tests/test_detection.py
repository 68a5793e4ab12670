"""MTCNN detection on the London photos: one face each, with sane landmarks; none on a blank
image; a face too small to edit is recognised as such."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoic_cli.face.detection import MIN_EYE_DISTANCE, Face, split_small_faces
from tests.conftest import LONDON_NAMES


@pytest.mark.parametrize("name", LONDON_NAMES)
def test_one_face_per_fixture(london_faces, london_rgb, name):
    faces = london_faces[name]
    assert len(faces) == 1, f"{name}: {len(faces)} faces"
    face = faces[0]
    h, w = london_rgb[name].shape[:2]
    assert face.score > 0.95
    x1, y1, x2, y2 = face.box
    assert -5 <= x1 < x2 <= w + 5 and -5 <= y1 < y2 <= h + 5
    # Studio portraits: the face is a big part of the frame, roughly centred.
    assert 0.15 * w < x2 - x1 < 0.8 * w
    assert abs((x1 + x2) / 2 - w / 2) < 0.2 * w
    lm = face.landmarks
    assert lm.shape == (5, 2)
    inside = (lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)
    assert inside.all(), "landmarks outside the face box"
    left_eye, right_eye, nose, mouth_l, mouth_r = lm
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]  # image left first
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])  # eyes, nose, mouth
    assert 0.1 * w < face.eye_distance < 0.3 * w
    assert split_small_faces(faces) == (faces, [])


def test_detection_scales_back_from_a_downscaled_copy(detector, london_rgb, london_faces):
    """Photos larger than the detection size are detected on a small copy: landmarks must come
    back in the photo's own pixels."""
    name = "011_smiling.jpg"
    big = cv2.resize(london_rgb[name], (800, 800), interpolation=cv2.INTER_CUBIC)
    faces = detector.detect(big, max_side=400)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].landmarks, london_faces[name][0].landmarks * 2, atol=3)


def test_blank_image_has_no_face(detector):
    assert detector.detect(np.full((400, 400, 3), 180, np.uint8)) == []


def test_two_faces_are_both_found_largest_first(detector, london_rgb):
    a = london_rgb["025_neutral.jpg"]
    b = cv2.resize(london_rgb["094_smiling.jpg"], (280, 280), interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 700, 3), 200, np.uint8)
    canvas[:, :400] = a
    canvas[60:340, 410:690] = b
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box[2] < 400 < faces[1].box[0]


def test_tiny_face_is_reported_too_small(detector, london_rgb):
    tiny = cv2.resize(london_rgb["011_neutral.jpg"], (60, 60), interpolation=cv2.INTER_AREA)
    canvas = np.full((600, 600, 3), 128, np.uint8)
    canvas[270:330, 270:330] = tiny
    faces = detector.detect(canvas)
    assert len(faces) == 1, "MTCNN should still see the face"
    assert faces[0].eye_distance < MIN_EYE_DISTANCE
    usable, small = split_small_faces(faces)
    assert usable == [] and small == faces
    # The limit is a parameter: a lower one accepts the same face.
    usable, small = split_small_faces(faces, min_eye_distance=faces[0].eye_distance - 1)
    assert usable == faces and small == []


def test_split_small_faces_keeps_order_and_limit():
    def face(eyes: float) -> Face:
        lm = np.array([[0, 0], [eyes, 0], [eyes / 2, 5], [0, 9], [eyes, 9]], float)
        return Face(box=np.array([0, 0, 10, 10.0]), score=0.99, landmarks=lm)

    faces = [face(40), face(19.9), face(20), face(5)]
    usable, small = split_small_faces(faces)
    assert [f.eye_distance for f in usable] == [40, 20]
    assert [f.eye_distance for f in small] == [19.9, 5]


def test_face_to_dict_is_json_ready():
    import json

    f = Face(box=np.array([1.234, 2, 3, 4]), score=np.float32(0.987654),
             landmarks=np.arange(10, dtype=np.float64).reshape(5, 2))
    d = json.loads(json.dumps(f.to_dict()))
    assert d["box"] == [1.2, 2.0, 3.0, 4.0]
    assert d["score"] == 0.9877
    assert len(d["landmarks"]) == 5 and d["landmarks"][1] == [2.0, 3.0]
