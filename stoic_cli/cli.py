"""stoic's command line. Every image command follows the batch conventions in stoic_cli.batch."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="""Remove, transfer and edit facial expressions in photos.

[bold]Examples[/]

  stoic neutralize photo.jpg                 writes photo_neutral.jpg next to it
  stoic neutralize ids/ -o out/ --recursive  a whole folder tree, mirrored into out/
  stoic transfer --expr smile.jpg me.jpg     gives me.jpg the expression of smile.jpg
  stoic edit me.jpg --attr smile=0.5         half a smile
  stoic detect photo.jpg --json              faces, scores and landmarks
  stoic eval neutralize --pairs pairs.csv    quality report (needs the eval extra)
  stoic bench                                speed of the model stack and end to end

Trained weights are for non-commercial research use (see models/README.md).""",
)
data_app = typer.Typer(no_args_is_help=True, help="Prepare training data from the shared face datasets.")
train_app = typer.Typer(no_args_is_help=True, help="Train StoicNet's stages and export them to ONNX.")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")


def _register_evaluation() -> None:
    # The evaluation commands import their judges (dlib, MediaPipe) only when run.
    from stoic_cli.evaluation.cli import bench, eval_app

    app.add_typer(eval_app, name="eval")
    app.command("bench")(bench)


_register_evaluation()

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
MinEyeOpt = typer.Option(20.0, "--min-eyes", help="Skip faces whose eyes are closer than this many pixels.")

def _torch_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    from stoic_cli.runtime.onnx import gpu_present
    if device == "cuda" and not gpu_present():
        err.print("[red]error:[/] --device cuda asked for, but no CUDA GPU is visible")
        raise typer.Exit(2)
    return "cuda" if gpu_present() else "cpu"


def _finish(outcomes, report: Optional[Path], quiet: bool = False) -> None:
    from stoic_cli.batch import FAILED, summary, write_report

    if report:
        write_report(outcomes, report)
    if not outcomes:
        err.print("[red]error:[/] no images found in the given inputs")
        raise typer.Exit(2)
    err.print(summary(outcomes))
    if any(o.status == FAILED for o in outcomes):
        raise typer.Exit(1)


def _load_pipeline(models_dir: Optional[Path], device: str, min_eyes: float = 20.0):
    from stoic_cli.face.detection import FaceDetector
    from stoic_cli.runtime.models import FaceModels, ModelNotFound
    from stoic_cli.pipeline import Pipeline

    try:
        models = FaceModels(models_dir, device=device)
        provider = models.provider
    except (ModelNotFound, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    except RuntimeError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    err.print(f"models: {models.dir} on {provider}", highlight=False)
    return Pipeline(models, FaceDetector(device=_torch_device(device)), min_eye_distance=min_eyes)


def _message(result) -> str:
    return f"{result.skipped_small} small face(s) skipped" if result.skipped_small else ""


# --------------------------------------------------------------------------- detect / crop / info

@app.command()
def detect(
    images: List[Path] = InputsArg,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of a table."),
    recursive: bool = RecursiveOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
):
    """Find faces: box, score and the five landmarks (eyes, nose, mouth corners)."""
    from stoic_cli.batch import plan_jobs, run_jobs
    from stoic_cli.face.detection import FaceDetector
    from stoic_cli.face.images import load_photo

    detector = FaceDetector(device=_torch_device(device))
    jobs = plan_jobs(images, None, None, recursive)

    def work(job):
        photo = load_photo(job.source)
        faces = detector.detect(photo.rgb)
        if as_json:
            print(json.dumps({"path": str(job.source), "width": photo.width, "height": photo.height,
                              "faces": [f.to_dict() for f in faces]}))
        else:
            # The path goes on its own unwrapped line: a table title would be folded to the
            # table's width, which breaks long paths for anyone grepping the output.
            out.print(f"{job.source} ({photo.width}x{photo.height})", soft_wrap=True, markup=False, highlight=False)
            table = Table(show_lines=False)
            for col in ("#", "box x1,y1,x2,y2", "score", "eye distance"):
                table.add_column(col)
            for i, f in enumerate(faces):
                table.add_row(str(i), ", ".join(f"{v:.0f}" for v in f.box), f"{f.score:.3f}", f"{f.eye_distance:.0f}")
            out.print(table)
        if not faces:
            raise ValueError("no face found")
        return len(faces), f"{len(faces)} face(s)"

    _finish(run_jobs(jobs, work, console=err, label="detecting"), report)


@app.command()
def crop(
    images: List[Path] = InputsArg,
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the crops."),
    size: int = typer.Option(128, "--size", min=16, max=4096, help="Crop side in pixels (the models use 128)."),
    recursive: bool = RecursiveOpt,
    overwrite: bool = OverwriteOpt,
    largest: bool = LargestOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    min_eyes: float = MinEyeOpt,
):
    """Write aligned square face crops: <stem>_crop.png, <stem>_crop1.png, ... per face."""
    from stoic_cli.face.alignment import align_face
    from stoic_cli.batch import plan_jobs, run_jobs
    from stoic_cli.face.detection import FaceDetector, split_small_faces
    from stoic_cli.face.images import load_photo, save_rgb

    detector = FaceDetector(device=_torch_device(device))
    jobs = plan_jobs(images, "crop", output, recursive)
    for job in jobs:
        job.output = job.output.with_suffix(".png")  # crops are lossless

    def work(job):
        photo = load_photo(job.source)
        faces, small = split_small_faces(detector.detect(photo.rgb), min_eyes)
        if not faces:
            raise ValueError("no usable face found" + (f" ({len(small)} too small)" if small else ""))
        faces = faces[:1] if largest else faces
        for i, f in enumerate(faces):
            c, _ = align_face(photo.rgb, f.landmarks, size)
            target = job.output if i == 0 else job.output.with_name(f"{job.output.stem}{i}.png")
            save_rgb(c, target)
        return len(faces), (f"{small} small face(s) skipped" if small else "")

    _finish(run_jobs(jobs, work, overwrite=overwrite, console=err, label="cropping"), report)


@app.command()
def info(models: Optional[Path] = ModelsOpt):
    """Versions, model files found and ONNX Runtime providers."""
    import importlib.metadata as md

    from stoic_cli import __version__
    from stoic_cli.runtime.models import NETWORKS, candidate_dirs
    from stoic_cli.runtime.onnx import available_providers, choose_providers, gpu_present

    # Plain "key: value" lines rather than a table: pasted into bug reports, grepped in CI logs.
    rows = [("stoic", __version__), ("python", sys.version.split()[0])]
    for pkg in ("torch", "onnxruntime-gpu", "facenet-pytorch", "opencv-python-headless", "numpy", "typer"):
        try:
            rows.append((pkg, md.version(pkg)))
        except md.PackageNotFoundError:
            rows.append((pkg, "not installed"))
    rows.append(("ONNX Runtime providers", ", ".join(available_providers())))
    rows.append(("GPU present", str(gpu_present())))
    rows.append(("providers used (auto)", ", ".join(choose_providers("auto"))))
    for d in candidate_dirs(models):
        found = [n for n in NETWORKS if (d / f"{n}.onnx").exists()]
        extra = [f for f in ("attributes.json", "stoic.json") if (d / f).exists()]
        rows.append((f"models in {d}", ", ".join(found + extra) or "-"))
    for key, value in rows:
        out.print(f"{key}: {value}", markup=False, highlight=False)


# --------------------------------------------------------------------------- neutralize

def _compare_sheet(photo_rgb, result_rgb, path: Path) -> None:
    import numpy as np
    from stoic_cli.face.images import save_rgb

    save_rgb(np.concatenate([photo_rgb, result_rgb], axis=1), path)


@app.command()
def neutralize(
    images: List[Path] = InputsArg,
    output: Optional[Path] = OutDirOpt,
    strength: float = typer.Option(1.0, "--strength", "-s", help="0 = unchanged, 1 = neutral, >1 extrapolates past neutral."),
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
    from stoic_cli.batch import plan_jobs, run_jobs
    from stoic_cli.face.images import load_photo, save_photo
    from stoic_cli.edit.latent import neutralize_edit

    pipe = _load_pipeline(models, device, min_eyes)
    jobs = plan_jobs(images, "neutral", output, recursive)

    def work(job):
        photo = load_photo(job.source)
        result = pipe.run(photo, neutralize_edit(strength), largest)
        save_photo(photo, result.rgb, job.output)
        if compare:
            _compare_sheet(photo.rgb, result.rgb, job.output.with_name(f"{job.source.stem}_compare.png"))
        return len(result.faces), _message(result)

    _finish(run_jobs(jobs, work, overwrite=overwrite, console=err, label="neutralizing", quiet=quiet), report)


# --------------------------------------------------------------------------- transfer / edit

def _write_steps(pipe, photo, faces, make_edit, values, base: Path, gif: bool) -> Path:
    """A strip (or GIF) of the first face's crop for each value, e.g. alpha 0 -> alpha."""
    import cv2
    import numpy as np
    from PIL import Image

    from stoic_cli.face.images import save_rgb

    frames = []
    for v in values:
        r = pipe.apply(photo, faces[:1], make_edit(v))
        frame = cv2.resize(r.faces[0].edited_crop, (256, 256), interpolation=cv2.INTER_CUBIC)
        frames.append(frame)
    if gif:
        path = base.with_name(f"{base.stem}_strip.gif")
        path.parent.mkdir(parents=True, exist_ok=True)
        imgs = [Image.fromarray(f) for f in frames + frames[-2:0:-1]]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=120, loop=0)
        return path
    path = base.with_name(f"{base.stem}_strip.png")
    save_rgb(np.concatenate(frames, axis=1), path)
    return path


