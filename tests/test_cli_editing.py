"""neutralize / transfer / edit through the CLI with the shipped models in models/."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stoic_cli.cli import app

DATA = Path(__file__).parent / "data" / "london"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("011_smiling.jpg", "011_neutral.jpg", "094_smiling.jpg"):
        shutil.copy(DATA / name, folder / name)
    return folder


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_neutralize_changes_only_the_face(shipped_models, photos, tmp_path):
    src = photos / "094_smiling.jpg"
    before = src.read_bytes()
    res = run("neutralize", src, "-o", tmp_path / "out", "--compare", "--models", shipped_models)
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / "094_smiling_neutral.jpg"
    assert out.exists() and (tmp_path / "out" / "094_smiling_neutral_compare.jpg").exists()
    assert src.read_bytes() == before  # input untouched
    a, b = _pixels(src), _pixels(out)
    assert a.shape == b.shape
    diff = np.abs(a - b).sum(2)
    h, w = diff.shape
    # Corners (background) are untouched up to JPEG re-encoding; the face moved.
    corner = diff[: h // 8, : w // 8].mean()
    face = diff[int(h * 0.55): int(h * 0.7), int(w * 0.4): int(w * 0.6)].mean()
    assert corner < 1
    assert face > corner + 4


def test_neutral_input_stays_close(shipped_models, photos, tmp_path):
    """A neutral face changes little: a few grey levels over the photo (moving pixels by a
    fraction of a pixel changes edges by that much), and less at the mouth than the same
    person's broad smile does."""
    shutil.copy(DATA / "094_neutral.jpg", photos / "094_neutral.jpg")
    changes = {}
    for name in ("094_neutral", "094_smiling"):
        res = run("neutralize", photos / f"{name}.jpg", "-o", tmp_path, "--models", shipped_models)
        assert res.exit_code == 0, res.output
        d = np.abs(_pixels(photos / f"{name}.jpg") - _pixels(tmp_path / f"{name}_neutral.jpg")).mean(2)
        h, w = d.shape
        changes[name] = (d.mean(), d[int(h * 0.55): int(h * 0.7), int(w * 0.4): int(w * 0.6)].mean())
    assert changes["094_neutral"][0] < 3.0
    assert changes["094_neutral"][1] < 0.8 * changes["094_smiling"][1]


def test_strength_zero_is_identity_on_the_face(shipped_models, photos, tmp_path):
    src = photos / "094_smiling.jpg"
    res = run("neutralize", src, "-o", tmp_path, "--strength", "0", "--models", shipped_models)
    assert res.exit_code == 0, res.output
    # Only JPEG re-encoding remains.
    assert np.abs(_pixels(src) - _pixels(tmp_path / "094_smiling_neutral.jpg")).mean() < 1.5


def test_transfer_writes_output_and_strip(shipped_models, photos, tmp_path):
    res = run("transfer", "--expr", photos / "094_smiling.jpg", photos / "011_neutral.jpg", "-o", tmp_path,
              "--steps", "4", "--models", shipped_models)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "011_neutral_transfer.jpg").exists()
    # Frames are cut from the edited photo at its own resolution, not the 256 px crop.
    strip = Image.open(tmp_path / "011_neutral_transfer_strip.jpg")
    width, height = strip.size
    assert width % 4 == 0 and abs(width // 4 - height) <= 2 and height > 256, strip.size


def test_transfer_reference_without_face_fails_before_inputs(shipped_models, photos, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (200, 180, 160)).save(blank)
    res = run("transfer", "--expr", blank, photos / "011_neutral.jpg", "-o", tmp_path / "out",
              "--models", shipped_models)
    assert res.exit_code == 2
    assert "reference" in res.output and "no face" in res.output
    assert not (tmp_path / "out").exists()


def test_edit_list_unknown_and_out_of_range(shipped_models, photos, tmp_path):
    res = run("edit", "--list", "--models", shipped_models)
    assert res.exit_code == 0, res.output
    for name in ("smile", "surprise", "age", "gender"):
        assert name in res.output
    res = run("edit", photos / "011_neutral.jpg", "--attr", "grumpiness=1", "--models", shipped_models)
    assert res.exit_code == 2 and "unknown attribute" in res.output and "smile" in res.output
    # Outside the documented range is a usage error, not a silent clip; --force keeps it.
    res = run("edit", photos / "011_neutral.jpg", "--attr", "smile=5", "-o", tmp_path, "--models", shipped_models)
    assert res.exit_code == 2 and "smile=5 is outside" in res.output, res.output
    assert not (tmp_path / "011_neutral_edit.jpg").exists()
    res = run("edit", photos / "011_neutral.jpg", "--attr", "smile=5", "--force", "-o", tmp_path,
              "--models", shipped_models)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "011_neutral_edit.jpg").exists()


