"""What the commands share: consoles, the options every batch command takes, loading the pipeline,
and finishing a batch with its report and exit code (0 all done, 1 some failed, 2 usage)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from stoic_cli.face.detection import MIN_EYE_DISTANCE

# soft_wrap: messages and paths are never folded to the terminal width, so logs stay greppable
# and a long path is not split in two (tables still fit the width).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

InputsArg = typer.Argument(..., help="Image files and/or folders.", show_default=False)
OutDirOpt = typer.Option(None, "-o", "--output", help="Folder for results (default: next to each input).")
RecursiveOpt = typer.Option(False, "--recursive", "-r", help="Descend into subfolders of input folders.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace outputs that already exist (inputs are never touched).")
ReportOpt = typer.Option(None, "--report", help="Write one CSV row per input: path, faces, status, message, seconds.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda (ONNX Runtime provider and MTCNN device).")
LargestOpt = typer.Option(False, "--largest", help="Edit only the largest face of each photo (default: every face).")
ModelsOpt = typer.Option(None, "--models", help="Folder with the ONNX models (default: the installed models/).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No per-file lines; only the summary.")
MinEyeOpt = typer.Option(MIN_EYE_DISTANCE, "--min-eyes",
                         help="Skip faces whose eyes are closer than this many pixels; much smaller faces "
                              "are not even searched for, which keeps detection fast.")
ShardOpt = typer.Option(None, "--shard", help="K/N: process only the K-th of N disjoint parts of the inputs "
                        "(for Slurm arrays and other schedulers; the N reports concatenate into the whole).")
SetOpt = typer.Option(None, "--set", help="Override one config value, e.g. --set vae_steps=100 (repeatable).")


def fail(message: str) -> NoReturn:
    """A usage or set-up error: one line on stderr, exit code 2."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def check_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        fail(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def face_detector(device: str, models_dir: Optional[Path] = None, threads: int = 0):
    """MTCNN on ONNX Runtime (no torch), on the device the other models use."""
    from stoic_cli.runtime import detector

    check_device(device)
    try:
        return detector.detector_for(models_dir, device, threads)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(str(exc))


def finish(outcomes, report: Optional[Path]) -> None:
    """Write the report (also of an interrupted batch), print the summary, exit 1 when any input
    failed and 130 when the batch was interrupted."""
    from stoic_cli.batch.runner import FAILED, summary, write_report

    if report:
        write_report(outcomes, report)
    if not outcomes:
        fail("no images found in the given inputs")
    err.print(summary(outcomes))
    if getattr(outcomes, "interrupted", False):
        raise typer.Exit(130)
    if any(o.status == FAILED for o in outcomes):
        raise typer.Exit(1)


def load_pipeline(models_dir: Optional[Path], device: str, min_eyes: float = MIN_EYE_DISTANCE, threads: int = 0):
    """The models and detector; `threads` per network run (0: ONNX Runtime's default, a thread
    per core; 1 when several photos are in flight)."""
    from stoic_cli.pipeline import Pipeline
    from stoic_cli.runtime.models import FaceModels

    check_device(device)  # outside the try: typer.Exit is a RuntimeError
    try:
        models = FaceModels(models_dir, device=device, threads=threads).load()
        provider = models.provider
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # missing or unreadable models, no GPU
        fail(str(exc))
    err.print(f"models: {models.dir} on {provider}", highlight=False)
    return Pipeline(models, face_detector(device, models.dir, threads), min_eye_distance=min_eyes)


def parse_overrides(items: Optional[List[str]]) -> dict:
    """--set KEY=VALUE pairs: JSON values (numbers, lists, true/false) or plain strings."""
    extra = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set {item!r}: expected KEY=VALUE")
        try:
            extra[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
        except json.JSONDecodeError:
            extra[key] = value
    return extra


JsonOpt = typer.Option(False, "--json", help="Print one JSON line per input on stdout (the report's fields).")


def print_json_line(outcome) -> None:
    from stoic_cli.batch.runner import outcome_row

    print(json.dumps(outcome_row(outcome)), flush=True)


def check_outputs(output: Optional[Path], report: Optional[Path]) -> None:
    """The output folder and the report must be writable before the first photo is read, not
    found unwritable after a whole batch. Nothing is created here."""
    import os

    for target, what in ((output, "-o"), (report, "--report")):
        if target is None:
            continue
        if what == "--report" and target.is_dir():
            fail(f"--report {target}: is a folder; give a file name such as {target / 'report.csv'}")
        if what == "-o" and target.exists() and not target.is_dir():
            fail(f"-o {target}: is a file, not a folder")
        folder = target if what == "-o" else target.parent
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            fail(f"{what} {target}: {existing} is not a writable folder")


def plan(images, suffix: Optional[str], output: Optional[Path], recursive: bool, shard_spec: Optional[str],
         report: Optional[Path] = None):
    """The batch's jobs, limited to one shard when --shard K/N is given. A shard that happens to
    hold no input is done at once (an empty report, exit 0): schedulers run every shard."""
    from stoic_cli.batch.planning import parse_shard, plan_jobs, shard
    from stoic_cli.batch.runner import write_report

    jobs = plan_jobs(images, suffix, output, recursive)
    if shard_spec:
        try:
            part = shard(jobs, *parse_shard(shard_spec))
        except ValueError as exc:
            fail(str(exc))
        if jobs and not part:
            if report:
                write_report([], report)
            err.print(f"shard {shard_spec}: none of the {len(jobs)} inputs falls in it")
            raise typer.Exit(0)
        jobs = part
    return jobs
