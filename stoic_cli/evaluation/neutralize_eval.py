"""StoicNet's neutralization evaluation on (expressive photo, true neutral photo) pairs.

Table 1, expression: mean blendshape intensity of input, output and true neutral, for all
inputs and for the 25 % / 10 % most expressive ones, plus "expression removed"
(I(in) - I(out)) / (I(in) - I(neutral)): 100 % means the output is exactly as expressionless as
the person's real neutral photo, 0 % means nothing changed.

Table 2, identity (dlib distance, same person below SAME_PERSON): positive pair (input vs true
neutral), output vs input, output vs true neutral, and the negative pair, output vs *other*
people's neutrals. The negative pair is reported two ways: the mean over every other person's
neutral image, and the nearest one (the hardest impostor). Verification rate: output vs true
neutral below SAME_PERSON. 1:2 recognition: over every (output, other person's neutral)
comparison, the fraction where the output is closer to its own neutral.

Sharpness: Laplacian variance of the output over that of the input, inside the input's face box.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stoic_cli.evaluation.judges import SAME_PERSON, distance, sharpness
from stoic_cli.evaluation.looks import Look, look, with_judges
from stoic_cli.evaluation.measures import progress
from stoic_cli.evaluation.report import finish_report, fmt, rate, stat, table
from stoic_cli.evaluation.sheets import make_sheet, worst_and_best
from stoic_cli.face.images import IMAGE_EXTENSIONS, Photo, load_photo, save_rgb

NeutralizeFn = Callable[[Photo], np.ndarray]

EXPRESSION_EPS = 0.1  # I(in) - I(neutral) below this is noise: the ratio would be meaningless
SMILING = 0.1  # an input "smiles" when its smile score exceeds its neutral's by this much


@dataclass(frozen=True)
class Pair:
    input: Path
    neutral: Path
    person: str


# --------------------------------------------------------------------------- pairs

def load_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a CSV (`input,neutral[,person]`, paths relative to the CSV allowed) or a folder
    named `<id>_neutral.<ext>` + `<id>_<anything>.<ext>`. Raises if a listed file is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if path.is_dir():
        pairs = _pairs_from_folder(path)
    elif path.suffix.lower() == ".csv" and path.is_file():
        pairs = _pairs_from_csv(path)
    else:
        raise ValueError(f"{path}: give a folder of <id>_neutral/<id>_<expression> images or a CSV "
                         "with columns input,neutral[,person]")
    missing = sorted({str(p) for pair in pairs for p in (pair.input, pair.neutral) if not p.is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in {path} not found, e.g. {missing[0]}")
    if not pairs:
        raise ValueError(f"{path}: no (input, neutral) pairs found")
    return pairs


def _pairs_from_csv(path: Path) -> list[Pair]:
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(fh)
        columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
        if not {"input", "neutral"} <= set(columns):
            raise ValueError(f"{path}: needs columns input,neutral[,person]; found {reader.fieldnames}")
        pairs = []
        for row in reader:
            cell = {k: (row.get(c) or "").strip() for k, c in columns.items()}
            if not cell["input"] and not cell["neutral"]:
                continue  # blank line
            if not cell["input"] or not cell["neutral"]:
                raise ValueError(f"{path}, line {reader.line_num}: both input and neutral are needed")
            inp, neu = (p if p.is_absolute() else path.parent / p for p in (Path(cell["input"]), Path(cell["neutral"])))
            # Without a person column, rows that share a neutral image are one person.
            pairs.append(Pair(inp, neu, cell.get("person") or str(neu)))
    return pairs


def _pairs_from_folder(folder: Path) -> list[Pair]:
    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
    stems = {f.stem for f in files}
    neutrals: dict[str, Path] = {}
    for f in files:
        pid = f.stem[: -len("_neutral")] if f.stem.endswith("_neutral") else ""
        # `<x>_neutral` next to `<x>` is stoic's own output for x, not a true neutral photo.
        if pid and pid not in stems:
            neutrals.setdefault(pid, f)
    pairs, unmatched = [], []
    for f in files:
        if f.stem.endswith("_neutral"):
            continue
        # Longest id wins so ids may contain underscores (ann_lee_neutral, ann_lee_smile).
        ids = [pid for pid in neutrals if f.stem.startswith(pid + "_")]
        if ids:
            pid = max(ids, key=len)
            pairs.append(Pair(f, neutrals[pid], pid))
        else:
            unmatched.append(f.name)
    if unmatched:
        warnings.warn(f"{len(unmatched)} image(s) in {folder} have no <id>_neutral partner, e.g. {unmatched[0]}")
    return pairs


def evaluate_outputs(items: Iterable[tuple], out_dir: str | Path | None = None, identity=None, expression=None,
                     *, failures: Sequence[tuple[Pair, str]] = (), eps: float = EXPRESSION_EPS,
                     sheet_rows: int = 4, settings: dict | None = None,
                     tick: Callable[[], None] | None = None) -> dict:
    """Judge already-computed outputs. `items` yields (Pair, output rgb uint8[, saved path]); it is
    consumed once, so a generator keeps only one full-size output in memory. `failures` lists
    pairs that produced no output; their neutrals still join the identity gallery (it is read
    after `items` is exhausted, so a generator may append to it). Writes report.json,
    report.md and contact_sheet.png into out_dir when given; returns the report dict."""
    def work(identity, expression):
        return _evaluate(items, out_dir, identity, expression, failures, eps, sheet_rows, settings, tick)

    return with_judges(identity, expression, work)


def _evaluate(items, out_dir, identity, expression, failures, eps, sheet_rows, settings, tick) -> dict:
    neutrals: dict[Path, Look] = {}

    def neutral(path: Path) -> Look:
        if path not in neutrals:
            neutrals[path] = look(load_photo(path).rgb, identity, expression)
        return neutrals[path]

    rows, judged = [], []
    for item in items:
        pair, out = item[0], np.asarray(item[1], dtype=np.uint8)
        inp_rgb = load_photo(pair.input).rgb
        j_in = look(inp_rgb, identity, expression)
        # Same geometry as the input (the pipeline pastes back in place): its box picks the face.
        j_out = look(out, identity, expression, box=j_in.box)
        j_neu = neutral(pair.neutral)
        s_in, s_out = sharpness(inp_rgb, j_in.box), sharpness(out, j_in.box)
        rows.append({
            "input": str(pair.input), "neutral": str(pair.neutral), "person": pair.person,
            "output": str(item[2]) if len(item) > 2 else None,
            "intensity_in": j_in.intensity, "intensity_out": j_out.intensity, "intensity_neutral": j_neu.intensity,
            "smile_in": j_in.smile, "smile_out": j_out.smile, "smile_neutral": j_neu.smile,
            # The share of the way down from the input to the person's real neutral.
            "expression_removed": progress(j_in.intensity, j_out.intensity, j_neu.intensity, eps, direction=-1),
            "smile_removed": progress(j_in.smile, j_out.smile, j_neu.smile, SMILING, direction=-1),
            "id_in_vs_neutral": distance(j_in.descriptor, j_neu.descriptor),
            "id_out_vs_in": distance(j_out.descriptor, j_in.descriptor),
            "id_out_vs_neutral": distance(j_out.descriptor, j_neu.descriptor),
            "sharpness_in": s_in, "sharpness_out": s_out,
            "sharpness_ratio": s_out / s_in if s_in is not None and s_out is not None and s_in > 1e-9 else None,
        })
        judged.append((pair, j_in, j_out))
        if tick:
            tick()
    for pair, _ in failures:
        neutral(pair.neutral)

    # Identity gallery: every neutral image with a face, by person.
    gallery = [(p, n.descriptor) for p, n in neutrals.items() if n.descriptor is not None]
    person_of = {pair.neutral: pair.person for pair, *_ in list(judged) + list(failures)}
    for row, (pair, j_in, j_out) in zip(rows, judged):
        own = neutrals[pair.neutral].descriptor
        others = [(person_of[p], d) for p, d in gallery if person_of[p] != pair.person]
        for tag, desc in (("out", j_out.descriptor), ("in", j_in.descriptor)):
            _gallery_stats(row, tag, desc, own, others)

    settings = {"same_person_threshold": SAME_PERSON, "expression_eps": eps, "smiling_margin": SMILING,
                "negative_pair": "mean over every other person's neutral image (and the nearest one)",
                **(settings or {})}
    counts = {"pairs": len(rows) + len(failures), "evaluated": len(rows), "failed": len(failures),
              "people": len({p.person for p, *_ in judged} | {p.person for p, _ in failures}),
              "no_face_dlib": {"in": sum(a.descriptor is None for _, a, _ in judged),
                               "out": sum(b.descriptor is None for *_, b in judged),
                               "neutral": sum(n.descriptor is None for n in neutrals.values())},
              "no_face_mediapipe": {k: sum(r[f"intensity_{k}"] is None for r in rows)
                                    for k in ("in", "out", "neutral")}}
    # The sheet ranks the unrounded rows, which the report keeps only rounded.
    sheet = (lambda report: _contact_sheet(rows, judged, neutrals, Path(out_dir) / "contact_sheet.png", sheet_rows))
    return finish_report(_summarise(rows), settings=settings, counts=counts,
                         failures=[{"input": str(p.input), "error": msg} for p, msg in failures], rows=rows,
                         out_dir=out_dir, markdown=markdown, sheet=sheet)


def _gallery_stats(row: dict, tag: str, desc, own, others) -> None:
    """Negative-pair distances and 1:2 wins of one face against the other people's neutrals."""
    d_own = distance(desc, own)
    d_others = [(person, distance(desc, d)) for person, d in others] if desc is not None else []
    row[f"id_{tag}_vs_others_mean"] = float(np.mean([d for _, d in d_others])) if d_others else None
    nearest = min(d_others, key=lambda t: t[1]) if d_others else (None, None)
    row[f"id_{tag}_vs_nearest_other"], row[f"nearest_other_{tag}"] = nearest[1], nearest[0]
    ok = d_own is not None and bool(d_others)
    row[f"wins_1to2_{tag}"] = sum(d_own < d for _, d in d_others) if ok else None
    row[f"comparisons_1to2_{tag}"] = len(d_others) if ok else None


