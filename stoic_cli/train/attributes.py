"""Latent attribute directions for `stoic edit`, estimated from labelled photos with the frozen
encoder (EGGAN's continuous intensities, as directions in StoicNet's latent space).

- expressions: for each person with a neutral photo, (mean code of their photos of the
  expression) - (mean code of their neutral photos); averaged over people. One unit is the
  typical intensity of that expression in the datasets, so amounts of -1..1 are meaningful.
- age (UTKFace): least-squares slope of the code on age, i.e. the average latent change per
  year; amounts are years.
- gender (UTKFace): mean female code - mean male code; +1 moves a typical man's code to a
  typical woman's, -1 the reverse.
Because the directions are differences within the same people (expressions) or population
averages (age, gender), identity-specific parts of the code largely cancel out.

"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from stoic_cli.train.data import load_cache
from stoic_cli.train.checkpoints import load_vae
from stoic_cli.train.config import TrainConfig
from stoic_cli.train.samplers import PAIR_DATASETS, encode_rows

EXPRESSION_ATTRIBUTES = {
    "smile": ("happiness", "a smile (happiness)"),
    "surprise": ("surprise", "surprise: raised brows, open mouth"),
    "sad": ("sadness", "sadness"),
    "angry": ("anger", "anger"),
    "disgust": ("disgust", "disgust"),
    "fear": ("fear", "fear"),
}


def expression_directions(codes: dict[int, np.ndarray], labels: list[dict]) -> dict[str, tuple[np.ndarray, int]]:
    by_person: dict = {}
    for r in labels:
        if r["row"] in codes:
            key = (r["person"], r["view"])
            by_person.setdefault(key, {}).setdefault(r["expression"], []).append(codes[r["row"]])
    out = {}
    for name, (expr, _) in EXPRESSION_ATTRIBUTES.items():
        diffs = [np.mean(g[expr], 0) - np.mean(g["neutral"], 0)
                 for g in by_person.values() if "neutral" in g and expr in g]
        if diffs:
            out[name] = (np.mean(diffs, 0), len(diffs))
    return out


def fit_attributes(cfg: TrainConfig, device: torch.device, max_utk: int = 6000) -> Path:
    run = Path(cfg.run)
    crops, labels = load_cache(cfg.cache)
    enc, _ = load_vae(run, device)
    train = [r for r in labels if r["split"] == "train"]
    pair_rows = [r for r in train if r["dataset"] in PAIR_DATASETS and r["expression"] != "unknown"]
    rows = [r["row"] for r in pair_rows]
    codes = dict(zip(rows, encode_rows(enc, crops, rows, device)))
    attributes: dict = {}
    for name, (direction, people) in expression_directions(codes, pair_rows).items():
        attributes[name] = {"direction": direction.round(6).tolist(), "min": -1.0, "max": 1.0,
                            "unit": "typical intensity", "kind": "expression", "people": people,
                            "help": f"{EXPRESSION_ATTRIBUTES[name][1]}; 1 = typical, negative = less"}
    utk = [r for r in train if r["dataset"] == "utkface" and r["age"] >= 0]
    rng = np.random.default_rng(cfg.seed)
    if len(utk) > max_utk:
        utk = [utk[i] for i in np.sort(rng.choice(len(utk), max_utk, replace=False))]
    if utk:
        z = encode_rows(enc, crops, [r["row"] for r in utk], device)
        ages = np.array([r["age"] for r in utk], np.float64)
        # adults only for the slope: childhood changes head shape, not just age cues
        adult = (ages >= 18) & (ages <= 80)
        a = ages[adult] - ages[adult].mean()
        slope = (a[:, None] * (z[adult] - z[adult].mean(0))).sum(0) / (a ** 2).sum()
        attributes["age"] = {"direction": slope.round(6).tolist(), "min": -30.0, "max": 30.0, "unit": "years",
                             "kind": "appearance", "people": int(adult.sum()), "help": "older (+) or younger (-), in years"}
        female = np.array([r["gender"] == "female" for r in utk])
        male = np.array([r["gender"] == "male" for r in utk])
        if female.any() and male.any():
            d = z[female].mean(0) - z[male].mean(0)
            attributes["gender"] = {"direction": d.round(6).tolist(), "min": -1.0, "max": 1.0,
                                    "unit": "typical difference", "kind": "appearance", "people": int(female.sum() + male.sum()),
                                    "help": "+1 more feminine, -1 more masculine"}
    table: dict = {"format": 1, "attributes": attributes}
    path = run / "attributes.json"
    path.write_text(json.dumps(table))
    return path
