"""Ray Data for clusters: the editing commands' batch on a pool of Ray actors.

`stoic neutralize|transfer|edit ... --ray ADDRESS` runs `run_with_ray`; the same pieces are the
Python entry point for a pipeline of one's own::

    import ray
    from stoic_cli.batch.cluster import Settings, StoicActor

    settings = Settings("neutralize", strength=1.0, device="cuda")
    ds = ray.data.from_items([{"source": "/shared/in/a.jpg", "output": "/shared/out/a_neutral.jpg"}])
    done = ds.map_batches(StoicActor, fn_constructor_kwargs={"settings": settings}, batch_size=1,
                          compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1)
    done.take_all()  # each row as given, plus status, faces, message, seconds, has_output

Each actor loads the models once (ONNX Runtime on CUDA when `device="cuda"` and Ray gave it a
GPU) and runs every row through stoic_cli.batch.run_job with stoic_cli.batch.editing.EditJob, so a row
obeys the same rules as a single-process run: a tagged output made with the same settings is
skipped, one made otherwise is refused unless `overwrite`, files are written whole under a
temporary name, and the provenance tag is the same byte for byte. A failing photo fails alone
(its row says why). Inputs and outputs must be on a filesystem every node sees, at the same
paths; relative paths are taken from `cwd` (the driver's folder) when the node has it.

Ray is an optional extra: `pip install "stoic-cli[ray]"`."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from stoic_cli.batch.planning import Job
from stoic_cli.batch.runner import (FAILED, INTERRUPTED, Outcome, Outcomes, main_thread, output_clashes, precheck,
                                    print_outcome, run_job)
from stoic_cli.edit.edits import Reference
from stoic_cli.face.detection import MIN_EYE_DISTANCE
from stoic_cli.batch.editing import EditJob, extras_for, read_reference

RAY_MISSING = 'Ray is not installed; install the extra: pip install "stoic-cli[ray]"'
COMMANDS = ("neutralize", "transfer", "edit")
LOCAL = "auto"  # --ray auto: a private Ray on this machine, one CPU per worker
LOCAL_OBJECT_STORE = 256 * 1024 ** 2  # rows are paths; the photos never pass through the store


class RayMissing(RuntimeError):
    pass


def import_ray():
    """The ray module, or RayMissing naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissing(RAY_MISSING) from exc
    return ray


@dataclass
class Settings:
    """One editing command's settings, as the command line takes them."""
    command: str  # neutralize | transfer | edit
    strength: float = 1.0  # neutralize
    alpha: float = 1.0  # transfer
    reference: str | None = None  # transfer: the reference photo (read by each actor unless reference_code)
    amounts: dict[str, float] = field(default_factory=dict)  # edit: attribute -> amount
    force: bool = False  # edit: amounts outside the documented ranges
    models: str | None = None  # None: each node's installed models
    device: str = "auto"  # auto | cpu | cuda
    min_eyes: float = MIN_EYE_DISTANCE
    largest: bool = False
    compare: bool = False
    steps: int = 0
    gif: bool = False
    overwrite: bool = False
    threads: int = 0  # ONNX Runtime threads per network in an actor; 0: the CPUs Ray gave it (OMP_NUM_THREADS)
    reference_code: Reference | None = None  # transfer: the reference already read (by the driver)

    def __post_init__(self):
        if self.command not in COMMANDS:
            raise ValueError(f"unknown command {self.command!r}: use {', '.join(COMMANDS)}")
        if self.command == "transfer" and self.reference is None and self.reference_code is None:
            raise ValueError("transfer needs a reference photo")

    def pipeline(self):
        """The models, loaded once (MTCNN from the same folder, or the installed one, as the CLI)."""
        from stoic_cli.pipeline import Pipeline
        from stoic_cli.runtime.detector import detector_for
        from stoic_cli.runtime.models import FaceModels

        threads = self.threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
        models = FaceModels(self.models, device=self.device, threads=threads).load()
        return Pipeline(models, detector_for(models.dir, self.device, threads), min_eye_distance=self.min_eyes)

    def edit(self, pipe):
        from stoic_cli.edit.edits import AttributeEdit, Neutralize, Transfer

        if self.command == "neutralize":
            return Neutralize(self.strength)
        if self.command == "transfer":
            reference = self.reference_code or read_reference(pipe, Path(self.reference))
            return Transfer(reference, self.alpha)
        return AttributeEdit(pipe.models.attributes(), dict(self.amounts), force=self.force)

    def extras_for(self, output: Path) -> list[Path]:
        return extras_for(output, self.compare, self.steps, self.gif)


