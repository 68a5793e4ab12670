"""`stoic data ...` and `stoic train ...`: preparing data, training the stages, exporting ONNX."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from stoic_cli.cli.app import data_app, train_app
from stoic_cli.cli.options import SetOpt, err, fail, out, parse_overrides

@data_app.command("prepare")
def data_prepare(
    datasets: Path = typer.Option(Path("../shared/datasets"), "--datasets", help="Folder holding the shared datasets."),
    cache: Path = typer.Option(Path("cache"), "--cache", help="Where to write crops.npy, labels.csv, failures.csv."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Limit to these datasets (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Quick runs: the first N people of each dataset, at most 2N images."),
    workers: int = typer.Option(0, "--workers", help="Processes (default: up to 2)."),
    size: int = typer.Option(128, "--size", min=32, max=1024,
                             help="Crop side: 128 for the VAE, 256 for the renderer."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1,
                                         help="A random N people of each dataset (fixed seed; each keeps the "
                                              "split of the whole set), e.g. for UTKFace's unpaired photos."),
):
    """Align the datasets with stoic's aligner into a cache, split by person (fixed seed)."""
    from rich.progress import Progress

    from stoic_cli.train.data import prepare

    try:
        with Progress(console=err, transient=True) as progress:
            counts = prepare(datasets, cache, only, limit, workers or None, size=size, progress=progress,
                             sample=sample)
    except (FileNotFoundError, KeyError) as exc:
        fail(f"{exc}")
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
        fail(f"{exc}")
    out.print(f"wrote {n} pairs to {output}")


def _train_config(config: Optional[Path], cache: Optional[Path], run: Optional[Path], overrides: List[str]):
    from stoic_cli.train.config import TrainConfig

    extra = parse_overrides(overrides)
    try:
        return TrainConfig.load(config, cache=str(cache) if cache else None, run=str(run) if run else None, **extra)
    except (ValueError, TypeError) as exc:
        fail(f"{exc}")


ConfigOpt = typer.Option(None, "--config", help="JSON file of TrainConfig values.")
CacheOpt = typer.Option(None, "--cache", help="Training cache from `stoic data prepare` (default: cache/).")
RunOpt = typer.Option(None, "--run", help="Run folder for checkpoints and logs (default: runs/stoicnet).")
TorchDeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda")


@train_app.command("run")
def train_run(
    stage: str = typer.Argument(..., help="classifier | vae | neutralizer | attributes | all (all trains the "
                                          "classifier only where expression_feature_weight is set)"),
    config: Optional[Path] = ConfigOpt,
    cache: Optional[Path] = CacheOpt,
    run: Optional[Path] = RunOpt,
    set_: Optional[List[str]] = SetOpt,
    device: str = TorchDeviceOpt,
):
    """Train one stage (resumes from its checkpoint) or all of them in order."""
    from rich.progress import Progress

    from stoic_cli.train.classifier_stage import train_classifier
    from stoic_cli.train.config import device_for
    from stoic_cli.train.neutralizer_stage import train_neutralizer
    from stoic_cli.train.vae_stage import train_vae

    cfg = _train_config(config, cache, run, set_)
    dev = device_for(device)
    stages = ["vae", "neutralizer", "attributes"] if stage == "all" else [stage]
    if stage == "all" and cfg.expression_feature_weight:
        stages.insert(0, "classifier")
    funcs = {"classifier": train_classifier, "vae": train_vae, "neutralizer": train_neutralizer}
    for s in stages:
        if s not in funcs and s != "attributes":
            fail(f"unknown stage {s!r}: {', '.join([*funcs, 'attributes'])} or all")
        try:
            if s == "attributes":
                from stoic_cli.train.attributes import fit_attributes
                path = fit_attributes(cfg, dev)
            else:
                with Progress(console=err, transient=True) as progress:
                    path = funcs[s](cfg, dev, progress)
        except (FileNotFoundError, ValueError) as exc:  # a missing input or a mismatched checkpoint
            fail(f"{s}: {exc}")
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

    from stoic_cli.train.renderer_stage import RendererConfig, train_renderer

    extra = parse_overrides(set_)
    try:
        cfg = RendererConfig.load(config, cache=str(cache) if cache else None, run=str(run) if run else None, **extra)
        with Progress(console=err, transient=True) as progress:
            path = train_renderer(cfg, progress)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        fail(f"renderer: {exc}")
    out.print(f"renderer: {path}")


@train_app.command("export")
def train_export(
    run: Path = typer.Option(Path("runs/stoicnet"), "--run", help="Run folder with the trained checkpoints."),
    output: Path = typer.Option(Path("models"), "-o", "--output", help="Folder for the ONNX files."),
    renderer: Optional[Path] = typer.Option(None, "--renderer", help="Renderer run folder: write renderer.onnx only "
                                            "(it reads the drawings of --output's decoder.onnx)."),
):
    """Export encoder, neutralizer and decoder to ONNX (+ attributes.json if fitted), or the renderer."""
    import shutil

    if renderer is not None:
        from stoic_cli.train.renderer_export import export_renderer
        out.print(f"wrote {export_renderer(renderer, output / 'renderer.onnx', output)}")
        return
    from stoic_cli.train.export import export_all

    for p in export_all(run, output):
        out.print(f"wrote {p}")
    if (run / "attributes.json").exists():
        shutil.copy(run / "attributes.json", output / "attributes.json")
        out.print(f"wrote {output / 'attributes.json'}")