def _edit_photos(pipe, jobs, make_edit, final: float, steps: int, gif: bool, largest: bool,
                 overwrite: bool, quiet: bool, label: str):
    """Shared by transfer and edit: apply make_edit(final) to each photo's faces, save, and
    optionally write a strip of the first face from make_edit(0) to make_edit(final)."""
    import numpy as np

    from stoic_cli.batch import run_jobs
    from stoic_cli.face.images import load_photo, save_photo

    def work(job):
        photo = load_photo(job.source)
        faces, small = pipe.find_faces(photo, largest)
        result = pipe.apply(photo, faces, make_edit(final))
        save_photo(photo, result.rgb, job.output)
        msg = f"{small} small face(s) skipped" if small else ""
        if steps:
            strip = _write_steps(pipe, photo, faces, make_edit, np.linspace(0, final, max(2, steps)), job.output, gif)
            msg = (msg + "; " if msg else "") + f"strip {strip.name}"
        return len(faces), msg

    return run_jobs(jobs, work, overwrite=overwrite, console=err, label=label, quiet=quiet)


@app.command()
def transfer(
    images: List[Path] = InputsArg,
    expr: Path = typer.Option(..., "--expr", "-e", help="Reference photo whose expression is copied."),
    alpha: float = typer.Option(1.0, "--alpha", "-a", help="0 = neutral, 1 = the reference's intensity, >1 exaggerates."),
    steps: int = typer.Option(0, "--steps", min=0, max=50, help="Also write a strip of N faces from alpha 0 to --alpha."),
    gif: bool = typer.Option(False, "--gif", help="With --steps: an animated GIF instead of a strip."),
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
    smile)."""
    from stoic_cli.batch import plan_jobs
    from stoic_cli.face.images import ImageError, load_photo
    from stoic_cli.edit.latent import transfer_edit
    from stoic_cli.pipeline import NoFaceError

    pipe = _load_pipeline(models, device, min_eyes)
    # The reference is checked before any input is touched.
    try:
        reference = pipe.read_reference(load_photo(expr))
    except (ImageError, NoFaceError) as exc:
        err.print(f"[red]error:[/] reference {expr}: {exc}")
        raise typer.Exit(2)
    displacement = reference.displacement

    def make_edit(a: float):
        return transfer_edit(displacement, a)

    jobs = plan_jobs(images, "transfer", output, recursive)
    outcomes = _edit_photos(pipe, jobs, make_edit, alpha, steps, gif, largest, overwrite, quiet, "transferring")
    _finish(outcomes, report)


def _parse_amounts(specs: List[str], known: dict, force: bool) -> dict[str, float]:
    amounts: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip().lower()
        if name not in known:
            err.print(f"[red]error:[/] unknown attribute {name!r}; known: {', '.join(sorted(known))}")
            raise typer.Exit(2)
        try:
            amount = float(value) if sep else 1.0
        except ValueError:
            err.print(f"[red]error:[/] --attr {spec!r}: the amount must be a number, e.g. {name}=0.5")
            raise typer.Exit(2)
        attr = known[name]
        if not attr.minimum <= amount <= attr.maximum:
            if force:
                err.print(f"[yellow]warning:[/] {name}={amount} is outside {attr.minimum:g}..{attr.maximum:g}; "
                          "kept because of --force (identity may suffer)")
            else:
                clipped = min(max(amount, attr.minimum), attr.maximum)
                err.print(f"[yellow]warning:[/] {name}={amount} is outside {attr.minimum:g}..{attr.maximum:g} "
                          f"{attr.unit}; clipped to {clipped:g} (use --force to keep it)")
                amount = clipped
        amounts[name] = amounts.get(name, 0.0) + amount
    return amounts


@app.command()
def edit(
    images: Optional[List[Path]] = typer.Argument(None, help="Image files and/or folders.", show_default=False),
    attr: Optional[List[str]] = typer.Option(None, "--attr", "-a", help="NAME=AMOUNT, e.g. smile=0.5, age=10 (repeatable; they add up)."),
    list_: bool = typer.Option(False, "--list", help="List the attributes with their ranges and units."),
    force: bool = typer.Option(False, "--force", help="Keep amounts outside the documented range."),
    steps: int = typer.Option(0, "--steps", min=0, max=50, help="Also write a strip from 0 to the amounts in N steps."),
    gif: bool = typer.Option(False, "--gif", help="With --steps: an animated GIF instead of a strip."),
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
    --attr smile=-0.5 --attr surprise=0.3 (several at once). The renderer moves the photo's own
    pixels (a dropping jaw, rising brows) and draws only what is new."""
    from stoic_cli.batch import plan_jobs
    from stoic_cli.edit.latent import attribute_edit
    from stoic_cli.runtime.models import FaceModels, ModelNotFound

    try:
        known = FaceModels(models, device="cpu").attribute_table() if list_ else None
    except ModelNotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    if list_:
        table = Table(title="stoic edit attributes")
        for col in ("name", "range", "unit", "meaning"):
            table.add_column(col)
        for a in known.values():
            table.add_row(a.name, f"{a.minimum:g} .. {a.maximum:g}", a.unit, a.help)
        out.print(table)
        return
    if not images or not attr:
        err.print("[red]error:[/] give images and at least one --attr NAME=AMOUNT (see --list)")
        raise typer.Exit(2)
    pipe = _load_pipeline(models, device, min_eyes)
    try:
        known = pipe.models.attribute_table()
    except ModelNotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    amounts = _parse_amounts(attr, known, force)

    def make_edit(fraction: float):
        scaled = {k: v * fraction for k, v in amounts.items()}
        return attribute_edit(known, scaled)

    jobs = plan_jobs(images, "edit", output, recursive)
    _finish(_edit_photos(pipe, jobs, make_edit, 1.0, steps, gif, largest, overwrite, quiet, "editing"), report)


