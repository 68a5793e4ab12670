"""`stoic eval realism`: every job judged on people the models never saw, with realism beside
the judges' expression numbers (a blurred pink band scores as a smile; it must not count).

Sets (all split by person with the training split's seed, so none of these people was trained
or tuned on): held-out Taiwanese (front view), LFW validation identities, UTKFace validation
photos (race, gender and age labels, no pairs). Per job:
- neutralize (smiling -> neutral): smile removed (MediaPipe, fraction of the way to the person's
  real neutral), identity (dlib distance below SAME_PERSON to the real neutral; closer to the
  own neutral than to every other person's), mouth sharpness and detectability against the real
  neutral photos; neutral photos through neutralize (dlib distance to themselves); UTKFace smile
  removed per race, gender and age band.
- transfer (another person's smile onto a neutral face) and edit smile=1: smile added (fraction
  of the way to the person's own real smile), identity to that photo, sharpness and
  detectability against the real smiling photos; edit monotonicity of smile and surprise over
  MONOTONIC_AMOUNTS amounts.
Writes report.json, report.md and mouth sheets (input | output | real, worst first)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stoic_cli.edit.edits import AttributeEdit, Neutralize, Transfer
from stoic_cli.evaluation.judges import SAME_PERSON, ExpressionJudge, IdentityJudge, distance
from stoic_cli.evaluation.looks import look
from stoic_cli.evaluation.measures import attribute_measures, is_monotonic, progress
from stoic_cli.evaluation.realism import MouthJudge, RealismPair, age_band, realism_report
from stoic_cli.evaluation.report import by_group, fmt, rate, stat, table, write_report
from stoic_cli.evaluation.sheets import mouth_sheet, worst_first
from stoic_cli.face.images import Photo, load_photo

MIN_GAP = 0.1  # a smile change smaller than this between two photos is not measured as a ratio
MONOTONIC_AMOUNTS = 5  # edit amounts from 0 to 1 at which monotonicity is checked
UTK_SMILING = 0.4  # a UTKFace photo counts as smiling from this MediaPipe smile on
UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


@dataclass
class Shot:
    path: str
    person: str
    expression: str
    labels: dict


def held_out_shots(datasets: Path, utk_per_race: int = 30, seed: int = 0) -> dict[str, list[Shot]]:
    """The evaluation people of each set (never in the training split)."""
    from stoic_cli.train.data import assign_splits, list_lfw, list_taiwanese, list_utkface

    records = list_taiwanese(datasets) + list_lfw(datasets) + list_utkface(datasets)
    assign_splits(records)
    held = [r for r in records if r.split in ("val", "test")]
    taiwanese = [Shot(r.source, r.person, r.expression, {}) for r in held
                 if r.dataset == "taiwanese" and r.view == 1 and r.expression in ("neutral", "happiness")]
    lfw = [Shot(r.source, r.person, r.expression, {}) for r in held
           if r.dataset == "lfw_expressions" and r.split == "val" and r.expression in ("neutral", "happiness")]
    rng = np.random.default_rng(seed)
    utk = []
    by_race: dict = {}
    for r in held:
        if r.dataset == "utkface":
            race = UTK_RACES.get(Path(r.source).name.split("_")[2] if Path(r.source).name.count("_") >= 3 else "")
            if race:
                by_race.setdefault(race, []).append(r)
    for race, rows in sorted(by_race.items()):
        for i in rng.permutation(len(rows))[: utk_per_race * 4]:  # most are not smiling; judged later
            r = rows[i]
            utk.append(Shot(r.source, r.person, "unknown",
                            {"ethnicity": race, "gender": r.gender, "age": age_band(r.age)}))
    return {"taiwanese": taiwanese, "lfw": lfw, "utkface": utk}


class Judges:
    def __init__(self):
        self.identity, self.expression, self.mouth = IdentityJudge(), ExpressionJudge(), MouthJudge()

    def look(self, rgb: np.ndarray):
        return look(rgb, self.identity, self.expression, with_thumb=False)


def share_of_way(start, end, goal) -> float | None:
    """How far `end` went from `start` towards `goal` (either way), unmeasured when the two real
    photos are closer than MIN_GAP."""
    return progress(start, end, goal, MIN_GAP, direction=0)


def compact_stat(values) -> dict:
    """report.stat in this report's layout: n first, and no mean or median without values."""
    s = stat(values)
    return {"n": s["n"], "mean": s["mean"], "median": s["median"]} if s["n"] else {"n": 0}


