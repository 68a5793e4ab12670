"""Builds the validation set for transferring the five expressions other than the smile
(models/README.md, "Transfer of the other expressions"): for each Taiwanese and JAFFE
validation person, their first two photos of surprise, anger, sadness, disgust and fear as
references and their first neutral photo as an input, linked into one folder under names
`<person>_<expression><k>.jpg` so that `stoic eval transfer` skips same-person pairs. Needs
../shared/datasets and the training cache (it holds the person splits).

Usage: python scripts/expression_references.py OUT_DIR [--cache cache] [--datasets ../shared/datasets]
then:  stoic eval transfer $(for f in OUT_DIR/*; do case $f in *_neutral*) ;; *) echo --refs $f;; esac; done) \\
           --inputs OUT_DIR/*_neutral* -o report_expressions/"""
from __future__ import annotations

import argparse
from pathlib import Path

from stoic_cli.evaluation.reference_sets import link_photo
from stoic_cli.train.data import load_cache

EXPRESSIONS = ("surprise", "anger", "sadness", "disgust", "fear")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--per-expression", type=int, default=2)
    args = ap.parse_args()
    _, labels = load_cache(args.cache)
    rows = [r for r in labels if r["split"] == "val" and r["dataset"] in ("taiwanese", "jaffe")]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for person in dict.fromkeys(r["person"] for r in rows):
        mine = [r for r in rows if r["person"] == person]
        for expression, count in [(e, args.per_expression) for e in EXPRESSIONS] + [("neutral", 1)]:
            for k, r in enumerate([r for r in mine if r["expression"] == expression][:count]):
                source = (Path(args.datasets) / r["source"]).resolve()
                link = args.out_dir / f"{person.replace(':', '')}_{expression}{k + 1}{source.suffix}"
                if link_photo(source, link):
                    print(link)


if __name__ == "__main__":
    main()
