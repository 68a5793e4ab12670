"""Export trained checkpoints to ONNX, one file per network so transfer and edit reuse them:

  encoder.onnx      image (N,3,128,128) in [-1,1]  -> mu (N,256)       (the mean: no sampling)
  neutralizer.onnx  z (N,256)                      -> z_neutral (N,256)
  decoder.onnx      z (N,256)                      -> image (N,3,128,128)  (the codes' check)
  stoic.json        sizes, template, data version, how they were trained
renderer.onnx is exported from its own run (stoic_cli.train.renderer_export.export_renderer).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stoic_cli.face import alignment
from stoic_cli.train import nets
from stoic_cli.train.checkpoints import load_vae

OPSET = 17


class _EncoderMean(nn.Module):
    def __init__(self, enc: nets.Encoder):
        super().__init__()
        self.enc = enc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)[0]


def _export(module: nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str) -> None:
    module.eval()
    torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                      dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}}, opset_version=OPSET,
                      dynamo=False)


def load_networks(run: Path) -> dict[str, nn.Module]:
    """The run's networks; a run with a neutralizer alone (fitted to a shipped encoder, see
    neutralizer_stage.frozen_encoder) exports the neutralizer alone."""
    device = torch.device("cpu")
    nets_: dict[str, nn.Module] = {}
    if (run / "vae.pt").exists() or not (run / "neutralizer.pt").exists():
        enc, dec = load_vae(run, device)
        nets_ = {"encoder": _EncoderMean(enc), "decoder": dec}
    ntr_state = torch.load(run / "neutralizer.pt", map_location=device, weights_only=False)
    ntr = nets.Neutralizer()
    ntr.load_state_dict(ntr_state["neutralizer"])
    nets_["neutralizer"] = ntr.eval()
    return nets_


def export_all(run: str | Path, out_dir: str | Path, extra_meta: dict | None = None) -> list[Path]:
    run, out_dir = Path(run), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    networks = load_networks(run)
    img = torch.zeros(2, 3, nets.IMAGE_SIZE, nets.IMAGE_SIZE)
    z = torch.zeros(2, nets.LATENT_DIM)
    specs = {
        "encoder": (img, "image", "z"),
        "neutralizer": (z, "z", "z_neutral"),
        "decoder": (z, "z", "image"),
    }
    written = []
    for name, (example, i, o) in specs.items():
        if name not in networks:
            continue
        path = out_dir / f"{name}.onnx"
        _export(networks[name], example, path, i, o)
        written.append(path)
    # Only what running the models needs (read by stoic_cli.runtime.settings); how they were
    # trained stays in the run's config.json and logs.
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    meta = {
        "format": 1,
        "image_size": nets.IMAGE_SIZE,
        "render_size": 256,
        "latent_dim": nets.LATENT_DIM,
        "expression_dims": int(config.get("expression_dims", 0)),
        "pixel_range": [-1.0, 1.0],
        "template": alignment.TEMPLATE.tolist(),
    }
    meta.update(extra_meta or {})
    meta_path = out_dir / "stoic.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    old.update(meta)
    meta_path.write_text(json.dumps(old, indent=1))
    written.append(meta_path)
    return written


def import_onnx_vae(models_dir: str | Path, logvar: float = -4.0) -> tuple[nets.Encoder, nets.Decoder]:
    """The encoder and decoder of an exported models folder as PyTorch modules, to fine-tune a
    shipped model when its training checkpoint is not at hand. The exporter folds the encoder's
    batch norms into its convolutions and keeps only the mean head, so the encoder comes back
    without batch norm (the same function) and with a variance head that says `logvar`
    everywhere; the decoder comes back exactly."""
    import onnx
    from onnx import numpy_helper

    def fill(module: nn.Module, path: Path, skip: tuple[nn.Module, ...] = ()) -> None:
        graph = onnx.load(str(path)).graph
        init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        layers = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "BatchNormalization")]
        targets = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear,
                                                                  nn.BatchNorm2d)) and m not in skip]
        if len(layers) != len(targets):
            raise ValueError(f"{path} has {len(layers)} layers with weights, the network {len(targets)}")
        for node, m in zip(layers, targets):
            arrays = [torch.from_numpy(init[i].copy()) for i in node.input[1:] if i in init]
            if isinstance(m, nn.BatchNorm2d):
                names = ("weight", "bias", "running_mean", "running_var")
            else:
                names = ("weight", "bias")
                if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
                    arrays[0] = arrays[0].t()
            if len(arrays) > len(names) or (m.bias is None and not isinstance(m, nn.BatchNorm2d) and len(arrays) > 1):
                raise ValueError(f"{path}: {node.op_type} {node.name} does not fit {m}")
            for name, value in zip(names, arrays):
                target = getattr(m, name)
                if target.shape != value.shape:
                    raise ValueError(f"{path}: {node.op_type} {node.name} {name} {tuple(value.shape)} "
                                     f"vs {tuple(target.shape)}")
                target.data.copy_(value)

    models_dir = Path(models_dir)
    enc, dec = nets.Encoder(batchnorm=False), nets.Decoder()
    fill(enc, models_dir / "encoder.onnx", skip=(enc.logvar,))
    nn.init.zeros_(enc.logvar.weight)
    nn.init.constant_(enc.logvar.bias, logvar)
    fill(dec, models_dir / "decoder.onnx")
    return enc.eval(), dec.eval()


def max_onnx_difference(run: str | Path, model_dir: str | Path, crops: np.ndarray) -> dict[str, float]:
    """Largest absolute difference between PyTorch and ONNX Runtime on real crops, per network."""
    from stoic_cli.runtime.onnx import OnnxModel

    networks = load_networks(Path(run))
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = networks["encoder"](x)
        zn = networks["neutralizer"](z)
        y = networks["decoder"](zn)
        ref = {"encoder": (x, z), "neutralizer": (z, zn), "decoder": (zn, y)}
    out = {}
    for name, (inp, expected) in ref.items():
        model = OnnxModel(Path(model_dir) / f"{name}.onnx", device="cpu")
        got = model(inp.numpy())
        out[name] = float(np.abs(got - expected.numpy()).max())
    return out
