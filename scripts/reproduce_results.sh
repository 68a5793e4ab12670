#!/usr/bin/env bash
# Reproduces the numbers in models/README.md and the pictures in docs/ from the shipped models.
# Needs the eval extra (see README) and ../shared/datasets for the held-out people.
# Usage: scripts/reproduce_results.sh [OUT_DIR]   (default: eval-report/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-eval-report}"
mkdir -p "$out" docs
london=tests/data/london

# Every job on held-out people, expression numbers beside realism (and London as a last look).
stoic eval realism -o "$out/realism" --london "$london"
stoic eval neutralize --pairs "$london" -o "$out/neutralize_london" --sheet-rows 6

refs=()
for f in "$london"/*_smiling.jpg; do refs+=(--refs "$f"); done
stoic eval transfer "${refs[@]}" --inputs "$london"/*_neutral.jpg --alpha 1.0 -o "$out/transfer"
stoic eval edit --attr smile --amounts=-1,-0.5,0,0.5,1 "$london"/*_neutral.jpg -o "$out/edit_smile"
stoic eval edit --attr surprise --amounts 0..1:5 "$london"/*_neutral.jpg -o "$out/edit_surprise"
stoic bench -o "$out/bench_cpu.json"

# Only the London people (CC BY 4.0) may be shown; the research datasets' faces stay out of git.
cp "$out/neutralize_london/contact_sheet.png" docs/neutralize_london.png
cp "$out/realism/neutralize_london_mouths.png" docs/neutralize_london_mouths.png
cp "$out/realism/transfer_london_mouths.png" docs/transfer_london_mouths.png
cp "$out/transfer/contact_sheet.png" docs/transfer_london.png
cp "$out/edit_smile/edit_strip_smile.png" docs/edit_smile_london.png
cp "$out/edit_surprise/edit_strip_surprise.png" docs/edit_surprise_london.png
echo "reports in $out/, pictures in docs/"
