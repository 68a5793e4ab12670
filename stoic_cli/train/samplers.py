"""What the StoicNet stages read from the cache (`stoic data prepare`): random batches, same-person
pairs, labelled rows, and networks run over whole lists of rows."""
from __future__ import annotations

import numpy as np
import torch

from stoic_cli.train import nets
from stoic_cli.train.config import TrainConfig
from stoic_cli.train.data import load_cache

# The labelled sets that hold neutral and expressive photos of the same people.
PAIR_DATASETS = ("taiwanese", "lfw_expressions", "jaffe", "ckplus48")


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class ImageSampler:
    """Random training batches from the cache (train split), with horizontal flips."""

    def __init__(self, crops: np.ndarray, rows: list[int], weights: np.ndarray, seed: int):
        self.crops, self.rows = crops, np.asarray(rows)
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch, and the positions in `rows` it was drawn from (for their labels)."""
        pos = np.sort(self.rng.choice(len(self.rows), size=n, p=self.p))
        batch = np.asarray(self.crops[self.rows[pos]])
        flip = self.rng.random(n) < 0.5
        batch[flip] = batch[flip, :, ::-1]
        return batch, pos

    def __call__(self, n: int) -> np.ndarray:
        return self.draw(n)[0]


class PairSampler:
    """Same-person (neutral, expressive) photo pairs of one session, both flipped alike."""

    def __init__(self, crops: np.ndarray, groups: dict, seed: int):
        self.crops = crops
        self.groups = [(np.asarray(g["neutral"]), np.asarray(g["expressive"])) for g in groups.values()
                       if g["expressive"]]
        if not self.groups:
            raise ValueError("expression_dims needs people with neutral and expressive photos in "
                             "neutralizer_datasets (train split)")
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        picks = [self.groups[i] for i in self.rng.integers(len(self.groups), size=n)]
        neutral = np.stack([self.crops[self.rng.choice(g[0])] for g in picks])
        expressive = np.stack([self.crops[self.rng.choice(g[1])] for g in picks])
        flip = self.rng.random(n) < 0.5
        neutral[flip], expressive[flip] = neutral[flip, :, ::-1], expressive[flip, :, ::-1]
        return neutral, expressive


def make_sampler(cfg: TrainConfig, split: str = "train") -> ImageSampler:
    crops, labels = load_cache(cfg.cache)
    rows = [r for r in labels if r["split"] == split]
    if not rows:
        raise ValueError(f"no '{split}' images in the cache {cfg.cache}")
    weights = np.array([cfg.oversample.get(r["dataset"], 1) for r in rows], dtype=np.float64)
    return ImageSampler(crops, [r["row"] for r in rows], weights, cfg.seed)


def neutral_pairs(labels: list[dict], split: str, datasets=PAIR_DATASETS) -> dict:
    """Rows of expressive and neutral photos, and for each a group key (person, view) whose
    neutral photos form the target. Only groups with a neutral photo count."""
    groups: dict = {}
    for r in labels:
        if r["split"] != split or r["dataset"] not in datasets or r["expression"] == "unknown":
            continue
        key = (r["person"], r["view"])
        groups.setdefault(key, {"neutral": [], "expressive": []})
        groups[key]["neutral" if r["expression"] == "neutral" else "expressive"].append(r["row"])
    return {k: v for k, v in groups.items() if v["neutral"]}


def expression_rows(labels: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one split whose expression is one of the seven basic ones, and its index."""
    index = {e: i for i, e in enumerate(nets.EXPRESSIONS)}
    keep = [r for r in labels if r["split"] == split and r["expression"] in index]
    return (np.array([r["row"] for r in keep], dtype=np.int64),
            np.array([index[r["expression"]] for r in keep], dtype=np.int64))


@torch.no_grad()
def forward_rows(net, crops: np.ndarray, rows, device: torch.device, batch: int = 64) -> np.ndarray:
    """`net` on the cache's `rows`, a batch at a time (the crops are memory-mapped), as one array."""
    return np.concatenate([net(to_tensor(np.asarray(crops[rows[i:i + batch]]), device)).cpu().numpy()
                           for i in range(0, len(rows), batch)])


def encode_rows(enc: nets.Encoder, crops: np.ndarray, rows: list[int], device: torch.device,
                batch: int = 64) -> np.ndarray:
    """The encoder's mean codes of the cache's `rows`."""
    if len(rows) == 0:
        return np.zeros((0, nets.LATENT_DIM), np.float32)
    return forward_rows(lambda x: enc(x)[0], crops, rows, device, batch)