@pytest.mark.parametrize("args", [("neutralize", "--strength", "nan"), ("neutralize", "--strength", "inf"),
                                  ("neutralize", "--strength", "1e9"), ("transfer", "--alpha", "nan"),
                                  ("edit", "--attr", "smile=nan"), ("edit", "--attr", "smile"),
                                  ("edit", "--attr", "smile=inf", "--force")])
def test_non_finite_or_missing_amounts_are_usage_errors(shipped_models, photos, tmp_path, args):
    command, *options = args
    extra = ["--expr", str(photos / "011_smiling.jpg")] if command == "transfer" else []
    res = run(command, photos / "011_neutral.jpg", *options, *extra, "-o", tmp_path / "out", "--models", shipped_models)
    assert res.exit_code == 2, res.output
    assert "error" in res.output and not (tmp_path / "out").exists()


def test_edit_amount_zero_changes_nothing(shipped_models, photos, tmp_path):
    src = photos / "011_neutral.jpg"
    res = run("edit", src, "--attr", "smile=0", "-o", tmp_path, "--models", shipped_models)
    assert res.exit_code == 0, res.output
    assert np.abs(_pixels(src) - _pixels(tmp_path / "011_neutral_edit.jpg")).mean() < 1.5


def _models_with(shipped_models, folder: Path, name: str, content: bytes) -> Path:
    """The shipped models with one file replaced by `content`."""
    folder.mkdir()
    for f in Path(shipped_models).iterdir():
        if f.is_file() and f.name != name:
            (folder / f.name).symlink_to(f.resolve())
    (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("name, content", [("stoic.json", b'{"format": 1, "image_size": '),
                                           ("stoic.json", b'{"format": 1, "pixel_range": [0, 1]}'),
                                           ("stoic.json", b'{"format": 1, "expression_dims": 300}'),
                                           ("renderer.onnx", b""), ("neutralizer.onnx", b"not onnx")])
def test_broken_model_files_stop_before_the_first_photo(shipped_models, photos, tmp_path, name, content):
    models = _models_with(shipped_models, tmp_path / "models", name, content)
    res = run("neutralize", photos / "011_smiling.jpg", "-o", tmp_path / "out", "--models", models)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], res.output
    assert not (tmp_path / "out").exists()


def test_unknown_device_is_a_usage_error(shipped_models, photos, tmp_path):
    res = run("neutralize", photos / "011_smiling.jpg", "-o", tmp_path / "out", "--device", "tpu",
              "--models", shipped_models)
    assert res.exit_code == 2 and "unknown device 'tpu'" in res.output, res.output


