"""How fast stoic runs here: (a) the ONNX face stack alone in faces/s at several batch sizes,
(b) MTCNN detection per photo, (c) the neutralize batch as the CLI runs it (read, detect,
edit, write), one photo at a time with each stage's share and with photos in flight.

Every measurement is warmed up first (ONNX Runtime allocates and picks kernels on
the first call for each shape) and reported as the median of `repeats` runs, because a shared
machine makes single runs and means noisy."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "london"


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mib() -> float:
    # Linux reports kilobytes, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _photo_files(photos_dir: Path | None) -> list[Path]:
    """The images in `photos_dir` (default: the repository's London fixtures), sorted."""
    from stoic_cli.batch.planning import is_image

    folder = Path(photos_dir) if photos_dir else DEFAULT_PHOTOS
    if not folder.is_dir():
        if photos_dir:
            raise FileNotFoundError(f"{folder}: photo folder not found")
        return []  # installed without the repository's fixtures: model stack on random crops only
    return [f for f in sorted(folder.iterdir()) if f.is_file() and is_image(f)]


def _batch(models_dir, device: str, threads: int, files: list[Path], workers: int, repeats: int) -> dict:
    """The neutralize batch over `files` into a scratch folder with `workers` photos in flight
    (network runs on one thread each when several are), as the CLI runs it; with one worker
    also each stage's milliseconds per photo (reading and writing: what the stages leave)."""
    import tempfile

    from stoic_cli.batch.editing import EditJob
    from stoic_cli.batch.planning import plan_jobs
    from stoic_cli.batch.runner import OK, run_jobs
    from stoic_cli.edit.edits import Neutralize
    from stoic_cli.pipeline import Pipeline
    from stoic_cli.runtime.detector import detector_for
    from stoic_cli.runtime.models import FaceModels

    threads = 1 if workers > 1 else threads
    models = FaceModels(models_dir, device=device, threads=threads).load()
    pipe = Pipeline(models, detector_for(models.dir, device, threads))
    job = EditJob(pipe, Neutralize(1.0))
    with tempfile.TemporaryDirectory(prefix="stoic-bench-") as out:
        jobs = job.prepare(plan_jobs(files, "neutral", out))
        run = lambda: run_jobs(jobs, job.work, overwrite=True, quiet=True, provenance=job.provenance, workers=workers)
        run()  # warm-up
        pipe.stage_seconds = {} if workers == 1 else None
        times, done = [], 0
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            done = sum(o.status == OK for o in run())
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    row = {"workers": workers, "ort_threads": threads, "photos": len(files), "done": done,
           "photos_per_s": len(files) / med, "ms_per_photo": 1000 * med / len(files)}
    if pipe.stage_seconds:
        per_photo = {k: 1000 * v / (len(files) * max(1, repeats)) for k, v in pipe.stage_seconds.items()}
        per_photo["read + write"] = max(0.0, 1000 * statistics.mean(times) / len(files) - sum(per_photo.values()))
        row["stages_ms"] = per_photo
    return row


def _stack(models, crops: np.ndarray, repeats: int) -> dict:
    """encode -> neutralize -> render on one batch of render-sized crops; per-stage and total
    medians."""
    from stoic_cli.face.alignment import encoder_sized

    small = encoder_sized(crops, models.image_size)
    stages = (("encode", lambda _: models.encode(small)), ("neutralize", models.neutralize),
              ("render", lambda zn: models.render(crops, zs, zn)))
    zs = models.encode(small)
    for _ in range(2):  # warm-up for this batch shape
        y = None
        for _, fn in stages:
            y = fn(y)
    stage_times: list[list[float]] = [[] for _ in stages]
    totals = []
    for _ in range(max(1, repeats)):
        y, total = None, 0.0
        for k, (_, fn) in enumerate(stages):
            start = time.perf_counter()
            y = fn(y)
            took = time.perf_counter() - start
            stage_times[k].append(took)
            total += took
        totals.append(total)
    med = statistics.median(totals)
    return {"batch_size": len(crops), "faces_per_s": len(crops) / med, "ms_per_batch": 1000 * med,
            **{f"ms_{n}": 1000 * statistics.median(t) for (n, _), t in zip(stages, stage_times)}}


def run_bench(models_dir: str | Path | None = None, device: str = "auto", batch_sizes: Sequence[int] = (1, 8, 32),
              photos_dir: str | Path | None = None, repeats: int = 5, output: str | Path | None = None,
              threads: int = 0, console=None) -> dict:
    """Time the model stack, detection and the whole pipeline; print a table, write JSON to
    `output` when given, return the numbers. photos_dir defaults to the repository's 12 London
    fixtures (800x800, one face each); without photos only (a) runs, on random crops."""
    from stoic_cli.face.alignment import align_face
    from stoic_cli.face.detection import MIN_EYE_DISTANCE
    from stoic_cli.face.images import load_photo
    from stoic_cli.runtime.detector import OnnxFaceDetector
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.runtime.onnx import CUDA

    import onnxruntime as ort  # after stoic_cli.runtime (it turns ONNX Runtime's telemetry off)

    models = FaceModels(models_dir, device=device, threads=threads)
    provider = models.provider
    files = _photo_files(Path(photos_dir) if photos_dir else None)
    photos = [load_photo(f) for f in files]
    size = models.render_size
    result: dict = {
        "environment": {
            "device_requested": device, "onnx_provider": provider, "onnxruntime": ort.__version__,
            # 0 = ONNX Runtime's default, one intra-op thread per physical core.
            "ort_intra_op_threads": models.net("encoder").session.get_session_options().intra_op_num_threads,
            "detector": "MTCNN on ONNX Runtime", "gpu": _gpu_name() if provider == CUDA else None,
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "models": str(models.dir), "image_size": size, "repeats": repeats,
            "photos": len(photos), "photos_dir": str(photos_dir or DEFAULT_PHOTOS) if photos else None,
        },
    }

    # (b) detection first: its faces give real crops for (a).
    crops = []
    if photos:
        detector = OnnxFaceDetector(device=device, threads=threads)
        # As the editing commands search: for faces whose eyes are MIN_EYE_DISTANCE apart or more.
        detector.detect(photos[0].rgb, min_eye_distance=MIN_EYE_DISTANCE)  # warm-up
        per_photo = []
        for _ in range(max(1, repeats)):
            for p in photos:
                start = time.perf_counter()
                faces = detector.detect(p.rgb, min_eye_distance=MIN_EYE_DISTANCE)
                per_photo.append(time.perf_counter() - start)
                if faces and len(crops) < len(photos):
                    crops.append(align_face(p.rgb, faces[0].landmarks, size)[0])
        med = statistics.median(per_photo)
        size_note = sorted({f"{p.width}x{p.height}" for p in photos})
        result["detection"] = {"ms_per_photo": 1000 * med, "photos_per_s": 1 / med, "photo_sizes": size_note}

    # (a) the ONNX stack alone: real crops tiled up to each batch size, else random pixels.
    source = np.stack(crops) if crops else np.random.default_rng(0).integers(0, 256, (8, size, size, 3), np.uint8)
    result["environment"]["crops"] = f"real ({len(crops)} faces)" if crops else "random"
    result["model_stack"] = [_stack(models, source[np.arange(b) % len(source)], repeats) for b in batch_sizes]

    # (c) end to end as `stoic neutralize FOLDER -o OUT` runs it (read, detect, edit, write):
    # one photo at a time with each stage's share, then with the default photos in flight.
    if photos:
        from stoic_cli.batch.runner import default_workers

        result["end_to_end"] = [_batch(models_dir, device, threads, files, w, repeats)
                                for w in sorted({1, default_workers()})]
    result["peak_rss_mib"] = _peak_rss_mib()
    print_bench(result, console)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=1))
    return result


