"""ONNX Runtime sessions: CUDA when a GPU is really there, CPU otherwise, and say which ran.

onnxruntime-gpu lists the CUDA provider even on machines without a GPU and then logs an error
when asked for it, so we only ask for CUDA after checking for a device ourselves."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

# This onnxruntime build starts a 1DS telemetry thread when it is imported, which resolves
# mobile.events.data.microsoft.com ~9 s later; only this variable, read at import, stops it
# (disable_telemetry_events() does not), and onnxruntime is imported only after this module.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@lru_cache(maxsize=1)
def gpu_present() -> bool:
    """An NVIDIA device node and a loadable CUDA driver, asked without torch (the editing path
    does not import it)."""
    if not any(Path("/dev").glob("nvidia[0-9]*")) or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    try:
        import ctypes

        driver = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):  # no driver, or a broken install: the same as no GPU for us
        return False


def available_providers() -> list[str]:
    import onnxruntime as ort
    return list(ort.get_available_providers())


def choose_providers(device: str = "auto") -> list[str]:
    """Providers to ask for, best first. device: auto | cpu | cuda."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    cuda_ok = CUDA in available_providers() and gpu_present()
    if device == "cuda" and not cuda_ok:
        raise RuntimeError("--device cuda asked for, but no CUDA GPU / CUDA provider is available "
                           "(is onnxruntime-gpu installed and a GPU visible?)")
    if device in ("auto", "cuda") and cuda_ok:
        return [CUDA, CPU]
    return [CPU]


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu finds CUDA/cuDNN from the torch wheel's nvidia-* packages after this."""
    try:
        import onnxruntime as ort
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
    except Exception:
        pass


class ModelLoadError(ValueError):
    """An ONNX file that ONNX Runtime cannot load (empty, truncated, another format)."""


class OnnxModel:
    """One ONNX network with one output and one or more inputs (in the file's order), run in
    batches."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        providers = choose_providers(device)
        if CUDA in providers:
            _preload_cuda_libraries()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No busy-waiting between runs: photos in flight and the numpy steps share the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own types, with multi-line messages
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            raise ModelLoadError(f"{self.path}: not a usable ONNX model ({first})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    @property
    def provider(self) -> str:
        """The provider that actually runs this model."""
        return self.session.get_providers()[0]

    def __call__(self, *inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} input(s), got {len(inputs)}")
        arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
        run = lambda i, j: self.session.run([self.output_name], {n: a[i:j] for n, a in zip(self.input_names, arrays)})[0]
        n = len(arrays[0])
        if n <= batch_size:
            return run(0, n)
        return np.concatenate([run(i, i + batch_size) for i in range(0, n, batch_size)])
