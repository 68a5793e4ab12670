"""Batch conventions shared by every image command (no models needed: the work is a stub)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rich.console import Console

from stoic_cli.batch.planning import Job, expand_inputs, output_path, plan_jobs
from stoic_cli.batch.runner import FAILED, OK, SKIPPED, run_jobs, summary, write_report


def touch(path: Path, data: bytes = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def writer(calls: list | None = None):
    """A stand-in for an editing command: writes the output, reports one face."""
    def work(job: Job):
        if calls is not None:
            calls.append(job.source)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(b"result of " + job.source.name.encode())
        return 1, ""
    return work


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "in"
    for rel in ["a.jpg", "b.PNG", "sub/c.jpeg", "sub/deeper/d.webp", "notes.txt", ".hidden.jpg",
                "a_neutral.jpg", "sub/c_crop.png", "e_compare.png", "sub/deeper/f_transfer.tif"]:
        touch(root / rel)
    return root


def test_output_goes_next_to_the_input(tmp_path):
    src = touch(tmp_path / "holiday" / "me.jpeg")
    jobs = plan_jobs([src], "neutral")
    assert [j.output for j in jobs] == [tmp_path / "holiday" / "me_neutral.jpeg"]
    assert output_path(Path("x/photo.png"), None, None, "edit") == Path("x/photo_edit.png")
    assert output_path(Path("x/photo"), None, None, "crop") == Path("x/photo_crop.png")  # no extension
    assert output_path(Path("x/p.jpg"), None, None, "crop", ".png") == Path("x/p_crop.png")


def test_folder_outputs_next_to_each_input(tree):
    jobs = plan_jobs([tree], "neutral")
    # Every file found is an input with a row; names ending like stoic's outputs are inputs too.
    assert [(j.source.name, j.output, j.readable) for j in jobs] == [
        ("a.jpg", tree / "a_neutral.jpg", True),
        ("a_neutral.jpg", tree / "a_neutral_neutral.jpg", True),
        ("b.PNG", tree / "b_neutral.PNG", True),
        ("e_compare.png", tree / "e_compare_neutral.png", True),
        ("notes.txt", tree / "notes_neutral.txt", False),
    ]


def test_recursive_output_dir_mirrors_subfolders(tree, tmp_path):
    out = tmp_path / "out"
    jobs = plan_jobs([tree], "neutral", out, recursive=True)
    got = {j.source.relative_to(tree).as_posix(): j.output.relative_to(out).as_posix() for j in jobs if j.readable}
    assert got == {
        "a.jpg": "a_neutral.jpg",
        "a_neutral.jpg": "a_neutral_neutral.jpg",
        "b.PNG": "b_neutral.PNG",
        "e_compare.png": "e_compare_neutral.png",
        "sub/c.jpeg": "sub/c_neutral.jpeg",
        "sub/c_crop.png": "sub/c_crop_neutral.png",
        "sub/deeper/d.webp": "sub/deeper/d_neutral.webp",
        "sub/deeper/f_transfer.tif": "sub/deeper/f_transfer_neutral.tif",
    }
    # without --recursive only the folder's own files
    flat = plan_jobs([tree], "neutral", out)
    assert sorted(j.source.name for j in flat) == ["a.jpg", "a_neutral.jpg", "b.PNG", "e_compare.png", "notes.txt"]
    # a file named directly goes straight into the output folder
    single = plan_jobs([tree / "sub" / "c.jpeg"], "neutral", out)
    assert single[0].output == out / "c_neutral.jpeg"


def test_stoic_outputs_are_recognised_by_their_tag_not_their_name(tree, tmp_path):
    import numpy as np

    from stoic_cli.face.images import save_rgb

    folder = tmp_path / "pairs"
    rgb = np.full((16, 16, 3), 90, np.uint8)
    save_rgb(rgb, folder / "x_neutral.png")  # the user's own photo, named like an output
    save_rgb(rgb, folder / "y_neutral.png", {"command": "neutralize", "input": "y.png"})  # stoic wrote it
    (folder / "z.heic").write_bytes(b"not read by stoic")
    jobs = plan_jobs([folder], "neutral", tmp_path / "out")
    outcomes = run_jobs(jobs, writer(), console=quiet_console(), provenance=lambda job: {"command": "neutralize"})
    rows = {o.source.name: (o.status, o.message) for o in outcomes}
    assert rows["x_neutral.png"][0] == OK
    assert rows["y_neutral.png"] == (SKIPPED, "a stoic output (neutralize of y.png); name the file to edit it again")
    assert rows["z.heic"] == (SKIPPED, "not an image stoic reads")
    assert len(outcomes) == 3  # every file found has its row


def test_found_by_two_paths_is_one_input_but_a_symlink_is_another(tree):
    (tree / "link.jpg").symlink_to(tree / "a.jpg")
    found = [f.name for f, _ in expand_inputs([tree / "a.jpg", tree / "sub" / ".." / "a.jpg", tree / "link.jpg"])]
    assert found == ["a.jpg", "link.jpg"]


def test_named_files_are_kept_even_if_odd(tree):
    """A file the user names is always tried, so a bad one is reported rather than ignored."""
    named = [tree / "a_neutral.jpg", tree / "notes.txt", tree / "missing.jpg"]
    assert [f for f, _ in expand_inputs(named)] == named
    assert all(root is None for _, root in expand_inputs(named))


def test_inputs_are_deduplicated(tree):
    found = expand_inputs([tree / "a.jpg", tree, tree / "sub" / ".." / "a.jpg"])
    assert [f.name for f, _ in found] == ["a.jpg", "a_neutral.jpg", "b.PNG", "e_compare.png", "notes.txt"]


def test_existing_output_is_skipped_unless_overwrite(tree):
    jobs = plan_jobs([tree / "a.jpg", tree / "b.PNG"], "edit")
    existing = touch(jobs[0].output, b"earlier result")
    calls: list = []
    outcomes = run_jobs(jobs, writer(calls), console=quiet_console())
    assert [o.status for o in outcomes] == [SKIPPED, OK]
    assert calls == [tree / "b.PNG"]
    assert existing.read_bytes() == b"earlier result"
    assert "--overwrite" in outcomes[0].message

    calls.clear()
    outcomes = run_jobs(jobs, writer(calls), overwrite=True, console=quiet_console())
    assert [o.status for o in outcomes] == [OK, OK]
    assert existing.read_bytes() == b"result of a.jpg"


@pytest.mark.parametrize("how", ["same", "dotdot", "symlink"])
def test_output_equal_to_input_is_refused(tree, how):
    src = tree / "a.jpg"
    if how == "same":
        out = src
    elif how == "dotdot":
        out = tree / "sub" / ".." / "a.jpg"
    else:
        out = tree / "link.jpg"
        out.symlink_to(src)
    calls: list = []
    outcomes = run_jobs([Job(src, out)], writer(calls), overwrite=True, console=quiet_console())
    assert outcomes[0].status == FAILED
    assert "overwrite the input" in outcomes[0].message
    assert calls == []
    assert src.read_bytes() == b"img"


def test_a_failing_job_does_not_stop_the_batch(tree):
    jobs = [j for j in plan_jobs([tree], "edit", recursive=True) if j.source.stem in "abcd"]
    assert len(jobs) == 4

    def work(job):
        if job.source.name == "b.PNG":
            raise ValueError("no face found")
        if job.source.name == "c.jpeg":
            raise RuntimeError()
        return writer()(job)

    console = quiet_console()
    outcomes = run_jobs(jobs, work, console=console)
    assert [o.status for o in outcomes] == [OK, FAILED, FAILED, OK]
    assert outcomes[1].message == "no face found"
    assert outcomes[2].message == "RuntimeError"  # an empty message still says something
    assert jobs[3].output.exists()
    assert summary(outcomes) == "2 done, 0 skipped, 2 failed"
    log = console.file.getvalue()
    assert "failed" in log and "b.PNG" in log and "no face found" in log


def test_interrupt_stops_the_batch_and_keeps_what_was_done(tree):
    jobs = plan_jobs([tree / "a.jpg", tree / "b.PNG", tree / "sub" / "c.jpeg"], "edit")

    def work(job):
        if job.source.name == "b.PNG":
            raise KeyboardInterrupt
        return writer()(job)

    outcomes = run_jobs(jobs, work, console=quiet_console())
    assert [(o.source.name, o.status) for o in outcomes] == [("a.jpg", OK), ("b.PNG", "interrupted")]
    assert summary(outcomes) == "1 done, 0 skipped, 0 failed, then interrupted"


def test_jobs_in_flight_report_in_input_order(tmp_path):
    import threading
    import time

    sources = [touch(tmp_path / "in" / f"p{i}.jpg") for i in range(9)]
    jobs = plan_jobs(sources, "edit", tmp_path / "out")
    threads, write = set(), writer()

    def work(job):
        threads.add(threading.current_thread().name)
        time.sleep(0.03 * (9 - int(job.source.stem[1:])) % 0.1)  # later inputs often finish first
        if job.source.name == "p4.jpg":
            raise ValueError("no face found")
        return write(job)

    outcomes = run_jobs(jobs, work, console=quiet_console(), workers=3)
    assert [o.source.name for o in outcomes] == [s.name for s in sources]
    assert [o.status for o in outcomes] == [OK] * 4 + [FAILED] + [OK] * 4
    assert len(threads) > 1 and all(o.seconds > 0 for o in outcomes)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"p{i}_edit.jpg" for i in range(9) if i != 4)


def test_report_csv(tree, tmp_path):
    jobs = plan_jobs([tree / "a.jpg", tree / "b.PNG", tree / "sub" / "c.jpeg"], "edit")
    touch(jobs[2].output)

    def work(job):
        if job.source.name == "b.PNG":
            raise ValueError("cannot read, image, \"quoted\"")
        job.output.write_bytes(b"x")
        return 2, "1 small face(s) skipped"

    outcomes = run_jobs(jobs, work, console=quiet_console())
    report = tmp_path / "reports" / "run.csv"
    write_report(outcomes, report)
    with open(report, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["path", "faces", "status", "message", "seconds", "output"]
        rows = list(reader)
    assert [r["path"] for r in rows] == [str(j.source) for j in jobs]
    assert [r["status"] for r in rows] == [OK, FAILED, SKIPPED]
    assert [r["faces"] for r in rows] == ["2", "0", "0"]
    assert rows[0]["message"] == "1 small face(s) skipped"
    assert rows[1]["message"] == "cannot read, image, \"quoted\""
    assert rows[0]["output"] == str(jobs[0].output) and rows[1]["output"] == ""
    assert rows[2]["output"] == str(jobs[2].output)
    assert all(float(r["seconds"]) >= 0 for r in rows)


def test_two_inputs_with_one_output_name_do_not_clobber(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.jpg").write_bytes(b"x")
    jobs = plan_jobs([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"], "neutral", tmp_path / "out")
    assert jobs[0].output == jobs[1].output

    def work(job):
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_text(str(job.source))
        return 1, ""

    outcomes = run_jobs(jobs, work, overwrite=True, quiet=True)
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert "same output name" in outcomes[1].message
    assert (tmp_path / "out" / "x_neutral.jpg").read_text() == str(tmp_path / "a" / "x.jpg")


def test_shards_are_disjoint_cover_everything_and_ignore_listing_order(tmp_path):
    import random

    from stoic_cli.batch.planning import parse_shard, shard

    root = tmp_path / "ids"
    names = [f"sub{i % 7}/p{i:04d}.jpg" for i in range(300)]
    for n in names:
        touch(root / n)
    jobs = plan_jobs([root], "neutral", tmp_path / "out", recursive=True)
    parts = [shard(jobs, k, 4) for k in range(1, 5)]
    keys = [{j.key for j in p} for p in parts]
    assert sum(len(k) for k in keys) == 300 and set().union(*keys) == set(names)
    assert all(40 < len(k) < 110 for k in keys)  # roughly even
    shuffled = jobs[:]
    random.Random(1).shuffle(shuffled)
    assert {j.key for j in shard(shuffled, 2, 4)} == keys[1]
    # the same folder under another mount point splits the same way
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert {j.key for j in shard(plan_jobs([moved], "neutral", recursive=True), 2, 4)} == keys[1]
    assert parse_shard("3/8") == (3, 8)
    for bad in ("0/4", "5/4", "a/b", "4", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
