"""`stoic detect`, `stoic crop`, `stoic info`: faces and what is installed."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from stoic_cli.cli.app import app
from stoic_cli.cli.options import (DeviceOpt, InputsArg, LargestOpt, MinEyeOpt, ModelsOpt, OverwriteOpt,
                                   RecursiveOpt, ReportOpt, ShardOpt, err, finish, out, plan, face_detector)


@app.command()
def detect(
    images: List[Path] = InputsArg,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of a table."),
    recursive: bool = RecursiveOpt,
    report: Optional[Path] = ReportOpt,
    device: str = DeviceOpt,
    shard_spec: Optional[str] = ShardOpt,
):
    """Find faces: box, score and the five landmarks (eyes, nose, mouth corners)."""
    from stoic_cli.batch.runner import run_jobs
    from stoic_cli.face.images import load_photo

    detector = face_detector(device)
    jobs = plan(images, None, None, recursive, shard_spec, report)

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

    finish(run_jobs(jobs, work, console=err, label="detecting"), report)


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
    shard_spec: Optional[str] = ShardOpt,
):
    """Write aligned square face crops: <stem>_crop.png, <stem>_crop1.png, ... per face."""
    from stoic_cli import __version__
    from stoic_cli.batch.runner import file_digest, run_jobs
    from stoic_cli.face.alignment import align_face
    from stoic_cli.face.detection import usable_faces
    from stoic_cli.face.images import load_photo, save_rgb

    detector = face_detector(device)
    jobs = plan(images, "crop", output, recursive, shard_spec, report)
    for job in jobs:
        job.output = job.output.with_suffix(".png")  # crops are lossless

    def provenance(job):
        return {"software": f"stoic {__version__}", "command": "crop",
                "settings": {"size": size, "largest": largest, "min_eyes": min_eyes}, "models": {},
                "input": job.source.name, "input_sha256": file_digest(job.source)}

    def work(job):
        photo = load_photo(job.source)
        faces, skipped = usable_faces(detector.detect(photo.rgb, min_eye_distance=min_eyes), min_eyes, largest, photo.rgb.shape[:2])
        # The first face's crop is written last: its presence means every crop of the photo is there.
        for i in [*range(1, len(faces)), 0]:
            c, _ = align_face(photo.rgb, faces[i].landmarks, size)
            target = job.output if i == 0 else job.output.with_name(f"{job.output.stem}{i}.png")
            save_rgb(c, target, job.provenance)
        return len(faces), skipped.message

    finish(run_jobs(jobs, work, overwrite=overwrite, console=err, label="cropping", provenance=provenance), report)


@app.command()
def info(
    photos: Optional[List[Path]] = typer.Argument(None, help="Photos whose stoic provenance tag to print.",
                                                  show_default=False),
    models: Optional[Path] = ModelsOpt,
):
    """Versions, model files found and ONNX Runtime providers; with photos, the tag stoic wrote
    into each (how it was edited, with which models, from which input).

    [bold]Examples[/]

      stoic info                        versions, models, providers
      stoic info out/me_neutral.jpg     was it edited by stoic, and how"""
    import importlib.metadata as md

    if photos:
        from stoic_cli.face.images import read_provenance

        missing = False
        for photo in photos:
            tag = read_provenance(photo)
            missing |= tag is None
            line = json.dumps(tag, sort_keys=True) if tag else ("no stoic tag" if photo.exists() else "file not found")
            out.print(f"{photo}: {line}", markup=False, highlight=False)
        if missing:
            raise typer.Exit(1)
        return

    from stoic_cli import __version__
    from stoic_cli.runtime.models import NETWORKS, candidate_dirs, find_model_dir
    from stoic_cli.runtime.settings import ModelSettings
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
    try:
        chosen = find_model_dir(models)
        rows.append(("models used", str(chosen)))
        rows += [(f"model {name}", note) for name, note in ModelSettings.read(chosen / "stoic.json").models.items()]
    except (FileNotFoundError, ValueError) as exc:
        rows.append(("models used", f"none ({exc})"))
    for key, value in rows:
        out.print(f"{key}: {value}", markup=False, highlight=False)
