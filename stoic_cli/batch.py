"""Conventions shared by every command that writes images:

- inputs are files or folders (``--recursive`` descends into subfolders);
- without ``-o`` an output goes next to its input as ``<stem>_<suffix><ext>``; with ``-o DIR``
  into DIR, mirroring the subfolders below each input folder;
- an existing output is skipped unless ``--overwrite``; an input is never written to;
- a bad file is reported and the batch goes on; ``--report FILE.csv`` gets one row per input;
- the exit code is non-zero when any input failed.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from stoic_cli.face.images import IMAGE_EXTENSIONS

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class Job:
    source: Path
    output: Path | None  # None for commands that write no image (detect)


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


def _already_output(path: Path, suffixes: tuple[str, ...]) -> bool:
    """Skip stoic's own results when re-running a command over the same folder."""
    return any(path.stem.endswith(f"_{s}") for s in suffixes)


KNOWN_SUFFIXES = ("neutral", "transfer", "edit", "crop", "compare", "strip")


def expand_inputs(inputs: Iterable[str | Path], recursive: bool = False) -> list[tuple[Path, Path | None]]:
    """(file, the folder it was found under or None) for each image, in a stable order.
    Files named on the command line are kept even with an unusual extension, so that the user
    gets a clear 'cannot read' instead of silence."""
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file() and is_image(f)
                           and not _already_output(f, KNOWN_SUFFIXES))
            found.extend((f, p) for f in files)
        else:
            found.append((p, None))
    seen, unique = set(), []
    for f, root in found:
        key = f.resolve() if f.exists() else f
        if key not in seen:
            seen.add(key)
            unique.append((f, root))
    return unique


def output_path(source: Path, root: Path | None, out_dir: Path | None, suffix: str,
                ext: str | None = None) -> Path:
    ext = ext or source.suffix or ".png"
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
        jobs.append(Job(f, output_path(f, root, out, suffix) if suffix else None))
    return jobs


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def run_jobs(jobs: list[Job], work: Callable[[Job], tuple[int, str]], overwrite: bool = False,
             console=None, label: str = "processing", quiet: bool = False) -> list[Outcome]:
    """Run `work` on each job; `work` returns (faces, message) or raises. One line per input is
    printed, progress is shown on a terminal, and a failure never stops the batch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    outcomes: list[Outcome] = []
    written: dict[Path, Path] = {}  # output -> the input that produced it in this run
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=quiet or not console.is_terminal) as progress:
        task = progress.add_task(label, total=len(jobs))
        for job in jobs:
            start = time.perf_counter()
            if job.output is not None and same_file(job.output, job.source):
                outcome = Outcome(job.source, FAILED, message="output would overwrite the input; choose another -o")
            elif job.output is not None and job.output in written:
                # Two inputs with one stem (a/x.jpg, b/x.jpg -o out/): never let one replace the other.
                outcome = Outcome(job.source, FAILED, message=f"same output name as {written[job.output]}; "
                                  "use --recursive on their common folder or separate -o folders")
            elif job.output is not None and job.output.exists() and not overwrite:
                outcome = Outcome(job.source, SKIPPED, message=f"{job.output} exists (use --overwrite)",
                                  output=job.output)
            else:
                try:
                    faces, message = work(job)
                    outcome = Outcome(job.source, OK, faces=faces, message=message, output=job.output)
                    if job.output is not None:
                        written[job.output] = job.source
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one bad photo must not stop a batch of thousands
                    message = str(exc) or type(exc).__name__
                    message = message.removeprefix(f"{job.source}: ")  # the line already names the file
                    outcome = Outcome(job.source, FAILED, message=message)
            outcome.seconds = time.perf_counter() - start
            outcomes.append(outcome)
            if not quiet:
                colour = {OK: "green", SKIPPED: "yellow", FAILED: "red"}[outcome.status]
                target = f" -> {escape(str(outcome.output))}" if outcome.status == OK and outcome.output else ""
                msg = f": {escape(outcome.message)}" if outcome.message else ""
                progress.console.print(f"[{colour}]{outcome.status:7}[/] {escape(str(job.source))}{target}{msg}",
                                       highlight=False, soft_wrap=True)
            progress.advance(task)
    return outcomes


def write_report(outcomes: list[Outcome], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "faces", "status", "message", "seconds", "output"])
        for o in outcomes:
            w.writerow([str(o.source), o.faces, o.status, o.message, f"{o.seconds:.3f}", str(o.output or "")])


def summary(outcomes: list[Outcome]) -> str:
    n = {s: sum(o.status == s for o in outcomes) for s in (OK, SKIPPED, FAILED)}
    return f"{n[OK]} done, {n[SKIPPED]} skipped, {n[FAILED]} failed"
