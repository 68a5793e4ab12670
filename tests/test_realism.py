"""stoic_cli.evaluation.realism: mouth landmarks and patches on the London photos, mouth
sharpness, the by-person detectability AUC and its controls, and the one-call report.
The landmark and AUC tests need the eval extra (dlib, its 68-point model, scikit-learn)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from stoic_cli.evaluation import realism
from stoic_cli.evaluation.realism import (PATCH_SIZE, RealismPair, age_band, blur, detectability_auc,
                                          detectability_controls, mouth_patch, mouth_sharpness, person_folds,
                                          realism_markdown, realism_report)
from stoic_cli.evaluation.report import by_group

from .conftest import LONDON, LONDON_NAMES

PEOPLE = ("005", "011", "025", "038", "042", "094")


def _extra_missing() -> str | None:
    try:
        import dlib  # noqa: F401
        import face_recognition_models as frm
        import sklearn  # noqa: F401
        if not Path(frm.pose_predictor_model_location()).exists():
            return "dlib's 68-point model file is missing"
    except ImportError as exc:
        return f"eval extra not installed: {exc}"
    return None


needs_extra = pytest.mark.skipif(_extra_missing() is not None, reason=str(_extra_missing()))


@pytest.fixture(scope="module")
def judge():
    return realism.MouthJudge()


@pytest.fixture(scope="module")
def marks(judge, london_rgb) -> dict[str, np.ndarray]:
    found = {name: judge.landmarks(rgb) for name, rgb in london_rgb.items()}
    assert all(m is not None for m in found.values()), [n for n, m in found.items() if m is None]
    return found


def _eyes(m: np.ndarray) -> float:
    return float(np.linalg.norm(m[42:48].mean(0) - m[36:42].mean(0)))


def _augmented(london_rgb, marks, transform=None):
    """Nine patches per photo (landmarks shifted by up to 3 px), with their people."""
    patches, people = [], []
    for name in LONDON_NAMES:
        rgb = london_rgb[name] if transform is None else transform(london_rgb[name])
        for dx in (-3, 0, 3):
            for dy in (-3, 0, 3):
                patches.append(mouth_patch(rgb, marks[name] + (dx, dy)))
                people.append(name[:3])
    return patches, people


# --------------------------------------------------------------------------- landmarks and patches

@needs_extra
def test_landmarks_and_patch_sit_on_the_mouth(judge, marks, london_rgb):
    from stoic_cli.evaluation.judges import dlib_face_boxes

    for name, m in marks.items():
        assert m.shape == (68, 2)
        x1, y1, x2, y2 = dlib_face_boxes(judge.detector, london_rgb[name])[0]
        cx, cy = m[48:68].mean(0)
        assert 0.4 < (cx - x1) / (x2 - x1) < 0.6 and 0.6 < (cy - y1) / (y2 - y1) < 0.9, name
        assert cy > m[36:48, 1].max() + 0.8 * _eyes(m), name  # well below the eyes
        # The lips' seam (or the open mouth) is the patch's darkest row, near its middle.
        rows = mouth_patch(london_rgb[name], m).astype(float).mean(1)
        assert 0.35 * PATCH_SIZE[1] < rows.argmin() < 0.6 * PATCH_SIZE[1], name
        assert rows.min() < rows[:5].mean() - 10, name
    # Smiling widens the mouth (corners 48 and 54) relative to the eyes.
    width = {n: np.linalg.norm(m[54] - m[48]) / _eyes(m) for n, m in marks.items()}
    gains = [width[f"{p}_smiling.jpg"] - width[f"{p}_neutral.jpg"] for p in PEOPLE]
    assert min(gains) > 0 and np.mean(gains) > 0.08, gains


@needs_extra
def test_box_picks_the_face(judge, london_rgb):
    left, right = london_rgb["005_smiling.jpg"], london_rgb["094_smiling.jpg"]
    small = cv2.resize(right, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((400, 700, 3), np.uint8)
    canvas[:, :400], canvas[50:330, 410:690] = left, small
    assert judge.landmarks(canvas)[48:68, 0].mean() < 400  # largest face by default
    assert judge.landmarks(canvas, box=(410, 50, 690, 330))[48:68, 0].mean() > 410
    assert judge.landmarks(np.zeros((200, 200, 3), np.uint8)) is None


def test_patch_size_resolution_and_edges():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 240, 3), dtype=np.uint8), (0, 0), 2)
    marks = np.zeros((68, 2))
    marks[36:42], marks[42:48], marks[48:68] = (90, 100), (150, 100), (120, 160)
    patch = mouth_patch(image, marks)
    assert patch.shape == (PATCH_SIZE[1], PATCH_SIZE[0]) and patch.dtype == np.uint8
    # The same face at half the resolution gives nearly the same patch.
    half = mouth_patch(cv2.resize(image, (120, 120), interpolation=cv2.INTER_AREA), marks / 2)
    assert np.corrcoef(patch.ravel(), half.ravel())[0, 1] > 0.9
    # Off the left edge: the image's first column is repeated, not black.
    ramp = np.tile(np.linspace(60, 200, 240).astype(np.uint8), (240, 1))
    edge = mouth_patch(np.dstack([ramp] * 3), marks - (110, 0))
    assert edge.shape == patch.shape and edge[:, 0].min() >= 59 and edge[:, 0].max() <= 61
    with pytest.raises(ValueError):
        mouth_patch(image, np.zeros((68, 2)))


def test_blur_lowers_mouth_sharpness():
    rng = np.random.default_rng(1)
    patch = cv2.resize(rng.integers(0, 256, (28, 48), dtype=np.uint8), PATCH_SIZE)
    assert mouth_sharpness(cv2.GaussianBlur(patch, (0, 0), 1.5)) < 0.5 * mouth_sharpness(patch)


@needs_extra
def test_blur_lowers_sharpness_of_real_mouths(london_rgb, marks):
    for name, m in marks.items():
        sharp = mouth_sharpness(mouth_patch(london_rgb[name], m))
        assert mouth_sharpness(mouth_patch(blur(london_rgb[name]), m)) < 0.5 * sharp, name


# --------------------------------------------------------------------------- detectability

@needs_extra
def test_blurred_mouths_are_detected_and_random_halves_are_not(london_rgb, marks):
    real, people = _augmented(london_rgb, marks)
    blurred, _ = _augmented(london_rgb, marks, blur)
    assert detectability_auc(real, people, blurred, people) > 0.9
    # Two random halves of the same real patches, split within each person.
    rng = np.random.default_rng(0)
    a, b = [], []
    for p in PEOPLE:
        idx = rng.permutation([i for i, q in enumerate(people) if q == p])
        a += list(idx[: len(idx) // 2])
        b += list(idx[len(idx) // 2:])
    auc = detectability_auc([real[i] for i in a], [people[i] for i in a], [real[i] for i in b], [people[i] for i in b])
    assert abs(auc - 0.5) < 0.25, auc


def test_person_folds_keep_each_person_on_one_side():
    people = [f"p{i % 7}" for i in range(70)]
    folds = person_folds(people, folds=5)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(70))  # every sample scored once
    for train, test in folds:
        assert not {people[i] for i in train} & {people[i] for i in test}
    assert len(person_folds(people[:14], folds=5)) == 5 and len(person_folds(["a", "b", "a"], folds=5)) == 2


def test_auc_cannot_be_won_by_recognising_people():
    """Each person's 'fake' patches share one texture and 'real' ones another, so a model that
    has seen the person wins; one that has not can only guess."""
    rng = np.random.default_rng(0)
    real, fake, people = [], [], []
    for person in range(8):
        textures = [cv2.resize(rng.integers(0, 256, (14, 24), dtype=np.uint8), PATCH_SIZE) for _ in range(2)]
        for _ in range(6):
            real.append(np.clip(textures[0] + rng.normal(0, 8, textures[0].shape), 0, 255).astype(np.uint8))
            fake.append(np.clip(textures[1] + rng.normal(0, 8, textures[1].shape), 0, 255).astype(np.uint8))
            people.append(f"p{person}")
    assert abs(detectability_auc(real, people, fake, people) - 0.5) < 0.25
    # The same data with every sample its own "person" leaks people into training.
    own = [f"s{i}" for i in range(len(real))]
    assert detectability_auc(real, own, fake, [f"t{i}" for i in range(len(fake))]) > 0.9


@needs_extra
def test_controls_compare_copies_with_the_originals(judge, london_rgb, marks, monkeypatch):
    rgbs = [london_rgb[n] for n in LONDON_NAMES]
    people = [n[:3] for n in LONDON_NAMES]
    patches = [mouth_patch(london_rgb[n], marks[n]) for n in LONDON_NAMES]
    # An unchanged copy must be indistinguishable: exactly tied scores.
    monkeypatch.setattr(realism, "CONTROL_TRANSFORMS", {"same": lambda rgb: rgb.copy()})
    assert detectability_controls(rgbs, people, judge, real_patches=patches) == {"same": 0.5}


# --------------------------------------------------------------------------- groups and report

def test_age_band_and_by_group():
    assert [age_band(a) for a in (5, 19.9, 20, 39, 40, 59, 60, 88, None, "x")] == \
        ["<20", "<20", "20-39", "20-39", "40-59", "40-59", "60+", "60+", "unknown", "unknown"]
    rows = [{"gender": "f", "v": 1}, {"gender": "m", "v": 3}, {"gender": "f", "v": 5}, {"v": 7}]
    assert by_group(rows, "gender", lambda g: sum(r["v"] for r in g)) == {"f": 6, "m": 3, "unknown": 7}
    assert by_group(rows, lambda r: r["v"] > 2, len) == {"False": 1, "True": 3}


@needs_extra
def test_report_on_blurred_outputs(judge, london_rgb):
    with open(LONDON / "info.csv", newline="") as fh:
        info = {r["face_id"]: r for r in csv.DictReader(fh)}
    pairs = []
    for name in LONDON_NAMES:
        labels = {"gender": info[name[:3]]["face_gender"], "age": int(info[name[:3]]["face_age"])}
        pairs.append(RealismPair(blur(london_rgb[name], 2.0), london_rgb[name], name[:3], labels))
    pairs.append((np.full((300, 300, 3), 128, np.uint8), london_rgb["005_smiling.jpg"], "005"))
    report = realism_report(pairs, judge)

    assert report["counts"] == {"pairs": 13, "used": 12, "skipped": 1, "people": 6, "folds": 5}
    assert report["skipped"] == [{"index": 12, "person": "005", "missing": ["output"]}]
    assert all(r["sharpness_ratio"] < 0.5 for r in report["rows"])
    assert report["sharpness_ratio"]["median"] < 0.5
    assert report["detectability_auc"] > 0.8
    assert report["controls"]["jpeg70"] < 0.75 < report["controls"]["blur1.5"]
    assert set(report["groups"]["gender"]) == {"female", "male"}
    assert report["groups"]["age"]["40-59"]["pairs"] == 2 and report["groups"]["age"]["20-39"]["pairs"] == 10
    text = realism_markdown(report)
    assert "JPEG quality 70" in text and "sigma 1.5" in text and "0.5 = indistinguishable" in text
    assert "| 12 / 1 |" in text
