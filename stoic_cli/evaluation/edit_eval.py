"""Measurements for expression transfer (LEED) and attribute editing (continuous amounts).

Transfer: each reference photo's expression (its displacement from its own neutral code) goes
onto each input photo of a *different* person. Two numbers per (reference, input) pair:

- smile progress = (S(out) - S(in)) / (S(ref) - S(in)), S = MediaPipe's smile blendshape
  (mean of mouthSmileLeft/Right). 100 % means the output smiles as much as the reference, 0 %
  means nothing changed. Only pairs where the reference smiles more than the input by over
  SMILE_GAP count: below that the ratio is noise. Reported: mean, median, share >= 0.7.
- identity: dlib distance of the output to the input photo; same person below 0.6. Also the
  distance to the reference, which should stay above 0.6 (the expression, not the face, moves).

Where a smile is lost, on the aligned crops the models see (TRANSFER_STAGES): the same
progress ratio, from the input's crop to the reference's crop, for the reference's own
reconstruction (what the VAE keeps of it), the transfer code decoded (what the displacement
gives on another person's code) and the output's crop (after paste-back and motion).

Edit: each input photo is edited with one attribute at several amounts. Per face, the
attribute's blendshape measure (smile: mean of mouthSmileLeft/Right; surprise: jawOpen and
browInnerUp, checked on their mean; anything else: the expression intensity) should not fall as
the amount grows; a drop of at most MONOTONIC_TOL between neighbouring amounts counts as flat.
Reported: the share of monotonic faces, the measure and the identity distance to the input per
amount, and the share of outputs still the same person per amount.

The judges (dlib, MediaPipe) are never trained against; see stoic_cli.evaluation.judges.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stoic_cli.evaluation.judges import SAME_PERSON, expression_intensity, expression_names, expression_vector, smile
from stoic_cli.evaluation.neutralize_eval import _clean, _f, _face_region, _stat, _thumb, make_sheet
from stoic_cli.face.images import load_photo, save_rgb

SMILE_GAP = 0.1  # S(ref) - S(in) must exceed this for the progress ratio to mean anything
PROGRESS_BAR = 0.7  # a transfer "arrives" when it reaches 70 % of the reference's smile
MONOTONIC_TOL = 0.01  # a step down this small is a flat step, not a reversal
CROP_JUDGE_SIZE = 256  # aligned crops are judged upscaled: MediaPipe's detector wants more pixels
TRANSFER_STAGES = (("reconstruction", "the reference's reconstruction"),
                   ("decoded", "transfer code, decoded"),
                   ("pasted", "output, after paste-back and motion"))


# --------------------------------------------------------------------------- pure measures

def smile_progress(smile_in: float | None, smile_out: float | None, smile_ref: float | None,
                   min_gap: float = SMILE_GAP) -> float | None:
    """(S(out) - S(in)) / (S(ref) - S(in)), or None when a score is missing or the reference
    does not smile more than the input by over `min_gap`."""
    if smile_in is None or smile_out is None or smile_ref is None:
        return None
    gap = smile_ref - smile_in
    if not gap > min_gap:
        return None
    return (smile_out - smile_in) / gap


def expression_progress(bs_in: dict | None, bs_out: dict | None, bs_ref: dict | None,
                        min_gap: float = SMILE_GAP) -> float | None:
    """The smile's progress for the whole expression, so that transfers of any expression are
    measured: how far the output's blendshapes (no blinks or gaze) moved along the line from the
    input's to the reference's, as a share of that line (1 = the reference's expression, 0 =
    unchanged; motion across it is not counted). None when a face's blendshapes are missing or
    the two expressions differ by no more than `min_gap` (Euclidean)."""
    if bs_in is None or bs_out is None or bs_ref is None:
        return None
    names = expression_names(bs_ref)
    start, out, ref = (expression_vector(b, names) for b in (bs_in, bs_out, bs_ref))
    line = ref - start
    length2 = float(line @ line)
    if not length2 > min_gap ** 2:
        return None
    return float((out - start) @ line / length2)


def is_monotonic(values: Iterable[float | None], tol: float = MONOTONIC_TOL) -> bool | None:
    """True when the sequence never drops by more than `tol` from one value to the next (it
    may stay flat). None when a value is missing or there are fewer than two."""
    vals = list(values)
    if len(vals) < 2 or any(v is None or not math.isfinite(v) for v in vals):
        return None
    return all(b - a >= -tol - 1e-9 for a, b in zip(vals, vals[1:]))  # 1e-9: 0.20 -> 0.19 is a 0.01 drop


def rate(values: Iterable, test: Callable[[float], bool]) -> dict:
    """Share of the known values (None skipped) that pass `test`, with how many were known."""
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return {"rate": sum(bool(test(v)) for v in known) / len(known) if known else None, "n": len(known)}


def same_person_rate(distances: Iterable[float | None], threshold: float = SAME_PERSON) -> dict:
    """Share of dlib distances below the same-person threshold."""
    return rate(distances, lambda d: d < threshold)


def progress_summary(values: Iterable[float | None], bar: float = PROGRESS_BAR) -> dict:
    """Mean, median and n of the progress ratios, plus the share at or above `bar`."""
    vals = list(values)
    return {**_stat(vals), "at_bar": rate(vals, lambda p: p >= bar)}


def person_from_name(path: str | Path) -> str:
    """Who is in a photo, from the `<id>_<expression>` naming of the fixtures: `011_smiling` ->
    `011`, `ann_lee_smile` -> `ann_lee`. A last part without letters is not an expression
    (`IMG_1234` is its own person), and a stem without `_` is its own person."""
    stem = Path(path).stem
    head, sep, tail = stem.rpartition("_")
    return head if sep and head and re.search(r"[A-Za-z]", tail) else stem


def person_from_file(path: str | Path) -> str:
    """Every file its own person (only a photo paired with itself is skipped)."""
    return str(Path(path).resolve())


def parse_amounts(text: str) -> list[float]:
    """'-1,-0.5,0,0.5,1' or 'START..STOP:N' (N evenly spaced values, ends included). Sorted,
    duplicates dropped."""
    text = text.strip()
    try:
        if ".." in text:
            start, _, rest = text.partition("..")
            stop, sep, steps = rest.partition(":")
            n = int(steps) if sep else 0
            if n < 2:
                raise ValueError("a range needs :N with N >= 2 steps")
            values = np.linspace(float(start), float(stop), n).tolist()
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"amounts {text!r}: give numbers separated by commas (-1,-0.5,0,0.5,1) or a "
                         f"range START..STOP:N (0..1:5) ({exc})") from None
    values = sorted({round(v, 6) for v in values})
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"amounts {text!r}: no usable numbers")
    return values


def attribute_measures(bs: dict[str, float] | None, attribute: str) -> dict[str, float | None]:
    """The blendshape numbers that should follow `attribute`, plus `score`, the one checked for
    monotonicity: smile -> mean(mouthSmileLeft, mouthSmileRight); surprise -> jawOpen,
    browInnerUp and their mean; anything else -> the expression intensity."""
    names = measure_names(attribute)
    if bs is None:
        return {n: None for n in names + ("score",)}
    key = attribute.lower()
    if key == "smile":
        s = smile(bs)
        return {"smile": s, "score": s}
    if key == "surprise":
        jaw, brow = float(bs.get("jawOpen", 0.0)), float(bs.get("browInnerUp", 0.0))
        return {"jawOpen": jaw, "browInnerUp": brow, "score": (jaw + brow) / 2}
    i = expression_intensity(bs)
    return {"intensity": i, "score": i}


def measure_names(attribute: str) -> tuple[str, ...]:
    return {"smile": ("smile",), "surprise": ("jawOpen", "browInnerUp")}.get(attribute.lower(), ("intensity",))


def measure_label(attribute: str) -> str:
    return {"smile": "smile = mean(mouthSmileLeft, mouthSmileRight)",
            "surprise": "mean(jawOpen, browInnerUp)"}.get(attribute.lower(),
                                                          "expression intensity (blendshape sum)")


# --------------------------------------------------------------------------- judging

@dataclass
class _Look:
    """What the judges see in one image: dlib descriptor and box, blendshapes, a thumbnail."""
    descriptor: np.ndarray | None
    box: np.ndarray | None
    blendshapes: dict | None
    thumb: np.ndarray


def _look(rgb: np.ndarray, identity, expression, box=None) -> _Look:
    """Judge one image. `box` (the input's face, for an edit of the same photo) picks the face
    dlib describes and frames the thumbnail at the same place as the input's."""
    found = identity.analyze(rgb, box)
    descriptor, found_box = (None, None) if found is None else found
    bs = expression.blendshapes(rgb)
    return _Look(descriptor, found_box, bs, _thumb(rgb, _face_region(found_box if box is None else box, rgb.shape)))


def _crop_smile(crop: np.ndarray, expression) -> float | None:
    """MediaPipe's smile on an aligned crop (float or uint8, 0..255)."""
    import cv2

    img = np.clip(np.asarray(crop, np.float32), 0, 255).astype(np.uint8)
    img = cv2.resize(img, (CROP_JUDGE_SIZE, CROP_JUDGE_SIZE), interpolation=cv2.INTER_CUBIC)
    return smile(expression.blendshapes(img))


def _dist(a, b) -> float | None:
    return None if a is None or b is None else float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def _with_judges(identity, expression, work: Callable):
    from stoic_cli.evaluation.judges import ExpressionJudge, IdentityJudge

    owned = expression is None  # close what we open: MediaPipe holds native resources
    identity = identity or IdentityJudge()
    expression = expression or ExpressionJudge()
    try:
        return work(identity, expression)
    finally:
        if owned:
            expression.close()


def _write(report: dict, out_dir: Path, markdown_text: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(markdown_text)


def _tag(value: float) -> str:
    return f"{value:+g}".replace(".", "p")


# --------------------------------------------------------------------------- transfer

def evaluate_transfer(pipeline, references: Sequence[str | Path], inputs: Sequence[str | Path],
                      out_dir: str | Path | None, alpha: float = 1.0, identity=None, expression=None, *,
                      person_of: Callable[[Path], str] = person_from_name, min_gap: float = SMILE_GAP,
                      bar: float = PROGRESS_BAR, save_outputs: bool = True, sheet_rows: int = 6,
                      settings: dict | None = None, tick: Callable[[], None] | None = None) -> dict:
    """Transfer every reference's expression onto every input of a different person (largest
    face of each photo, as the judges look at the largest face) and measure smile progress and
    identity. A reference or input without a usable face is listed under failures, not fatal.
    Writes report.json, report.md, contact_sheet.png and outputs/ into out_dir when given.
    `tick` is called once per (reference, input) combination, skipped ones included."""
    def work(identity, expression):
        return _transfer(pipeline, [Path(p) for p in references], [Path(p) for p in inputs],
                         Path(out_dir) if out_dir is not None else None, alpha, identity, expression, person_of,
                         min_gap, bar, save_outputs, sheet_rows, settings, tick)

    return _with_judges(identity, expression, work)


def _transfer(pipeline, references, inputs, out_dir, alpha, identity, expression, person_of, min_gap, bar,
              save_outputs, sheet_rows, settings, tick) -> dict:
    from stoic_cli.face.alignment import align_face
    from stoic_cli.edit.edits import Transfer
    from stoic_cli.edit.latent import transfer_codes

    def advance(n: int = 1):
        for _ in range(n if tick else 0):
            tick()

    failures: list[dict] = []
    refs = []  # (path, displacement, look)
    for path in references:
        try:
            photo = load_photo(path)
            ref = pipeline.read_reference(photo)
        except Exception as exc:  # one unusable reference must not end the evaluation
            failures.append({"reference": str(path), "input": None, "error": str(exc) or type(exc).__name__})
            continue
        reconstruction = pipeline.models.decode(pipeline.codes(ref.crop[None])[0])[0]  # what the VAE keeps of it
        crop_smiles = (_crop_smile(ref.crop, expression), _crop_smile(reconstruction, expression))
        refs.append((path, ref, _look(photo.rgb, identity, expression), crop_smiles))
    n_failed_refs = len(references) - len(refs)

    rows, thumbs, same_person = [], [], 0
    for i, in_path in enumerate(inputs):
        try:
            photo = load_photo(in_path)
            faces, _ = pipeline.find_faces(photo, largest=True)
        except Exception as exc:
            failures.append({"reference": None, "input": str(in_path), "error": str(exc) or type(exc).__name__})
            advance(len(references))
            continue
        advance(n_failed_refs)
        look_in = None
        for r, (ref_path, ref, look_ref, (c_ref, c_rec)) in enumerate(refs):
            displacement = ref.displacement
            if _same_file(ref_path, in_path) or person_of(ref_path) == person_of(in_path):
                same_person += 1
                advance()
                continue
            if look_in is None:  # judged only once it is needed
                look_in = _look(photo.rgb, identity, expression)
                crop_in, _ = align_face(photo.rgb, faces[0].landmarks, pipeline.render_size)
                zn_in = pipeline.codes(crop_in[None])[1]  # the neutral code as the job uses it
                c_in = _crop_smile(crop_in, expression)
            try:
                result = pipeline.apply(photo, faces, Transfer(ref, alpha))
                decoded = pipeline.models.decode(transfer_codes(zn_in, displacement, alpha).astype(np.float32))[0]
            except Exception as exc:
                failures.append({"reference": str(ref_path), "input": str(in_path),
                                 "error": str(exc) or type(exc).__name__})
                advance()
                continue
            out = np.asarray(result.rgb, np.uint8)
            look_out = _look(out, identity, expression, box=look_in.box)
            saved = None
            if save_outputs and out_dir is not None:
                saved = save_rgb(out, out_dir / "outputs" / f"{i:04d}_{in_path.stem}_from_{r:02d}_{ref_path.stem}.png")
            s_in, s_out, s_ref = (smile(x.blendshapes) for x in (look_in, look_out, look_ref))
            rows.append({
                "reference": str(ref_path), "input": str(in_path),
                "person_ref": person_of(ref_path), "person_in": person_of(in_path),
                "smile_ref": s_ref, "smile_in": s_in, "smile_out": s_out,
                "smile_progress": smile_progress(s_in, s_out, s_ref, min_gap),
                "expression_progress": expression_progress(look_in.blendshapes, look_out.blendshapes,
                                                           look_ref.blendshapes, min_gap),
                "intensity_ref": expression_intensity(look_ref.blendshapes),
                "intensity_in": expression_intensity(look_in.blendshapes),
                "intensity_out": expression_intensity(look_out.blendshapes),
                "id_out_vs_in": _dist(look_out.descriptor, look_in.descriptor),
                "id_out_vs_ref": _dist(look_out.descriptor, look_ref.descriptor),
                "id_in_vs_ref": _dist(look_in.descriptor, look_ref.descriptor),
                "output": str(saved) if saved else None,
                "crop_smile": {"in": c_in, "ref": c_ref, "reconstruction": c_rec,
                               "decoded": _crop_smile(decoded, expression),
                               "pasted": _crop_smile(result.faces[0].edited_crop, expression)},
            })
            thumbs.append((look_in.thumb, look_ref.thumb, look_out.thumb))
            advance()

    report = summarise_transfer(rows, bar)
    report["settings"] = {"alpha": alpha, "smile_gap": min_gap, "progress_bar": bar,
                          "same_person_threshold": SAME_PERSON,
                          "person_rule": getattr(person_of, "__name__", str(person_of)),
                          "faces": "largest face of each photo", **(settings or {})}
    report["counts"] = {"references": len(references), "inputs": len(inputs),
                        "combinations": len(references) * len(inputs), "evaluated": len(rows),
                        "same_person_skipped": same_person,
                        "progress_eligible": sum(r["smile_progress"] is not None for r in rows),
                        "failed_references": n_failed_refs,
                        "failed_inputs": sum(f["reference"] is None for f in failures),
                        "failed_pairs": sum(f["reference"] is not None and f["input"] is not None for f in failures),
                        "no_face_dlib_out": sum(r["id_out_vs_in"] is None for r in rows),
                        "no_face_mediapipe_out": sum(r["smile_out"] is None for r in rows)}
    report["failures"] = failures
    report["rows"] = rows
    report = _clean(report)
    if out_dir is not None:
        _write(report, out_dir, transfer_markdown(report))
        _transfer_sheet(report["rows"], thumbs, out_dir / "contact_sheet.png", sheet_rows)
    return report


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def summarise_transfer(rows: Sequence[dict], bar: float = PROGRESS_BAR) -> dict:
    """The report's numbers from its rows (see evaluate_transfer for the row keys)."""
    progress = progress_summary((r["smile_progress"] for r in rows), bar)
    whole = progress_summary((r.get("expression_progress") for r in rows), bar)
    identity = {"id_out_vs_in": _stat(r["id_out_vs_in"] for r in rows),
                "same_person_out_vs_in": same_person_rate(r["id_out_vs_in"] for r in rows),
                "id_out_vs_ref": _stat(r["id_out_vs_ref"] for r in rows),
                "same_person_out_vs_ref": same_person_rate(r["id_out_vs_ref"] for r in rows),
                "id_in_vs_ref": _stat(r["id_in_vs_ref"] for r in rows)}
    per_reference = []
    for ref in dict.fromkeys(r["reference"] for r in rows):
        mine = [r for r in rows if r["reference"] == ref]
        per_reference.append({"reference": ref, "smile_ref": mine[0]["smile_ref"], "pairs": len(mine),
                              "smile_progress": progress_summary((r["smile_progress"] for r in mine), bar),
                              "expression_progress": _stat(r.get("expression_progress") for r in mine),
                              "id_out_vs_in": _stat(r["id_out_vs_in"] for r in mine),
                              "same_person_out_vs_in": same_person_rate(r["id_out_vs_in"] for r in mine)})
    return {
        "smile_progress": progress,
        "expression_progress": whole,
        "smile": {k: _stat(r[f"smile_{k}"] for r in rows) for k in ("in", "ref", "out")},
        "intensity": {k: _stat(r[f"intensity_{k}"] for r in rows) for k in ("in", "ref", "out")},
        "identity": identity,
        "per_reference": per_reference,
        "stages": transfer_stages(rows, bar),
        "bars": {"smile_progress_at_bar": progress["at_bar"]["rate"],
                 "identity_kept": identity["same_person_out_vs_in"]["rate"]},
    }


def transfer_stages(rows: Sequence[dict], bar: float = PROGRESS_BAR, min_gap: float = SMILE_GAP) -> dict:
    """Crop-level smile progress at each of TRANSFER_STAGES (rows without `crop_smile`, written
    before it existed, count as unmeasured)."""
    crops = [r.get("crop_smile") or {} for r in rows]
    return {stage: progress_summary((smile_progress(c.get("in"), c.get(stage), c.get("ref"), min_gap) for c in crops), bar)
            for stage, _ in TRANSFER_STAGES}


def transfer_markdown(report: dict) -> str:
    c, s, p, i = report["counts"], report["settings"], report["smile_progress"], report["identity"]
    bar, thr = s["progress_bar"], s["same_person_threshold"]
    lines = ["# Expression transfer evaluation", "",
             f"{c['evaluated']} (reference, input) pairs evaluated from {c['references']} reference(s) x "
             f"{c['inputs']} input(s); {c['same_person_skipped']} same-person combination(s) skipped, "
             f"{c['failed_references']} reference(s), {c['failed_inputs']} input(s) and {c['failed_pairs']} pair(s) "
             f"failed. alpha = {s['alpha']}. Smile: MediaPipe mean(mouthSmileLeft, mouthSmileRight); "
             f"identity: dlib distance (same person below {thr}).", "",
             "## Bars", "",
             "| measure | value | n |", "|---|---:|---:|",
             f"| smile progress >= {bar:g} | {_f(p['at_bar']['rate'], True)} | {p['at_bar']['n']} |",
             f"| identity kept (output vs input < {thr}) | {_f(i['same_person_out_vs_in']['rate'], True)} | "
             f"{i['same_person_out_vs_in']['n']} |", "",
             "## Smile progress", "",
             f"(S(out) - S(in)) / (S(ref) - S(in)) over pairs where the reference smiles more than the input by "
             f"> {s['smile_gap']} ({c['progress_eligible']} of {c['evaluated']}).", "",
             "| | mean | median | n |", "|---|---:|---:|---:|",
             f"| smile progress | {_f(p['mean'], True)} | {_f(p['median'], True)} | {p['n']} |"]
    for k, label in (("in", "smile of input"), ("ref", "smile of reference"), ("out", "smile of output")):
        st = report["smile"][k]
        lines.append(f"| {label} | {_f(st['mean'])} | {_f(st['median'])} | {st['n']} |")
    for k, label in (("in", "expression intensity of input"), ("ref", "expression intensity of reference"),
                     ("out", "expression intensity of output")):
        st = report["intensity"][k]
        lines.append(f"| {label} | {_f(st['mean'])} | {_f(st['median'])} | {st['n']} |")
    w = report["expression_progress"]
    lines += ["", "## Whole-expression progress", "",
              "The same ratio for any expression: how far the output's expression blendshapes (no blinks "
              "or gaze), as a vector, moved along the line from the input's to the reference's "
              f"(pairs whose expressions differ by > {s['smile_gap']}).", "",
              f"| | mean | median | >= {bar:g} | n |", "|---|---:|---:|---:|---:|",
              f"| whole-expression progress | {_f(w['mean'], True)} | {_f(w['median'], True)} | "
              f"{_f(w['at_bar']['rate'], True)} | {w['n']} |"]
    lines += ["", "## Where the smile goes (aligned crops)", "",
              "The same smile progress measured on the aligned crops the models see, from the input's "
              "crop to the reference's, at each stage of the transfer.", "",
              f"| stage | mean | median | >= {bar:g} | n |", "|---|---:|---:|---:|---:|"]
    for stage, label in TRANSFER_STAGES:
        st = report["stages"][stage]
        lines.append(f"| {label} | {_f(st['mean'], True)} | {_f(st['median'], True)} | "
                     f"{_f(st['at_bar']['rate'], True)} | {st['n']} |")
    lines += ["", "## Identity (dlib distance)", "",
              "| comparison | mean | median | below threshold | n |", "|---|---:|---:|---:|---:|"]
    for key, rate_key, label in (("id_out_vs_in", "same_person_out_vs_in", "output vs input (should be low)"),
                                 ("id_out_vs_ref", "same_person_out_vs_ref", "output vs reference (should stay high)"),
                                 ("id_in_vs_ref", None, "input vs reference (different people)")):
        st = i[key]
        below = _f(i[rate_key]["rate"], True) if rate_key else "-"
        lines.append(f"| {label} | {_f(st['mean'])} | {_f(st['median'])} | {below} | {st['n']} |")
    lines += ["", "## Per reference", "",
              f"| reference | smile | pairs | progress mean / median | progress >= {bar:g} | whole expression mean "
              "| identity kept |", "|---|---:|---:|---:|---:|---:|---:|"]
    for ref in report["per_reference"]:
        pr = ref["smile_progress"]
        lines.append(f"| {Path(ref['reference']).name} | {_f(ref['smile_ref'])} | {ref['pairs']} | "
                     f"{_f(pr['mean'], True)} / {_f(pr['median'], True)} | {_f(pr['at_bar']['rate'], True)} "
                     f"({pr['at_bar']['n']}) | {_f(ref['expression_progress']['mean'], True)} | "
                     f"{_f(ref['same_person_out_vs_in']['rate'], True)} |")
    lines += ["", "## Pairs", "", "| input | reference | smile in / ref / out | progress | whole expression | "
              "id out-in | id out-ref |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {Path(r['input']).name} | {Path(r['reference']).name} | {_f(r['smile_in'])} / "
                     f"{_f(r['smile_ref'])} / {_f(r['smile_out'])} | {_f(r['smile_progress'], True)} | "
                     f"{_f(r['expression_progress'], True)} | {_f(r['id_out_vs_in'])} | {_f(r['id_out_vs_ref'])} |")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [
            f"- {Path(f['input']).name if f['input'] else '(all inputs)'}"
            f"{' <- ' + Path(f['reference']).name if f['reference'] else ''}: {f['error']}"
            for f in report["failures"]]
    return "\n".join(lines) + "\n"


def _pick(scores: Sequence[float | None], k: int) -> list[tuple[str, int]]:
    """Rows for a sheet: all of them (lowest score first, unscored last) when there are at most
    2k, else the k lowest and the k highest scores."""
    scored = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: scores[i])
    unscored = [i for i, v in enumerate(scores) if v is None]
    if len(scores) <= 2 * k:
        return [("", i) for i in scored + unscored]
    if len(scored) > 2 * k:
        return [("worst", i) for i in scored[:k]] + [("best", i) for i in reversed(scored[-k:])]
    return [("", i) for i in (scored + unscored)[: 2 * k]]


def _sheet_scores(rows: Sequence[dict]) -> list[float | None]:
    """What the transfer sheet ranks by: smile progress, unless fewer than half of the measurable
    pairs have one (references of other expressions); then whole-expression progress."""
    smiles = [r["smile_progress"] for r in rows]
    wholes = [r.get("expression_progress") for r in rows]
    by_smile = 2 * sum(v is not None for v in smiles) >= sum(v is not None for v in wholes)
    return smiles if by_smile else wholes


def _transfer_sheet(rows, thumbs, path: Path, k: int) -> Path:
    picks = _pick(_sheet_scores(rows), k)
    sheet, labels = [], []
    for n, (tag, i) in enumerate(picks):
        r = rows[i]
        sheet.append(list(thumbs[i]))
        labels.append([f"{tag + ' ' if tag else ''}{n + 1}: {Path(r['input']).name} <- {Path(r['reference']).name}"
                       f"  progress {_f(r['smile_progress'], True)} (whole expression "
                       f"{_f(r.get('expression_progress'), True)})",
                       f"smile {_f(r['smile_in'])} -> {_f(r['smile_out'])} (ref {_f(r['smile_ref'])})"
                       f"  id out-in {_f(r['id_out_vs_in'])} out-ref {_f(r['id_out_vs_ref'])}"])
    return make_sheet(sheet, path, labels, titles=["input", "reference", "output"])


# --------------------------------------------------------------------------- edit

def evaluate_edit(pipeline, inputs: Sequence[str | Path], attribute: str, amounts: Sequence[float],
                  out_dir: str | Path | None, identity=None, expression=None, *, attributes: dict | None = None,
                  tol: float = MONOTONIC_TOL, save_outputs: bool = True, strip_rows: int = 24,
                  settings: dict | None = None, tick: Callable[[], None] | None = None) -> dict:
    """Edit every input (largest face) with `attribute` at each amount (sorted ascending) and
    measure the attribute's blendshapes, their monotonicity and identity per amount.
    `attributes` defaults to the pipeline's attributes.json; an unknown name raises KeyError
    before any work. Writes report.json, report.md, edit_strip_<attribute>.png and outputs/ into
    out_dir when given. `tick` is called once per input."""
    known = attributes if attributes is not None else pipeline.models.attributes()
    if attribute not in known:
        raise KeyError(f"unknown attribute {attribute!r}; known: {', '.join(sorted(known)) or 'none'}")
    amounts = sorted({float(a) for a in amounts})
    if not amounts:
        raise ValueError("no amounts given")

    def work(identity, expression):
        return _edit(pipeline, [Path(p) for p in inputs], attribute, amounts,
                     Path(out_dir) if out_dir is not None else None, identity, expression, known, tol,
                     save_outputs, strip_rows, settings, tick)

    return _with_judges(identity, expression, work)


def _edit(pipeline, inputs, attribute, amounts, out_dir, identity, expression, known, tol, save_outputs,
          strip_rows, settings, tick) -> dict:
    from stoic_cli.edit.edits import AttributeEdit

    names = measure_names(attribute)
    rows, strips, failures = [], [], []
    for i, in_path in enumerate(inputs):
        try:
            photo = load_photo(in_path)
            faces, _ = pipeline.find_faces(photo, largest=True)
            look_in = _look(photo.rgb, identity, expression)
            looks, saved = [], []
            for a in amounts:
                result = pipeline.apply(photo, faces, AttributeEdit(known, {attribute: float(a)}, force=True))
                out = np.asarray(result.rgb, np.uint8)
                looks.append(_look(out, identity, expression, box=look_in.box))
                if save_outputs and out_dir is not None:
                    saved.append(str(save_rgb(out, out_dir / "outputs" /
                                              f"{i:04d}_{in_path.stem}_{attribute}{_tag(a)}.png")))
        except Exception as exc:  # one unusable photo must not end the evaluation
            failures.append({"input": str(in_path), "error": str(exc) or type(exc).__name__})
            if tick:
                tick()
            continue
        measured = [attribute_measures(lk.blendshapes, attribute) for lk in looks]
        score = [m["score"] for m in measured]
        known_scores = [v for v in score if v is not None]
        rows.append({
            "input": str(in_path),
            "measures_in": attribute_measures(look_in.blendshapes, attribute),
            "score": score,
            **{n: [m[n] for m in measured] for n in names if n != "score"},
            "monotonic": is_monotonic(score, tol),
            "rise": score[-1] - score[0] if len(known_scores) == len(score) and len(score) > 1 else None,
            "id_out_vs_in": [_dist(lk.descriptor, look_in.descriptor) for lk in looks],
            "dlib_face_in": look_in.descriptor is not None,
            "outputs": saved or None,
        })
        strips.append([look_in.thumb] + [lk.thumb for lk in looks])
        if tick:
            tick()

    report = summarise_edit(rows, attribute, amounts)
    attr = known[attribute]
    report["settings"] = {"attribute": attribute, "amounts": amounts, "measure": measure_label(attribute),
                          "monotonic_tolerance": tol, "same_person_threshold": SAME_PERSON,
                          "attribute_range": [attr.minimum, attr.maximum], "attribute_unit": attr.unit,
                          "amounts_outside_range": [a for a in amounts if not attr.minimum <= a <= attr.maximum],
                          "faces": "largest face of each photo", **(settings or {})}
    report["counts"] = {"inputs": len(inputs), "evaluated": len(rows), "failed": len(failures),
                        "no_face_dlib_in": sum(not r["dlib_face_in"] for r in rows),
                        "no_face_mediapipe_out": sum(v is None for r in rows for v in r["score"])}
    report["failures"] = failures
    report["rows"] = rows
    report = _clean(report)
    if out_dir is not None:
        _write(report, out_dir, edit_markdown(report))
        _edit_strip(report, strips, out_dir / f"edit_strip_{attribute}.png", strip_rows)
    return report


def summarise_edit(rows: Sequence[dict], attribute: str, amounts: Sequence[float]) -> dict:
    """The report's numbers from its rows (see evaluate_edit for the row keys)."""
    names = ("score",) + tuple(n for n in measure_names(attribute) if n != "score")
    per_amount = []
    for k, a in enumerate(amounts):
        ids = [r["id_out_vs_in"][k] for r in rows]
        per_amount.append({"amount": a, **{n: _stat(r[n][k] for r in rows) for n in names},
                           "id_out_vs_in": _stat(ids), "same_person": same_person_rate(ids)})
    monotonic = rate((r["monotonic"] for r in rows), bool)
    kept = [p["same_person"]["rate"] for p in per_amount if p["same_person"]["rate"] is not None]
    return {"attribute": attribute, "amounts": list(amounts), "per_amount": per_amount, "monotonic": monotonic,
            "rise": _stat(r["rise"] for r in rows),
            "bars": {"monotonic": monotonic["rate"],
                     "identity_kept_by_amount": {f"{p['amount']:g}": p["same_person"]["rate"] for p in per_amount},
                     "identity_kept_worst": min(kept) if kept else None}}


def edit_markdown(report: dict) -> str:
    c, s, attr = report["counts"], report["settings"], report["attribute"]
    names = measure_names(attr)
    show = ["score"] + [n for n in names if n != "score" and len(names) > 1]
    thr = s["same_person_threshold"]
    lines = [f"# Attribute edit evaluation: {attr}", "",
             f"{c['evaluated']} face(s) evaluated ({c['failed']} failed) at amounts "
             f"{', '.join(f'{a:g}' for a in report['amounts'])} (range {s['attribute_range'][0]:g} .. "
             f"{s['attribute_range'][1]:g} {s['attribute_unit']}). Measure: {s['measure']}; identity: dlib "
             f"distance to the input photo (same person below {thr}).", ""]
    if s["amounts_outside_range"]:
        lines += [f"Amounts outside the attribute's documented range: "
                  f"{', '.join(f'{a:g}' for a in s['amounts_outside_range'])}.", ""]
    m = report["monotonic"]
    lines += ["## Bars", "", "| measure | value | n |", "|---|---:|---:|",
              f"| monotonic (no drop > {s['monotonic_tolerance']} between amounts) | {_f(m['rate'], True)} | "
              f"{m['n']} |"]
    for p in report["per_amount"]:
        lines.append(f"| identity kept at {p['amount']:g} (output vs input < {thr}) | "
                     f"{_f(p['same_person']['rate'], True)} | {p['same_person']['n']} |")
    header = " | ".join(f"{n} mean / median" for n in show)
    lines += ["", "## Per amount", "", f"| amount | {header} | id out-in mean / median | identity kept |",
              "|---:|" + "---:|" * len(show) + "---:|---:|"]
    for p in report["per_amount"]:
        cells = " | ".join(f"{_f(p[n]['mean'])} / {_f(p[n]['median'])}" for n in show)
        lines.append(f"| {p['amount']:g} | {cells} | {_f(p['id_out_vs_in']['mean'])} / "
                     f"{_f(p['id_out_vs_in']['median'])} | {_f(p['same_person']['rate'], True)} |")
    r = report["rise"]
    lines += ["", f"Rise of the measure from the smallest to the largest amount: mean {_f(r['mean'])}, "
              f"median {_f(r['median'])} (n = {r['n']}).", "", "## Faces", "",
              "| input | measure at each amount | monotonic | id out-in at each amount |", "|---|---|:-:|---|"]
    for row in report["rows"]:
        mono = {True: "yes", False: "no", None: "-"}[row["monotonic"]]
        lines.append(f"| {Path(row['input']).name} | {' '.join(_f(v) for v in row['score'])} | {mono} | "
                     f"{' '.join(_f(v) for v in row['id_out_vs_in'])} |")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {Path(f['input']).name}: {f['error']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def _edit_strip(report: dict, strips, path: Path, max_rows: int) -> Path:
    rows = report["rows"][:max_rows]
    labels = []
    for row in rows:
        mono = {True: "yes", False: "NO", None: "-"}[row["monotonic"]]
        labels.append([f"{Path(row['input']).name}  monotonic {mono}",
                       f"{report['attribute']}: " + " ".join(_f(v) for v in row["score"]),
                       "id: " + " ".join(_f(v) for v in row["id_out_vs_in"])])
    titles = ["input"] + [f"{a:+g}" if a else "0" for a in report["amounts"]]
    return make_sheet(strips[:max_rows], path, labels, titles=titles)
