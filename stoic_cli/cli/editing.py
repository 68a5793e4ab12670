"""The editing commands: `stoic neutralize`, `stoic transfer`, `stoic edit`. Each builds one edit
object (stoic_cli.edit.edits) and runs it through the same pipeline and batch loop."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from stoic_cli.cli.app import app
from stoic_cli.cli.options import (DeviceOpt, InputsArg, JsonOpt, LargestOpt, MinEyeOpt, ModelsOpt, OutDirOpt,
                                   OverwriteOpt, QuietOpt, RecursiveOpt, ReportOpt, ShardOpt, check_device,
                                   check_outputs, err, fail, finish, load_pipeline, out, plan, print_json_line)
from stoic_cli.batch.editing import provenance_for

StepsOpt = typer.Option(0, "--steps", min=0, max=50, help="Also write a strip of N faces from no change to the edit.")
GifOpt = typer.Option(False, "--gif", help="With --steps: an animated GIF instead of a strip.")
RayOpt = typer.Option(None, "--ray", metavar="ADDRESS", help="Run the batch on Ray actors: 'auto' starts a local "
                      "Ray, otherwise the cluster's address (host:port or ray://host:port). Needs stoic-cli[ray].")
WorkersOpt = typer.Option(None, "--workers", "-j", min=1, show_default=False,
                          help="Photos in flight at once. Here: threads sharing one set of models, each network "
                               "run then on one CPU thread (default: one per CPU core, at most 8; 1 holds only one "
                               "photo in memory, for very large photos). With --ray: how many actors, each "
                               "loading the models once (default: 2).")
RAY_WORKERS = 2


def resolve_workers(workers: Optional[int], ray: Optional[str]) -> int:
    from stoic_cli.batch.runner import default_workers

    return workers or (RAY_WORKERS if ray is not None else default_workers())
GpusOpt = typer.Option(0.0, "--gpus-per-worker", min=0.0, help="With --ray: GPUs per actor (e.g. 1, or 0.5 to "
                       "share one); use with --device cuda.")


def _checked(build):
    """An edit object, or a usage error naming the bad value."""
    try:
        return build()
    except ValueError as exc:
        fail(str(exc))


def _edit_stdin(pipe, edit, largest: bool, job, json_lines: bool):
    """`stoic neutralize - < in.jpg > out.jpg`: one photo from standard input to standard output,
    in its own format, tagged like any output; the outcome line goes to stderr."""
    import sys
    import time

    from stoic_cli.batch.runner import FAILED, OK, Outcome
    from stoic_cli.face.images import load_photo_bytes, photo_bytes

    start = time.perf_counter()
    try:
        photo = load_photo_bytes(sys.stdin.buffer.read())
        faces, skipped = pipe.find_faces(photo, largest)
        result = pipe.apply(photo, faces, edit, inplace=True)
        tag = {**provenance_for(pipe, edit)(None), "input": "stdin"}
        data = photo_bytes(photo, result.rgb, tag)
        outcome = Outcome(job.source, OK, faces=len(faces), message=skipped.message, output=Path("-"))
    except Exception as exc:
        outcome = Outcome(job.source, FAILED, message=(str(exc) or type(exc).__name__).removeprefix("stdin: "))
        data = None
    outcome.seconds = time.perf_counter() - start
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    err.print(f"{outcome.status:7} stdin" + (f": {outcome.message}" if outcome.message else ""), highlight=False,
              markup=False)
    if json_lines and data is None:
        print_json_line(outcome)
    return outcome


def run_edit(pipe, jobs, edit, *, largest: bool, overwrite: bool, quiet: bool, label: str,
             compare: bool = False, steps: int = 0, gif: bool = False, json_lines: bool = False, workers: int = 1):
    """Every editing command's batch: the edit applied to each photo's faces and saved, with an
    optional input | output sheet and an optional strip of the first face. Sheets and strips
    are written before the photo, so a photo's presence means its job is whole."""
    from stoic_cli.batch.runner import run_jobs
    from stoic_cli.batch.editing import EditJob

    if any(str(job.source) == "-" for job in jobs):
        if len(jobs) != 1 or compare or steps:
            fail("'-' (standard input) is one photo on its own, without --compare or --steps")
        return [_edit_stdin(pipe, edit, largest, jobs[0], json_lines)]
    job = EditJob(pipe, edit, largest=largest, compare=compare, steps=steps, gif=gif)
    return run_jobs(job.prepare(jobs), job.work, overwrite=overwrite, console=err, label=label, quiet=quiet,
                    provenance=job.provenance, on_outcome=print_json_line if json_lines else None, workers=workers)


