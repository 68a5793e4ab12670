"""Expression motion templates for `stoic edit`: how a face moves, in aligned-crop coordinates,
from a person's neutral photo to their photos of an expression (a jaw that drops, brows that
rise, mouth corners that lift), averaged over people.

The latent directions (stoic_cli.train.attributes) carry an expression's look, but decoded from
the average direction they move the face far less than real expressions do: on the training
people, real surprise drops the chin by about 2.5 px of a 128 px crop where the decoded
direction moves it 0.4 px the wrong way. So the motion is measured on the photos themselves:
optical flow between each person's neutral and expressive crops of the same session (Taiwanese,
JAFFE, CK+; LFW's pairs are different photos, whose pose and framing differ), averaged per
person and then over people, so that one person's quirks and the aligner's jitter cancel out.
No network is involved, so the templates need no retraining when the models change.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from stoic_cli.pipeline import estimate_flow
from stoic_cli.train.attributes import EXPRESSION_ATTRIBUTES
from stoic_cli.train.data import load_cache

SAME_SESSION = ("taiwanese", "jaffe", "ckplus48")
TEMPLATE_SIZE = 32  # the flow is smooth (blurred over 1/32 of the side), so 32x32 loses nothing


def person_motion(crops, neutral_rows: list[int], expressive_rows: list[int], max_each: int = 3) -> np.ndarray:
    """Mean flow (fractions of the side, crop-sized) from this person's neutral crops to their
    expressive ones, over up to max_each x max_each pairs."""
    flows = [estimate_flow(crops[n], crops[e]) for n in neutral_rows[:max_each] for e in expressive_rows[:max_each]]
    return np.mean(flows, axis=0)


def motion_templates(crops, labels: list[dict], split: str = "train", datasets=SAME_SESSION,
                     size: int = TEMPLATE_SIZE) -> dict[str, tuple[np.ndarray, int]]:
    """attribute name -> (mean motion over people, (size, size, 2), fractions of the side; number
    of people)."""
    by_person: dict = {}
    for r in labels:
        if r["split"] == split and r["dataset"] in datasets:
            by_person.setdefault((r["dataset"], r["person"]), {}).setdefault(r["expression"], []).append(r["row"])
    out = {}
    for name, (expr, _) in EXPRESSION_ATTRIBUTES.items():
        per_person = [person_motion(crops, g["neutral"], g[expr]) for g in by_person.values()
                      if "neutral" in g and expr in g]
        if per_person:
            mean = np.mean(per_person, axis=0)
            out[name] = (cv2.resize(mean, (size, size), interpolation=cv2.INTER_AREA), len(per_person))
    return out


def add_motion(attributes_path: str | Path, cache: str | Path, split: str = "train") -> dict[str, int]:
    """Write each expression attribute's motion template into an attributes.json (in place);
    returns the number of people behind each."""
    path = Path(attributes_path)
    table = json.loads(path.read_text())
    crops, labels = load_cache(cache)
    people = {}
    for name, (field, n) in motion_templates(crops, labels, split).items():
        if name in table.get("attributes", {}):
            table["attributes"][name]["motion"] = np.round(field, 5).tolist()
            table["attributes"][name]["motion_people"] = n
            people[name] = n
    path.write_text(json.dumps(table))
    return people
