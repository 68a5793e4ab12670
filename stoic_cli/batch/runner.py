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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from stoic_cli.face.images import IMAGE_EXTENSIONS, read_provenance

OK, SKIPPED, FAILED, INTERRUPTED = "ok", "skipped", "failed", "interrupted"
# Outputs in these formats could not carry the provenance tag (or would lose colours): PNG instead.
RETAGGED_EXTENSIONS = {".bmp": ".png", ".gif": ".png"}
# What decides that an existing output is this job's result.
SAME_RESULT_KEYS = ("command", "settings", "models", "input_sha256")


@dataclass
class Job:
    source: Path
    output: Path | None  # None for commands that write no image (detect)
    readable: bool = True  # False: found in a folder, but not an image stoic reads
    in_folder: bool = False  # found by walking a folder (not named by the user)
    key: str = ""  # what --shard splits on: the path below its folder, or the path as named
    extras: list[Path] = field(default_factory=list)  # other files it writes (sheets, strips), before `output`
    provenance: dict | None = None  # the tag its outputs carry; filled in by run_jobs


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


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand_inputs(inputs: Iterable[str | Path], recursive: bool = False) -> list[tuple[Path, Path | None]]:
    """(file, the folder it was found under or None) for every file, in a stable order. Hidden
    files are left out (stoic's own temporaries among them); a file reached twice by the same
    path counts once, a symlink and its target are two inputs."""
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file() and not f.name.startswith(".")
                           and not any(part.startswith(".") for part in f.relative_to(p).parts[:-1]))
            found.extend((f, p) for f in files)
        else:
            found.append((p, None))
    seen, unique = set(), []
    for f, root in found:
        key = os.path.normpath(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            unique.append((f, root))
    return unique


def output_path(source: Path, root: Path | None, out_dir: Path | None, suffix: str,
                ext: str | None = None) -> Path:
    ext = ext or source.suffix or ".png"
    ext = RETAGGED_EXTENSIONS.get(ext.lower(), ext)
    name = f"{source.stem}_{suffix}{ext}"
    if out_dir is None:
        return source.with_name(name)
    if root is not None:
        rel = source.parent.relative_to(root)
        return out_dir / rel / name
    return out_dir / name


def plan_jobs(inputs: Iterable[str | Path], suffix: str | None, out_dir: str | Path | None = None,
              recursive: bool = False) -> list[Job]:
    out = Path(out_dir) if out_dir else None
    jobs = []
    for f, root in expand_inputs(inputs, recursive):
        readable = root is None or is_image(f)  # a file the user names is always tried
        key = f.relative_to(root).as_posix() if root is not None else f.as_posix()
        jobs.append(Job(f, output_path(f, root, out, suffix) if suffix else None, readable,
                        in_folder=root is not None, key=key))
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" (1 <= K <= N) -> (K, N); ValueError otherwise."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/8")
    return k, n


def shard(jobs: list[Job], k: int, n: int) -> list[Job]:
    """The K-th of N disjoint parts of the planned inputs. An input's part depends only on its
    key (its path below the folder given), never on the listing's order or on the machine, so
    N schedulers' jobs cover every input once and their reports concatenate into the whole."""
    if n == 1:
        return jobs
    part = lambda job: int.from_bytes(hashlib.sha256(job.key.encode()).digest()[:8], "big") % n
    return [j for j in jobs if part(j) == k - 1]


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
             provenance: Callable[[Job], dict] | None = None, on_outcome: Callable[[Outcome], None] | None = None
             ) -> list[Outcome]:
    """Run `work` on each job; `work` returns (faces, message) or raises. `provenance(job)` is
    the tag the job's outputs carry (compared with an existing output's before skipping it).
    One line per input is printed, progress is shown on a terminal, and a failure never stops
    the batch. Ctrl-C or SIGTERM stops it after marking the current input interrupted; the
    outcomes so far are returned (the last one INTERRUPTED)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    outcomes = Outcomes()
    clash = output_clashes(jobs)
    stop = _StopRequest()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread() else None
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True,
                      disable=quiet or not console.is_terminal) as progress:
            task = progress.add_task(label, total=len(jobs))
            for i, job in enumerate(jobs):
                start = time.perf_counter()
                if stop.requested:
                    _record(Outcome(job.source, INTERRUPTED, message="not started: stopped by SIGTERM; rerun to "
                                    "resume"), start, outcomes, progress, quiet, on_outcome)
                    break
                try:
                    outcome = run_job(job, work, overwrite, provenance, clash.get(i))
                    _record(outcome, start, outcomes, progress, quiet, on_outcome)
                    progress.advance(task)
                except KeyboardInterrupt:  # Ctrl-C: the photo in hand is dropped (never half-written)
                    recorded = len(outcomes) > i
                    if not recorded:
                        outcomes.append(Outcome(job.source, INTERRUPTED, message="interrupted; rerun to resume"))
                    elif i + 1 < len(jobs):
                        outcomes.append(Outcome(jobs[i + 1].source, INTERRUPTED,
                                                message="not started: interrupted; rerun to resume"))
                    outcomes.interrupted = True
                    break
            outcomes.interrupted |= bool(outcomes) and outcomes[-1].status == INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


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


def _record(outcome: Outcome, start: float, outcomes: list, progress, quiet: bool, on_outcome) -> None:
    outcome.seconds = time.perf_counter() - start
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
