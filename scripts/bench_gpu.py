"""The model stack's faces/s through PyTorch on a GPU (issue #24, part 5; a benchmark, not a test).

The lent GPU machine has torch but only a CPU build of ONNX Runtime, and no package registry, so
the shipped networks run there as PyTorch modules with the shipped weights: `prepare` (here, with
the train extra) writes them into one file small enough to travel; `run` (there, torch alone)
times encode -> neutralize -> decode both codes -> render at each batch size and checks the
modules against the ONNX files' outputs saved by `prepare`.

    python scripts/bench_gpu.py prepare shared/gpu_stack.pt        # here
    python scripts/bench_gpu.py run shared/gpu_stack.pt --device cuda -b 1 -b 64 -b 512
    python scripts/bench_gpu.py run shared/gpu_stack.pt --device cpu -b 1 -b 8   # the same on this CPU

Detection and paste-back are not in it: they stay on the CPU (numpy MTCNN and ONNX Runtime).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def prepare(out: Path) -> None:
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.train.export import import_onnx_vae

    models = REPO / "models"
    enc, dec = import_onnx_vae(models)
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(models / "neutralizer.onnx")).graph.initializer}
    renderer = torch.load(models / "training_logs" / "renderer" / "renderer.pt", map_location="cpu", weights_only=False)
    # Reference outputs of the shipped ONNX stack on fixed inputs, for the check on the device.
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    onnx_models = FaceModels(models, device="cpu")
    small = crops.reshape(2, 128, 2, 128, 2, 3).mean((2, 4)).astype(np.uint8)
    z = onnx_models.encode(small)
    zn = onnx_models.neutralize(z)
    drawn = onnx_models.net("decoder")(np.concatenate([z, zn]))
    rendered = onnx_models.net("renderer")(crops.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1, drawn[:2], drawn[2:])
    torch.save({"encoder": enc.state_dict(), "decoder": dec.state_dict(),
                "neutralizer": {"fc.weight": torch.from_numpy(init["fc.weight"].copy()),
                                "fc.bias": torch.from_numpy(init["fc.bias"].copy())},
                "renderer": renderer["renderer"], "width": renderer["config"].get("width", 32),
                "check": {"small": small, "crops": crops, "z": z, "zn": zn, "rendered": rendered}}, out)
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MB)")


def build(state: dict, device):
    from stoic_cli.train import nets
    from stoic_cli.train import renderer_net as R

    enc, dec, ntr = nets.Encoder(batchnorm=False), nets.Decoder(), nets.Neutralizer()
    enc.load_state_dict(state["encoder"])
    dec.load_state_dict(state["decoder"])
    ntr.load_state_dict(state["neutralizer"])
    ren = R.Renderer(dec, width=state["width"])
    missing, unexpected = ren.load_state_dict(state["renderer"], strict=False)  # its decoder is `dec`
    if unexpected or any(not k.startswith("decoder.") for k in missing):
        raise ValueError(f"renderer weights do not fit: {unexpected or missing}")
    return [m.to(device).eval() for m in (enc, ntr, dec, ren)]


def stack(modules, crops, small):
    import torch

    enc, ntr, dec, ren = modules
    z = enc(small)[0]
    zn = ntr(z)
    both = dec(torch.cat([z, zn]))
    n = len(z)
    return ren.from_drawings(crops, both[:n], both[n:])


def run(path: Path, device_name: str, batch_sizes: list[int], repeats: int) -> None:
    import numpy as np
    import torch

    device = torch.device(device_name)
    state = torch.load(path, map_location="cpu", weights_only=False)
    modules = build(state, device)
    check = state["check"]
    with torch.inference_mode():
        small = torch.from_numpy(check["small"].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1).to(device)
        crops = torch.from_numpy(check["crops"].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1).to(device)
        got = stack(modules, crops, small).cpu().numpy()
    diff = float(np.abs(got - check["rendered"]).max())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {name}; max |torch - ONNX| on the check crops: {diff:.2e}")
    for b in batch_sizes:
        crops_b = crops[torch.arange(b) % len(crops)]
        small_b = small[torch.arange(b) % len(small)]
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):  # two warm-ups: kernel choice and allocation
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                stack(modules, crops_b, small_b)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 2:
                    times.append(time.perf_counter() - start)
        med = statistics.median(times)
        print(f"batch {b:4d}: {b / med:10.1f} faces/s  ({1000 * med:.1f} ms per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    r = sub.add_parser("run")
    r.add_argument("state", type=Path)
    r.add_argument("--device", default="cuda")
    r.add_argument("-b", "--batch-size", type=int, action="append")
    r.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    if opts.what == "prepare":
        prepare(opts.out)
    else:
        run(opts.state, opts.device, opts.batch_size or [1, 64, 512], opts.repeats)


if __name__ == "__main__":
    main()
