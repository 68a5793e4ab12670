"""`stoic eval ...` and `stoic bench`: the judges (dlib, MediaPipe) are imported only when a
command runs, so the rest of the CLI never needs the eval extra."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from stoic_cli.cli.app import app, eval_app
from stoic_cli.cli.options import ModelsOpt, check_device, err, load_pipeline

DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda (ONNX Runtime provider and MTCNN device).")


@eval_app.command("neutralize")
def neutralize(
    pairs: Path = typer.Option(..., "--pairs", help="Folder of <id>_neutral.<ext> + <id>_<anything>.<ext> photos, "
                               "or a CSV with columns input,neutral[,person] (paths relative to the CSV).",
                               show_default=False),
    output: Path = typer.Option(Path("eval_neutralize"), "-o", "--output", help="Folder for report.json, "
                                "report.md, contact_sheet.png and outputs/."),
    models: Optional[Path] = ModelsOpt,
    device: str = DeviceOpt,
    strength: float = typer.Option(1.0, "--strength", "-s", help="Neutralize strength, as in `stoic neutralize`."),
    sheet_rows: int = typer.Option(4, "--sheet-rows", min=1, help="Worst and best cases shown on the contact sheet."),
):
    """Neutralize each expressive photo and compare it with the same person's real neutral photo.

    Table 1: expression intensity (MediaPipe blendshapes) of input, output and true neutral, and
    the share of the expression removed. Table 2: identity (dlib distance; same person below
    0.6), verification and 1:2 recognition rates. Also the sharpness kept.

    [bold]Examples[/]

      stoic eval neutralize --pairs ../shared/fixtures/london -o reports/london
      stoic eval neutralize --pairs pairs.csv --models runs/export --strength 1.2
    """
    from stoic_cli.evaluation.neutralize_eval import evaluate_neutralize, load_pairs, make_neutralize_fn, markdown

    try:
        pair_list = load_pairs(pairs)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)
    identity, expression = _judges()
    pipe = load_pipeline(models, check_device(device))
    settings = _settings(pipe, pairs=str(pairs), strength=strength)
    with expression, _progress() as progress:
        task = progress.add_task("evaluating", total=len(pair_list))
        report = evaluate_neutralize(pair_list, make_neutralize_fn(pipe, strength), output, identity, expression,
                                     sheet_rows=sheet_rows, settings=settings, tick=lambda: progress.advance(task))
    typer.echo(markdown(report))  # plain: rich would re-wrap the table rows
    _wrote(output / "report.json", output / "report.md", output / "contact_sheet.png")
    if not report["rows"]:
        err.print("[red]error:[/] no pair could be evaluated")
        raise typer.Exit(1)


def _input_files(paths: List[Path], recursive: bool, what: str) -> List[Path]:
    from stoic_cli.batch.planning import expand_inputs, is_image

    missing = [p for p in paths if not p.exists()]
    if missing:
        err.print(f"[red]error:[/] {what} {escape(str(missing[0]))} not found")
        raise typer.Exit(2)
    # Files named are kept whatever they are (a bad one is reported); folders give their images.
    files = [f for f, root in expand_inputs(paths, recursive) if root is None or is_image(f)]
    if not files:
        err.print(f"[red]error:[/] no images found in the given {what}s")
        raise typer.Exit(2)
    return files


def _judges():
    from stoic_cli.evaluation.judges import EvalExtraMissing, ExpressionJudge, IdentityJudge

    try:
        return IdentityJudge(), ExpressionJudge()
    except EvalExtraMissing as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)


def _settings(pipe, **extra) -> dict:
    """What a report records about how it was made."""
    return {**extra, "models": str(pipe.models.dir), "provider": pipe.models.provider}


def _wrote(*paths: Path) -> None:
    err.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


@eval_app.command("transfer")
def transfer(
    inputs: Optional[List[Path]] = typer.Argument(None, help="More input photos or folders (same as --inputs).",
                                                  show_default=False),
    refs: List[Path] = typer.Option(..., "--refs", "--ref", help="Reference photo whose expression is copied "
                                    "(repeatable).", show_default=False),
    inputs_opt: Optional[List[Path]] = typer.Option(None, "--inputs", "-i", help="Input photos or folders, "
                                                    "e.g. neutral faces (repeatable).", show_default=False),
    output: Path = typer.Option(Path("eval_transfer"), "-o", "--output", help="Folder for report.json, "
                                "report.md, contact_sheet.png and outputs/."),
    alpha: float = typer.Option(1.0, "--alpha", "-a", help="Transfer strength, as in `stoic transfer`."),
    person_from: str = typer.Option("name", "--person-from", help="Who is in a photo, to skip same-person "
                                    "pairs: name (<id>_<expression>.jpg, e.g. 011_smiling) or file (every "
                                    "file a different person)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders of input folders."),
    models: Optional[Path] = ModelsOpt,
    device: str = DeviceOpt,
    sheet_rows: int = typer.Option(6, "--sheet-rows", min=1, help="Worst and best pairs shown on the contact "
                                   "sheet (all of them when there are at most twice this many)."),
):
    """Transfer each reference's expression onto each input photo of a different person.

    Smile progress (S(out) - S(in)) / (S(ref) - S(in)) with S the MediaPipe smile blendshape,
    over pairs where the reference smiles more than the input by over 0.1: mean, median and
    share >= 0.7. Whole-expression progress, for any expression: the same ratio for the vector
    of expression blendshapes (no blinks or gaze), along the line from the input's to the
    reference's. Identity: dlib distance of the output to the input (same person below 0.6),
    and to the reference. Largest face of each photo. Where a smile is lost: the same smile
    progress on the aligned crops, for the reference's reconstruction, the transfer code
    decoded and the output after paste-back.

    [bold]Examples[/]

      stoic eval transfer --refs ../shared/fixtures/london/011_smiling.jpg \\
          --inputs ../shared/fixtures/london/*_neutral.jpg -o reports/transfer
      stoic eval transfer --refs a.jpg --refs b.jpg --inputs faces/ --alpha 1.5 --models runs/export
    """
    from stoic_cli.evaluation.transfer_eval import evaluate_transfer, person_from_file, person_from_name, \
        transfer_markdown

    rules = {"name": person_from_name, "file": person_from_file}
    if person_from not in rules:
        err.print(f"[red]error:[/] --person-from {person_from!r}: use name or file")
        raise typer.Exit(2)
    for ref in refs:
        if not ref.is_file():
            err.print(f"[red]error:[/] reference {escape(str(ref))} not found")
            raise typer.Exit(2)
    if not (inputs_opt or inputs):
        err.print("[red]error:[/] give input photos with --inputs (files or folders)")
        raise typer.Exit(2)
    files = _input_files(list(inputs_opt or []) + list(inputs or []), recursive, "input")
    identity, expression = _judges()
    pipe = load_pipeline(models, check_device(device))
    settings = _settings(pipe)
    with expression, _progress() as progress:
        task = progress.add_task("transferring", total=len(refs) * len(files))
        report = evaluate_transfer(pipe, refs, files, output, alpha, identity, expression,
                                   person_of=rules[person_from], sheet_rows=sheet_rows, settings=settings,
                                   tick=lambda: progress.advance(task))
    typer.echo(transfer_markdown(report))  # plain: rich would re-wrap the table rows
    _wrote(output / "report.json", output / "report.md", output / "contact_sheet.png")
    if not report["rows"]:
        err.print("[red]error:[/] no (reference, input) pair could be evaluated")
        raise typer.Exit(1)


@eval_app.command("edit")
def edit(
    inputs: List[Path] = typer.Argument(..., help="Input photos and/or folders.", show_default=False),
    attr: List[str] = typer.Option(..., "--attr", "-a", help="Attribute to evaluate, e.g. smile, surprise "
                                   "(repeatable; several go to one subfolder each).", show_default=False),
    amounts: str = typer.Option("-1,-0.5,0,0.5,1", "--amounts", help="Comma-separated amounts, or START..STOP:N "
                                "for N evenly spaced ones (0..1:5)."),
    output: Path = typer.Option(Path("eval_edit"), "-o", "--output", help="Folder for report.json, report.md, "
                                "edit_strip_<attr>.png and outputs/."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders of input folders."),
    models: Optional[Path] = ModelsOpt,
    device: str = DeviceOpt,
    strip_rows: int = typer.Option(24, "--strip-rows", min=1, help="At most this many faces on the edit strip."),
):
    """Edit each photo with one attribute at several amounts and check the face follows.

    The attribute's blendshape measure (smile: mean of mouthSmileLeft/Right; surprise: jawOpen
    and browInnerUp, checked on their mean; others: expression intensity) should never drop by
    more than 0.01 as the amount grows: the share of such monotonic faces is reported, with the
    measure and the identity (dlib distance to the input, same person below 0.6) per amount.
    Largest face of each photo.

    [bold]Examples[/]

      stoic eval edit --attr smile --amounts=-1,-0.5,0,0.5,1 ../shared/fixtures/london -o reports/smile
      stoic eval edit --attr surprise --amounts 0..1:6 faces/ --models runs/export
      stoic eval edit -a smile -a surprise --amounts 0..1:5 faces/ -o reports/edit   one subfolder each
    """
    from stoic_cli.evaluation.attribute_eval import edit_markdown, evaluate_edit, parse_amounts
    from stoic_cli.runtime.models import ModelNotFound

    try:
        values = parse_amounts(amounts)
    except ValueError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)
    files = _input_files(list(inputs), recursive, "input")
    pipe = load_pipeline(models, check_device(device))
    try:
        known = pipe.models.attributes()
    except ModelNotFound as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)
    names = list(dict.fromkeys(a.strip().lower() for a in attr))
    unknown = [a for a in names if a not in known]
    if unknown:
        err.print(f"[red]error:[/] unknown attribute {unknown[0]!r}; known: {', '.join(sorted(known)) or 'none'}")
        raise typer.Exit(2)
    identity, expression = _judges()
    settings = _settings(pipe)
    evaluated = 0
    with expression, _progress() as progress:
        for name in names:
            folder = output if len(names) == 1 else output / name
            task = progress.add_task(f"editing {name}", total=len(files))
            report = evaluate_edit(pipe, files, name, values, folder, identity, expression, attributes=known,
                                   strip_rows=strip_rows, settings=settings, tick=lambda: progress.advance(task))
            typer.echo(edit_markdown(report))  # plain: rich would re-wrap the table rows
            _wrote(folder / "report.json", folder / "report.md", folder / f"edit_strip_{name}.png")
            evaluated += len(report["rows"])
    if not evaluated:
        err.print("[red]error:[/] no input could be evaluated")
        raise typer.Exit(1)


@eval_app.command("realism")
def realism(
    datasets: Path = typer.Option(Path("../shared/datasets"), "--datasets", help="Folder holding the shared datasets."),
    output: Path = typer.Option(Path("eval-report/realism"), "-o", "--output", help="Folder for report.json, report.md, sheets."),
    utk_per_race: int = typer.Option(20, "--utk-per-race", min=1, help="Smiling UTKFace photos per ethnic group."),
    london: Optional[Path] = typer.Option(None, "--london", help="Also the London fixtures (<id>_neutral/_smiling "
                                          ".jpg), as a last look: their mouth sheets may be published (CC BY)."),
    device: str = DeviceOpt,
    models: Optional[Path] = ModelsOpt,
):
    """Neutralize, transfer and edit on held-out people (Taiwanese, LFW validation, UTKFace),
    each expression number paired with realism: mouth sharpness against the person's real photo
    of the target expression, and detectability (HOG + logistic regression, cross-validated by
    person, ROC AUC; its JPEG and blur controls printed beside it), rates per group."""
    from stoic_cli.evaluation.renderer_eval import evaluate_realism

    if not datasets.is_dir():
        err.print(f"[red]error:[/] datasets folder not found: {datasets}")
        raise typer.Exit(2)
    pipe = load_pipeline(models, check_device(device))
    evaluate_realism(pipe, datasets, output, utk_per_race, london=london, progress=lambda m: err.print(m, highlight=False))
    _wrote(output / "report.json", output / "report.md")


@app.command()
def bench(
    device: str = DeviceOpt,
    batch_size: List[int] = typer.Option([1, 8, 32], "--batch-size", "-b", min=1,
                                         help="Batch size for the model-stack timing (repeatable)."),
    photos: Optional[Path] = typer.Option(None, "--photos", help="Folder of photos for detection and end-to-end "
                                          "timing (default: the repository's 12 London fixtures)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the numbers to this JSON file."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed runs per measurement; the median is reported."),
    models: Optional[Path] = ModelsOpt,
    threads: int = typer.Option(0, "--threads", min=0, help="ONNX Runtime intra-op threads (0 = one per core)."),
):
    """Time stoic here: the ONNX face stack in faces/s per batch size, MTCNN detection per photo,
    and whole photos through neutralize. Warmed up first; medians of --repeats runs.

    The table goes to the terminal; -o also writes every number, the ONNX Runtime provider
    and thread count, and the peak memory to JSON. Close other heavy programs first.

    [bold]Examples[/]

      stoic bench                                   CPU or GPU, whichever auto picks
      stoic bench --device cuda -b 1 -b 32 -b 128 -o bench_gpu.json
      stoic bench --device cpu --photos my_photos/ --repeats 3
    """
    from stoic_cli.evaluation.bench import run_bench
    from stoic_cli.runtime.models import ModelNotFound

    device = check_device(device)  # outside the try: typer.Exit is a RuntimeError
    try:
        run_bench(models, device, batch_size, photos, repeats, output, threads)
    except (ModelNotFound, FileNotFoundError, RuntimeError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)
    if output:
        _wrote(output)
