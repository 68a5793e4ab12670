"""`stoic eval edit`: measurements for attribute editing (continuous amounts).

Each input photo is edited with one attribute at several amounts. Per face, the attribute's
blendshape measure (smile: mean of mouthSmileLeft/Right; surprise: jawOpen and browInnerUp,
checked on their mean; anything else: the expression intensity) should not fall as the amount
grows; a drop of at most MONOTONIC_TOL between neighbouring amounts counts as flat. Reported:
the share of monotonic faces, the measure and the identity distance to the input per amount,
and the share of outputs still the same person per amount.

The judges (dlib, MediaPipe) are never trained against; see stoic_cli.evaluation.judges.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stoic_cli.evaluation.judges import SAME_PERSON, distance
from stoic_cli.evaluation.looks import look, with_judges
from stoic_cli.evaluation.measures import (MONOTONIC_TOL, attribute_measures, is_monotonic, measure_label,
                                           measure_names)
from stoic_cli.evaluation.report import finish_report, fmt, rate, same_person_rate, stat, table
from stoic_cli.evaluation.sheets import make_sheet
from stoic_cli.face.images import load_photo, save_rgb


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


def _tag(value: float) -> str:
    """An amount as a file-name part: +0p5, -1."""
    return f"{value:+g}".replace(".", "p")


# --------------------------------------------------------------------------- evaluation

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

    return with_judges(identity, expression, work)


def _edit(pipeline, inputs, attribute, amounts, out_dir, identity, expression, known, tol, save_outputs,
          strip_rows, settings, tick) -> dict:
    from stoic_cli.edit.edits import AttributeEdit

    names = measure_names(attribute)
    rows, strips, failures = [], [], []
    for i, in_path in enumerate(inputs):
        try:
            photo = load_photo(in_path)
            faces, _ = pipeline.find_faces(photo, largest=True)
            look_in = look(photo.rgb, identity, expression)
            looks, saved = [], []
            for a in amounts:
                result = pipeline.apply(photo, faces, AttributeEdit(known, {attribute: float(a)}, force=True))
                out = np.asarray(result.rgb, np.uint8)
                looks.append(look(out, identity, expression, box=look_in.box))
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
            "id_out_vs_in": [distance(lk.descriptor, look_in.descriptor) for lk in looks],
            "dlib_face_in": look_in.descriptor is not None,
            "outputs": saved or None,
        })
        strips.append([look_in.thumb] + [lk.thumb for lk in looks])
        if tick:
            tick()

    attr = known[attribute]
    settings = {"attribute": attribute, "amounts": amounts, "measure": measure_label(attribute),
                "monotonic_tolerance": tol, "same_person_threshold": SAME_PERSON,
                "attribute_range": [attr.minimum, attr.maximum], "attribute_unit": attr.unit,
                "amounts_outside_range": [a for a in amounts if not attr.minimum <= a <= attr.maximum],
                "faces": "largest face of each photo", **(settings or {})}
    counts = {"inputs": len(inputs), "evaluated": len(rows), "failed": len(failures),
              "no_face_dlib_in": sum(not r["dlib_face_in"] for r in rows),
              "no_face_mediapipe_out": sum(v is None for r in rows for v in r["score"])}
    return finish_report(summarise_edit(rows, attribute, amounts), settings=settings, counts=counts,
                         failures=failures, rows=rows, out_dir=out_dir, markdown=edit_markdown,
                         sheet=lambda report: _edit_strip(report, strips, out_dir / f"edit_strip_{attribute}.png",
                                                          strip_rows))


def summarise_edit(rows: Sequence[dict], attribute: str, amounts: Sequence[float]) -> dict:
    """The report's numbers from its rows (see _edit for the row keys)."""
    names = ("score",) + tuple(n for n in measure_names(attribute) if n != "score")
    per_amount = []
    for k, a in enumerate(amounts):
        ids = [r["id_out_vs_in"][k] for r in rows]
        per_amount.append({"amount": a, **{n: stat(r[n][k] for r in rows) for n in names},
                           "id_out_vs_in": stat(ids), "same_person": same_person_rate(ids)})
    monotonic = rate(r["monotonic"] for r in rows)
    kept = [p["same_person"]["rate"] for p in per_amount if p["same_person"]["rate"] is not None]
    return {"attribute": attribute, "amounts": list(amounts), "per_amount": per_amount, "monotonic": monotonic,
            "rise": stat(r["rise"] for r in rows),
            "bars": {"monotonic": monotonic["rate"],
                     "identity_kept_by_amount": {f"{p['amount']:g}": p["same_person"]["rate"] for p in per_amount},
                     "identity_kept_worst": min(kept) if kept else None}}


# --------------------------------------------------------------------------- markdown and strip

_YES_NO = {True: "yes", False: "no", None: "-"}


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
    lines += ["## Bars", ""]
    lines += table(["measure", "value", "n"], [
        [f"monotonic (no drop > {s['monotonic_tolerance']} between amounts)", fmt(m["rate"], True), m["n"]]] + [
        [f"identity kept at {p['amount']:g} (output vs input < {thr})", fmt(p["same_person"]["rate"], True),
         p["same_person"]["n"]] for p in report["per_amount"]])
    lines += ["", "## Per amount", ""]
    lines += table(["amount", *(f"{n} mean / median" for n in show), "id out-in mean / median", "identity kept"], [
        [f"{p['amount']:g}", *(f"{fmt(p[n]['mean'])} / {fmt(p[n]['median'])}" for n in show),
         f"{fmt(p['id_out_vs_in']['mean'])} / {fmt(p['id_out_vs_in']['median'])}", fmt(p["same_person"]["rate"], True)]
        for p in report["per_amount"]], align="r" * (len(show) + 3))
    r = report["rise"]
    lines += ["", f"Rise of the measure from the smallest to the largest amount: mean {fmt(r['mean'])}, "
              f"median {fmt(r['median'])} (n = {r['n']}).", "", "## Faces", ""]
    lines += table(["input", "measure at each amount", "monotonic", "id out-in at each amount"], [
        [Path(row["input"]).name, " ".join(fmt(v) for v in row["score"]), _YES_NO[row["monotonic"]],
         " ".join(fmt(v) for v in row["id_out_vs_in"])] for row in report["rows"]], align="llcl")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {Path(f['input']).name}: {f['error']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def _edit_strip(report: dict, strips, path: Path, max_rows: int) -> Path:
    """input | one output per amount, for the first faces."""
    rows = report["rows"][:max_rows]
    labels = []
    for row in rows:
        mono = {**_YES_NO, False: "NO"}[row["monotonic"]]  # loud on the picture, where it is easy to miss
        labels.append([f"{Path(row['input']).name}  monotonic {mono}",
                       f"{report['attribute']}: " + " ".join(fmt(v) for v in row["score"]),
                       "id: " + " ".join(fmt(v) for v in row["id_out_vs_in"])])
    titles = ["input"] + [f"{a:+g}" if a else "0" for a in report["amounts"]]
    return make_sheet(strips[:max_rows], path, labels, titles=titles)
