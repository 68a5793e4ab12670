"""The model zoo: finds stoic's ONNX files and runs the face stack on aligned crops.

Where models are looked for, first hit wins: ``--models DIR`` / ``STOIC_MODELS``, the
checkout's ``models/`` folder (editable installs), ``<prefix>/share/stoic/models`` (wheels)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from stoic_cli.runtime.onnx import OnnxModel
from stoic_cli.runtime.settings import Attribute, ModelSettings, read_attributes

NETWORKS = ("encoder", "neutralizer", "decoder", "renderer")
EDITING = NETWORKS  # every editing command runs them all (the decoder draws the codes for the renderer)
HOW_TO_GET = ("The trained models ship in the repository's models/ folder; reinstall stoic from a "
              "full checkout (`pip install -e .`), point --models/STOIC_MODELS at that folder, or "
              "train and export your own (`stoic train run all` then `stoic train export`).")


class ModelNotFound(FileNotFoundError):
    pass


@dataclass
class Rendering:
    """What the renderer says of each face (crop space, render_size): `motion` (N,S,S,2), where
    each output pixel comes from, in fractions of the side; `mask` (N,S,S) in 0..1, where the
    drawn `fill` (N,S,S,3, 0..255) replaces the moved photo."""
    motion: np.ndarray
    mask: np.ndarray
    fill: np.ndarray


def candidate_dirs(explicit: str | Path | None = None) -> list[Path]:
    dirs = []
    if explicit:
        dirs.append(Path(explicit))
    if os.environ.get("STOIC_MODELS"):
        dirs.append(Path(os.environ["STOIC_MODELS"]))
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    dirs.append(Path(sys.prefix) / "share" / "stoic" / "models")
    return dirs


def find_model_dir(explicit: str | Path | None = None, required: tuple[str, ...] = NETWORKS) -> Path:
    searched = candidate_dirs(explicit)
    if explicit:
        searched = searched[:1]  # an explicit folder must be complete; no silent fallback
    for d in searched:
        if all((d / f"{n}.onnx").exists() for n in required):
            return d
    first = searched[0]
    missing = [f"{n}.onnx" for n in required if not (first / f"{n}.onnx").exists()]
    raise ModelNotFound(f"model file(s) {', '.join(missing)} not found in {first} "
                        f"(also looked in: {', '.join(str(d) for d in searched[1:]) or 'nowhere else'}). {HOW_TO_GET}")


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [-1, 1]."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1.0


def from_model_output(images: np.ndarray) -> np.ndarray:
    """float NCHW in [-1, 1] -> float32 NHWC in [0, 255] (kept float: deltas need the precision)."""
    return (np.clip(images, -1, 1).transpose(0, 2, 3, 1) + 1.0) * 127.5


class FaceModels:
    """encoder, neutralizer, renderer and decoder, loaded lazily. The codes decide what a face
    becomes, the renderer how the photo's pixels get there; the decoder only draws codes (what
    the renderer reads beside the crop, and the codes' check in evaluation), never output pixels."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "auto", threads: int = 0):
        self.dir = find_model_dir(model_dir)
        self.device, self.threads = device, threads
        self._nets: dict[str, OnnxModel] = {}
        self.settings = ModelSettings.read(self.dir / "stoic.json")
        self.image_size = self.settings.image_size  # what the encoder reads
        self.render_size = self.settings.render_size  # what the renderer reads

    def net(self, name: str) -> OnnxModel:
        if name not in self._nets:
            path = self.dir / f"{name}.onnx"
            if not path.exists():
                raise ModelNotFound(f"model file {path} not found. {HOW_TO_GET}")
            self._nets[name] = OnnxModel(path, device=self.device, threads=self.threads)
        return self._nets[name]

    def load(self, names: tuple[str, ...] = EDITING) -> "FaceModels":
        """Open these networks now, so that a missing or broken file stops a command before its
        first photo rather than failing every photo."""
        for name in names:
            self.net(name)
        return self

    @property
    def provider(self) -> str:
        return self.net("encoder").provider

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.net("encoder")(to_model_input(crops))

    def neutralize(self, z: np.ndarray) -> np.ndarray:
        return self.net("neutralizer")(z)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Codes -> float NHWC images in [0, 255] (the encoder's size): what a code means."""
        return from_model_output(self.net("decoder")(np.asarray(z, np.float32)))

    def render(self, crops: np.ndarray, own: np.ndarray, target: np.ndarray) -> "Rendering":
        """The renderer on aligned uint8 crops (render_size) with their own and edited codes:
        the decoder draws both codes, the renderer reads the crop beside the drawings."""
        n = len(crops)
        drawn = self.net("decoder")(np.concatenate([own, target]).astype(np.float32))
        packed = self.net("renderer")(to_model_input(crops), drawn[:n], drawn[n:]).transpose(0, 2, 3, 1)
        return Rendering(motion=packed[..., 0:2], mask=np.clip(packed[..., 2], 0, 1),
                         fill=(np.clip(packed[..., 3:6], -1, 1) + 1.0) * 127.5)

    def attributes(self) -> dict[str, Attribute]:
        """The attribute directions of attributes.json, by name."""
        path = self.dir / "attributes.json"
        if not path.exists():
            raise ModelNotFound(f"{path} not found: attribute directions are not installed. {HOW_TO_GET}")
        return read_attributes(path, self.settings.latent_dim)

    @cached_property
    def smile_direction(self) -> np.ndarray | None:
        """The smile attribute's direction (latent_dim,): how much smile a code shows is read
        along it (a neutral code never shows more than the face; neutralize lowers a smile's
        corners by it). None for a model set without a smile direction (a fresh export before
        `stoic train run attributes`): neutral codes are then the neutralizer's alone, and
        neutralize lowers every lifted lip line."""
        if not (self.dir / "attributes.json").exists():
            return None
        smile = self.attributes().get("smile")
        return None if smile is None else smile.direction.reshape(-1)
