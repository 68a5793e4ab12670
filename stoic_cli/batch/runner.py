"""Conventions shared by every command that writes images:

- inputs are files or folders (``--recursive`` descends into subfolders); every file found in a
  folder gets a line and a report row, including those stoic does not read and stoic's own
  outputs (recognised by the provenance tag stoic writes into them, not by their names);
- without ``-o`` an output goes next to its input as ``<stem>_<suffix><ext>``; with ``-o DIR``
  into DIR, mirroring the subfolders below each input folder; formats that cannot carry the tag
  (BMP, GIF) are written as PNG;
- an existing output is skipped when stoic made it from the same input with the same settings
  and models; one made otherwise (or not by stoic) is refused unless ``--overwrite``; an input
  is never written to;
- a job that writes several files (sheets, strips) writes its main output last, so an
  interrupted batch resumes them whole;
- a bad file is reported and the batch goes on; ``--report FILE.csv`` gets one row per input,
  also when the batch is interrupted (Ctrl-C, SIGTERM);
- the exit code is non-zero when any input failed.
"""
from __future__ import annotations

import csv
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stoic_cli.batch.planning import Job
from stoic_cli.face.images import read_provenance

OK, SKIPPED, FAILED, INTERRUPTED = "ok", "skipped", "failed", "interrupted"
# What decides that an existing output is this job's result.
SAME_RESULT_KEYS = ("command", "settings", "models", "input_sha256")


class Outcomes(list):
    """A batch's outcomes, in input order; `interrupted` when Ctrl-C or SIGTERM stopped it."""
    interrupted = False


@dataclass
class Outcome:
    source: Path
    status: str
    faces: int = 0
    message: str = ""
    seconds: float = 0.0
    output: Path | None = None


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def file_digest(path: Path) -> str:
    """A short content digest of an input: its outputs record it, so a rerun knows them."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def describe_settings(tag: dict | None) -> str:
    if not tag:
        return "no stoic tag"
    settings = tag.get("settings") or {}
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or str(tag.get("command", "?"))


def same_result(found: dict | None, expected: dict) -> bool:
    """Whether an existing file's tag says this job made it (same input, settings and models)."""
    return bool(found) and all(found.get(k) == expected.get(k) for k in SAME_RESULT_KEYS)


def _existing_result(job: Job, overwrite: bool) -> Outcome | None:
    """What to do about outputs that exist already: None to run the job."""
    if job.output is None or overwrite or not job.output.exists():
        return None
    if job.provenance is None:  # a command whose outputs carry no tag: existence is enough
        return Outcome(job.source, SKIPPED, message=f"{job.output} exists (use --overwrite)", output=job.output)
    found = read_provenance(job.output)
    if same_result(found, job.provenance):
        if all(e.exists() for e in job.extras):
            return Outcome(job.source, SKIPPED, output=job.output,
                           message=f"{job.output} done already with these settings (use --overwrite to redo)")
        return None  # same result, but a sheet or strip is missing: redo the job whole
    return Outcome(job.source, FAILED, message=f"{job.output} exists, made with {describe_settings(found)}; this run: "
                   f"{describe_settings(job.provenance)} (use --overwrite or another -o)")


def _foreign_extra(job: Job, overwrite: bool) -> Path | None:
    """A sheet or strip path held by a file this job did not make (it is never replaced silently)."""
    if overwrite or job.provenance is None:
        return None
    for extra in job.extras:
        if extra.exists() and not same_result(read_provenance(extra), job.provenance):
            return extra
    return None