# --------------------------------------------------------------------------- data / train

@data_app.command("prepare")
def data_prepare(
    datasets: Path = typer.Option(Path("../shared/datasets"), "--datasets", help="Folder holding the shared datasets."),
    cache: Path = typer.Option(Path("cache"), "--cache", help="Where to write crops.npy, labels.csv, failures.csv."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Limit to these datasets (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Quick runs: the first N people of each dataset, at most 2N images."),
    workers: int = typer.Option(0, "--workers", help="Processes (default: up to 2)."),
    size: int = typer.Option(128, "--size", min=32, max=1024,
                             help="Crop side: 128 for the VAE, 256 for the renderer."),
):
    """Align the datasets with stoic's aligner into a cache, split by person (fixed seed)."""
    from rich.progress import Progress

    from stoic_cli.train.data import prepare

    try:
        with Progress(console=err, transient=True) as progress:
            counts = prepare(datasets, cache, only, limit, workers or None, size=size, progress=progress)
    except (FileNotFoundError, KeyError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    table = Table(title=f"aligned crops in {cache}")
    for col in ("dataset", "train", "val", "test", "failed"):
        table.add_column(col, justify="right")
    for ds, c in counts.items():
        table.add_row(ds, *(str(c.get(k, 0)) for k in ("train", "val", "test", "failed")))
    out.print(table)
    out.print(f"failures listed in {cache / 'failures.csv'}")


@data_app.command("pairs")
def data_pairs(
    output: Path = typer.Option(..., "-o", "--output", help="CSV to write (input,neutral,person,expression)."),
    cache: Path = typer.Option(Path("cache"), "--cache", help="Cache from `stoic data prepare` (holds the splits)."),
    datasets: Path = typer.Option(Path("../shared/datasets"), "--datasets", help="Folder holding the shared datasets."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Datasets to draw from (default: taiwanese)."),
    split: str = typer.Option("test", "--split", help="train | val | test"),
):
    """Write an evaluation pairs CSV of held-out people for `stoic eval neutralize --pairs`."""
    from stoic_cli.train.data import write_heldout_pairs

    try:
        n = write_heldout_pairs(cache, datasets, output, tuple(only or ["taiwanese"]), split)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    out.print(f"wrote {n} pairs to {output}")


def _train_config(config: Optional[Path], cache: Optional[Path], run: Optional[Path], overrides: List[str]):
    from stoic_cli.train.trainer import TrainConfig

    extra = {}
    for item in overrides or []:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    try:
        return TrainConfig.load(config, cache=str(cache) if cache else None, run=str(run) if run else None, **extra)
    except (ValueError, TypeError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)


ConfigOpt = typer.Option(None, "--config", help="JSON file of TrainConfig values.")
CacheOpt = typer.Option(None, "--cache", help="Training cache from `stoic data prepare` (default: cache/).")
RunOpt = typer.Option(None, "--run", help="Run folder for checkpoints and logs (default: runs/stoicnet).")
SetOpt = typer.Option(None, "--set", help="Override one config value, e.g. --set vae_steps=100 (repeatable).")
TorchDeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda")


@train_app.command("run")
def train_run(
    stage: str = typer.Argument(..., help="classifier | smile-judge | vae | enhancer | neutralizer | attributes | "
                                          "all (all trains the classifier only where expression_feature_weight "
                                          "is set, the smile judge only where cross_smile_weight is)"),
    config: Optional[Path] = ConfigOpt,
    cache: Optional[Path] = CacheOpt,
    run: Optional[Path] = RunOpt,
    set_: Optional[List[str]] = SetOpt,
    device: str = TorchDeviceOpt,
):
    """Train one stage (resumes from its checkpoint) or all of them in order."""
    from rich.progress import Progress

    from stoic_cli.train import trainer

    cfg = _train_config(config, cache, run, set_)
    dev = trainer.device_for(device)
    stages = ["vae", "enhancer", "neutralizer", "attributes"] if stage == "all" else [stage]
    if stage == "all" and cfg.cross_smile_weight:
        stages.insert(0, "smile-judge")
    if stage == "all" and cfg.expression_feature_weight:
        stages.insert(0, "classifier")
    funcs = {"classifier": trainer.train_classifier, "smile-judge": trainer.train_smile_judge, "vae": trainer.train_vae,
             "enhancer": trainer.train_enhancer, "neutralizer": trainer.train_neutralizer}
    for s in stages:
        if s not in funcs and s != "attributes":
            err.print(f"[red]error:[/] unknown stage {s!r}: {', '.join([*funcs, 'attributes'])} or all")
            raise typer.Exit(2)
        try:
            if s == "attributes":
                from stoic_cli.train.attributes import fit_attributes
                path = fit_attributes(cfg, dev)
            else:
                with Progress(console=err, transient=True) as progress:
                    path = funcs[s](cfg, dev, progress)
        except (FileNotFoundError, ValueError) as exc:  # a missing input or a mismatched checkpoint
            err.print(f"[red]error:[/] {s}: {exc}")
            raise typer.Exit(2)
        out.print(f"{s}: {path}")


@train_app.command("renderer")
def train_renderer_command(
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of RendererConfig values."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="256 px cache (`stoic data prepare --size 256`)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder (default: runs/renderer)."),
    set_: Optional[List[str]] = SetOpt,
):
    """Train the renderer (resumes from its checkpoint; logs renderer_log.csv and renderer_val.csv).

    It learns from same-person pairs how the photo's pixels move between two codes and what must
    be drawn. Example: stoic train renderer --cache cache256 --set steps=4000 --set threads=2"""
    from rich.progress import Progress

    from stoic_cli.train.render_stage import RendererConfig, train_renderer

    extra = {}
    for item in set_ or []:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    try:
        cfg = RendererConfig.load(config, cache=str(cache) if cache else None, run=str(run) if run else None, **extra)
        with Progress(console=err, transient=True) as progress:
            path = train_renderer(cfg, progress)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        err.print(f"[red]error:[/] renderer: {exc}")
        raise typer.Exit(2)
    out.print(f"renderer: {path}")


@train_app.command("export")
def train_export(
    run: Path = typer.Option(Path("runs/stoicnet"), "--run", help="Run folder with the trained checkpoints."),
    output: Path = typer.Option(Path("models"), "-o", "--output", help="Folder for the ONNX files."),
    renderer: Optional[Path] = typer.Option(None, "--renderer", help="Renderer run folder: write renderer.onnx only "
                                            "(its guided design embeds the decoder of --output)."),
):
    """Export encoder, neutralizer and decoder to ONNX (+ attributes.json if fitted), or the renderer."""
    import shutil

    if renderer is not None:
        from stoic_cli.train.render_stage import export_renderer
        out.print(f"wrote {export_renderer(renderer, output / 'renderer.onnx', output)}")
        return
    from stoic_cli.train.export import export_all

    for p in export_all(run, output):
        out.print(f"wrote {p}")
    if (run / "attributes.json").exists():
        shutil.copy(run / "attributes.json", output / "attributes.json")
        out.print(f"wrote {output / 'attributes.json'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
