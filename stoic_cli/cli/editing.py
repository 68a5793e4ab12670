"""The editing commands: `stoic neutralize`, `stoic transfer`, `stoic edit`. Each builds one edit
object (stoic_cli.edit.edits) and runs it through the same pipeline and batch loop."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from stoic_cli.cli.app import app
from stoic_cli.cli.options import (DeviceOpt, InputsArg, JsonOpt, LargestOpt, MinEyeOpt, ModelsOpt, OutDirOpt,
                                   OverwriteOpt, QuietOpt, RecursiveOpt, ReportOpt, check_outputs, err, fail, finish,
                                   load_pipeline, out, plan, print_json_line, ShardOpt)

StepsOpt = typer.Option(0, "--steps", min=0, max=50, help="Also write a strip of N faces from no change to the edit.")
GifOpt = typer.Option(False, "--gif", help="With --steps: an animated GIF instead of a strip.")


def _checked(build):
    """An edit object, or a usage error naming the bad value."""
    try:
        return build()
    except ValueError as exc:
        fail(str(exc))


def _strip_frames(pipe, photo, faces, edit, steps: int) -> list:
    """The first face from no change to the full edit, cut from the edited photo at the photo's
    own resolution (the aligned crop's square), one frame per step."""
    import numpy as np

    from stoic_cli.face.alignment import alignment_matrix, crop_region

    x0, y0, x1, y1 = crop_region(alignment_matrix(faces[0].landmarks, pipe.render_size), pipe.render_size,
                                 photo.rgb.shape[:2])
    return [pipe.apply(photo, faces[:1], edit.scaled(float(f))).rgb[y0:y1, x0:x1]
            for f in np.linspace(0, 1, max(2, steps))]


def extras_for(output: Path, compare: bool, steps: int, gif: bool) -> list[Path]:
    """The other files an editing job writes, named after its output so that two inputs never
    share one (me.jpg and me.png give me_neutral_compare.jpg and me_neutral_compare.png)."""
    extras = []
    if compare:
        extras.append(output.with_name(f"{output.stem}_compare{output.suffix}"))
    if steps:
        extras.append(output.with_name(f"{output.stem}_strip{'.gif' if gif else output.suffix}"))
    return extras


def provenance_for(pipe, edit):
    """The tag every output of this run carries: that stoic edited it, how, with which models,
    and from which input (by content, so a rerun recognises its own results)."""
    from stoic_cli import __version__
    from stoic_cli.batch import file_digest

    base = {"software": f"stoic {__version__}", "command": edit.name, "settings": edit.describe(),
            "models": dict(pipe.models.settings.models)}
    return lambda job: {**base, "input": job.source.name, "input_sha256": file_digest(job.source)} if job else base


def _edit_stdin(pipe, edit, largest: bool, job, json_lines: bool):
    """`stoic neutralize - < in.jpg > out.jpg`: one photo from standard input to standard output,
    in its own format, tagged like any output; the outcome line goes to stderr."""
    import sys
    import time

    from stoic_cli.batch import FAILED, OK, Outcome
    from stoic_cli.face.images import load_photo_bytes, photo_bytes

    start = time.perf_counter()
    try:
        photo = load_photo_bytes(sys.stdin.buffer.read())
        faces, skipped = pipe.find_faces(photo, largest)
        result = pipe.apply(photo, faces, edit)
        tag = {"software": provenance_for(pipe, edit)(None)["software"], "command": edit.name,
               "settings": edit.describe(), "models": dict(pipe.models.settings.models), "input": "stdin"}
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
             compare: bool = False, steps: int = 0, gif: bool = False, json_lines: bool = False):
    """Every editing command's batch: the edit applied to each photo's faces and saved, with an
    optional input | output sheet and an optional strip of the first face. Sheets and strips
    are written before the photo, so a photo's presence means its job is whole."""
    import numpy as np

    from stoic_cli.batch import run_jobs
    from stoic_cli.face.images import load_photo, save_gif, save_photo

    if any(str(job.source) == "-" for job in jobs):
        if len(jobs) != 1 or compare or steps:
            fail("'-' (standard input) is one photo on its own, without --compare or --steps")
        return [_edit_stdin(pipe, edit, largest, jobs[0], json_lines)]
    for job in jobs:
        if job.output is not None:
            job.extras = extras_for(job.output, compare, steps, gif)

    def work(job):
        photo = load_photo(job.source)
        faces, skipped = pipe.find_faces(photo, largest)
        result = pipe.apply(photo, faces, edit)
        tag = job.provenance
        notes = [skipped.message] if skipped else []
        if compare:
            save_photo(photo, np.concatenate([photo.rgb, result.rgb], axis=1), job.extras[0], tag)
        if steps:
            frames = _strip_frames(pipe, photo, faces, edit, steps)
            strip = job.extras[-1]
            if gif:
                save_gif(frames, strip, tag)
            else:
                save_photo(photo, np.concatenate(frames, axis=1), strip, tag)
            notes.append(f"strip {strip.name}")
        save_photo(photo, result.rgb, job.output, tag)
        return len(faces), "; ".join(notes)

    return run_jobs(jobs, work, overwrite=overwrite, console=err, label=label, quiet=quiet,
                    provenance=provenance_for(pipe, edit), on_outcome=print_json_line if json_lines else None)


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
    check_outputs(output, report)
    jobs = plan(images, "neutral", output, recursive, shard_spec, report)
    pipe = load_pipeline(models, device, min_eyes)
    finish(run_edit(pipe, jobs, edit, largest=largest, overwrite=overwrite, quiet=quiet, label="neutralizing",
                    compare=compare, json_lines=json_lines), report)


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
    from stoic_cli.batch import file_digest
    from stoic_cli.edit.edits import Transfer
    from stoic_cli.face.detection import NoFaceError
    from stoic_cli.face.images import ImageError, load_photo

    _checked(lambda: Transfer.ALPHA.check("--alpha", alpha))
    check_outputs(output, report)
    jobs = plan(images, "transfer", output, recursive, shard_spec, report)
    pipe = load_pipeline(models, device, min_eyes)
    # The reference is checked before any input is touched.
    try:
        reference = pipe.read_reference(load_photo(expr), source=f"{expr.name} sha256:{file_digest(expr)}")
    except (ImageError, NoFaceError) as exc:
        fail(f"reference {expr}: {exc}")
    edit = Transfer(reference, alpha)
    finish(run_edit(pipe, jobs, edit, largest=largest, overwrite=overwrite, quiet=quiet, label="transferring",
                    steps=steps, gif=gif, json_lines=json_lines), report)


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
):
    """Move attributes (smile, surprise, age, ...) by chosen amounts; writes <stem>_edit<ext>.

    Examples: --attr smile=0.5 (half a typical smile), --attr age=10 (ten years older),
    --attr smile=-0.5 --attr surprise=0.3 (several at once); --list shows each range. The
    renderer moves the photo's own pixels (a dropping jaw, rising brows) and draws only what
    is new."""
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
    check_outputs(output, report)
    jobs = plan(images, "edit", output, recursive, shard_spec, report)
    pipe = load_pipeline(models, device, min_eyes)
    try:
        known = pipe.models.attributes()
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    amounts = parse_amounts(attr, known)
    edit_ = _checked(lambda: AttributeEdit(known, amounts, force=force))
    finish(run_edit(pipe, jobs, edit_, largest=largest, overwrite=overwrite, quiet=quiet, label="editing",
                    steps=steps, gif=gif, json_lines=json_lines), report)