def _path(value) -> Path | None:
    if isinstance(value, (bytes, np.bytes_)):
        value = os.fsdecode(bytes(value))
    value = str(value)
    return Path(value) if value else None


def _text(value: str) -> str:
    """A string Arrow can hold (a name that is not UTF-8 keeps its bytes as escapes)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class StoicActor:
    """A Ray Data actor (`Dataset.map_batches(StoicActor, ...)`): the models are loaded once, in
    the constructor; each call edits a batch of rows. Columns read: `source` and `output` (paths,
    str or bytes; an empty output: nothing written), optional `in_folder` (bool: found by walking
    a folder, so stoic's own outputs there are skipped) and `cwd` (the folder relative paths are
    from). Returned: the rows as given plus `status`, `faces`, `message`, `seconds`, `has_output`."""

    def __init__(self, settings: Settings | dict | None = None, **kwargs):
        if settings is None or isinstance(settings, dict):
            settings = Settings(**{**(settings or {}), **kwargs})
        self.settings = settings
        self.pipe = settings.pipeline()
        self.job = EditJob(self.pipe, settings.edit(self.pipe), largest=settings.largest, compare=settings.compare,
                           steps=settings.steps, gif=settings.gif)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["source"])
        done: dict[str, list] = {"status": [], "faces": [], "message": [], "seconds": [], "has_output": []}
        for i in range(n):
            start = time.perf_counter()
            outcome = self.run_row({k: v[i] for k, v in batch.items()})
            for key, value in (("status", outcome.status), ("faces", outcome.faces),
                               ("message", _text(outcome.message)), ("seconds", time.perf_counter() - start),
                               ("has_output", outcome.output is not None)):
                done[key].append(value)
        return {**batch, **{k: np.array(v) for k, v in done.items()}}

    def run_row(self, row: dict) -> Outcome:
        source, output = _path(row["source"]), _path(row.get("output", ""))
        cwd = _path(row.get("cwd", ""))
        relative = not source.is_absolute() or (output is not None and not output.is_absolute())
        if relative and cwd is not None:
            if not cwd.is_dir():
                return Outcome(source, FAILED, message=f"relative path, and this Ray node has no folder {cwd}: "
                               "give absolute paths on a filesystem every node sees")
            if Path.cwd() != cwd:
                os.chdir(cwd)
        job = Job(source, output, in_folder=bool(row.get("in_folder", False)))
        if output is not None:
            job.extras = self.job.extras_for(output)
        return run_job(job, self.job.work, self.settings.overwrite, self.job.provenance)


def start_ray(address: str, workers: int, num_gpus: float = 0.0):
    """Connect to the cluster at `address` (what ray.init takes: host:port, ray://host:port),
    or for `auto` start a private local Ray with one CPU per worker. Returns (ray, whether this
    call started it, so should shut it down). Raises RayMissing, or ConnectionError and the
    like for an address that does not answer."""
    import logging

    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if address == LOCAL:
        ray.init(address="local", num_cpus=max(1, workers), num_gpus=None if num_gpus else 0,
                 object_store_memory=int(os.environ.get("STOIC_RAY_OBJECT_STORE", LOCAL_OBJECT_STORE)),
                 include_dashboard=False, logging_level=logging.ERROR)
        have = ray.cluster_resources().get("GPU", 0)
        if num_gpus and have < num_gpus:  # an actor pool that waits for GPUs that will never come
            ray.shutdown()
            raise RuntimeError(f"{num_gpus:g} GPU(s) per worker asked for, but this machine's Ray sees {have:g}")
    else:
        ray.init(address=address, logging_level=logging.ERROR)
    return ray, True


def _quiet_ray_data(ray) -> None:
    """stoic prints one line per input; Ray Data's progress (bars or logged lines) would repeat it."""
    import logging

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(logging.WARNING)


def _row(i: int, job: Job, cwd: str, as_bytes: bool) -> dict:
    enc = (lambda p: os.fsencode(str(p)) if p is not None else b"") if as_bytes else \
        (lambda p: str(p) if p is not None else "")
    return {"index": i, "source": enc(job.source), "output": enc(job.output), "in_folder": job.in_folder,
            "cwd": enc(cwd)}


def _utf8(path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def run_with_ray(jobs: list[Job], settings: Settings, address: str = LOCAL, workers: int = 2, num_gpus: float = 0.0,
                 *, console=None, quiet: bool = False, on_outcome: Callable[[Outcome], None] | None = None,
                 batch_size: int = 1) -> Outcomes:
    """The batch of planned `jobs` on `workers` Ray actors (each with `num_gpus` GPUs): what
    needs no photo (not an image, output = input, two inputs with one output name) is settled
    here before dispatch, the rest by the actors. One line per input is printed as it finishes;
    the outcomes come back in the planned order, so the report is the single-process run's.
    Ctrl-C or SIGTERM stops the batch: inputs not finished are marked interrupted."""
    from rich.console import Console

    console = console or Console(stderr=True)
    for job in jobs:
        if job.output is not None:
            job.extras = settings.extras_for(job.output)
    clash = output_clashes(jobs)
    found: dict[int, Outcome] = {}

    def record(i: int, outcome: Outcome) -> None:
        found[i] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
        if not quiet:
            print_outcome(console, outcome)

    rows, cwd = [], os.getcwd()
    as_bytes = not all(_utf8(p) for job in jobs for p in (job.source, job.output, cwd) if p is not None)
    for i, job in enumerate(jobs):
        settled = precheck(job, clash.get(i))
        if settled is not None:
            record(i, settled)
        else:
            rows.append(_row(i, job, cwd, as_bytes))
    outcomes = Outcomes()
    if rows:
        workers = max(1, min(workers, len(rows)))
        ray, started = start_ray(address, workers, num_gpus)
        _quiet_ray_data(ray)
        stop = {"requested": False}
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True)) \
            if main_thread() else None
        if not quiet:
            console.print(f"ray: {len(rows)} inputs on {workers} worker(s)"
                          f"{f' with {num_gpus:g} GPU(s) each' if num_gpus else ''}", highlight=False)
        try:
            ds = ray.data.from_items(rows).map_batches(
                StoicActor, compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
                num_gpus=num_gpus or None, batch_format="numpy",
                fn_constructor_kwargs={"settings": settings})
            for row in ds.iter_rows():
                i = int(row["index"])
                job = jobs[i]
                record(i, Outcome(job.source, str(row["status"]), faces=int(row["faces"]),
                                  message=str(row["message"]), seconds=float(row["seconds"]),
                                  output=job.output if bool(row["has_output"]) else None))
                if stop["requested"]:
                    break
            outcomes.interrupted = stop["requested"]
        except KeyboardInterrupt:
            outcomes.interrupted = True
        except Exception as exc:  # the cluster itself failed (actors that cannot start, a lost node)
            message = f"ray: {_one_line(exc)}"
            for row in rows:
                if row["index"] not in found:
                    record(row["index"], Outcome(jobs[row["index"]].source, FAILED, message=message))
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if started:
                ray.shutdown()
    for i, job in enumerate(jobs):
        outcomes.append(found.get(i) or Outcome(job.source, INTERRUPTED, message="not finished: interrupted; "
                                                "rerun to resume"))
    return outcomes


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(cause).__name__