def require_ray(address: Optional[str]) -> None:
    """With --ray, Ray must be importable before anything is read (exit 2 naming the extra)."""
    if address is None:
        return
    from stoic_cli.batch.cluster import RayMissing, import_ray

    try:
        import_ray()
    except RayMissing as exc:
        fail(str(exc))


def driver_device(device: str, address: Optional[str]) -> str:
    """Where this process runs the models: with --ray only to check them and read a transfer's
    reference, on the CPU (--device is the actors')."""
    check_device(device)
    return device if address is None else "cpu"


def _start(images, suffix: str, output, recursive: bool, shard_spec, report, ray, models, device: str,
           min_eyes: float, workers: Optional[int]):
    """What every editing command does before its first photo: outputs checked writable, Ray
    importable, the inputs planned, the models loaded. Returns (jobs, pipeline)."""
    check_outputs(output, report)
    require_ray(ray)
    jobs = plan(images, suffix, output, recursive, shard_spec, report)
    # Photos in flight here share the cores: one thread per network run each beats one photo
    # at a time with every core on each run (the numpy steps between runs use one core).
    threads = 1 if ray is None and min(resolve_workers(workers, ray), len(jobs)) > 1 else 0
    return jobs, load_pipeline(models, driver_device(device, ray), min_eyes, threads)


def _run(pipe, jobs, edit, report, *, label: str, ray, workers: Optional[int], gpus: float, quiet: bool,
         json_lines: bool,
         models, device: str, min_eyes: float, largest: bool, overwrite: bool, compare: bool = False,
         steps: int = 0, gif: bool = False, **command_settings) -> None:
    """Every editing command's batch, in this process or on Ray actors, then its report and exit
    code. `command_settings` are the edit's own settings as stoic_cli.batch.cluster.Settings takes
    them (strength, alpha and reference, amounts and force)."""
    workers = resolve_workers(workers, ray)
    if ray is not None:
        from stoic_cli.batch.cluster import Settings

        settings = Settings(edit.name, models=str(models) if models else None, device=device, min_eyes=min_eyes,
                            largest=largest, overwrite=overwrite, compare=compare, steps=steps, gif=gif,
                            **command_settings)
        finish(run_on_ray(jobs, settings, ray, workers, gpus, quiet=quiet, json_lines=json_lines), report)
        return
    finish(run_edit(pipe, jobs, edit, largest=largest, overwrite=overwrite, quiet=quiet, label=label,
                    compare=compare, steps=steps, gif=gif, json_lines=json_lines, workers=workers), report)


