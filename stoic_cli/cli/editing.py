"""The editing commands: `stoic neutralize`, `stoic transfer`, `stoic edit`. Each builds one edit
object (stoic_cli.edit.edits) and runs it through the same pipeline and batch loop."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from stoic_cli.cli.app import app
from stoic_cli.cli.options import (DeviceOpt, InputsArg, LargestOpt, MinEyeOpt, ModelsOpt, OutDirOpt, OverwriteOpt,
                                   QuietOpt, RecursiveOpt, ReportOpt, err, fail, finish, load_pipeline, out,
                                   skipped_message)

StepsOpt = typer.Option(0, "--steps", min=0, max=50, help="Also write a strip of N faces from no change to the edit.")
GifOpt = typer.Option(False, "--gif", help="With --steps: an animated GIF instead of a strip.")


def _checked(build):
    """An edit object, or a usage error naming the bad value."""
    try:
        return build()
    except ValueError as exc:
        fail(str(exc))


def _write_strip(pipe, photo, faces, edit, steps: int, base: Path, gif: bool) -> Path:
    """A strip (or GIF) of the first face's crop from no change to the full edit."""
    import cv2
    import numpy as np
    from PIL import Image

    from stoic_cli.face.images import save_rgb

    frames = []
    for fraction in np.linspace(0, 1, max(2, steps)):
        r = pipe.apply(photo, faces[:1], edit.scaled(float(fraction)))
        frames.append(cv2.resize(r.faces[0].edited_crop, (256, 256), interpolation=cv2.INTER_CUBIC))
    if gif:
        path = base.with_name(f"{base.stem}_strip.gif")
        path.parent.mkdir(parents=True, exist_ok=True)
        imgs = [Image.fromarray(f) for f in frames + frames[-2:0:-1]]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=120, loop=0)
        return path
    path = base.with_name(f"{base.stem}_strip.png")
    save_rgb(np.concatenate(frames, axis=1), path)
    return path


def run_edit(pipe, jobs, edit, *, largest: bool, overwrite: bool, quiet: bool, label: str,
             compare: bool = False, steps: int = 0, gif: bool = False):
    """Every editing command's batch: the edit applied to each photo's faces and saved, with an
    optional input | output sheet and an optional strip of the first face."""
    import numpy as np

    from stoic_cli.batch import run_jobs
    from stoic_cli.face.images import load_photo, save_photo, save_rgb

    def work(job):
        photo = load_photo(job.source)
        faces, small = pipe.find_faces(photo, largest)
        result = pipe.apply(photo, faces, edit)
        result.skipped_small = small
        save_photo(photo, result.rgb, job.output)
        notes = [skipped_message(result)] if small else []
        if compare:
            save_rgb(np.concatenate([photo.rgb, result.rgb], axis=1),
                     job.output.with_name(f"{job.source.stem}_compare.png"))
        if steps:
            notes.append(f"strip {_write_strip(pipe, photo, faces, edit, steps, job.output, gif).name}")
        return len(faces), "; ".join(notes)

    return run_jobs(jobs, work, overwrite=overwrite, console=err, label=label, quiet=quiet)


@app.command()
def neutralize(
    images: List[Path] = InputsArg,
    output: Optional[Path] = OutDirOpt,
    strength: float = typer.Option(1.0, "--strength", "-s", help="0 = unchanged, 1 = neutral, up to 2 goes past neutral."),
    compare: bool = typer.Option(False, "--compare", help="Also write <stem>_compare.png: input | output."),
    recursive: bool = RecursiveOpt,
    overwrite: bool = OverwriteOpt,
    largest: bool = LargestOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    models: Optional[Path] = ModelsOpt,
    min_eyes: float = MinEyeOpt,
    quiet: bool = QuietOpt,
):
    """Remove the expression from every face; writes <stem>_neutral<ext>.

    The photo's own pixels move (lips close, cheeks and corners relax); only where something
    appears that the photo lacks (lips over teeth) is it drawn. Hair, background and clothes
    keep their original pixels.

    [bold]Examples[/]

      stoic neutralize photo.jpg --compare          photo_neutral.jpg + photo_compare.png
      stoic neutralize ids/ -o out/ -r --report out/report.csv
      stoic neutralize photo.jpg --strength 0.5     halfway to neutral"""
    from stoic_cli.batch import plan_jobs
    from stoic_cli.edit.edits import Neutralize

    edit = _checked(lambda: Neutralize(strength))
    pipe = load_pipeline(models, device, min_eyes)
    jobs = plan_jobs(images, "neutral", output, recursive)
    finish(run_edit(pipe, jobs, edit, largest=largest, overwrite=overwrite, quiet=quiet, label="neutralizing",
                    compare=compare), report)


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
    from stoic_cli.batch import plan_jobs
    from stoic_cli.edit.edits import Transfer
    from stoic_cli.face.detection import NoFaceError
    from stoic_cli.face.images import ImageError, load_photo

    _checked(lambda: Transfer.ALPHA.check("--alpha", alpha))
    pipe = load_pipeline(models, device, min_eyes)
    # The reference is checked before any input is touched.
    try:
        reference = pipe.read_reference(load_photo(expr), source=str(expr))
    except (ImageError, NoFaceError) as exc:
        fail(f"reference {expr}: {exc}")
    edit = Transfer(reference, alpha)
    jobs = plan_jobs(images, "transfer", output, recursive)
    finish(run_edit(pipe, jobs, edit, largest=largest, overwrite=overwrite, quiet=quiet, label="transferring",
                    steps=steps, gif=gif), report)


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
):
    """Move attributes (smile, surprise, age, ...) by chosen amounts; writes <stem>_edit<ext>.

    Examples: --attr smile=0.5 (half a typical smile), --attr age=10 (ten years older),
    --attr smile=-0.5 --attr surprise=0.3 (several at once); --list shows each range. The
    renderer moves the photo's own pixels (a dropping jaw, rising brows) and draws only what
    is new."""
    from stoic_cli.batch import plan_jobs
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
    pipe = load_pipeline(models, device, min_eyes)
    try:
        known = pipe.models.attributes()
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    amounts = parse_amounts(attr, known)
    edit_ = _checked(lambda: AttributeEdit(known, amounts, force=force))
    jobs = plan_jobs(images, "edit", output, recursive)
    finish(run_edit(pipe, jobs, edit_, largest=largest, overwrite=overwrite, quiet=quiet, label="editing",
                    steps=steps, gif=gif), report)