def test_rerun_skips_only_what_it_made_with_the_same_settings(shipped_models, photos, tmp_path):
    from stoic_cli.face.images import read_provenance

    src, out = photos / "011_neutral.jpg", tmp_path / "out"
    res = run("edit", src, "--attr", "smile=0.5", "-o", out, "--models", shipped_models)
    assert res.exit_code == 0, res.output
    made = out / "011_neutral_edit.jpg"
    tag = read_provenance(made)
    assert tag["command"] == "edit" and tag["settings"] == {"smile": 0.5} and tag["input"] == "011_neutral.jpg"
    assert tag["software"].startswith("stoic ") and "renderer" in tag["models"]
    res = run("info", made)
    assert res.exit_code == 0 and '"smile": 0.5' in res.output
    before = made.read_bytes()
    res = run("edit", src, "--attr", "smile=0.5", "-o", out, "--models", shipped_models)
    assert res.exit_code == 0 and "skipped" in res.output and "done already" in res.output
    # Other settings are not "done": the earlier result is kept and the run says why.
    res = run("edit", src, "--attr", "smile=1", "-o", out, "--models", shipped_models)
    assert res.exit_code == 1 and "made with smile=0.5" in res.output and "this run: smile=1" in res.output
    assert made.read_bytes() == before
    res = run("edit", src, "--attr", "smile=1", "-o", out, "--overwrite", "--models", shipped_models)
    assert res.exit_code == 0 and read_provenance(made)["settings"] == {"smile": 1.0}
    # A folder walked again does not take the outputs for new inputs.
    res = run("edit", out, "--attr", "smile=1", "--models", shipped_models)
    assert "a stoic output (edit of 011_neutral.jpg)" in res.output


def test_sheets_are_part_of_the_job_and_never_shared(shipped_models, photos, tmp_path):
    src = photos / "011_neutral.jpg"
    Image.open(src).save(photos / "011_neutral.png")
    out = tmp_path / "out"
    res = run("neutralize", src, photos / "011_neutral.png", "--compare", "-o", out, "--models", shipped_models)
    assert res.exit_code == 0, res.output
    assert (out / "011_neutral_neutral_compare.jpg").exists() and (out / "011_neutral_neutral_compare.png").exists()
    # A run killed after the sheet but before the photo is redone whole, not "skipped".
    (out / "011_neutral_neutral.jpg").unlink()
    res = run("neutralize", src, "--compare", "-o", out, "--models", shipped_models)
    assert res.exit_code == 0 and (out / "011_neutral_neutral.jpg").exists(), res.output
    # A sheet someone else put there is not replaced without --overwrite.
    (out / "011_neutral_neutral.jpg").unlink()
    (out / "011_neutral_neutral_compare.jpg").write_bytes(b"mine")
    res = run("neutralize", src, "--compare", "-o", out, "--models", shipped_models)
    assert res.exit_code == 1 and "is not this job's" in res.output
    assert (out / "011_neutral_neutral_compare.jpg").read_bytes() == b"mine"


def test_json_lines_give_the_report_fields(shipped_models, photos, tmp_path):
    import json

    res = run("neutralize", photos / "011_smiling.jpg", photos / "missing.jpg", "-o", tmp_path / "out", "--json",
              "-q", "--models", shipped_models)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [("011_smiling.jpg", "ok"), ("missing.jpg", "failed")]
    assert set(rows[0]) == {"path", "faces", "status", "message", "seconds", "output"}