class _StopRequest:
    """SIGTERM asks the batch to stop after the photo in hand (it is finished and written whole)."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True


def run_jobs(jobs: list[Job], work: Callable[[Job], tuple[int, str]], overwrite: bool = False,
             console=None, label: str = "processing", quiet: bool = False,
             provenance: Callable[[Job], dict] | None = None, on_outcome: Callable[[Outcome], None] | None = None,
             workers: int = 1) -> list[Outcome]:
    """Run `work` on each job; `work` returns (faces, message) or raises. `provenance(job)` is
    the tag the job's outputs carry (compared with an existing output's before skipping it).
    One line per input is printed, in the inputs' order, progress is shown on a terminal, and a
    failure never stops the batch. `workers` > 1 keeps that many jobs in flight on threads
    (`work` must be thread-safe). Ctrl-C or SIGTERM stops it: jobs in flight finish whole, the
    next one is marked interrupted; the outcomes so far are returned (the last one INTERRUPTED)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    outcomes = Outcomes()
    clash = output_clashes(jobs)
    stop = _StopRequest()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread() else None
    pool = ThreadPoolExecutor(workers, thread_name_prefix="stoic-job") if workers > 1 else _ThisThread()
    in_flight: deque = deque()  # (index, future), in the inputs' order
    submitted, in_hand = 0, None
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True,
                      disable=quiet or not console.is_terminal) as progress:
            task = progress.add_task(label, total=len(jobs))
            record = lambda outcome: _record(outcome, outcomes, progress, quiet, on_outcome)
            try:
                while True:
                    while len(in_flight) < workers and submitted < len(jobs) and not stop.requested:
                        in_hand = submitted  # with one worker, submit runs the job here and now
                        in_flight.append((submitted, pool.submit(_timed_job, jobs[submitted], work, overwrite,
                                                                 provenance, clash.get(submitted))))
                        submitted, in_hand = submitted + 1, None
                    if not in_flight:
                        break
                    record(in_flight[0][1].result())  # left in the queue until recorded (Ctrl-C)
                    in_flight.popleft()
                    progress.advance(task)
                if stop.requested and submitted < len(jobs):
                    record(Outcome(jobs[submitted].source, INTERRUPTED,
                                   message="not started: stopped by SIGTERM; rerun to resume"))
            except KeyboardInterrupt:  # Ctrl-C: a photo in hand is dropped or finished, never half-written
                for _, future in in_flight:
                    future.cancel()
                pool.shutdown(wait=True)
                for index, future in in_flight:  # jobs start in order: the finished ones come first
                    if index >= len(outcomes) and future.done() and not future.cancelled():
                        record(future.result())
                first_open = len(outcomes)
                if first_open < len(jobs):
                    started = first_open < submitted or first_open == in_hand
                    record(Outcome(jobs[first_open].source, INTERRUPTED,
                                   message="interrupted; rerun to resume" if started
                                   else "not started: interrupted; rerun to resume"))
                outcomes.interrupted = True
            outcomes.interrupted |= bool(outcomes) and outcomes[-1].status == INTERRUPTED
    finally:
        pool.shutdown(wait=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


class _ThisThread:
    """The executor of a one-worker batch: each job runs at once in the calling thread, so
    Ctrl-C reaches the photo in hand."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def _timed_job(job: Job, *args) -> Outcome:
    start = time.perf_counter()
    outcome = run_job(job, *args)
    outcome.seconds = time.perf_counter() - start
    return outcome


MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Jobs in flight by default: one per CPU core this process may use (bounded, since each
    holds a photo in memory)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def main_thread() -> bool:
    """Signal handlers can be set only from the main thread."""
    import threading
    return threading.current_thread() is threading.main_thread()


def output_clashes(jobs: list[Job]) -> dict[int, str]:
    """Job index -> why it must not run: an output (or sheet, strip) path that an earlier input
    of the batch will write. Found before the first photo, on the machine that plans the batch."""
    claimed: dict[Path, Path] = {}  # every planned output path -> the input that will write it
    clash: dict[int, str] = {}
    for i, job in enumerate(jobs):
        for path in ([job.output] if job.output else []) + job.extras:
            key = Path(os.path.normpath(os.path.abspath(path)))
            if key in claimed and claimed[key] != job.source:
                # Two inputs with one output name (a/x.jpg, b/x.jpg -o out/): never let one replace the other.
                clash[i] = (f"same output name {path.name} as {claimed[key]}; use --recursive on their common "
                            "folder or separate -o folders")
            claimed.setdefault(key, job.source)
    return clash


def precheck(job: Job, clash: str | None = None) -> Outcome | None:
    """The outcome of a job that needs no photo read (not an image, output = input, an output
    name clash), or None."""
    if not job.readable:
        return Outcome(job.source, SKIPPED, message="not an image stoic reads")
    if job.output is not None and same_file(job.output, job.source):
        return Outcome(job.source, FAILED, message="output would overwrite the input; choose another -o")
    if clash:
        return Outcome(job.source, FAILED, message=clash)
    return None


def run_job(job: Job, work: Callable[[Job], tuple[int, str]], overwrite: bool = False,
            provenance: Callable[[Job], dict] | None = None, clash: str | None = None) -> Outcome:
    """One job under the batch rules (see the module's doc): skipped when its tagged output is
    there already, refused when something else holds its names, otherwise `work(job)`; an
    exception is this job's failure. Every runner (run_jobs, stoic_cli.batch.cluster) goes through it."""
    settled = precheck(job, clash)
    if settled is not None:
        return settled
    try:
        # A folder walked again after a run holds that run's outputs: they are not new inputs.
        tag = read_provenance(job.source) if job.in_folder and job.output is not None else None
        if tag:
            return Outcome(job.source, SKIPPED, message=f"a stoic output ({tag.get('command', '?')} of "
                           f"{tag.get('input', '?')}); name the file to edit it again")
        if provenance is not None:
            job.provenance = provenance(job)
        existing = _existing_result(job, overwrite)
        if existing is not None:
            return existing
        foreign = _foreign_extra(job, overwrite)
        if foreign is not None:
            return Outcome(job.source, FAILED, message=f"{foreign} exists and is not this job's (use --overwrite)")
        faces, message = work(job)
        return Outcome(job.source, OK, faces=faces, message=message, output=job.output)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one bad photo must not stop a batch of thousands
        message = str(exc) or type(exc).__name__
        message = message.removeprefix(f"{job.source}: ")  # the line already names the file
        return Outcome(job.source, FAILED, message=message)


def _record(outcome: Outcome, outcomes: list, progress, quiet: bool, on_outcome) -> None:
    outcomes.append(outcome)
    if on_outcome is not None:
        on_outcome(outcome)
    if not quiet:
        print_outcome(progress.console, outcome)


def print_outcome(console, outcome: Outcome) -> None:
    """An input's line: status, path, where its output went, and why."""
    from rich.markup import escape

    colour = {OK: "green", SKIPPED: "yellow", FAILED: "red", INTERRUPTED: "red"}[outcome.status]
    target = f" -> {escape(str(outcome.output))}" if outcome.status == OK and outcome.output else ""
    msg = f": {escape(outcome.message)}" if outcome.message else ""
    console.print(f"[{colour}]{outcome.status:7}[/] {escape(str(outcome.source))}{target}{msg}",
                  highlight=False, soft_wrap=True)


REPORT_FIELDS = ["path", "faces", "status", "message", "seconds", "output"]


def outcome_row(o: Outcome) -> dict:
    return {"path": str(o.source), "faces": o.faces, "status": o.status, "message": o.message,
            "seconds": f"{o.seconds:.3f}", "output": str(o.output or "")}


def write_report(outcomes: list[Outcome], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, REPORT_FIELDS)
        w.writeheader()
        for o in outcomes:
            w.writerow(outcome_row(o))


def summary(outcomes: list[Outcome]) -> str:
    n = {s: sum(o.status == s for o in outcomes) for s in (OK, SKIPPED, FAILED)}
    text = f"{n[OK]} done, {n[SKIPPED]} skipped, {n[FAILED]} failed"
    return text + (", then interrupted" if getattr(outcomes, "interrupted", False) else "")