def run_on_ray(jobs, settings, address: str, workers: int, gpus: float, *, quiet: bool, json_lines: bool):
    """The batch on Ray actors (stoic_cli.batch.cluster): same outputs, tags and report rows."""
    from stoic_cli.batch.cluster import run_with_ray

    if any(str(job.source) == "-" for job in jobs):
        fail("'-' (standard input) is one photo on its own, without --ray")
    if settings.models is not None:
        settings.models = str(Path(settings.models).resolve())  # the same folder for every actor
    try:
        return run_with_ray(jobs, settings, address, workers, gpus, console=err, quiet=quiet,
                            on_outcome=print_json_line if json_lines else None)
    except (ConnectionError, ValueError, RuntimeError) as exc:  # no cluster at that address
        fail(f"--ray {address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


@app.command()
def neutralize(
    images: List[Path] = InputsArg,
    output: Optional[Path] = OutDirOpt,
    strength: float = typer.Option(1.0, "--strength", "-s", help="0 = unchanged, 1 = neutral, up to 2 goes past neutral."),
    compare: bool = typer.Option(False, "--compare", help="Also write <stem>_neutral_compare<ext>: input | output."),
    recursive: bool = RecursiveOpt,
    overwrite: bool = OverwriteOpt,
    largest: bool = LargestOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    models: Optional[Path] = ModelsOpt,
    min_eyes: float = MinEyeOpt,
    quiet: bool = QuietOpt,
    json_lines: bool = JsonOpt,
    shard_spec: Optional[str] = ShardOpt,
    ray: Optional[str] = RayOpt,
    workers: Optional[int] = WorkersOpt,
    gpus: float = GpusOpt,
):
    """Remove the expression from every face; writes <stem>_neutral<ext>.

    The photo's own pixels move (lips close, cheeks and corners relax); only where something
    appears that the photo lacks (lips over teeth) is it drawn. Hair, background and clothes
    keep their original pixels.

    [bold]Examples[/]

      stoic neutralize photo.jpg --compare          photo_neutral.jpg + photo_neutral_compare.jpg
      stoic neutralize ids/ -o out/ -r --report out/report.csv
      stoic neutralize photo.jpg --strength 0.5     halfway to neutral"""
    from stoic_cli.edit.edits import Neutralize

    edit = _checked(lambda: Neutralize(strength))
    jobs, pipe = _start(images, "neutral", output, recursive, shard_spec, report, ray, models, device, min_eyes,
                        workers)
    _run(pipe, jobs, edit, report, label="neutralizing", ray=ray, workers=workers, gpus=gpus, quiet=quiet,
         json_lines=json_lines, models=models, device=device, min_eyes=min_eyes, largest=largest,
         overwrite=overwrite, compare=compare, strength=strength)


@app.command()
def transfer(
    images: List[Path] = InputsArg,
    expr: Path = typer.Option(..., "--expr", "-e", help="Reference photo whose expression is copied."),
    alpha: float = typer.Option(1.0, "--alpha", help="0 = neutral, 1 = the reference's intensity, up to 2 exaggerates."),
    steps: int = StepsOpt,
    gif: bool = GifOpt,
    output: Optional[Path] = OutDirOpt,
    recursive: bool = RecursiveOpt,
    overwrite: bool = OverwriteOpt,
    largest: bool = LargestOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    models: Optional[Path] = ModelsOpt,
    min_eyes: float = MinEyeOpt,
    quiet: bool = QuietOpt,
    json_lines: bool = JsonOpt,
    shard_spec: Optional[str] = ShardOpt,
    ray: Optional[str] = RayOpt,
    workers: Optional[int] = WorkersOpt,
    gpus: float = GpusOpt,
):
    """Give every face the expression of the face in --expr; writes <stem>_transfer<ext>.

    The expression is the reference's latent displacement from its own neutral code (LEED),
    added to each input's neutral code, so the input keeps its identity. The renderer moves
    each input's own pixels into that expression and draws only what is new (teeth of a
    smile).

    [bold]Examples[/]

      stoic transfer --expr smile.jpg me.jpg              me_transfer.jpg
      stoic transfer --expr smile.jpg faces/ -o out/ --alpha 0.5
      stoic transfer --expr smile.jpg me.jpg --steps 5    and me_transfer_strip.png"""
    from stoic_cli.edit.edits import Transfer
    from stoic_cli.face.detection import NoFaceError
    from stoic_cli.face.images import ImageError
    from stoic_cli.batch.editing import read_reference

    _checked(lambda: Transfer.ALPHA.check("--alpha", alpha))
    jobs, pipe = _start(images, "transfer", output, recursive, shard_spec, report, ray, models, device, min_eyes,
                        workers)
    # The reference is checked before any input is touched (with --ray: here, and its code sent).
    try:
        reference = read_reference(pipe, expr)
    except (ImageError, NoFaceError) as exc:
        fail(f"reference {expr}: {exc}")
    _run(pipe, jobs, Transfer(reference, alpha), report, label="transferring", ray=ray, workers=workers, gpus=gpus,
         quiet=quiet, json_lines=json_lines, models=models, device=device, min_eyes=min_eyes, largest=largest,
         overwrite=overwrite, steps=steps, gif=gif, alpha=alpha, reference=str(expr), reference_code=reference)


def parse_amounts(specs: List[str], known: dict) -> dict[str, float]:
    """--attr NAME=AMOUNT specs (repeats of one name add up); a usage error names the bad one."""
    amounts: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip().lower()
        if name not in known:
            fail(f"unknown attribute {name!r}; known: {', '.join(sorted(known))}")
        if not sep or not value.strip():
            fail(f"--attr {spec!r}: give an amount, e.g. {name}=0.5 (see --list for the ranges)")
        try:
            amount = float(value)
        except ValueError:
            fail(f"--attr {spec!r}: the amount must be a number, e.g. {name}=0.5")
        amounts[name] = amounts.get(name, 0.0) + amount
    return amounts


def _attribute_table(attributes: dict) -> Table:
    table = Table(title="stoic edit attributes")
    for col in ("name", "range", "unit", "meaning"):
        table.add_column(col)
    for a in attributes.values():
        table.add_row(a.name, f"{a.minimum:g} .. {a.maximum:g}", a.unit, a.help)
    return table


@app.command()
def edit(
    images: Optional[List[Path]] = typer.Argument(None, help="Image files and/or folders.", show_default=False),
    attr: Optional[List[str]] = typer.Option(None, "--attr", "-a", help="NAME=AMOUNT, e.g. smile=0.5, age=10 (repeatable; they add up)."),
    list_: bool = typer.Option(False, "--list", help="List the attributes with their ranges and units."),
    force: bool = typer.Option(False, "--force", help="Allow amounts outside the documented range (identity may suffer)."),
    steps: int = StepsOpt,
    gif: bool = GifOpt,
    output: Optional[Path] = OutDirOpt,
    recursive: bool = RecursiveOpt,
    overwrite: bool = OverwriteOpt,
    largest: bool = LargestOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    models: Optional[Path] = ModelsOpt,
    min_eyes: float = MinEyeOpt,
    quiet: bool = QuietOpt,
    json_lines: bool = JsonOpt,
    shard_spec: Optional[str] = ShardOpt,
    ray: Optional[str] = RayOpt,
    workers: Optional[int] = WorkersOpt,
    gpus: float = GpusOpt,
):
    """Move attributes (smile, surprise, age, ...) by chosen amounts; writes <stem>_edit<ext>.

    Examples: --attr smile=0.5 (half a typical smile), --attr age=10 (ten years older),
    --attr smile=-0.5 --attr surprise=0.3 (several at once); --list shows each range. The
    renderer moves the photo's own pixels (a dropping jaw, rising brows) and draws only what
    is new; a smile keeps the photo's own mouth and raises its corners (no teeth are drawn)."""
    from stoic_cli.edit.edits import AttributeEdit
    from stoic_cli.runtime.models import FaceModels

    if list_:
        try:
            out.print(_attribute_table(FaceModels(models, device="cpu").attributes()))
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        return
    if not images or not attr:
        fail("give images and at least one --attr NAME=AMOUNT (see --list)")
    jobs, pipe = _start(images, "edit", output, recursive, shard_spec, report, ray, models, device, min_eyes,
                        workers)
    try:
        known = pipe.models.attributes()
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    amounts = parse_amounts(attr, known)
    edit_ = _checked(lambda: AttributeEdit(known, amounts, force=force))
    _run(pipe, jobs, edit_, report, label="editing", ray=ray, workers=workers, gpus=gpus, quiet=quiet,
         json_lines=json_lines, models=models, device=device, min_eyes=min_eyes, largest=largest,
         overwrite=overwrite, steps=steps, gif=gif, amounts=amounts, force=force)
