"""Links a validation set of broad, open-mouth smiles into OUT_DIR (models/README.md, item 6):
every LFW validation person's strongest 'happiness' photo where MediaPipe reads a smile >= 0.5
with jawOpen >= 0.15 (`<Person>_smiling`), and the neutral photos (smile < 0.1, jawOpen < 0.08)
of 6 other LFW validation people, drawn with a fixed seed (`<Person>_neutral`). Unlike the
closed-mouth set, the inputs are LFW faces too. Needs the eval extra, ../shared/datasets and
the training cache (it holds the person splits).

Usage: python scripts/open_smile_references.py OUT_DIR [--cache cache] [--datasets ../shared/datasets]
then:  stoic eval transfer $(for f in OUT_DIR/*_smiling*; do echo --refs $f; done) \\
           --inputs OUT_DIR/*_neutral* -o report_open_smiles/"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from stoic_cli.evaluation.judges import smile
from stoic_cli.evaluation.reference_sets import judged_photos, link_photo
from stoic_cli.train.data import load_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--inputs", type=int, default=6)
    args = ap.parse_args()
    _, labels = load_cache(args.cache)
    rows = [r for r in labels if r["dataset"] == "lfw_expressions" and r["split"] == "val"
            and r["expression"] in ("happiness", "neutral")]
    smiles: dict[str, tuple[float, Path]] = {}
    neutrals: dict[str, Path] = {}
    for r, path, bs in judged_photos(rows, args.datasets):
        strength = smile(bs)
        if r["expression"] == "happiness" and strength >= 0.5 and bs["jawOpen"] >= 0.15:
            if r["person"] not in smiles or strength > smiles[r["person"]][0]:
                smiles[r["person"]] = (strength, path)
        elif r["expression"] == "neutral" and strength < 0.1 and bs["jawOpen"] < 0.08:
            neutrals.setdefault(r["person"], path)
    others = [(p, path) for p, path in sorted(neutrals.items()) if p not in smiles]
    random.Random(0).shuffle(others)
    name = lambda person: person.split(":")[-1].replace("_", "")  # one token: the eval's person id
    args.out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [(person, path, "smiling") for person, (_, path) in sorted(smiles.items(), key=lambda t: -t[1][0])]
    chosen += [(person, path, "neutral") for person, path in others[:args.inputs]]
    for person, path, kind in chosen:
        target = args.out_dir / f"{name(person)}_{kind}{path.suffix}"
        if link_photo(path, target):
            print(target)


if __name__ == "__main__":
    main()