def print_bench(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    env = result["environment"]
    threads = env["ort_intra_op_threads"] or f"default ({env['cpu_count']} logical CPUs)"
    table = Table(title=f"stoic bench: {env['onnx_provider']}, ORT threads {threads}, {env['gpu'] or env['cpu']}")
    for col in ("what", "batch", "throughput", "latency", "detail"):
        table.add_column(col, justify="left" if col in ("what", "detail") else "right")
    for s in result["model_stack"]:
        detail = " ".join(f"{k[3:]} {s[k]:.1f}" for k in ("ms_encode", "ms_neutralize", "ms_render"))
        table.add_row("model stack", str(s["batch_size"]), f"{s['faces_per_s']:.1f} faces/s",
                      f"{s['ms_per_batch']:.1f} ms/batch", f"ms: {detail}")
    if "detection" in result:
        d = result["detection"]
        table.add_row("MTCNN detection", "1", f"{d['photos_per_s']:.1f} photos/s", f"{d['ms_per_photo']:.1f} ms",
                      ", ".join(d["photo_sizes"]))
    for e in result.get("end_to_end", []):
        threads = "default" if not e["ort_threads"] else e["ort_threads"]
        table.add_row(f"neutralize batch, {e['workers']} in flight", "1", f"{e['photos_per_s']:.2f} photos/s",
                      f"{e['ms_per_photo']:.1f} ms", f"{e['done']}/{e['photos']} photos read, edited, written; "
                      f"ORT threads {threads}")
        stages = e.get("stages_ms", {})
        total = sum(stages.values()) or 1.0
        for name, ms in stages.items():
            table.add_row(f"  {name}", "", "", f"{ms:.1f} ms", f"{100 * ms / total:.0f} % of a photo")
    table.caption = f"medians of {env['repeats']} runs after warm-up; peak RSS {result['peak_rss_mib']:.0f} MiB"
    console.print(table)


def _gpu_name() -> str:
    """The first CUDA device's name, asked of the driver (no torch on the editing path)."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
        name = ctypes.create_string_buffer(256)
        driver.cuInit(0)
        device = ctypes.c_int(0)
        driver.cuDeviceGet(ctypes.byref(device), 0)
        driver.cuDeviceGetName(name, 256, device)
        return name.value.decode() or "CUDA GPU"
    except (OSError, AttributeError):
        return "CUDA GPU"