# --------------------------------------------------------------------------- neutralize

def make_neutralize_fn(pipeline, strength: float = 1.0) -> NeutralizeFn:
    """Photo -> neutralized RGB with stoic's pipeline, largest face only (the judges look at the
    largest face too)."""
    from stoic_cli.edit.edits import Neutralize

    def fn(photo: Photo) -> np.ndarray:
        return pipeline.run(photo, Neutralize(strength), largest=True).rgb

    return fn


def evaluate_neutralize(pairs: Sequence[Pair], neutralize_fn: NeutralizeFn, out_dir: str | Path,
                        identity=None, expression=None, *, save_outputs: bool = True,
                        tick: Callable[[], None] | None = None, **kwargs) -> dict:
    """Neutralize every pair's input, judge it against the true neutral and write the report
    (see evaluate_outputs). A pair whose input fails (e.g. no face) is listed, not fatal."""
    out_dir = Path(out_dir)
    failures: list[tuple[Pair, str]] = []

    def outputs():
        for i, pair in enumerate(pairs):
            try:
                rgb = np.asarray(neutralize_fn(load_photo(pair.input)), dtype=np.uint8)
            except Exception as exc:  # one unusable photo must not end the evaluation
                failures.append((pair, str(exc) or type(exc).__name__))
                if tick:
                    tick()
                continue
            saved = None
            if save_outputs:
                saved = save_rgb(rgb, out_dir / "outputs" / f"{i:04d}_{pair.input.stem}_neutral.png")
            yield pair, rgb, saved

    return evaluate_outputs(outputs(), out_dir, identity, expression, failures=failures, tick=tick, **kwargs)


