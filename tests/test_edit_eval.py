"""stoic_cli.evaluation.transfer_eval and attribute_eval (with the shared measures, report and
sheet layers they use): the transfer and edit measures on synthetic numbers, and the whole
evaluation end to end on throwaway random-weight models exported into pytest's tmp dir (the
end-to-end part needs the eval extra and torch)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stoic_cli.evaluation.attribute_eval import evaluate_edit, parse_amounts, summarise_edit
from stoic_cli.evaluation.measures import attribute_measures, is_monotonic, progress
from stoic_cli.evaluation.report import same_person_rate
from stoic_cli.evaluation.sheets import worst_and_best
from stoic_cli.evaluation.transfer_eval import (evaluate_transfer, expression_progress, person_from_file,
                                                person_from_name, progress_summary, sheet_scores, smile_progress,
                                                summarise_transfer)

HERE = Path(__file__).resolve().parent
LONDON = next((p for p in (HERE / "data" / "london", HERE.parent.parent / "shared" / "fixtures" / "london")
               if p.is_dir()), HERE / "data" / "london")


def _eval_extra_missing() -> str | None:
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
        import mediapipe  # noqa: F401
        import torch  # noqa: F401

        from stoic_cli.evaluation.judges import landmarker_task_path
        landmarker_task_path()
    except ImportError as exc:
        return f"eval extra (or torch) not installed: {exc}"
    return None


needs_judges = pytest.mark.skipif(_eval_extra_missing() is not None, reason=str(_eval_extra_missing()))


# --------------------------------------------------------------------------- pure measures

def test_smile_progress():
    assert smile_progress(0.2, 0.6, 0.8) == pytest.approx(2 / 3)
    assert smile_progress(0.2, 0.8, 0.8) == pytest.approx(1.0)
    assert smile_progress(0.2, 1.0, 0.6) == pytest.approx(2.0)  # overshoot is kept
    assert smile_progress(0.3, 0.1, 0.8) == pytest.approx(-0.4)  # the smile went the wrong way
    assert smile_progress(0.2, 0.9, 0.3) is None  # reference smiles only 0.1 more: no ratio
    assert smile_progress(0.2, 0.9, 0.35, min_gap=0.1) == pytest.approx(0.7 / 0.15)
    assert smile_progress(0.2, 0.9, 0.35, min_gap=0.2) is None
    assert smile_progress(None, 0.5, 0.8) is None and smile_progress(0.1, None, 0.8) is None


def test_progress_towards_a_goal_in_each_direction():
    assert progress(0.75, 0.25, 0.0, 0.1, direction=-1) == pytest.approx(2 / 3)  # down towards a neutral
    assert progress(0.75, 0.25, 0.7, 0.1, direction=-1) is None  # the goal is not far enough below
    assert progress(0.25, 0.75, 1.0, 0.1, direction=-1) is None  # the goal is above: not this direction
    assert progress(0.25, 0.5, 0.75, 0.1, direction=0) == pytest.approx(0.5)  # either way
    assert progress(0.75, 0.5, 0.25, 0.1, direction=0) == pytest.approx(0.5)
    assert progress(0.25, 0.5, 0.3, 0.1, direction=0) is None
    assert progress(0.25, None, 0.75, 0.1) is None


def test_expression_progress_measures_any_expression_along_the_line():
    neutral = {"_neutral": 0.9, "jawOpen": 0.0, "browInnerUp": 0.1, "eyeBlinkLeft": 0.8}
    surprise = {"_neutral": 0.1, "jawOpen": 0.6, "browInnerUp": 0.9, "eyeBlinkLeft": 0.0}
    half = {"_neutral": 0.5, "jawOpen": 0.3, "browInnerUp": 0.5, "eyeBlinkLeft": 0.0}
    assert expression_progress(neutral, half, surprise) == pytest.approx(0.5)  # blinks and _neutral not counted
    assert expression_progress(neutral, surprise, surprise) == pytest.approx(1.0)
    assert expression_progress(neutral, neutral, surprise) == pytest.approx(0.0)
    # Moving across the line (another expression) is not progress; going back is negative.
    across = {"jawOpen": 0.8, "browInnerUp": -0.5}  # moved by (0.8, -0.6), orthogonal to the line (0.6, 0.8)
    assert expression_progress(neutral, across, surprise) == pytest.approx(0.0, abs=1e-12)
    assert expression_progress(surprise, neutral, {**surprise, "jawOpen": 1.0}) == pytest.approx(-1.5)
    assert expression_progress(neutral, surprise, {**neutral, "jawOpen": 0.05}) is None  # too alike to measure
    assert expression_progress(None, half, surprise) is None and expression_progress(neutral, None, surprise) is None


def test_transfer_sheet_ranks_other_expressions_by_the_whole_expression():
    smiles = [{"smile_progress": 0.8, "expression_progress": 0.5}, {"smile_progress": None, "expression_progress": 0.2}]
    others = [{"smile_progress": None, "expression_progress": 0.3}] * 3 + [{"smile_progress": 4.2, "expression_progress": 0.1}]
    assert sheet_scores(smiles) == [0.8, None]
    assert sheet_scores(others) == [0.3, 0.3, 0.3, 0.1]
    assert sheet_scores([{"smile_progress": 0.5}]) == [0.5]  # rows from before whole-expression progress


def test_progress_summary_and_bar():
    s = progress_summary([0.5, 0.7, 0.9, None, 1.2])
    assert s["mean"] == pytest.approx(0.825) and s["median"] == pytest.approx(0.8) and s["n"] == 4
    assert s["at_bar"] == {"rate": 0.75, "n": 4}  # 0.7 itself reaches the bar
    assert progress_summary([0.5], bar=0.4)["at_bar"]["rate"] == 1.0
    assert progress_summary([None])["at_bar"] == {"rate": None, "n": 0}


def test_monotonic_with_tolerance():
    assert is_monotonic([0.1, 0.2, 0.3]) is True
    assert is_monotonic([0.3, 0.3, 0.3]) is True  # flat is fine
    assert is_monotonic([0.1, 0.2, 0.195, 0.3]) is True  # a 0.005 dip is a flat step
    assert is_monotonic([0.1, 0.2, 0.19, 0.3]) is True  # exactly the tolerance
    assert is_monotonic([0.1, 0.2, 0.18, 0.3]) is False
    assert is_monotonic([0.5, 0.4]) is False
    assert is_monotonic([0.1, 0.2, 0.18], tol=0.05) is True
    assert is_monotonic([0.1, None, 0.3]) is None and is_monotonic([0.2]) is None
    assert is_monotonic([0.1, float("nan")]) is None


def test_same_person_rate():
    assert same_person_rate([0.1, 0.59, 0.6, 0.9, None]) == {"rate": 0.5, "n": 4}  # 0.6 is not below 0.6
    assert same_person_rate([0.3], threshold=0.2) == {"rate": 0.0, "n": 1}
    assert same_person_rate([None, None]) == {"rate": None, "n": 0}


def test_people_from_names():
    assert person_from_name("x/011_smiling.jpg") == "011"
    assert person_from_name("ann_lee_smile.png") == "ann_lee"
    assert person_from_name("IMG_1234.jpg") == "IMG_1234"  # a number is no expression tag
    assert person_from_name("bob.jpg") == "bob"
    assert person_from_name("_smile.jpg") == "_smile"
    assert person_from_file("a/011_smiling.jpg") != person_from_file("a/011_neutral.jpg")


def test_parse_amounts():
    assert parse_amounts("-1,-0.5,0,0.5,1") == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert parse_amounts(" 1, 0 ,0.5,1,") == [0.0, 0.5, 1.0]  # sorted, duplicates dropped
    assert parse_amounts("0..1:5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_amounts("-1..1:3") == [-1.0, 0.0, 1.0]
    assert parse_amounts("0.5..1.5:3") == [0.5, 1.0, 1.5]
    for bad in ("", "smile", "0..1", "0..1:1", "1,x", "nan"):
        with pytest.raises(ValueError, match="amounts"):
            parse_amounts(bad)


def test_attribute_measures():
    bs = {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.4, "jawOpen": 0.3, "browInnerUp": 0.1, "eyeBlinkLeft": 0.9}
    assert attribute_measures(bs, "smile") == pytest.approx({"smile": 0.5, "score": 0.5})
    assert attribute_measures(bs, "Surprise") == pytest.approx({"jawOpen": 0.3, "browInnerUp": 0.1, "score": 0.2})
    assert attribute_measures(bs, "age") == pytest.approx({"intensity": 1.4, "score": 1.4})  # blinks left out
    assert attribute_measures(None, "surprise") == {"jawOpen": None, "browInnerUp": None, "score": None}


def test_summaries_on_synthetic_rows():
    rows = [{"reference": ref, "smile_ref": sr, "smile_in": 0.1, "smile_out": so, "smile_progress": p,
             "intensity_ref": 2.0, "intensity_in": 1.0, "intensity_out": 1.5,
             "id_out_vs_in": d, "id_out_vs_ref": 0.8, "id_in_vs_ref": 0.9}
            for ref, sr, so, p, d in (("a.jpg", 0.9, 0.8, 0.875, 0.3), ("a.jpg", 0.9, 0.3, 0.25, 0.7),
                                      ("b.jpg", 0.15, 0.2, None, 0.4))]
    t = summarise_transfer(rows)
    assert t["smile_progress"]["n"] == 2 and t["smile_progress"]["mean"] == pytest.approx(0.5625)
    assert t["bars"] == {"smile_progress_at_bar": 0.5, "identity_kept": pytest.approx(2 / 3)}
    assert t["identity"]["same_person_out_vs_ref"]["rate"] == 0.0
    assert [(r["reference"], r["pairs"]) for r in t["per_reference"]] == [("a.jpg", 2), ("b.jpg", 1)]
    assert t["per_reference"][1]["smile_progress"]["n"] == 0
    assert t["expression_progress"]["n"] == 0  # rows written before whole-expression progress existed
    rows[0]["expression_progress"], rows[2]["expression_progress"] = 0.9, 0.5
    t = summarise_transfer(rows)
    assert t["expression_progress"]["mean"] == pytest.approx(0.7) and t["expression_progress"]["at_bar"]["rate"] == 0.5
    assert t["per_reference"][1]["expression_progress"]["mean"] == pytest.approx(0.5)
    assert all(st["n"] == 0 for st in t["stages"].values())  # rows written before the crop stages
    rows[0]["crop_smile"] = {"in": 0.0, "ref": 0.8, "reconstruction": 0.4, "decoded": 0.2, "pasted": 0.6}
    rows[1]["crop_smile"] = {"in": 0.1, "ref": 0.15, "reconstruction": 0.1, "decoded": 0.1, "pasted": 0.1}
    stages = summarise_transfer(rows)["stages"]
    assert {k: (v["n"], v["mean"]) for k, v in stages.items()} == {  # row 1's gap is too small to count
        "reconstruction": (1, pytest.approx(0.5)), "decoded": (1, pytest.approx(0.25)),
        "pasted": (1, pytest.approx(0.75))}
    assert stages["pasted"]["at_bar"]["rate"] == 1.0 and stages["decoded"]["at_bar"]["rate"] == 0.0

    amounts = [-1.0, 0.0, 1.0]
    edits = [{"score": [0.1, 0.2, 0.4], "smile": [0.1, 0.2, 0.4], "monotonic": True, "rise": 0.3,
              "id_out_vs_in": [0.5, 0.0, 0.4]},
             {"score": [0.3, 0.2, 0.1], "smile": [0.3, 0.2, 0.1], "monotonic": False, "rise": -0.2,
              "id_out_vs_in": [0.7, 0.0, None]}]
    e = summarise_edit(edits, "smile", amounts)
    assert e["monotonic"] == {"rate": 0.5, "n": 2}
    assert [p["same_person"]["rate"] for p in e["per_amount"]] == [0.5, 1.0, 1.0]
    assert e["per_amount"][2]["same_person"]["n"] == 1
    assert e["per_amount"][0]["score"]["mean"] == pytest.approx(0.2)
    assert e["bars"]["identity_kept_worst"] == 0.5 and e["bars"]["identity_kept_by_amount"]["-1"] == 0.5
    assert e["rise"]["mean"] == pytest.approx(0.05)


def test_sheet_picks():
    assert [i for _, i in worst_and_best([0.5, None, 0.1], 2)] == [2, 0, 1]  # all, lowest first, unscored last
    picks = worst_and_best([0.5, 0.1, 0.9, 0.3, 0.7, None], 2)
    assert picks == [("worst", 1), ("worst", 3), ("best", 2), ("best", 4)]
    # Without unscored rows (the neutralization sheet), unless nothing is scored at all.
    assert worst_and_best([0.5, None, 0.1], 2, unscored=False) == [("", 2), ("", 0)]
    assert worst_and_best([None, None, None], 1, unscored=False) == [("", 0), ("", 1)]


# --------------------------------------------------------------------------- end to end

def export_difference_renderer(path) -> None:
    """A renderer-shaped network with known answers: no motion, and the target's drawing drawn
    wherever it differs from the own code's drawing (nowhere when the codes are equal)."""
    import torch
    import torch.nn.functional as F

    class DifferenceRenderer(torch.nn.Module):
        def forward(self, crop, drawn_own, drawn_target):
            mask = ((drawn_target - drawn_own).abs().mean(1, keepdim=True) * 20).clamp(0, 1)
            up = lambda t: F.interpolate(t, size=crop.shape[2:], mode="bilinear", align_corners=False)
            return torch.cat([torch.zeros_like(crop[:, :2]), up(mask), up(drawn_target)], 1)

    d = torch.zeros(1, 3, 128, 128)
    names = ["crop", "drawn_own", "drawn_target"]
    torch.onnx.export(DifferenceRenderer(), (torch.zeros(1, 3, 256, 256), d, d), str(path),
                      input_names=names, output_names=["rendered"],
                      dynamic_axes={n: {0: "batch"} for n in names + ["rendered"]},
                      opset_version=17, dynamo=False)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Random-weight networks exported like `stoic train export` does, into pytest's tmp dir.
    The neutralizer starts as the identity, so a transfer moves nothing; attribute "smile" has
    a zero direction (an edit changes nothing) and "surprise" a random one, long enough for the
    random decoder to change the face visibly."""
    import warnings

    import torch

    from stoic_cli.train import nets
    from stoic_cli.train.export import _EncoderMean, _export

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_models")
    img, z = torch.zeros(2, 3, nets.IMAGE_SIZE, nets.IMAGE_SIZE), torch.zeros(2, nets.LATENT_DIM)
    decoder = nets.Decoder().eval()
    for name, module, example, i, o in (("encoder", _EncoderMean(nets.Encoder()), img, "image", "z"),
                                        ("neutralizer", nets.Neutralizer(), z, "z", "z_neutral"),
                                        ("decoder", decoder, z, "z", "image")):
        with warnings.catch_warnings():  # the legacy exporter's deprecation notes
            warnings.simplefilter("ignore", DeprecationWarning)
            _export(module, example, folder / f"{name}.onnx", i, o)
    export_difference_renderer(folder / "renderer.onnx")
    (folder / "stoic.json").write_text(json.dumps({"image_size": nets.IMAGE_SIZE}))
    rng = np.random.default_rng(0)
    table = {"format": 1, "attributes": {
        "smile": {"direction": [0.0] * nets.LATENT_DIM, "min": -1, "max": 1, "unit": "typical intensity",
                  "help": "smile"},
        "surprise": {"direction": rng.normal(0, 500, nets.LATENT_DIM).tolist(), "min": 0, "max": 1,
                     "unit": "typical intensity", "help": "surprise"}}}
    (folder / "attributes.json").write_text(json.dumps(table))
    return folder


@pytest.fixture(scope="module")
def judges():
    from stoic_cli.evaluation.judges import ExpressionJudge, IdentityJudge

    identity, expression = IdentityJudge(), ExpressionJudge()
    yield identity, expression
    expression.close()


@pytest.fixture(scope="module")
def pipeline(tiny_models, detector):
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    return Pipeline(FaceModels(tiny_models, device="cpu"), detector)


@needs_judges
def test_transfer_end_to_end_known_answers(pipeline, judges, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    refs = [LONDON / "011_smiling.jpg", LONDON / "038_smiling.jpg"]
    inputs = [LONDON / "011_neutral.jpg", LONDON / "025_neutral.jpg", LONDON / "094_neutral.jpg", blank]
    ticks = []
    report = evaluate_transfer(pipeline, refs, inputs, tmp_path / "out", 1.0, *judges, tick=lambda: ticks.append(1))

    c = report["counts"]
    assert len(ticks) == 8 and c["combinations"] == 8
    assert (c["evaluated"], c["same_person_skipped"], c["failed_inputs"]) == (5, 1, 1)  # 011 <- 011 skipped
    assert report["failures"] == [{"reference": None, "input": str(blank), "error": "no face found"}]
    assert not any(r["person_in"] == r["person_ref"] for r in report["rows"])
    # An identity neutralizer gives a zero displacement: every output is its input.
    for r in report["rows"]:
        assert r["id_out_vs_in"] == 0.0 and r["smile_out"] == r["smile_in"]
        assert r["expression_progress"] is None or r["expression_progress"] == pytest.approx(0.0, abs=1e-9)
        assert r["id_in_vs_ref"] > 0.6  # different people
        assert Path(r["output"]).is_file()
    assert c["progress_eligible"] >= 3  # both references smile clearly more than these neutrals
    assert report["smile_progress"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert report["bars"] == {"smile_progress_at_bar": 0.0, "identity_kept": 1.0}
    assert report["settings"]["alpha"] == 1.0 and report["settings"]["person_rule"] == "person_from_name"

    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["counts"]["evaluated"] == 5
    assert "smile progress >= 0.7" in (out / "report.md").read_text()
    assert report["expression_progress"]["n"] >= 3 and "whole-expression progress" in (out / "report.md").read_text()
    # The crops: the smiling references read as smiling, and a zero change pastes back the input's crop.
    for r in report["rows"]:
        c = r["crop_smile"]
        assert c["pasted"] == pytest.approx(c["in"], abs=1e-6)
    assert sum(r["crop_smile"]["ref"] > r["crop_smile"]["in"] + 0.1 for r in report["rows"]) >= 3
    assert report["stages"]["pasted"]["n"] >= 3 and report["stages"]["pasted"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert "Where the smile goes" in (out / "report.md").read_text()
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape[0] > 5 * 160 and sheet.shape[1] >= 3 * 160


@needs_judges
def test_edit_end_to_end_known_answers(pipeline, judges, tmp_path):
    inputs = [LONDON / "011_smiling.jpg", LONDON / "025_neutral.jpg"]
    report = evaluate_edit(pipeline, inputs, "smile", [1, -1, 0], tmp_path, *judges)
    assert report["amounts"] == [-1.0, 0.0, 1.0]
    assert report["counts"]["evaluated"] == 2 and not report["failures"]
    # A zero direction changes nothing: flat, hence monotonic, and the same person everywhere.
    assert report["monotonic"] == {"rate": 1.0, "n": 2}
    for row in report["rows"]:
        assert row["id_out_vs_in"] == [0.0, 0.0, 0.0]
        assert len(set(row["score"])) == 1 and row["score"][0] == row["measures_in"]["score"]
        assert len(row["outputs"]) == 3 and all(Path(p).is_file() for p in row["outputs"])
    assert report["bars"]["identity_kept_worst"] == 1.0
    assert report["rows"][0]["score"][0] > report["rows"][1]["score"][0]  # 011 smiles, 025 does not
    assert "Attribute edit evaluation: smile" in (tmp_path / "report.md").read_text()
    strip = np.asarray(Image.open(tmp_path / "edit_strip_smile.png"))
    assert strip.shape[0] > 2 * 160 and strip.shape[1] >= 4 * 160  # input + 3 amounts

    with pytest.raises(KeyError, match="surprise"):
        evaluate_edit(pipeline, inputs, "age", [0, 1], None, *judges)


@needs_judges
def test_eval_cli_commands(tiny_models, cli_detector, tmp_path):
    from typer.testing import CliRunner

    from stoic_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "edit"
    result = runner.invoke(app, ["eval", "edit", "--attr", "surprise", "--amounts", "0..1:3", "--models",
                                 str(tiny_models), "--device", "cpu", "-o", str(out),
                                 str(LONDON / "025_neutral.jpg")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    (row,) = report["rows"]
    assert report["amounts"] == [0.0, 0.5, 1.0] and row["id_out_vs_in"][0] == 0.0
    unchanged, edited = (np.asarray(Image.open(p)) for p in (row["outputs"][0], row["outputs"][2]))
    assert np.abs(unchanged.astype(int) - edited).mean() > 1  # the random direction does change the face
    assert set(report["per_amount"][0]) >= {"score", "jawOpen", "browInnerUp", "id_out_vs_in", "same_person"}
    assert (out / "edit_strip_surprise.png").is_file() and "jawOpen" in (out / "report.md").read_text()

    result = runner.invoke(app, ["eval", "edit", "--attr", "nope", "--models", str(tiny_models),
                                 "--device", "cpu", str(LONDON / "025_neutral.jpg")])
    assert result.exit_code == 2 and "unknown attribute" in result.output

    out = tmp_path / "transfer"
    result = runner.invoke(app, ["eval", "transfer", "--refs", str(LONDON / "038_smiling.jpg"), "--inputs",
                                 str(LONDON / "025_neutral.jpg"), str(LONDON / "038_neutral.jpg"),
                                 "--models", str(tiny_models), "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["evaluated"] == 1 and report["counts"]["same_person_skipped"] == 1
    assert (out / "contact_sheet.png").is_file()


def test_link_photo_links_once_and_leaves_an_existing_name_alone(tmp_path):
    from stoic_cli.evaluation.reference_sets import link_photo
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"first"); b.write_bytes(b"second")
    target = tmp_path / "set" / "p1_smiling.jpg"
    target.parent.mkdir()
    assert link_photo(a, target) and target.read_bytes() == b"first"
    assert not link_photo(b, target) and target.read_bytes() == b"first"
