"""`stoic eval transfer`: measurements for expression transfer (LEED).

Each reference photo's expression (its displacement from its own neutral code) goes onto each
input photo of a *different* person. Two numbers per (reference, input) pair:

- smile progress = (S(out) - S(in)) / (S(ref) - S(in)), S = MediaPipe's smile blendshape
  (mean of mouthSmileLeft/Right). 100 % means the output smiles as much as the reference, 0 %
  means nothing changed. Only pairs where the reference smiles more than the input by over
  SMILE_GAP count: below that the ratio is noise. Reported: mean, median, share >= PROGRESS_BAR;
  the same ratio for the whole expression (blendshapes as a vector), so that transfers of any
  expression are measured.
- identity: dlib distance of the output to the input photo (same person below SAME_PERSON),
  and to the reference, which should stay above it (the expression, not the face, moves).

Where a smile is lost, on the aligned crops the models see (TRANSFER_STAGES): the same
progress ratio, from the input's crop to the reference's crop, for the reference's own
reconstruction (what the VAE keeps of it), the transfer code decoded (what the displacement
gives on another person's code) and the output's crop (after paste-back and motion).

The judges (dlib, MediaPipe) are never trained against; see stoic_cli.evaluation.judges.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stoic_cli.evaluation.judges import SAME_PERSON, distance, expression_names, expression_vector, smile
from stoic_cli.evaluation.looks import look, with_judges
from stoic_cli.evaluation.measures import progress
from stoic_cli.evaluation.report import finish_report, fmt, rate, same_person_rate, stat, table
from stoic_cli.evaluation.sheets import make_sheet, worst_and_best
from stoic_cli.face.images import load_photo, save_rgb

SMILE_GAP = 0.1  # S(ref) - S(in) must exceed this for the progress ratio to mean anything
PROGRESS_BAR = 0.7  # a transfer "arrives" when it reaches this share of the reference's smile
CROP_JUDGE_SIZE = 256  # aligned crops are judged upscaled: MediaPipe's detector wants more pixels
TRANSFER_STAGES = (("reconstruction", "the reference's reconstruction"),
                   ("decoded", "transfer code, decoded"),
                   ("pasted", "output, after paste-back and motion"))


# --------------------------------------------------------------------------- measures

def smile_progress(smile_in: float | None, smile_out: float | None, smile_ref: float | None,
                   min_gap: float = SMILE_GAP) -> float | None:
    """(S(out) - S(in)) / (S(ref) - S(in)), or None when a score is missing or the reference
    does not smile more than the input by over `min_gap`."""
    return progress(smile_in, smile_out, smile_ref, min_gap)


def expression_progress(bs_in: dict | None, bs_out: dict | None, bs_ref: dict | None,
                        min_gap: float = SMILE_GAP) -> float | None:
    """The smile's progress for the whole expression: how far the output's blendshapes (no
    blinks or gaze) moved along the line from the input's to the reference's, as a share of
    that line (1 = the reference's expression, 0 = unchanged; motion across it is not counted).
    None when a face's blendshapes are missing or the two expressions differ by no more than
    `min_gap` (Euclidean)."""
    if bs_in is None or bs_out is None or bs_ref is None:
        return None
    names = expression_names(bs_ref)
    start, out, ref = (expression_vector(b, names) for b in (bs_in, bs_out, bs_ref))
    line = ref - start
    length2 = float(line @ line)
    if not length2 > min_gap ** 2:
        return None
    return float((out - start) @ line / length2)


def progress_summary(values: Iterable[float | None], bar: float = PROGRESS_BAR) -> dict:
    """Mean, median and n of the progress ratios, plus the share at or above `bar`."""
    vals = list(values)
    return {**stat(vals), "at_bar": rate(vals, lambda p: p >= bar)}


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


def _crop_smile(crop: np.ndarray, expression) -> float | None:
    """MediaPipe's smile on an aligned crop (float or uint8, 0..255)."""
    import cv2

    img = np.clip(np.asarray(crop, np.float32), 0, 255).astype(np.uint8)
    img = cv2.resize(img, (CROP_JUDGE_SIZE, CROP_JUDGE_SIZE), interpolation=cv2.INTER_CUBIC)
    return smile(expression.blendshapes(img))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


# --------------------------------------------------------------------------- evaluation

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

    return with_judges(identity, expression, work)


def _transfer(pipeline, references, inputs, out_dir, alpha, identity, expression, person_of, min_gap, bar,
              save_outputs, sheet_rows, settings, tick) -> dict:
    from stoic_cli.edit.edits import Transfer
    from stoic_cli.edit.latent import transfer_codes
    from stoic_cli.face.alignment import align_face

    def advance(n: int = 1):
        for _ in range(n if tick else 0):
            tick()

    failures: list[dict] = []
    refs = []  # (path, reference, look, (crop smile, reconstruction's crop smile))
    for path in references:
        try:
            photo = load_photo(path)
            ref = pipeline.read_reference(photo)
        except Exception as exc:  # one unusable reference must not end the evaluation
            failures.append({"reference": str(path), "input": None, "error": str(exc) or type(exc).__name__})
            continue
        reconstruction = pipeline.models.decode(pipeline.codes(ref.crop[None])[0])[0]  # what the VAE keeps of it
        crop_smiles = (_crop_smile(ref.crop, expression), _crop_smile(reconstruction, expression))
        refs.append((path, ref, look(photo.rgb, identity, expression), crop_smiles))
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
            if _same_file(ref_path, in_path) or person_of(ref_path) == person_of(in_path):
                same_person += 1
                advance()
                continue
            if look_in is None:  # judged only once it is needed
                look_in = look(photo.rgb, identity, expression)
                crop_in, _ = align_face(photo.rgb, faces[0].landmarks, pipeline.render_size)
                zn_in = pipeline.codes(crop_in[None])[1]  # the neutral code as the job uses it
                c_in = _crop_smile(crop_in, expression)
            try:
                result = pipeline.apply(photo, faces, Transfer(ref, alpha))
                decoded = pipeline.models.decode(transfer_codes(zn_in, ref.displacement, alpha).astype(np.float32))[0]
            except Exception as exc:
                failures.append({"reference": str(ref_path), "input": str(in_path),
                                 "error": str(exc) or type(exc).__name__})
                advance()
                continue
            out = np.asarray(result.rgb, np.uint8)
            look_out = look(out, identity, expression, box=look_in.box)
            saved = None
            if save_outputs and out_dir is not None:
                saved = save_rgb(out, out_dir / "outputs" / f"{i:04d}_{in_path.stem}_from_{r:02d}_{ref_path.stem}.png")
            s_in, s_out, s_ref = look_in.smile, look_out.smile, look_ref.smile
            rows.append({
                "reference": str(ref_path), "input": str(in_path),
                "person_ref": person_of(ref_path), "person_in": person_of(in_path),
                "smile_ref": s_ref, "smile_in": s_in, "smile_out": s_out,
                "smile_progress": smile_progress(s_in, s_out, s_ref, min_gap),
                "expression_progress": expression_progress(look_in.blendshapes, look_out.blendshapes,
                                                           look_ref.blendshapes, min_gap),
                "intensity_ref": look_ref.intensity, "intensity_in": look_in.intensity,
                "intensity_out": look_out.intensity,
                "id_out_vs_in": distance(look_out.descriptor, look_in.descriptor),
                "id_out_vs_ref": distance(look_out.descriptor, look_ref.descriptor),
                "id_in_vs_ref": distance(look_in.descriptor, look_ref.descriptor),
                "output": str(saved) if saved else None,
                "crop_smile": {"in": c_in, "ref": c_ref, "reconstruction": c_rec,
                               "decoded": _crop_smile(decoded, expression),
                               "pasted": _crop_smile(result.faces[0].edited_crop, expression)},
            })
            thumbs.append((look_in.thumb, look_ref.thumb, look_out.thumb))
            advance()

    settings = {"alpha": alpha, "smile_gap": min_gap, "progress_bar": bar, "same_person_threshold": SAME_PERSON,
                "person_rule": getattr(person_of, "__name__", str(person_of)),
                "faces": "largest face of each photo", **(settings or {})}
    counts = {"references": len(references), "inputs": len(inputs),
              "combinations": len(references) * len(inputs), "evaluated": len(rows),
              "same_person_skipped": same_person,
              "progress_eligible": sum(r["smile_progress"] is not None for r in rows),
              "failed_references": n_failed_refs,
              "failed_inputs": sum(f["reference"] is None for f in failures),
              "failed_pairs": sum(f["reference"] is not None and f["input"] is not None for f in failures),
              "no_face_dlib_out": sum(r["id_out_vs_in"] is None for r in rows),
              "no_face_mediapipe_out": sum(r["smile_out"] is None for r in rows)}
    return finish_report(summarise_transfer(rows, bar), settings=settings, counts=counts, failures=failures,
                         rows=rows, out_dir=out_dir, markdown=transfer_markdown,
                         sheet=lambda report: _transfer_sheet(report["rows"], thumbs, out_dir / "contact_sheet.png",
                                                              sheet_rows))


# --------------------------------------------------------------------------- summary

def summarise_transfer(rows: Sequence[dict], bar: float = PROGRESS_BAR) -> dict:
    """The report's numbers from its rows (see _transfer for the row keys)."""
    identity = {"id_out_vs_in": stat(r["id_out_vs_in"] for r in rows),
                "same_person_out_vs_in": same_person_rate(r["id_out_vs_in"] for r in rows),
                "id_out_vs_ref": stat(r["id_out_vs_ref"] for r in rows),
                "same_person_out_vs_ref": same_person_rate(r["id_out_vs_ref"] for r in rows),
                "id_in_vs_ref": stat(r["id_in_vs_ref"] for r in rows)}
    per_reference = []
    for ref in dict.fromkeys(r["reference"] for r in rows):
        mine = [r for r in rows if r["reference"] == ref]
        per_reference.append({"reference": ref, "smile_ref": mine[0]["smile_ref"], "pairs": len(mine),
                              "smile_progress": progress_summary((r["smile_progress"] for r in mine), bar),
                              "expression_progress": stat(r.get("expression_progress") for r in mine),
                              "id_out_vs_in": stat(r["id_out_vs_in"] for r in mine),
                              "same_person_out_vs_in": same_person_rate(r["id_out_vs_in"] for r in mine)})
    smiles = progress_summary((r["smile_progress"] for r in rows), bar)
    return {
        "smile_progress": smiles,
        "expression_progress": progress_summary((r.get("expression_progress") for r in rows), bar),
        "smile": {k: stat(r[f"smile_{k}"] for r in rows) for k in ("in", "ref", "out")},
        "intensity": {k: stat(r[f"intensity_{k}"] for r in rows) for k in ("in", "ref", "out")},
        "identity": identity,
        "per_reference": per_reference,
        "stages": transfer_stages(rows, bar),
        "bars": {"smile_progress_at_bar": smiles["at_bar"]["rate"],
                 "identity_kept": identity["same_person_out_vs_in"]["rate"]},
    }


def transfer_stages(rows: Sequence[dict], bar: float = PROGRESS_BAR, min_gap: float = SMILE_GAP) -> dict:
    """Crop-level smile progress at each of TRANSFER_STAGES (rows without `crop_smile`, written
    before it existed, count as unmeasured)."""
    crops = [r.get("crop_smile") or {} for r in rows]
    return {stage: progress_summary((smile_progress(c.get("in"), c.get(stage), c.get("ref"), min_gap) for c in crops), bar)
            for stage, _ in TRANSFER_STAGES}


# --------------------------------------------------------------------------- markdown

def transfer_markdown(report: dict) -> str:
    c, s, p, i = report["counts"], report["settings"], report["smile_progress"], report["identity"]
    bar, thr = s["progress_bar"], s["same_person_threshold"]
    lines = ["# Expression transfer evaluation", "",
             f"{c['evaluated']} (reference, input) pairs evaluated from {c['references']} reference(s) x "
             f"{c['inputs']} input(s); {c['same_person_skipped']} same-person combination(s) skipped, "
             f"{c['failed_references']} reference(s), {c['failed_inputs']} input(s) and {c['failed_pairs']} pair(s) "
             f"failed. alpha = {s['alpha']}. Smile: MediaPipe mean(mouthSmileLeft, mouthSmileRight); "
             f"identity: dlib distance (same person below {thr}).", "", "## Bars", ""]
    lines += table(["measure", "value", "n"], [
        [f"smile progress >= {bar:g}", fmt(p["at_bar"]["rate"], True), p["at_bar"]["n"]],
        [f"identity kept (output vs input < {thr})", fmt(i["same_person_out_vs_in"]["rate"], True),
         i["same_person_out_vs_in"]["n"]]])
    lines += ["", "## Smile progress", "",
              f"(S(out) - S(in)) / (S(ref) - S(in)) over pairs where the reference smiles more than the input by "
              f"> {s['smile_gap']} ({c['progress_eligible']} of {c['evaluated']}).", ""]
    rows = [["smile progress", fmt(p["mean"], True), fmt(p["median"], True), p["n"]]]
    for key, what in (("smile", "smile"), ("intensity", "expression intensity")):
        for k, whose in (("in", "input"), ("ref", "reference"), ("out", "output")):
            st = report[key][k]
            rows.append([f"{what} of {whose}", fmt(st["mean"]), fmt(st["median"]), st["n"]])
    lines += table(["", "mean", "median", "n"], rows)
    w = report["expression_progress"]
    lines += ["", "## Whole-expression progress", "",
              "The same ratio for any expression: how far the output's expression blendshapes (no blinks "
              "or gaze), as a vector, moved along the line from the input's to the reference's "
              f"(pairs whose expressions differ by > {s['smile_gap']}).", ""]
    lines += table(["", "mean", "median", f">= {bar:g}", "n"], [
        ["whole-expression progress", fmt(w["mean"], True), fmt(w["median"], True), fmt(w["at_bar"]["rate"], True),
         w["n"]]])
    lines += ["", "## Where the smile goes (aligned crops)", "",
              "The same smile progress measured on the aligned crops the models see, from the input's "
              "crop to the reference's, at each stage of the transfer.", ""]
    lines += table(["stage", "mean", "median", f">= {bar:g}", "n"], [
        [label, fmt(st["mean"], True), fmt(st["median"], True), fmt(st["at_bar"]["rate"], True), st["n"]]
        for st, label in ((report["stages"][stage], label) for stage, label in TRANSFER_STAGES)])
    lines += ["", "## Identity (dlib distance)", ""]
    lines += table(["comparison", "mean", "median", "below threshold", "n"], [
        [label, fmt(i[key]["mean"]), fmt(i[key]["median"]), fmt(i[rate_key]["rate"], True) if rate_key else "-",
         i[key]["n"]]
        for key, rate_key, label in (("id_out_vs_in", "same_person_out_vs_in", "output vs input (should be low)"),
                                     ("id_out_vs_ref", "same_person_out_vs_ref",
                                      "output vs reference (should stay high)"),
                                     ("id_in_vs_ref", None, "input vs reference (different people)"))])
    lines += ["", "## Per reference", ""]
    lines += table(["reference", "smile", "pairs", "progress mean / median", f"progress >= {bar:g}",
                    "whole expression mean", "identity kept"], [
        [Path(ref["reference"]).name, fmt(ref["smile_ref"]), ref["pairs"],
         f"{fmt(pr['mean'], True)} / {fmt(pr['median'], True)}", f"{fmt(pr['at_bar']['rate'], True)} ({pr['at_bar']['n']})",
         fmt(ref["expression_progress"]["mean"], True), fmt(ref["same_person_out_vs_in"]["rate"], True)]
        for ref, pr in ((ref, ref["smile_progress"]) for ref in report["per_reference"])])
    lines += ["", "## Pairs", ""]
    lines += table(["input", "reference", "smile in / ref / out", "progress", "whole expression", "id out-in",
                    "id out-ref"], [
        [Path(r["input"]).name, Path(r["reference"]).name,
         f"{fmt(r['smile_in'])} / {fmt(r['smile_ref'])} / {fmt(r['smile_out'])}", fmt(r["smile_progress"], True),
         fmt(r["expression_progress"], True), fmt(r["id_out_vs_in"]), fmt(r["id_out_vs_ref"])]
        for r in report["rows"]], align="llrrrrr")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [
            f"- {Path(f['input']).name if f['input'] else '(all inputs)'}"
            f"{' <- ' + Path(f['reference']).name if f['reference'] else ''}: {f['error']}"
            for f in report["failures"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sheet

def sheet_scores(rows: Sequence[dict]) -> list[float | None]:
    """What the transfer sheet ranks by: smile progress, unless fewer than half of the measurable
    pairs have one (references of other expressions); then whole-expression progress."""
    smiles = [r["smile_progress"] for r in rows]
    wholes = [r.get("expression_progress") for r in rows]
    by_smile = 2 * sum(v is not None for v in smiles) >= sum(v is not None for v in wholes)
    return smiles if by_smile else wholes


def _transfer_sheet(rows, thumbs, path: Path, k: int) -> Path:
    """input | reference | output, worst and best pairs."""
    picks = worst_and_best(sheet_scores(rows), k)
    tiles, labels = [], []
    for n, (tag, i) in enumerate(picks):
        r = rows[i]
        tiles.append(list(thumbs[i]))
        labels.append([f"{tag + ' ' if tag else ''}{n + 1}: {Path(r['input']).name} <- {Path(r['reference']).name}"
                       f"  progress {fmt(r['smile_progress'], True)} (whole expression "
                       f"{fmt(r.get('expression_progress'), True)})",
                       f"smile {fmt(r['smile_in'])} -> {fmt(r['smile_out'])} (ref {fmt(r['smile_ref'])})"
                       f"  id out-in {fmt(r['id_out_vs_in'])} out-ref {fmt(r['id_out_vs_ref'])}"])
    return make_sheet(tiles, path, labels, titles=["input", "reference", "output"])