# --------------------------------------------------------------------------- summary

def _top(rows: list[dict], fraction: float) -> list[dict]:
    """The most expressive `fraction` of inputs (at least one)."""
    ranked = sorted((r for r in rows if r["intensity_in"] is not None), key=lambda r: -r["intensity_in"])
    return ranked[: max(1, math.ceil(len(ranked) * fraction))] if ranked else []


def _summarise(rows: list[dict]) -> dict:
    expression = {}
    for name, subset in (("all", rows), ("top25", _top(rows, 0.25)), ("top10", _top(rows, 0.10))):
        expression[name] = {"n": len(subset),
                            **{k: stat(r[f"intensity_{k}"] for r in subset) for k in ("in", "out", "neutral")},
                            "removed": stat(r["expression_removed"] for r in subset)}
    expression["smile"] = {"n": len(rows), **{k: stat(r[f"smile_{k}"] for r in rows) for k in ("in", "out", "neutral")},
                           "removed": stat(r["smile_removed"] for r in rows)}

    def one_to_two(tag):
        done = [r for r in rows if r[f"comparisons_1to2_{tag}"]]
        total = sum(r[f"comparisons_1to2_{tag}"] for r in done)
        return {"rate": sum(r[f"wins_1to2_{tag}"] for r in done) / total if total else None, "n": total}

    identity = {k: stat(r[k] for r in rows) for k in (
        "id_in_vs_neutral", "id_out_vs_in", "id_out_vs_neutral", "id_out_vs_others_mean",
        "id_out_vs_nearest_other", "id_in_vs_others_mean", "id_in_vs_nearest_other")}
    identity["verification_out"] = rate((r["id_out_vs_neutral"] for r in rows), lambda d: d < SAME_PERSON)
    identity["verification_in"] = rate((r["id_in_vs_neutral"] for r in rows), lambda d: d < SAME_PERSON)
    identity["recognition_1to2_out"] = one_to_two("out")
    identity["recognition_1to2_in"] = one_to_two("in")
    return {"expression": expression, "identity": identity,
            "sharpness": {"ratio": stat(r["sharpness_ratio"] for r in rows)}}


