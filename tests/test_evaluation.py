"""stoic_cli.evaluation: pair parsing, sharpness and contact sheets on synthetic data, and known
answers of the neutralization report on the London fixtures (needs the eval extra)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from stoic_cli.evaluation.judges import expression_intensity, sharpness, smile
from stoic_cli.evaluation.neutralize_eval import Pair, evaluate_neutralize, evaluate_outputs, load_pairs
from stoic_cli.evaluation.report import clean, fmt, rate, stat, table
from stoic_cli.evaluation.sheets import make_sheet
from stoic_cli.face.images import load_photo

HERE = Path(__file__).resolve().parent
LONDON = next((p for p in (HERE / "data" / "london", HERE.parent.parent / "shared" / "fixtures" / "london")
               if p.is_dir()), HERE.parent.parent / "shared" / "fixtures" / "london")


def _eval_extra_missing() -> str | None:
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
        import mediapipe  # noqa: F401

        from stoic_cli.evaluation.judges import landmarker_task_path
        landmarker_task_path()
    except ImportError as exc:
        return f"eval extra not installed: {exc}"
    return None


needs_judges = pytest.mark.skipif(_eval_extra_missing() is not None, reason=str(_eval_extra_missing()))


@pytest.fixture(scope="module")
def judges():
    from stoic_cli.evaluation.judges import ExpressionJudge, IdentityJudge

    identity, expression = IdentityJudge(), ExpressionJudge()
    yield identity, expression
    expression.close()


def _london(pid: str) -> Pair:
    return Pair(LONDON / f"{pid}_smiling.jpg", LONDON / f"{pid}_neutral.jpg", pid)


# --------------------------------------------------------------------------- known answers

@needs_judges
def test_output_equal_to_true_neutral_removes_everything(judges, tmp_path):
    # 011 and 038 smile clearly in their *_smiling photo; 094 adds a third person.
    pairs = [_london(p) for p in ("011", "038", "094")]
    items = [(p, load_photo(p.neutral).rgb) for p in pairs]
    report = evaluate_outputs(items, tmp_path, *judges)

    for row in report["rows"]:
        assert row["id_out_vs_neutral"] == 0.0
        assert row["expression_removed"] == pytest.approx(1.0, abs=1e-6)
        assert row["smile_removed"] == pytest.approx(1.0, abs=1e-6)
        assert row["id_in_vs_neutral"] < 0.6  # same person in both fixture photos
        assert row["comparisons_1to2_out"] == 2 and row["wins_1to2_out"] == 2
    ident = report["identity"]
    assert ident["id_out_vs_neutral"]["mean"] == 0.0
    assert ident["verification_out"]["rate"] == 1.0
    assert ident["recognition_1to2_out"]["rate"] == 1.0
    assert ident["id_out_vs_others_mean"]["mean"] > 0.6  # different people
    assert report["expression"]["all"]["removed"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert report["expression"]["smile"]["removed"]["n"] == 3
    counts = report["counts"]
    assert (counts["evaluated"], counts["failed"], counts["people"]) == (3, 0, 3)

    assert json.loads((tmp_path / "report.json").read_text())["rows"][0]["person"] == "011"
    assert "Table 2" in (tmp_path / "report.md").read_text()
    sheet = np.asarray(Image.open(tmp_path / "contact_sheet.png"))
    assert sheet.shape[0] > 3 * 160 and sheet.shape[1] >= 3 * 160


@needs_judges
def test_unchanged_output_removes_nothing_and_failures_are_listed(judges, tmp_path):
    from stoic_cli.face.detection import NoFaceError

    def identity_edit(photo):
        if "025" in photo.path.name:
            raise NoFaceError("no face found")
        return photo.rgb

    report = evaluate_neutralize([_london("011"), _london("025")], identity_edit, tmp_path, *judges)
    (row,) = report["rows"]
    assert row["expression_removed"] == pytest.approx(0.0, abs=1e-6)
    assert row["id_out_vs_in"] == 0.0
    assert row["sharpness_ratio"] == pytest.approx(1.0)
    # The failed pair's neutral still counts as "another person" in the 1:2 test.
    assert row["comparisons_1to2_out"] == 1
    assert report["failures"] == [{"input": str(LONDON / "025_smiling.jpg"), "error": "no face found"}]
    assert Path(row["output"]).is_file()


# --------------------------------------------------------------------------- pairs

def test_pairs_from_csv(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a_in.jpg", "a_n.jpg", "b_in.jpg", "b_n.jpg"):
        (tmp_path / "img" / name).touch()
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("\ufeffinput, neutral ,person\nimg/a_in.jpg,img/a_n.jpg,alice\n\n"
                        f"{tmp_path / 'img/b_in.jpg'},img/b_n.jpg,\n", encoding="utf-8")
    pairs = load_pairs(csv_path)
    assert pairs == [Pair(tmp_path / "img/a_in.jpg", tmp_path / "img/a_n.jpg", "alice"),
                     Pair(tmp_path / "img/b_in.jpg", tmp_path / "img/b_n.jpg", str(tmp_path / "img/b_n.jpg"))]

    (tmp_path / "bad.csv").write_text("photo,neutral\nimg/a_in.jpg,img/a_n.jpg\n")
    with pytest.raises(ValueError, match="input,neutral"):
        load_pairs(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("input,neutral\nimg/nope.jpg,img/a_n.jpg\n")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_pairs(tmp_path / "missing.csv")


def test_pairs_from_folder_convention(tmp_path):
    names = ["005_neutral.jpg", "005_smiling.jpg", "005_angry.png", "ann_neutral.jpg", "ann_smile.jpg",
             "ann_lee_neutral.jpg", "ann_lee_smile.jpg", "005_smiling_neutral.jpg", "notes.txt",
             "orphan_smile.jpg"]
    for name in names:
        (tmp_path / name).touch()
    with pytest.warns(UserWarning, match="orphan_smile"):
        pairs = load_pairs(tmp_path)
    got = {(p.input.name, p.neutral.name, p.person) for p in pairs}
    assert got == {("005_angry.png", "005_neutral.jpg", "005"), ("005_smiling.jpg", "005_neutral.jpg", "005"),
                   ("ann_smile.jpg", "ann_neutral.jpg", "ann"),
                   ("ann_lee_smile.jpg", "ann_lee_neutral.jpg", "ann_lee")}  # longest id wins
    # 005_smiling_neutral.jpg is stoic's output for 005_smiling.jpg: neither a neutral nor an input.


def test_london_fixtures_pair_up():
    pairs = load_pairs(LONDON)
    assert sorted(p.person for p in pairs) == ["005", "011", "025", "038", "042", "094"]
    assert all(p.neutral.name == f"{p.person}_neutral.jpg" for p in pairs)


# --------------------------------------------------------------------------- measures

def test_sharpness_on_synthetic_image():
    rng = np.random.default_rng(0)
    sharp = np.zeros((100, 200, 3), np.uint8)
    sharp[:, :100] = rng.integers(0, 256, (100, 100, 1), np.uint8)  # noisy left half, flat right half
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    left = (0, 0, 100, 100)
    assert sharpness(sharp, left) > 10 * sharpness(blurred, left)
    assert sharpness(sharp, (120, 10, 190, 90)) == 0.0  # flat region
    assert sharpness(sharp) == pytest.approx(sharpness(sharp, (-50, -50, 500, 500)))  # box clipped
    assert sharpness(sharp, (300, 300, 400, 400)) is None  # box outside the image


def test_expression_helpers():
    bs = {"_neutral": 0.9, "eyeBlinkLeft": 0.8, "eyeLookUpRight": 0.5, "mouthSmileLeft": 0.6,
          "mouthSmileRight": 0.4, "browInnerUp": 0.25}
    assert expression_intensity(bs) == pytest.approx(1.25)
    assert smile(bs) == pytest.approx(0.5)
    assert expression_intensity(None) is None and smile(None) is None


def test_make_sheet_mixed_sizes(tmp_path):
    rows = [[np.zeros((320, 240, 3), np.uint8), None, np.full((80, 80, 3), 255, np.uint8)]]
    path = make_sheet(rows, tmp_path / "sheet.png", [["line one", "line two"]], titles=["a", "b", "c"])
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[0] == (18 + 4) + (2 * 18 + 4 + 160 + 4)
    assert sheet.shape[1] == 4 + (120 + 4) + (160 + 4) + (160 + 4)


# --------------------------------------------------------------------------- report layer

def test_summaries_tables_and_numbers():
    assert stat([1.0, None, float("nan"), 3.0, float("inf")]) == {"mean": 2.0, "median": 2.0, "n": 2}
    assert stat([]) == {"mean": None, "median": None, "n": 0}
    assert rate([True, None, False, float("nan")]) == {"rate": 0.5, "n": 2}
    assert rate([0.2, 0.9], lambda v: v > 0.5) == {"rate": 0.5, "n": 2}
    assert clean({"a": np.float32(0.1234567), "b": [np.int64(3), float("nan")]}) == {"a": 0.12346, "b": [3, None]}
    assert fmt(0.12345) == "0.123" and fmt(0.5, True) == "50.0 %" and fmt(None) == "-"
    assert fmt(float("nan"), missing="n/a") == "n/a"
    assert table(["", "mean", "n"], [["a", "0.500", 3], ["b", "-", ""]]) == [
        "| | mean | n |", "|---|---:|---:|", "| a | 0.500 | 3 |", "| b | - | |"]
    assert table(["x", "y"], [], align="lc") == ["| x | y |", "|---|:-:|"]
