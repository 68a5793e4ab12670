"""Throughput of the editing batch (neutralize) on Ray: photos/s with 1 and 2 Ray workers
against the single-process run, on the 12 London photos upscaled to 800 px.

  python scripts/bench_ray.py [--side 800] [--workers 1 2] [--cpus N]

The single-process figure times run_jobs after the models are loaded; the Ray figures time
run_with_ray on a local Ray that is already up (`ray.init(num_cpus=N)`): from the call, so with
each actor's start and model load as a cluster run has them, and from the first photo back (the
pool's steady rate). Every run writes into a fresh folder."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LONDON = REPO / "tests" / "data" / "london"


def photos(folder: Path, side: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for src in sorted(LONDON.glob("*.jpg")):
        Image.open(src).convert("RGB").resize((side, side), Image.BICUBIC).save(folder / src.name, quality=95)
    return folder


def single(inputs: Path, out: Path) -> float:
    from stoic_cli.batch.planning import plan_jobs
    from stoic_cli.batch.runner import run_jobs
    from stoic_cli.batch.cluster import Settings
    from stoic_cli.batch.editing import EditJob

    settings = Settings("neutralize", device="cpu")
    pipe = settings.pipeline()
    job = EditJob(pipe, settings.edit(pipe))
    jobs = job.prepare(plan_jobs([inputs], "neutral", out))
    start = time.perf_counter()
    outcomes = run_jobs(jobs, job.work, provenance=job.provenance, quiet=True)
    took = time.perf_counter() - start
    assert all(o.status == "ok" for o in outcomes), [o.message for o in outcomes]
    return len(outcomes) / took


def on_ray(inputs: Path, out: Path, workers: int) -> tuple[float, float]:
    """(photos/s from the call to the last photo, photos/s once the first photo is back)."""
    from stoic_cli.batch.planning import plan_jobs
    from stoic_cli.batch.cluster import Settings, run_with_ray

    jobs = plan_jobs([inputs], "neutral", out)
    done: list[float] = []
    start = time.perf_counter()
    outcomes = run_with_ray(jobs, Settings("neutralize", device="cpu"), workers=workers, quiet=True,
                            on_outcome=lambda o: done.append(time.perf_counter()))
    took = time.perf_counter() - start
    assert all(o.status == "ok" for o in outcomes), [o.message for o in outcomes]
    return len(outcomes) / took, (len(done) - 1) / (done[-1] - done[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=800)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="the local Ray's CPUs")
    args = ap.parse_args()

    import logging

    import ray

    work = Path(tempfile.mkdtemp(prefix="stoic-bench-ray-"))
    try:
        inputs = photos(work / "in", args.side)
        n = len(list(inputs.iterdir()))
        print(f"{n} photos at {args.side} px, {os.cpu_count()} CPU(s); local Ray with {args.cpus} CPU(s)")
        print(f"single process : {single(inputs, work / 'single'):.2f} photos/s (models loaded before)")
        ray.init(num_cpus=args.cpus, object_store_memory=256 * 1024 ** 2, include_dashboard=False,
                 logging_level=logging.ERROR)
        try:
            for w in args.workers:
                whole, steady = on_ray(inputs, work / f"ray{w}", w)
                print(f"ray, {w} worker(s): {whole:.2f} photos/s with the actors' start and model load, "
                      f"{steady:.2f} photos/s after the first photo")
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
