"""Helpers for the scripts that build validation sets for `stoic eval transfer`
(scripts/*_references.py): reading each dataset photo's MediaPipe blendshapes, and linking the
chosen photos into one folder under names that carry the person."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from stoic_cli.evaluation.judges import ExpressionJudge
from stoic_cli.face.images import load_photo


def judged_photos(rows: Iterable[dict], datasets: str | Path) -> Iterator[tuple[dict, Path, dict]]:
    """(row, photo path, blendshapes) for each cache row whose photo has a face."""
    with ExpressionJudge() as judge:
        for r in rows:
            path = Path(datasets) / r["source"]
            bs = judge.blendshapes(load_photo(path).rgb)
            if bs:
                yield r, path, bs


def link_photo(source: Path, target: Path) -> bool:
    """Links `source` as `target` (a copy where symlinks are unavailable, as on some Windows
    setups); an existing `target` is left alone. True when it was written."""
    if target.exists() or target.is_symlink():
        return False
    try:
        os.symlink(Path(source).resolve(), target)
    except OSError:
        shutil.copyfile(source, target)
    return True
