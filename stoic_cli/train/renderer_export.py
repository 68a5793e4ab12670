"""renderer.onnx from a renderer run, and its parity with PyTorch on real crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stoic_cli.train import renderer_net as R
from stoic_cli.train.renderer_stage import load_renderer, run_config


class _FromDrawings(torch.nn.Module):
    def __init__(self, net: R.Renderer):
        super().__init__()
        self.net = net

    def forward(self, crop, drawn_own, drawn_target):
        return self.net.from_drawings(crop, drawn_own, drawn_target)


def export_renderer(run: str | Path, out_path: str | Path, models: str | Path | None = None) -> Path:
    """renderer.onnx: (crop (N,3,256,256), the decoder's drawings of the own and the target code
    (N,3,128,128) each, as decoder.onnx gives them) -> (N,6,256,256). The frozen decoder stays
    out of the file: it ships once, as decoder.onnx."""
    return export_network(load_renderer(Path(run), Path(models) if models else None), out_path)


def export_network(net: R.Renderer, out_path: str | Path) -> Path:
    """export_renderer's file from a renderer network in memory."""
    drawing = torch.zeros(1, 3, R.SIZE // 2, R.SIZE // 2)
    example = (torch.zeros(1, 3, R.SIZE, R.SIZE), drawing, drawing)
    out_path = Path(out_path)
    names = ["crop", "drawn_own", "drawn_target"]
    torch.onnx.export(_FromDrawings(net).eval(), example, str(out_path), input_names=names, output_names=["rendered"],
                      dynamic_axes={n: {0: "batch"} for n in names + ["rendered"]}, opset_version=17, dynamo=False)
    return out_path


def max_renderer_difference(run: str | Path, onnx_path: str | Path, crops: np.ndarray, own: np.ndarray,
                            target: np.ndarray, models: str | Path | None = None) -> float:
    """Largest absolute difference between the PyTorch renderer and its ONNX file on real crops
    (uint8 NHWC, 256 px) and codes."""
    from stoic_cli.runtime.onnx import OnnxModel

    net = load_renderer(Path(run), Path(models) if models else None)
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = net(x, torch.from_numpy(own), torch.from_numpy(target)).numpy()
    folder = Path(models) if models else Path(run_config(Path(run)).models)
    decoder = OnnxModel(folder / "decoder.onnx", device="cpu")  # the runtime's path: decoder.onnx, then the renderer
    got = OnnxModel(onnx_path, device="cpu")(x.numpy(), decoder(own), decoder(target))
    return float(np.abs(got - expected).max())
