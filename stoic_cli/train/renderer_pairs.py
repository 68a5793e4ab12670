"""Same-person pairs for the renderer: which cached photos pair, how a step's pairs are drawn,
and the target codes each job would make for them (stoic_cli.train.renderer_stage trains on
them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def encode_cache(crops: np.ndarray, models: Path, path: Path) -> np.ndarray:
    """The shipped encoder's codes of every cached crop (read, as at inference, from the crop
    area-averaged to the encoder's size); cached in the run folder."""
    if path.exists():
        return np.load(path)
    from stoic_cli.runtime.models import to_model_input
    from stoic_cli.face.alignment import encoder_sized
    from stoic_cli.runtime.onnx import OnnxModel
    enc = OnnxModel(models / "encoder.onnx", device="cpu")
    codes = []
    for i in range(0, len(crops), 64):
        codes.append(enc(to_model_input(encoder_sized(crops[i:i + 64], 128))))
    codes = np.concatenate(codes).astype(np.float32)
    np.save(path, codes)
    return codes


def pair_groups(labels: list[dict], split: str, datasets: list[str]) -> list[list[int]]:
    """Rows of one person, one view, one dataset: the photos that pair cleanly."""
    groups: dict = {}
    for r in labels:
        if r["split"] == split and r["dataset"] in datasets:
            groups.setdefault((r["dataset"], r["person"], r["view"]), []).append(r)
    return [g for g in groups.values() if len(g) > 1]


class PairDrawer:
    """A step's pairs (source rows, target rows, mirrored or not), drawn with the shares of a
    RendererConfig: a photo with itself, neutral on one side, any two expressions, or an
    unpaired photo as itself."""

    def __init__(self, groups: list[list[dict]], cfg, seed: int, singles: list[dict] | None = None):
        self.groups, self.cfg, self.singles = groups, cfg, singles or []
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src, dst, flip = [], [], []
        for _ in range(n):
            if self.singles and self.rng.random() < self.cfg.identity_share:
                a = b = self.singles[self.rng.integers(len(self.singles))]
                src.append(a["row"])
                dst.append(b["row"])
                flip.append(self.rng.random() < 0.5)
                continue
            g = self.groups[self.rng.integers(len(self.groups))]
            a = g[self.rng.integers(len(g))]
            u = self.rng.random()
            if u < self.cfg.identity_fraction:
                b = a
            else:
                neutral = [r for r in g if r["expression"] == "neutral"]
                if neutral and u < self.cfg.identity_fraction + self.cfg.neutral_fraction:
                    b = neutral[self.rng.integers(len(neutral))]
                    if self.rng.random() < 0.5:
                        a, b = b, a
                else:
                    b = g[self.rng.integers(len(g))]
            src.append(a["row"])
            dst.append(b["row"])
            flip.append(self.rng.random() < 0.5)
        return np.array(src), np.array(dst), np.array(flip)


def crop_tensors(crops: np.ndarray, rows: np.ndarray, flip: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(crops[rows])).permute(0, 3, 1, 2).float() / 127.5 - 1
    if flip.any():
        x[flip] = x[flip].flip(3)
    return x


# dataset labels -> attributes.json's expression directions
ATTRIBUTE_OF = {"happiness": "smile", "surprise": "surprise", "sadness": "sad", "anger": "angry",
                "disgust": "disgust", "fear": "fear"}


class CodeTable:
    """Each cached crop's code and neutral code (and their mirror images'), and the expression
    directions, for building target codes the way each job does."""

    def __init__(self, crops: np.ndarray, labels: list[dict], models: Path, run: Path, rng):
        from stoic_cli.edit.latent import neutral_codes
        from stoic_cli.runtime.onnx import OnnxModel
        from stoic_cli.runtime.settings import ModelSettings, read_attributes
        self.codes = encode_cache(crops, models, run / "codes.npy")
        self.flipped = encode_cache(crops[:, :, ::-1], models, run / "codes_flipped.npy")
        ntr = OnnxModel(models / "neutralizer.onnx", device="cpu")
        # neutral codes as the jobs make them
        self.expression_dims = split = ModelSettings.read(models / "stoic.json").expression_dims
        self.neutral = neutral_codes(self.codes, ntr(self.codes), split)
        self.neutral_flipped = neutral_codes(self.flipped, ntr(self.flipped), split)
        path = models / "attributes.json"  # without it, edit-style targets fall back to the photo's code
        table = read_attributes(path) if path.exists() else {}
        dim = self.codes.shape[1]
        self.direction = {e: table[a].direction if a in table else None for e, a in ATTRIBUTE_OF.items()}
        self.direction["neutral"] = np.zeros(dim, np.float32)
        self.expression = [r["expression"] for r in labels]
        self.rng = rng

    def code_and_neutral(self, rows: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The codes and neutral codes of these rows, of the mirror image where `flip`."""
        pick = lambda table, flipped: np.where(flip[:, None], flipped[rows], table[rows])
        return pick(self.codes, self.flipped), pick(self.neutral, self.neutral_flipped)

    def own_and_target(self, a: np.ndarray, b: np.ndarray, flip: np.ndarray, cfg):
        (za, na), (zb, nb) = self.code_and_neutral(a, flip), self.code_and_neutral(b, flip)
        target = zb.copy()
        for i in range(len(a)):
            if self.expression[b[i]] == "neutral" and self.rng.random() < cfg.neutralize_fraction:
                target[i] = na[i]  # neutralize's own code; a neutral photo must come back unchanged
                continue
            u = self.rng.random()
            if u < cfg.transfer_fraction:
                target[i] = na[i] + zb[i] - nb[i]
            elif u < cfg.transfer_fraction + cfg.edit_fraction:
                da = self.direction.get(self.expression[a[i]])
                db = self.direction.get(self.expression[b[i]])
                if da is not None and db is not None:
                    target[i] = za[i] + (db - da)
        return torch.from_numpy(za.astype(np.float32)), torch.from_numpy(target.astype(np.float32))


def validation_pairs(groups: list[list[dict]], seed: int = 7, per_group: int = 6) -> list[tuple[int, int]]:
    """Fixed expressive -> neutral and neutral -> expressive pairs of validation people."""
    rng = np.random.default_rng(seed)
    out = []
    for g in groups:
        neutral = [r["row"] for r in g if r["expression"] == "neutral"]
        other = [r["row"] for r in g if r["expression"] != "neutral"]
        if not neutral or not other:
            continue
        for _ in range(per_group // 2):
            n, e = neutral[rng.integers(len(neutral))], other[rng.integers(len(other))]
            out += [(e, n), (n, e)]
    return out
