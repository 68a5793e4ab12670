"""The corpus of bad and odd inputs (tests/bad_inputs.py) through a real folder run: every input
gets exactly one report row with the expected status, every failure is one clear line, inputs
are never modified, outputs exist exactly for the photos done, and a rerun resumes."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from typer.testing import CliRunner

from stoic_cli.cli import app
from tests.bad_inputs import make_corpus


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_corpus_of_bad_and_odd_inputs(shipped_models, cli_detector, tmp_path):
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus)
    before = _hashes(corpus)
    out, report = tmp_path / "out", tmp_path / "report.csv"
    args = ["neutralize", str(corpus), "-o", str(out), "--report", str(report), "--models", str(shipped_models),
            "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    with open(report, newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert set(rows) == set(expected), set(rows) ^ set(expected)
    got = {name: r["status"] for name, r in rows.items()}
    assert got == expected, {n: (got[n], expected[n], rows[n]["message"]) for n in got if got[n] != expected[n]}
    for name, r in rows.items():
        if r["status"] == "failed":
            msg = r["message"]
            assert msg and "\n" not in msg and "Traceback" not in msg and "torch" not in msg.lower(), (name, msg)
    assert _hashes(corpus) == before  # inputs untouched
    made = {p.name for p in out.iterdir()}
    assert made == {Path(r["output"]).name for r in rows.values() if r["status"] == "ok"}
    assert not [n for n in made if n.startswith(".")]
    rerun = CliRunner().invoke(app, args)
    with open(report, newline="") as fh:
        again = {Path(r["path"]).name: r["status"] for r in csv.DictReader(fh)}
    assert {n for n, s in again.items() if s == "ok"} == set(), rerun.output  # everything done is skipped
    assert {n for n, s in again.items() if s == "failed"} == {n for n, s in expected.items() if s == "failed"}
