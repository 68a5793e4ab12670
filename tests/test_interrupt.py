"""A batch stopped by SIGTERM or Ctrl-C (SIGINT) still writes the report of what it did, exits
130, and leaves no half-written file; a rerun resumes it."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTOS = 16


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_batch_writes_its_report(tmp_path, signum, workers):
    folder = tmp_path / "in"
    folder.mkdir()
    # Enough photos that the batch cannot finish before the signal lands, even when a loaded
    # machine is slow to hand this test the first "ok" line.
    for i in range(PHOTOS):
        shutil.copy(REPO / "tests" / "data" / "london" / "011_smiling.jpg", folder / f"p{i}.jpg")
    out, report = tmp_path / "out", tmp_path / "report.csv"
    cmd = [sys.executable, "-m", "stoic_cli", "neutralize", str(folder), "-o", str(out), "--report", str(report),
           "--device", "cpu", "--models", str(REPO / "models"), "--workers", workers]
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # then keeps it ignored: the stop under test must not depend on how the suite was launched.
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "200"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("ok"):
            proc.send_signal(signum)
            break
    _, rest = proc.communicate(timeout=120)
    lines += rest.splitlines()
    assert proc.returncode == 130, "".join(lines)
    with open(report, newline="") as fh:
        rows = list(csv.DictReader(fh))
    statuses = [r["status"] for r in rows]
    assert statuses[0] == "ok" and statuses[-1] == "interrupted" and len(rows) < PHOTOS, statuses
    assert all(s in ("ok", "interrupted") for s in statuses)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    done = {Path(r["output"]).name for r in rows if r["status"] == "ok"}
    assert {p.name for p in out.iterdir()} == done  # exactly the photos reported done, each whole
    # The rerun skips what was done and finishes the rest.
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{PHOTOS} done" not in rerun.stderr and len(list(out.glob("*_neutral.jpg"))) == PHOTOS


def test_two_runs_writing_one_output_leave_it_whole(tmp_path):
    """Two processes with different settings race for the same output names: every output ends
    up written whole by one of them, its tag saying which, and no temporary is left."""
    import numpy as np
    from PIL import Image

    from stoic_cli.face.images import read_provenance

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(4):
        shutil.copy(REPO / "tests" / "data" / "london" / "011_smiling.jpg", folder / f"p{i}.jpg")
    base = [sys.executable, "-m", "stoic_cli", "neutralize", str(folder), "-o", str(out), "--overwrite", "-q",
            "--device", "cpu", "--models", str(REPO / "models")]
    runs = [subprocess.Popen(base + ["--strength", s], stderr=subprocess.PIPE, text=True) for s in ("1", "0.3")]
    for p in runs:
        _, errors = p.communicate(timeout=300)
        assert p.returncode == 0, errors
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # What each setting writes when it runs alone.
    alone = {}
    for s in ("1", "0.3"):
        subprocess.run(base[:6] + [str(tmp_path / f"alone{s}"), "--overwrite", "-q", "--device", "cpu", "--models",
                                   str(REPO / "models"), "--strength", s], check=True, capture_output=True)
        alone[float(s)] = np.asarray(Image.open(tmp_path / f"alone{s}" / "p0_neutral.jpg"))
    for i in range(4):
        made = out / f"p{i}_neutral.jpg"
        strength = read_provenance(made)["settings"]["strength"]
        assert np.array_equal(np.asarray(Image.open(made)), alone[strength]), f"{made.name} is not whole"