# --------------------------------------------------------------------------- markdown and sheet

def markdown(report: dict) -> str:
    e, i, c = report["expression"], report["identity"], report["counts"]
    lines = ["# Neutralization evaluation", "",
             f"{c['evaluated']} pairs evaluated ({c['failed']} failed), {c['people']} people. "
             f"Expression: MediaPipe blendshape sum (no blinks, no gaze); identity: dlib distance "
             f"(same person below {SAME_PERSON}).", "",
             "## Table 1: expression intensity", ""]
    names = {"all": "all", "top25": "25 % most expressive", "top10": "10 % most expressive", "smile": "smile score"}
    lines += table(["inputs", "n", "input", "output", "true neutral", "expression removed (mean / median, n)"], [
        [label, e[key]["n"], fmt(e[key]["in"]["mean"]), fmt(e[key]["out"]["mean"]), fmt(e[key]["neutral"]["mean"]),
         f"{fmt(e[key]['removed']['mean'], True)} / {fmt(e[key]['removed']['median'], True)} "
         f"({e[key]['removed']['n']})"] for key, label in names.items()])
    lines += ["", f"Expression removed = (I(in) - I(out)) / (I(in) - I(neutral)), over inputs more expressive than "
              f"their neutral by > {report['settings']['expression_eps']}; for the smile, over inputs smiling "
              f"> {report['settings']['smiling_margin']} more than their neutral.", "",
              "## Table 2: identity (dlib distance)", ""]
    lines += table(["comparison", "mean", "median", "n"], [
        [label, fmt(i[key]["mean"]), fmt(i[key]["median"]), i[key]["n"]]
        for key, label in (("id_in_vs_neutral", "positive pair: input vs true neutral"),
                           ("id_out_vs_in", "output vs input"), ("id_out_vs_neutral", "output vs true neutral"),
                           ("id_out_vs_others_mean", "negative pair: output vs other people's neutrals (mean)"),
                           ("id_out_vs_nearest_other", "output vs nearest other person's neutral"),
                           ("id_in_vs_others_mean", "input vs other people's neutrals (mean)"))])
    lines += [""] + table(["rate", "output", "input (baseline)"], [
        [f"verification @ {SAME_PERSON} (vs true neutral)", fmt(i["verification_out"]["rate"], True),
         fmt(i["verification_in"]["rate"], True)],
        ["1:2 recognition (own neutral closer than another person's)", fmt(i["recognition_1to2_out"]["rate"], True),
         fmt(i["recognition_1to2_in"]["rate"], True)]])
    sharp = report["sharpness"]["ratio"]
    lines += ["", "## Sharpness", "",
              f"Laplacian variance output / input over the input's face box: mean {fmt(sharp['mean'])}, median "
              f"{fmt(sharp['median'])} (n = {sharp['n']}; below 1 = blurrier).", ""]
    if report["failures"]:
        lines += ["## Failed inputs", ""] + [f"- {f['input']}: {f['error']}" for f in report["failures"]] + [""]
    return "\n".join(lines)


def _contact_sheet(rows, judged, neutrals, path: Path, k: int) -> Path:
    """input | output | true neutral, worst and best k rows by expression removed (all of them
    when there are few); each kind of row numbered on its own."""
    tiles, labels, numbers = [], [], {}
    for tag, i in worst_and_best([r["expression_removed"] for r in rows], k, unscored=False):
        r, (pair, j_in, j_out) = rows[i], judged[i]
        tag = tag or ("rank" if r["expression_removed"] is not None else "n/a")
        numbers[tag] = n = numbers.get(tag, 0) + 1
        tiles.append([j_in.thumb, j_out.thumb, neutrals[pair.neutral].thumb])
        labels.append([f"{tag} {n}: {pair.input.name}  removed {fmt(r['expression_removed'], True)}",
                       f"I {fmt(r['intensity_in'])} -> {fmt(r['intensity_out'])} (true {fmt(r['intensity_neutral'])})"
                       f"  smile {fmt(r['smile_in'])} -> {fmt(r['smile_out'])}",
                       f"id out-true {fmt(r['id_out_vs_neutral'])}  out-in {fmt(r['id_out_vs_in'])}"
                       f"  sharp x{fmt(r['sharpness_ratio'])}"])
    return make_sheet(tiles, path, labels, titles=["input", "output", "true neutral"])