@pytest.mark.parametrize("where", ["output", "report"])
def test_unwritable_outputs_are_refused_before_the_first_photo(shipped_models, photos, tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["-o", blocker / "sub"] if where == "output" else ["-o", tmp_path / "out", "--report", blocker / "r.csv"]
    res = run("neutralize", photos / "011_smiling.jpg", *args, "--models", shipped_models)
    assert res.exit_code == 2 and "not a writable folder" in res.output, res.output
    assert "models:" not in res.output  # refused before the models were even loaded


@pytest.mark.parametrize("size", [(1, 1), (8000, 40), (40, 8000)])
def test_degenerate_images_fail_with_one_clear_line(shipped_models, tmp_path, size):
    src = tmp_path / "odd.png"
    Image.new("RGB", size, (128, 128, 128)).save(src)
    res = run("neutralize", src, "-o", tmp_path / "out", "--models", shipped_models)
    assert res.exit_code == 1, res.output
    assert "no face found" in res.output and "Traceback" not in res.output and "torch" not in res.output


def test_version_and_short_help():
    from stoic_cli import __version__

    res = run("--version")
    assert res.exit_code == 0 and res.output.strip() == f"stoic {__version__}"
    res = run("neutralize", "-h")
    assert res.exit_code == 0 and "--strength" in res.output


def test_faces_cut_off_by_the_frame_are_skipped_with_a_warning(shipped_models, photos, tmp_path):
    a = np.asarray(Image.open(photos / "011_smiling.jpg").convert("RGB"))
    b = np.asarray(Image.open(photos / "094_smiling.jpg").convert("RGB"))
    h = min(a.shape[0], b.shape[0])
    cut = int(b.shape[1] * 0.6)  # the second face loses its right cheek and eye to the frame
    both = np.concatenate([a[:h], b[:h, :cut]], axis=1)
    src = tmp_path / "two.png"
    Image.fromarray(both).save(src)
    res = run("neutralize", src, "-o", tmp_path / "out", "--models", shipped_models)
    assert res.exit_code == 0, res.output
    assert "1 face(s) cut off by the photo's edge skipped" in res.output
    out = np.asarray(Image.open(tmp_path / "out" / "two_neutral.png"))
    assert np.array_equal(out[:, a.shape[1]:], both[:, a.shape[1]:])  # the cut face is left alone
    assert not np.array_equal(out[:, : a.shape[1]], both[:, : a.shape[1]])  # the whole one is edited
    half = tmp_path / "half.png"
    Image.fromarray(np.ascontiguousarray(b[:h, :cut])).save(half)
    res = run("neutralize", half, "-o", tmp_path / "out", "--models", shipped_models)
    assert res.exit_code == 1 and "cut off by the photo's edge" in res.output


def test_shards_of_a_folder_run_add_up_to_the_whole(shipped_models, photos, tmp_path):
    import csv

    rows = []
    for k in (1, 2, 3):
        report = tmp_path / f"r{k}.csv"
        res = run("detect", photos, "--shard", f"{k}/3", "--report", report)
        assert res.exit_code in (0, 1), res.output
        with open(report, newline="") as fh:
            rows += [r["path"] for r in csv.DictReader(fh)]
    assert sorted(rows) == sorted(str(p) for p in photos.iterdir() if p.is_file())
    res = run("neutralize", photos, "--shard", "4/3", "--models", shipped_models)
    assert res.exit_code == 2 and "--shard" in res.output


def test_one_photo_through_standard_input_and_output(shipped_models, photos, tmp_path):
    import io

    from stoic_cli.face.images import read_provenance

    data = (photos / "011_smiling.jpg").read_bytes()
    res = CliRunner().invoke(app, ["neutralize", "-", "--models", str(shipped_models)], input=data)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "from_stdout.jpg"
    out.write_bytes(res.stdout_bytes)
    with Image.open(io.BytesIO(res.stdout_bytes)) as img:
        assert img.format == "JPEG" and img.size == Image.open(photos / "011_smiling.jpg").size
    assert read_provenance(out)["command"] == "neutralize"
    res = CliRunner().invoke(app, ["neutralize", "-", "--models", str(shipped_models)], input=b"garbage")
    assert res.exit_code == 1 and res.stdout_bytes == b"" and "not an image file" in res.stderr
    res = CliRunner().invoke(app, ["neutralize", "-", str(photos / "011_smiling.jpg"), "--models", str(shipped_models)])
    assert res.exit_code == 2


def test_photos_in_flight_give_the_same_outputs_as_one_at_a_time(shipped_models, photos, tmp_path):
    outputs = {}
    for workers in ("1", "3"):
        res = run("neutralize", photos, "-o", tmp_path / workers, "--workers", workers, "--json",
                  "--models", shipped_models, "--device", "cpu")
        assert res.exit_code == 0, res.output
        lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        assert [Path(r["path"]).name for r in lines] == sorted(p.name for p in photos.iterdir())
        outputs[workers] = {p.name: _pixels(p) for p in (tmp_path / workers).iterdir()}
    assert outputs["1"].keys() == outputs["3"].keys() and len(outputs["1"]) == 3
    for name, pixels in outputs["1"].items():  # the network runs differ only in their thread count
        assert np.abs(pixels - outputs["3"][name]).max() <= 2, name
