"""Lists the closed-mouth smiles used as extra transfer references on validation people
(models/README.md, Results item 17): LFW validation people's 'happiness' photos where
MediaPipe reads a smile >= 0.5 with jawOpen < 0.08 on the photo itself, one photo per person
(the strongest smile), every 4th person by smile strength, 12 in all. Needs the eval extra,
../shared/datasets and the training cache (it holds the person splits).

Usage: python scripts/closed_smile_references.py [--cache cache] [--datasets ../shared/datasets]
Prints one path per line; pair them with the Taiwanese validation neutral photos
(`stoic data pairs --split val`) in `stoic eval transfer --refs ... --inputs ...`."""
from __future__ import annotations

import argparse

from stoic_cli.evaluation.judges import smile
from stoic_cli.evaluation.reference_sets import judged_photos
from stoic_cli.train.data import load_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--count", type=int, default=12)
    args = ap.parse_args()
    _, labels = load_cache(args.cache)
    rows = [r for r in labels if r["dataset"] == "lfw_expressions" and r["split"] == "val"
            and r["expression"] == "happiness"]
    best: dict[str, tuple[float, str]] = {}
    for r, path, bs in judged_photos(rows, args.datasets):
        if bs["jawOpen"] >= 0.08:
            continue
        strength = smile(bs)
        if strength >= 0.5 and (r["person"] not in best or strength > best[r["person"]][0]):
            best[r["person"]] = (strength, str(path))
    ranked = sorted(best.values(), key=lambda t: -t[0])
    for _, path in ranked[::4][:args.count]:
        print(path)


if __name__ == "__main__":
    main()
