"""Training data: align the shared face datasets into one cache of 128x128 crops plus a label
table, split by person (never by image) so evaluation faces belong to unseen people.

Cache layout (``--cache``, default ``cache/``):
  crops.npy     uint8 (N, 128, 128, 3), aligned with stoic's own aligner
  labels.csv    row, dataset, person, expression, age, gender, view, split, source
  failures.csv  images where no usable face was found (dataset, source, reason)
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

EXPRESSIONS = ["neutral", "happiness", "sadness", "anger", "disgust", "fear", "surprise", "contempt"]
SPLIT_SEED = 1234
# Fractions of people held out, per dataset: small sets give more to test so the held-out
# evaluation has enough people.
SPLIT_FRACTIONS = {
    "taiwanese": (0.10, 0.20),
    "jaffe": (0.10, 0.20),
    "lfw_expressions": (0.10, 0.10),
    "ckplus48": (0.10, 0.10),
    "utkface": (0.05, 0.05),
}
DATASETS = ["taiwanese", "lfw_expressions", "jaffe", "ckplus48", "utkface"]


@dataclass
class Record:
    dataset: str
    person: str
    expression: str
    source: str
    age: int = -1
    gender: str = ""
    view: int = 1
    split: str = ""


_TW_EXPR = dict(zip("abcdefg", ["neutral", "happiness", "sadness", "anger", "disgust", "fear", "surprise"]))
_JAFFE_EXPR = {"NE": "neutral", "HA": "happiness", "SA": "sadness", "SU": "surprise", "AN": "anger",
               "DI": "disgust", "FE": "fear"}
_CK_FOLDERS = {"anger": "anger", "contempt": "contempt", "disgust": "disgust", "fear": "fear",
               "happiness": "happiness", "neutral": "neutral", "sadness": "sadness", "surprise": "surprise"}


def list_taiwanese(root: Path) -> list[Record]:
    out = []
    for p in sorted((root / "taiwanese" / "images").glob("*.jpg")):
        m = re.match(r"(\d\d)(\d)(\d)([a-g])(\d+)", p.stem)
        if not m:
            continue
        out.append(Record("taiwanese", f"tw{m.group(1)}", _TW_EXPR[m.group(4)], str(p), view=int(m.group(3))))
    return out


def list_lfw(root: Path) -> list[Record]:
    base = root / "lfw_expressions"
    out = []
    with open(base / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            expr = row["emotion"].strip().lower()
            if expr not in EXPRESSIONS:
                continue
            out.append(Record("lfw_expressions", f"lfw:{row['identity']}", expr, str(base / "images" / row["image"])))
    return out


def list_jaffe(root: Path) -> list[Record]:
    out = []
    for p in sorted((root / "jaffe" / "images").glob("*")):
        parts = p.name.split(".")
        if len(parts) < 3:
            continue
        expr = _JAFFE_EXPR.get(parts[1][:2])
        if expr:
            out.append(Record("jaffe", f"jaffe:{parts[0]}", expr, str(p)))
    return out


def list_ckplus(root: Path) -> list[Record]:
    out = []
    for folder, expr in _CK_FOLDERS.items():
        for p in sorted((root / "ckplus48" / folder).glob("*.png")):
            out.append(Record("ckplus48", f"ck:{p.name.split('_')[0]}", expr, str(p)))
    return out


def list_utkface(root: Path) -> list[Record]:
    out = []
    for p in sorted((root / "utkface" / "images").glob("*.jpg")):
        parts = p.name.split("_")
        try:
            age, gender = int(parts[0]), ("male", "female")[int(parts[1])]
        except (ValueError, IndexError):
            age, gender = -1, ""
        # UTKFace has no identity labels; each photo counts as its own person.
        out.append(Record("utkface", f"utk:{p.stem}", "unknown", str(p), age=age, gender=gender))
    return out


LISTERS = {"taiwanese": list_taiwanese, "lfw_expressions": list_lfw, "jaffe": list_jaffe,
           "ckplus48": list_ckplus, "utkface": list_utkface}


def assign_splits(records: list[Record], seed: int = SPLIT_SEED) -> None:
    """Split by person with a fixed seed: the same people land in test on every machine."""
    by_dataset: dict[str, list[str]] = {}
    for r in records:
        by_dataset.setdefault(r.dataset, [])
    for ds in by_dataset:
        people = sorted({r.person for r in records if r.dataset == ds})
        rng = np.random.default_rng(seed + sum(map(ord, ds)))
        order = [people[i] for i in rng.permutation(len(people))]
        val_frac, test_frac = SPLIT_FRACTIONS.get(ds, (0.1, 0.1))
        n_val = max(1, round(len(people) * val_frac)) if len(people) > 2 else 0
        n_test = max(1, round(len(people) * test_frac)) if len(people) > 1 else 0
        split_of = {}
        for i, person in enumerate(order):
            split_of[person] = "val" if i < n_val else ("test" if i < n_val + n_test else "train")
        for r in records:
            if r.dataset == ds:
                r.split = split_of[r.person]


def _upscale_small(rgb: np.ndarray, min_side: int = 96) -> tuple[np.ndarray, float]:
    import cv2
    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb, 1.0
    f = min_side / min(h, w)
    return cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC), f


def _pad_tight(rgb: np.ndarray, frac: float = 0.25) -> np.ndarray:
    """Tight face crops (UTKFace, CK+) leave MTCNN no context; pad by replicating edges."""
    import cv2
    h, w = rgb.shape[:2]
    p = int(round(max(h, w) * frac))
    return cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REPLICATE)


def _align_chunk(args: tuple[list[str], int, bool]) -> list[tuple[np.ndarray | None, str]]:
    paths, size, pad = args
    import torch
    torch.set_num_threads(1)
    from stoic_cli.face.alignment import align_face
    from stoic_cli.face.detection import FaceDetector
    from stoic_cli.face.images import ImageError, load_photo

    detector = _align_chunk.detector if hasattr(_align_chunk, "detector") else FaceDetector(min_face_size=30)
    _align_chunk.detector = detector
    images, results, ok_idx = [], [None] * len(paths), []
    for i, p in enumerate(paths):
        try:
            rgb = load_photo(p).rgb
        except ImageError as exc:
            results[i] = (None, f"unreadable: {exc}")
            continue
        rgb, _ = _upscale_small(rgb)
        if pad:
            rgb = _pad_tight(rgb)
        images.append(rgb)
        ok_idx.append(i)
    if images:
        found = detector.detect_batch(images)
        for i, rgb, faces in zip(ok_idx, images, found):
            if not faces:
                results[i] = (None, "no face found")
                continue
            h, w = rgb.shape[:2]
            centre = np.array([w / 2, h / 2])
            # Dataset photos show one subject: the biggest face near the centre.
            face = max(faces, key=lambda f: f.area - 4 * np.linalg.norm(f.landmarks.mean(0) - centre) ** 2)
            crop, _ = align_face(rgb, face.landmarks, size)
            results[i] = (crop, "")
    return results


def prepare(datasets_dir: str | Path, cache_dir: str | Path, datasets: list[str] | None = None,
            limit: int | None = None, workers: int | None = None, size: int = 128, progress=None,
            sample: int | None = None) -> dict:
    """Align the datasets into ``cache_dir``. ``limit`` caps images per dataset (for tests);
    ``sample`` keeps a random N people of each dataset, drawn after the split so everyone keeps
    the split the whole set gives them. Returns counts per dataset and split, including failures."""
    from multiprocessing import get_context

    datasets_dir, cache_dir = Path(datasets_dir), Path(cache_dir)
    if not datasets_dir.is_dir():
        raise FileNotFoundError(f"datasets folder not found: {datasets_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    names = datasets or DATASETS
    records: list[Record] = []
    for name in names:
        recs = LISTERS[name](datasets_dir)
        if limit:
            # Keep whole people when limiting so pairs survive: take people in order until full.
            recs = _limit_by_person(recs, limit)
        records.extend(recs)
    assign_splits(records)
    if sample:
        records = _sample_people(records, sample)

    workers = workers or max(1, min(2, os.cpu_count() or 1))
    chunks, chunk_records = [], []
    for name in names:
        recs = [r for r in records if r.dataset == name]
        pad = name in ("utkface", "ckplus48")
        for i in range(0, len(recs), 32):
            chunks.append(([r.source for r in recs[i:i + 32]], size, pad))
            chunk_records.append(recs[i:i + 32])

    crops: list[np.ndarray] = []
    kept: list[Record] = []
    failures: list[tuple[str, str, str]] = []
    ctx = get_context("spawn")
    task = progress.add_task("aligning", total=len(records)) if progress else None
    with ctx.Pool(workers) as pool:
        for recs, res in zip(chunk_records, pool.imap(_align_chunk, chunks)):
            for r, (crop, reason) in zip(recs, res):
                if crop is None:
                    failures.append((r.dataset, r.source, reason))
                else:
                    crops.append(crop)
                    kept.append(r)
            if progress:
                progress.advance(task, len(recs))

    arr = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    np.save(cache_dir / "crops.npy", arr)
    fields = ["row", "dataset", "person", "expression", "age", "gender", "view", "split", "source"]
    with open(cache_dir / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for i, r in enumerate(kept):
            row = asdict(r)
            row["source"] = os.path.relpath(r.source, datasets_dir)  # portable across checkouts
            w.writerow({"row": i, **row})
    with open(cache_dir / "failures.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "source", "reason"])
        w.writerows((ds, os.path.relpath(src, datasets_dir), why) for ds, src, why in failures)
    counts: dict = {}
    for r in kept:
        counts.setdefault(r.dataset, Counter())[r.split] += 1
    for ds, _, _ in failures:
        counts.setdefault(ds, Counter())["failed"] += 1
    return {ds: dict(c) for ds, c in counts.items()}


def _sample_people(records: list[Record], n: int, seed: int = SPLIT_SEED) -> list[Record]:
    kept = set()
    for ds in sorted({r.dataset for r in records}):
        people = sorted({r.person for r in records if r.dataset == ds})
        rng = np.random.default_rng(seed + 1 + sum(map(ord, ds)))
        kept.update(people[i] for i in rng.permutation(len(people))[:n])
    return [r for r in records if r.person in kept]


def _limit_by_person(recs: list[Record], limit: int) -> list[Record]:
    out, seen = [], []
    for r in recs:
        if r.person not in seen:
            if len(out) >= limit:
                break
            seen.append(r.person)
        out.append(r)
    return out[: max(limit, 1) * 2]


def load_cache(cache_dir: str | Path) -> tuple[np.ndarray, list[dict]]:
    cache_dir = Path(cache_dir)
    if not (cache_dir / "crops.npy").exists():
        raise FileNotFoundError(f"no training cache in {cache_dir}; run `stoic data prepare` first")
    crops = np.load(cache_dir / "crops.npy", mmap_mode="r")
    with open(cache_dir / "labels.csv", newline="") as fh:
        labels = list(csv.DictReader(fh))
    for row in labels:
        row["row"], row["age"], row["view"] = int(row["row"]), int(row["age"]), int(row["view"])
    return crops, labels


if __name__ == "__main__":
    import sys
    import json
    print(json.dumps(prepare(sys.argv[1], sys.argv[2]), indent=1))


def write_heldout_pairs(cache_dir: str | Path, datasets_dir: str | Path, out_csv: str | Path,
                        datasets: tuple[str, ...] = ("taiwanese",), split: str = "test",
                        front_only: bool = True) -> int:
    """A pairs CSV (input,neutral,person) of expressive photos of held-out people, each with a
    neutral photo of the same person (first in file order, same view), for `stoic eval`."""
    _, labels = load_cache(cache_dir)
    groups: dict = {}
    for r in labels:
        if r["split"] != split or r["dataset"] not in datasets or (front_only and r["view"] != 1):
            continue
        groups.setdefault((r["person"], r["view"]), []).append(r)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    root, csv_dir = Path(datasets_dir).resolve(), out_csv.parent.resolve()

    def rel(source: str) -> str:
        return os.path.relpath(root / source, csv_dir)  # relative to the CSV, as `stoic eval` reads them

    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["input", "neutral", "person", "expression"])
        for (person, _), rows in sorted(groups.items()):
            neutrals = [r for r in rows if r["expression"] == "neutral"]
            if not neutrals:
                continue
            for r in rows:
                if r["expression"] != "neutral":
                    w.writerow([rel(r["source"]), rel(neutrals[0]["source"]), person, r["expression"]])
                    n += 1
    return n