def compact_rate(flags) -> dict:
    """report.rate in this report's layout: n first, and NaN without values."""
    r = rate(flags)
    return {"n": r["n"], "rate": float("nan") if r["rate"] is None else r["rate"]}


def _kept(d: float | None) -> bool | None:
    return None if d is None else d < SAME_PERSON


def _pad(rgb: np.ndarray) -> np.ndarray:
    """Tight dataset crops leave the detector no context: pad by replicating edges."""
    p = max(rgb.shape[:2]) // 4
    return cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REPLICATE)


def _photo(path: str, pad: bool = False):
    photo = load_photo(path)
    return Photo(_pad(photo.rgb)) if pad else photo


def _people(shots: list[Shot]) -> dict:
    people: dict = {}
    for s in shots:
        people.setdefault(s.person, {"neutral": [], "happiness": []})[s.expression].append(s)
    return people


def _with_realism(judges: Judges, rows: list[dict], pairs: list[RealismPair], sheet: Path, summary: dict) -> dict:
    """Mouth realism of the rows' outputs (one RealismPair per row), their sharpness ratios
    joined to the rows, and the worst of them on a mouth sheet (input | output | real). The rows'
    images (keys starting with _) are left out of the report."""
    realism = realism_report(pairs, judges.mouth)
    sharp = {r["index"]: r["sharpness_ratio"] for r in realism["rows"]}
    for i, row in enumerate(rows):
        row["sharpness_ratio"] = sharp.get(i)
    mouth_sheet(judges.mouth, [(r["_input"], r["_output"], r["_real"]) for r in worst_first(rows, "sharpness_ratio", 8)],
                sheet)
    return {**summary, "realism": {k: v for k, v in realism.items() if k not in ("rows",)},
            "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}


def _neutralize(pipe, judges: Judges, shots: list[Shot], folder: Path, name: str) -> dict:
    people = _people(shots)
    neutrals = {}  # person -> (look, rgb) of the real neutral photo
    for p, v in people.items():
        if v["neutral"] and v["happiness"]:
            rgb = _photo(v["neutral"][0].path).rgb
            neutrals[p] = (judges.look(rgb), rgb)
    rows, pairs, stays = [], [], []
    for person, v in people.items():
        if person not in neutrals:
            continue
        real, real_rgb = neutrals[person]
        for shot in v["happiness"][:2]:
            photo = _photo(shot.path)
            try:
                out = pipe.run(photo, Neutralize(1.0), largest=True).rgb
            except Exception:
                continue
            look_in, look_out = judges.look(photo.rgb), judges.look(out)
            others = [distance(look_out.descriptor, n.descriptor) for p, (n, _) in neutrals.items() if p != person]
            own = distance(look_out.descriptor, real.descriptor)
            rows.append({"person": person, "input": shot.path,
                         "smile_removed": share_of_way(look_in.smile, look_out.smile, real.smile),
                         "id_to_real_neutral": own,
                         "closer_than_others": None if own is None else all(o is None or own < o for o in others),
                         "_input": photo.rgb, "_output": out, "_real": real_rgb})
            pairs.append(RealismPair(out, real_rgb, person))
        # an already neutral photo must stay itself
        try:
            again = pipe.run(Photo(real_rgb), Neutralize(1.0), largest=True).rgb
            stays.append(distance(judges.look(again).descriptor, real.descriptor))
        except Exception:
            pass
    summary = {"pairs": len(rows), "people": len({r["person"] for r in rows}),
               "smile_removed": compact_stat(r["smile_removed"] for r in rows),
               "identity_kept": compact_rate(_kept(r["id_to_real_neutral"]) for r in rows),
               "closer_to_own_neutral": compact_rate(r["closer_than_others"] for r in rows),
               "neutral_stays_itself_dlib": compact_stat(stays)}
    return _with_realism(judges, rows, pairs, folder / f"neutralize_{name}_mouths.png", summary)


def _to_smile(pipe, judges: Judges, shots: list[Shot], folder: Path, name: str, job: str) -> dict:
    """transfer: each other person's smile onto each neutral face; edit: smile=1. Judged against
    the person's own smiling photo."""
    people = {p: v for p, v in _people(shots).items() if v["neutral"] and v["happiness"]}
    refs = {}
    if job == "transfer":
        for p, v in people.items():
            try:
                refs[p] = pipe.read_reference(_photo(v["happiness"][0].path))
            except Exception:
                pass
    attrs = pipe.models.attributes() if job == "edit" else {}
    rows, pairs, monotonic = [], [], {"smile": [], "surprise": []}
    for person, v in people.items():
        photo = _photo(v["neutral"][0].path)
        real_rgb = _photo(v["happiness"][0].path).rgb
        look_in, look_real = judges.look(photo.rgb), judges.look(real_rgb)
        edits = ([(p, Transfer(ref, 1.0)) for p, ref in refs.items() if p != person][:6] if job == "transfer"
                 else [("smile=1", AttributeEdit(attrs, {"smile": 1.0}, force=True))])
        for source, edit in edits:
            try:
                out = pipe.run(photo, edit, largest=True).rgb
            except Exception:
                continue
            look_out = judges.look(out)
            rows.append({"person": person, "source": source, "input": v["neutral"][0].path,
                         "smile_added": share_of_way(look_in.smile, look_out.smile, look_real.smile),
                         "id_to_real_smile": distance(look_out.descriptor, look_real.descriptor),
                         "_input": photo.rgb, "_output": out, "_real": real_rgb})
            pairs.append(RealismPair(out, real_rgb, person))
        if job == "edit":
            for attribute in monotonic:
                monotonic[attribute].append(_monotonic(pipe, judges, photo, attrs, attribute))
    summary = {"pairs": len(rows), "people": len({r["person"] for r in rows}),
               "smile_added": compact_stat(r["smile_added"] for r in rows),
               "identity_kept": compact_rate(_kept(r["id_to_real_smile"]) for r in rows)}
    report = _with_realism(judges, rows, pairs, folder / f"{job}_{name}_mouths.png", summary)
    if job == "edit":
        report["monotonic"] = {a: compact_rate(v) for a, v in monotonic.items()}
    return report


def _monotonic(pipe, judges: Judges, photo: Photo, attrs: dict, attribute: str) -> bool | None:
    """Whether the attribute's measure follows its amount from 0 to 1 on this photo; None when
    an edit fails."""
    scores = []
    for amount in np.linspace(0, 1, MONOTONIC_AMOUNTS):
        try:
            o = pipe.run(photo, AttributeEdit(attrs, {attribute: float(amount)}, force=True), largest=True).rgb
        except Exception:
            return None
        scores.append(attribute_measures(judges.expression.blendshapes(o), attribute)["score"])
    return is_monotonic(scores) if scores else None


def _utk_groups(pipe, judges: Judges, shots: list[Shot], per_race: int) -> dict:
    """Smile removed (fraction of the input's MediaPipe smile) on smiling UTKFace photos, by
    race, gender and age band; identity kept to the input."""
    rows, taken = [], {}
    for shot in shots:
        race = shot.labels["ethnicity"]
        if taken.get(race, 0) >= per_race:
            continue
        photo = _photo(shot.path, pad=True)
        look_in = judges.look(photo.rgb)
        if look_in.smile is None or look_in.smile < UTK_SMILING:
            continue
        try:
            out = pipe.run(photo, Neutralize(1.0), largest=True).rgb
        except Exception:
            continue
        look_out = judges.look(out)
        taken[race] = taken.get(race, 0) + 1
        rows.append({**shot.labels, "input": shot.path,
                     "smile_removed": None if look_out.smile is None else (look_in.smile - look_out.smile) / look_in.smile,
                     "id_to_input": distance(look_out.descriptor, look_in.descriptor)})
    out = {"photos": len(rows), "smile_removed": compact_stat(r["smile_removed"] for r in rows)}
    for label in ("ethnicity", "gender", "age"):
        out[label] = by_group(rows, label, lambda v: {
            "smile_removed": compact_stat(x["smile_removed"] for x in v),
            "identity_kept": compact_rate(_kept(x["id_to_input"]) for x in v)})
    out["rows"] = rows
    return out


def _first_people(shots: list[Shot], n: int) -> list[Shot]:
    people = sorted({s.person for s in shots})[:n]
    return [s for s in shots if s.person in set(people)]


def london_shots(folder: Path) -> list[Shot]:
    """The London fixtures (<id>_neutral / <id>_smiling): a last look, never a tuning set."""
    kinds = {"neutral": "neutral", "smiling": "happiness"}
    return [Shot(str(p), p.stem.split("_")[0], kinds[p.stem.split("_")[1]], {})
            for p in sorted(folder.glob("*.jpg")) if p.stem.count("_") == 1 and p.stem.split("_")[1] in kinds]


def evaluate_realism(pipe, datasets: str | Path, out_dir: str | Path, utk_per_race: int = 20,
                     lfw_people: int = 60, london: str | Path | None = None, progress=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shots = held_out_shots(Path(datasets), utk_per_race)
    shots["lfw"] = _first_people(shots["lfw"], lfw_people)
    judges = Judges()
    report: dict = {"models": str(pipe.models.dir), "provider": pipe.models.provider}
    for name in ("taiwanese", "lfw"):
        progress(f"neutralize {name}")
        report[f"neutralize_{name}"] = _neutralize(pipe, judges, shots[name], out, name)
    for job in ("transfer", "edit"):
        progress(f"{job} taiwanese")
        report[f"{job}_taiwanese"] = _to_smile(pipe, judges, shots["taiwanese"], out, "taiwanese", job)
    if london is not None:
        progress("last look: london")
        shots["london"] = london_shots(Path(london))
        report["neutralize_london"] = _neutralize(pipe, judges, shots["london"], out, "london")
        report["transfer_london"] = _to_smile(pipe, judges, shots["london"], out, "london", "transfer")
    progress("neutralize utkface groups")
    report["neutralize_utkface_groups"] = _utk_groups(pipe, judges, shots["utkface"], utk_per_race)
    write_report(out, report, markdown(report), json_default=str)
    return report


def _f(x) -> str:
    return fmt(x, missing="n/a")


def markdown(report: dict) -> str:
    lines = ["# Realism evaluation on held-out people", "",
             f"models: `{report['models']}` on {report['provider']}", ""]
    rows = []
    for key, r in report.items():
        if not isinstance(r, dict) or "realism" not in r:
            continue
        expr = r.get("smile_removed") or r.get("smile_added")
        c = r["realism"]["controls"]
        rows.append([key, r["pairs"], f"{_f(expr.get('mean'))} (median {_f(expr.get('median'))})",
                     _f(r["identity_kept"]["rate"]), _f(r.get("closer_to_own_neutral", {}).get("rate")),
                     _f(r.get("neutral_stays_itself_dlib", {}).get("mean")),
                     _f(r["realism"]["sharpness_ratio"]["median"]), _f(r["realism"]["detectability_auc"]),
                     f"{_f(c.get('jpeg70'))} / {_f(c.get('blur1.5'))}"])
    lines += table(["set", "pairs", "expression", "identity kept", "closer to own", "neutral stays (dlib)",
                    "mouth sharpness (median)", "detectability AUC", "controls jpeg70 / blur1.5"], rows, align="l" * 9)
    if "edit_taiwanese" in report:
        m = report["edit_taiwanese"]["monotonic"]
        lines += ["", f"edit monotonic over {MONOTONIC_AMOUNTS} amounts: smile {_f(m['smile']['rate'])} "
                      f"(n {m['smile']['n']}), surprise {_f(m['surprise']['rate'])} (n {m['surprise']['n']})"]
    g = report.get("neutralize_utkface_groups")
    if g:
        lines += ["", f"## UTKFace smiling photos neutralized ({g['photos']}): smile removed (fraction of the input's)",
                  ""]
        lines += table(["group", "value", "photos", "smile removed (mean)", "identity kept to input"], [
            [label, value, s["smile_removed"]["n"], _f(s["smile_removed"].get("mean")), _f(s["identity_kept"]["rate"])]
            for label in ("ethnicity", "gender", "age") for value, s in g[label].items()], align="l" * 5)
    lines += ["", "Realism scale: the controls are the real photos re-saved as JPEG 70 (indistinguishable, ~0.55) "
                  "and blurred with sigma 1.5 (~0.99), against the real photos of the same people."]
    return "\n".join(lines) + "\n"
