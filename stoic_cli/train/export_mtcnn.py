"""Export facenet-pytorch's MTCNN networks (the P/R/O-net weights inside its wheel) to ONNX, so
detection can run on ONNX Runtime without torch (stoic_cli.runtime.detector):

  mtcnn_pnet.onnx  image (N,3,H,W) in [-1,1]  -> (N,6,H',W'): box regression (4), face softmax (2)
  mtcnn_rnet.onnx  image (N,3,24,24)          -> (N,6):  box regression (4), face softmax (2)
  mtcnn_onet.onnx  image (N,3,48,48)          -> (N,16): box regression (4), landmarks (10),
                                                          face softmax (2)

Each file has one output (the networks' outputs concatenated along the channel axis, exact), the
shape stoic_cli.runtime.onnx.OnnxModel runs.  `python -m stoic_cli.train.export_mtcnn [DIR]`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

OPSET = 17
NAMES = ("pnet", "rnet", "onet")


class _Joined(nn.Module):
    """One network with its outputs concatenated in `order` (indices into its output tuple)."""

    def __init__(self, net: nn.Module, order: tuple[int, ...]):
        super().__init__()
        self.net, self.order = net.eval(), order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([out[i] for i in self.order], dim=1)


def networks() -> dict[str, tuple[nn.Module, torch.Tensor, dict]]:
    """name -> (module with one output, example input, dynamic axes of input and output)."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    batch = {0: "batch"}
    pyramid = {0: "batch", 2: "height", 3: "width"}
    return {
        # PNet returns (regression, softmax), RNet the same, ONet (regression, landmarks, softmax).
        "pnet": (_Joined(PNet(), (0, 1)), torch.zeros(2, 3, 37, 53), pyramid),
        "rnet": (_Joined(RNet(), (0, 1)), torch.zeros(2, 3, 24, 24), batch),
        "onet": (_Joined(ONet(), (0, 1, 2)), torch.zeros(2, 3, 48, 48), batch),
    }


def export_mtcnn(out_dir: str | Path = "models") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (module, example, axes) in networks().items():
        path = out_dir / f"mtcnn_{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(module, (example,), str(path), input_names=["image"], output_names=["out"],
                              dynamic_axes={"image": axes, "out": axes if name == "pnet" else {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        written.append(path)
    return written


def max_difference(model_dir: str | Path = "models", seed: int = 0) -> dict[str, float]:
    """Largest absolute difference between facenet-pytorch and ONNX Runtime per network, on
    random inputs in the networks' range (a check of the export, not of detection)."""
    import numpy as np

    from stoic_cli.runtime.onnx import OnnxModel

    gen = torch.Generator().manual_seed(seed)
    shapes = {"pnet": (3, 3, 71, 45), "rnet": (5, 3, 24, 24), "onet": (5, 3, 48, 48)}
    out = {}
    for name, (module, _, _) in networks().items():
        x = torch.rand(shapes[name], generator=gen) * 2 - 1
        with torch.no_grad():
            expected = module(x).numpy()
        got = OnnxModel(Path(model_dir) / f"mtcnn_{name}.onnx", device="cpu")(x.numpy())
        out[name] = float(np.abs(got - expected).max())
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "models"
    for p in export_mtcnn(target):
        print(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB)")
    print("max |onnx - torch|:", max_difference(target))
