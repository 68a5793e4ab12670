"""--ray: the editing batch on a local Ray cluster (2 CPUs, a small object store) gives what the
single-process run gives: the same files byte for byte (provenance tags included), the same
report rows, a failing photo failing alone, and a rerun that skips what was done."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stoic_cli.batch.runner import FAILED, OK, SKIPPED, run_jobs
from stoic_cli.cli import app

DATA = Path(__file__).parent / "data" / "london"
PHOTOS = ("005_smiling.jpg", "011_neutral.jpg", "025_smiling.jpg", "094_smiling.jpg")


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _has_ray(), reason='ray is not installed (pip install "stoic-cli[ray]")')


def stoic(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI in its own process, as a user runs it (Ray's local cluster lives and dies with it)."""
    env = {**os.environ, "STOIC_RAY_OBJECT_STORE": str(100 * 1024 ** 2), "RAY_DISABLE_USAGE_STATS": "1"}
    return subprocess.run([sys.executable, "-m", "stoic_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def rows(report: Path, folder: str) -> list[dict]:
    """The report's rows without the timings, outputs (and messages naming them) relative to `folder`."""
    with open(report, newline="") as fh:
        found = list(csv.DictReader(fh))
    for row in found:
        row.pop("seconds")
        row["output"] = row["output"].removeprefix(f"{folder}/")
        row["message"] = row["message"].replace(f"{folder}/", "")
    return found


@needs_ray
def test_a_folder_on_ray_gives_the_single_process_outputs_and_report(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in PHOTOS:
        shutil.copy(DATA / name, inputs / name)
    (inputs / "broken.jpg").write_bytes((DATA / "038_smiling.jpg").read_bytes()[:1500])  # a truncated JPEG
    common = ("neutralize", "in", "--compare", "--json")

    single = stoic(tmp_path, *common, "-o", "single", "--report", "single.csv")
    assert single.returncode == 1, single.stderr  # one input failed
    on_ray = stoic(tmp_path, *common, "-o", "ray", "--report", "ray.csv", "--ray", "auto", "--workers", "2")
    assert on_ray.returncode == 1, on_ray.stderr
    assert "ray: 5 inputs on 2 worker(s)" in on_ray.stderr

    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert len(names) == 2 * len(PHOTOS)  # each photo and its sheet
    for name in names:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name

    report = rows(tmp_path / "ray.csv", "ray")
    assert report == rows(tmp_path / "single.csv", "single")  # the same rows, in the same (input) order
    assert [r["status"] for r in report] == [OK] * len(PHOTOS) + [FAILED]
    assert report[-1]["path"] == "in/broken.jpg" and "cannot read image" in report[-1]["message"]
    assert len(on_ray.stdout.splitlines()) == 5  # --json: one line per input

    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir()}
    again = stoic(tmp_path, *common, "-o", "ray", "--report", "again.csv", "--ray", "auto")
    assert again.returncode == 1, again.stderr
    assert [r["status"] for r in rows(tmp_path / "again.csv", "ray")] == [SKIPPED] * len(PHOTOS) + [FAILED]
    assert written == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir()}


def test_clashes_and_non_images_are_settled_before_dispatch(tmp_path):
    """What needs no photo read (an output over its input, two inputs with one output name, a
    file stoic does not read) gets run_jobs' outcome on the driver, without starting Ray."""
    from stoic_cli.batch.planning import Job
    from stoic_cli.batch.cluster import Settings, run_with_ray

    def plan():
        return [Job(tmp_path / "o.jpg", tmp_path / "o.jpg"), Job(tmp_path / "b.jpg", tmp_path / "o.jpg"),
                Job(tmp_path / "c.txt", tmp_path / "c_neutral.txt", readable=False, in_folder=True)]

    never = lambda job: pytest.fail("no photo is read")
    single = run_jobs(plan(), never, quiet=True)
    on_ray = run_with_ray(plan(), Settings("neutralize"), "no-cluster-is-started:1", quiet=True)
    assert [(o.source, o.status, o.message) for o in on_ray] == [(o.source, o.status, o.message) for o in single]
    assert [o.status for o in on_ray] == [FAILED, FAILED, SKIPPED]
    assert on_ray[1].message.startswith("same output name o.jpg as ")


def test_missing_ray_is_a_usage_error_naming_the_extra(monkeypatch, tmp_path, shipped_models):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    res = CliRunner().invoke(app, ["neutralize", str(DATA / PHOTOS[0]), "-o", str(tmp_path), "--ray", "auto",
                                   "--models", str(shipped_models)])
    assert res.exit_code == 2, res.output
    assert 'pip install "stoic-cli[ray]"' in res.output
    assert not list(tmp_path.iterdir())


def test_the_actor_runs_rows_without_a_cluster(tmp_path, shipped_models):
    """The documented entry point is a plain callable class: Ray Data calls it with numpy batches."""
    from stoic_cli.batch.cluster import Settings, StoicActor

    actor = StoicActor(settings=Settings("neutralize", strength=0.5, models=str(shipped_models), device="cpu"))
    batch = {"source": np.array([str(DATA / PHOTOS[0]), str(tmp_path / "missing.jpg")]),
             "output": np.array([str(tmp_path / "a_neutral.jpg"), str(tmp_path / "b_neutral.jpg")])}
    done = actor(batch)
    assert list(done["status"]) == [OK, FAILED] and list(done["faces"]) == [1, 0]
    assert list(done["has_output"]) == [True, False] and (tmp_path / "a_neutral.jpg").exists()
    assert list(done["source"]) == list(batch["source"])  # the rows come back as given, outcome added
    assert list(actor(batch)["status"]) == [SKIPPED, FAILED]  # its own tagged output: done already
