"""The command line's foundation commands (detect, crop, info) and its model error message,
run in-process with typer's CliRunner."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stoic_cli.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps long lines to the console width; compare text with whitespace collapsed."""
    return " ".join(text.split())


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_detect_json_on_the_fixtures(cli_detector, london_paths):
    result = runner.invoke(app, ["detect", "--json", "--device", "cpu", *map(str, london_paths)])
    assert result.exit_code == 0, result.output
    records = json_lines(result.stdout)
    assert [r["path"] for r in records] == [str(p) for p in london_paths]
    for r in records:
        assert (r["width"], r["height"]) == (400, 400)
        assert len(r["faces"]) == 1, r
        face = r["faces"][0]
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
        assert face["score"] > 0.9
    assert "12 done, 0 skipped, 0 failed" in result.stderr


def test_detect_table_output(cli_detector, london_paths):
    result = runner.invoke(app, ["detect", "--device", "cpu", str(london_paths[0])])
    assert result.exit_code == 0, result.output
    assert "eye distance" in result.stdout and "005_neutral.jpg" in result.stdout


def test_detect_bad_file_fails_but_the_batch_goes_on(cli_detector, london_paths, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (180, 180, 180)).save(blank)
    good = london_paths[3]
    report = tmp_path / "report.csv"
    result = runner.invoke(app, ["detect", "--json", "--device", "cpu", "--report", str(report),
                                 str(bad), str(blank), str(good)])
    assert result.exit_code == 1
    records = json_lines(result.stdout)
    assert [r["path"] for r in records] == [str(blank), str(good)]  # the good photo came after the failures
    assert len(records[1]["faces"]) == 1
    err = flat(result.stderr)
    assert "broken.jpg" in err and "not an image" in err
    assert "no face found" in err
    assert "1 done, 0 skipped, 2 failed" in err
    lines = report.read_text().splitlines()
    assert lines[0] == "path,faces,status,message,seconds,output"
    assert [line.split(",")[2] for line in lines[1:]] == ["failed", "failed", "ok"]


def test_detect_missing_input(cli_detector, tmp_path):
    result = runner.invoke(app, ["detect", "--device", "cpu", str(tmp_path / "nothere.jpg")])
    assert result.exit_code == 1
    assert "file not found" in flat(result.stderr)


def test_detect_empty_folder_is_an_error(cli_detector, tmp_path):
    result = runner.invoke(app, ["detect", "--device", "cpu", str(tmp_path)])
    assert result.exit_code == 2
    assert "no images found" in flat(result.stderr)


def test_crop_writes_aligned_png_crops(cli_detector, london_paths, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    # (not the *_neutral photos: in a folder, names like stoic's own outputs are skipped)
    for p in london_paths[1:4:2]:
        shutil.copy(p, src / p.name)
    out = tmp_path / "crops"
    result = runner.invoke(app, ["crop", "--device", "cpu", "-o", str(out), str(src)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["005_smiling_crop.png", "011_smiling_crop.png"]
    for name in written:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (128, 128)
            crop = np.asarray(img)
        assert crop.std() > 20  # a picture, not a blank
    assert sorted(p.name for p in src.iterdir()) == ["005_smiling.jpg", "011_smiling.jpg"]  # inputs untouched

    # run again: existing crops are skipped, not rewritten
    again = runner.invoke(app, ["crop", "--device", "cpu", "-o", str(out), str(src)])
    assert again.exit_code == 0
    assert "0 done, 2 skipped, 0 failed" in again.stderr


def test_crop_size_option(cli_detector, london_paths, tmp_path):
    result = runner.invoke(app, ["crop", "--device", "cpu", "--size", "64", "-o", str(tmp_path),
                                 str(london_paths[5])])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "025_smiling_crop.png") as img:
        assert img.size == (64, 64)


def test_info_runs(tmp_path):
    result = runner.invoke(app, ["info", "--models", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "stoic: 0.1.0" in text
    assert "python" in text and "torch" in text
    assert "CPUExecutionProvider" in text
    assert "models in" in text


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_neutralize_without_models_says_what_is_missing(london_paths, tmp_path, folder):
    models = tmp_path / "models"
    if folder == "empty":
        models.mkdir()
    photo = tmp_path / "me.jpg"
    shutil.copy(london_paths[0], photo)
    result = runner.invoke(app, ["neutralize", "--device", "cpu", "--models", str(models), str(photo)])
    assert result.exit_code == 2
    err = flat(result.stderr)
    assert "encoder.onnx" in err
    assert str(models) in err
    # and how to get the models
    assert "--models" in err and "stoic train" in err and "pip install -e ." in err
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["me.jpg"] + (["models"] if folder == "empty" else []))


class StubModels:
    """Stands in for FaceModels: every face's code is 0, the 'neutral' code is 1, and rendering
    draws grey 100 plus 40 times a 4-px checkerboard over the whole crop wherever the codes
    differ, so neutralizing makes a big change to every face."""

    image_size = 128
    render_size = 256
    provider = "stub"
    smile_direction = None  # a model set without attribute directions
    _checker = ((np.indices((256, 256)).sum(0) // 4) % 2 * 2 - 1).astype(np.float32)

    def __init__(self, model_dir=None, device="auto", threads=0):
        from stoic_cli.runtime.settings import ModelSettings

        self.dir = model_dir
        self.settings = ModelSettings(models={"stub": "test"})

    def load(self):
        return self

    def encode(self, crops):
        return np.zeros((len(crops), 4), np.float32)

    def neutralize(self, z):
        return z + 1

    def render(self, crops, own, target):
        from stoic_cli.runtime.models import Rendering

        n = len(crops)
        changed = (np.abs(target - own).max(1) > 0).astype(np.float32)[:, None, None]
        fill = np.repeat((100 + 40 * self._checker)[None, ..., None], 3, axis=3).repeat(n, 0)
        return Rendering(np.zeros((n, 256, 256, 2), np.float32), np.ones((n, 256, 256), np.float32) * changed, fill)


def test_neutralize_changes_only_the_face(cli_detector, london_faces, london_rgb, monkeypatch, tmp_path):
    import cv2

    import stoic_cli.runtime.models
    from stoic_cli.face.alignment import alignment_matrix
    from stoic_cli.render.pasteback import face_mask

    monkeypatch.setattr(stoic_cli.runtime.models, "FaceModels", StubModels)
    name = "042_smiling.jpg"
    original = london_rgb[name]
    photo = tmp_path / "portrait.png"
    Image.fromarray(original).save(photo)
    result = runner.invoke(app, ["neutralize", "--device", "cpu", "--compare", str(photo)])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "portrait_neutral.png") as img:
        edited = np.asarray(img).astype(int)
    with Image.open(tmp_path / "portrait_neutral_compare.png") as img:
        assert img.size == (800, 400)

    matrix = alignment_matrix(london_faces[name][0].landmarks, 128)
    m = cv2.warpAffine(face_mask(128).astype(np.float32), matrix, original.shape[1::-1],
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0)
    outside = cv2.dilate((m > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    assert np.array_equal(edited[outside], original[outside])
    core = m > 0.999
    assert core.sum() > 5000
    # the face itself did change (how much of the model's face is taken is the pipeline's policy)
    assert np.abs(edited[core] - original[core]).mean() > 10
    assert (np.abs(edited[core] - original[core]).max(1) > 0).mean() > 0.9




def test_bench_times_the_batch_and_its_stages_on_the_cpu(shipped_models, london_paths, tmp_path):
    from stoic_cli.batch.runner import default_workers

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in london_paths[:2]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "--device", "cpu", "-b", "1", "--repeats", "1", "--photos", str(folder),
                              "-o", str(out), "--models", str(shipped_models)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["environment"]["onnx_provider"] == "CPUExecutionProvider"
    assert [s["batch_size"] for s in result["model_stack"]] == [1]
    rows = {row["workers"]: row for row in result["end_to_end"]}
    assert set(rows) == {1, default_workers()}
    assert all(row["done"] == row["photos"] == 2 and row["photos_per_s"] > 0 for row in rows.values())
    stages = rows[1]["stages_ms"]
    assert set(stages) == {"detect", "align + encode", "render", "paste back", "read + write"}
    assert stages["render"] > 0 and stages["detect"] > 0
    assert "neutralize batch, 1 in flight" in res.output
