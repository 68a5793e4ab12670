"""`stoic eval realism`: every job judged on people the models never saw, with realism beside
the judges' expression numbers (a blurred pink band scores as a smile; it must not count).

Sets (all split by person with the training split's seed, so none of these people was trained
or tuned on): held-out Taiwanese (front view), LFW validation identities, UTKFace validation
photos (race, gender and age labels, no pairs). Per job:
- neutralize (smiling -> neutral): smile removed (MediaPipe, fraction of the way to the person's
  real neutral), identity (dlib < 0.6 to the real neutral; closer to the own neutral than to
  every other person's), mouth sharpness and detectability against the real neutral photos;
  neutral photos through neutralize (dlib distance to themselves); UTKFace smile removed per
  race, gender and age band.
- transfer (another person's smile onto a neutral face) and edit smile=1: smile added (fraction
  of the way to the person's own real smile), identity to that photo, sharpness and
  detectability against the real smiling photos; edit monotonicity of smile and surprise over
  five amounts.
Writes report.json, report.md and mouth sheets (input | output | real, worst first)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stoic_cli.evaluation.edit_eval import attribute_measures, is_monotonic
from stoic_cli.evaluation.judges import SAME_PERSON, smile
from stoic_cli.evaluation.realism import MouthJudge, RealismPair, age_band, realism_report
from stoic_cli.face.images import Photo, load_photo, save_rgb
from stoic_cli.edit.edits import AttributeEdit, Neutralize, Transfer

MIN_GAP = 0.1  # a smile change smaller than this between two photos is not measured as a ratio
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
        from stoic_cli.evaluation.judges import ExpressionJudge, IdentityJudge
        self.identity, self.expression, self.mouth = IdentityJudge(), ExpressionJudge(), MouthJudge()

    def look(self, rgb: np.ndarray) -> dict:
        bs = self.expression.blendshapes(rgb)
        return {"descriptor": self.identity.descriptor(rgb), "smile": smile(bs), "blendshapes": bs}


def _dist(a, b) -> float | None:
    return None if a is None or b is None else float(np.linalg.norm(a - b))


def _ratio(start, end, goal) -> float | None:
    if None in (start, end, goal) or abs(goal - start) < MIN_GAP:
        return None
    return (end - start) / (goal - start)


def _summary(values) -> dict:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"n": 0}
    return {"n": len(v), "mean": float(np.mean(v)), "median": float(np.median(v))}


def _rate(flags) -> dict:
    f = [bool(x) for x in flags if x is not None]
    return {"n": len(f), "rate": float(np.mean(f)) if f else math.nan}


def _pad(rgb: np.ndarray) -> np.ndarray:
    """Tight dataset crops leave the detector no context: pad by replicating edges."""
    p = max(rgb.shape[:2]) // 4
    return cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REPLICATE)


def _photo(path: str, pad: bool = False):
    photo = load_photo(path)
    return Photo(_pad(photo.rgb)) if pad else photo


def _mouth_strip(judges: Judges, images: list[np.ndarray], height: int = 120) -> np.ndarray | None:
    """Each image's mouth at full resolution (a box of 2 x 1.2 eye distances), side by side."""
    tiles = []
    for img in images:
        marks = judges.mouth.landmarks(img)
        if marks is None:
            tiles.append(np.zeros((height, 2 * height, 3), np.uint8))
            continue
        eyes = np.linalg.norm(marks[36:42].mean(0) - marks[42:48].mean(0))
        cx, cy = marks[48:68].mean(0)
        w, h = 1.0 * eyes, 0.6 * eyes
        x0, y0 = int(max(0, cx - w)), int(max(0, cy - h))
        tile = img[y0:int(cy + h), x0:int(cx + w)]
        tiles.append(cv2.resize(tile, (2 * height, height), interpolation=cv2.INTER_CUBIC))
    return np.concatenate(tiles, 1)


def _sheet(judges: Judges, rows: list[dict], key: str, path: Path, k: int = 8) -> None:
    """Worst first by `key` (lowest), input | output | real mouths."""
    ranked = sorted([r for r in rows if r.get(key) is not None], key=lambda r: r[key])[:k]
    strips = [_mouth_strip(judges, [r["_input"], r["_output"], r["_real"]]) for r in ranked]
    if strips:
        save_rgb(np.concatenate(strips, 0), path)


def _neutralize(pipe, judges: Judges, shots: list[Shot], folder: Path, name: str) -> dict:
    people: dict = {}
    for s in shots:
        people.setdefault(s.person, {"neutral": [], "happiness": []})[s.expression].append(s)
    neutrals = {}
    for p, v in people.items():
        if v["neutral"] and v["happiness"]:
            rgb = _photo(v["neutral"][0].path).rgb
            neutrals[p] = judges.look(rgb) | {"rgb": rgb}
    rows, pairs, stays = [], [], []
    for person, v in people.items():
        if person not in neutrals:
            continue
        real = neutrals[person]
        for shot in v["happiness"][:2]:
            photo = _photo(shot.path)
            try:
                out = pipe.run(photo, Neutralize(1.0), largest=True).rgb
            except Exception:
                continue
            look_in, look_out = judges.look(photo.rgb), judges.look(out)
            others = [_dist(look_out["descriptor"], n["descriptor"]) for p, n in neutrals.items() if p != person]
            own = _dist(look_out["descriptor"], real["descriptor"])
            rows.append({"person": person, "input": shot.path,
                         "smile_removed": _ratio(look_in["smile"], look_out["smile"], real["smile"]),
                         "id_to_real_neutral": own,
                         "closer_than_others": None if own is None else all(o is None or own < o for o in others),
                         "_input": photo.rgb, "_output": out, "_real": real["rgb"]})
            pairs.append(RealismPair(out, real["rgb"], person))
        # an already neutral photo must stay itself
        photo = Photo(real["rgb"])
        try:
            again = pipe.run(photo, Neutralize(1.0), largest=True).rgb
            stays.append(_dist(judges.look(again)["descriptor"], real["descriptor"]))
        except Exception:
            pass
    realism = realism_report(pairs, judges.mouth)
    sharp = {r["index"]: r["sharpness_ratio"] for r in realism["rows"]}
    for i, row in enumerate(rows):
        row["sharpness_ratio"] = sharp.get(i)
    _sheet(judges, rows, "sharpness_ratio", folder / f"neutralize_{name}_mouths.png")
    return {"pairs": len(rows), "people": len({r["person"] for r in rows}),
            "smile_removed": _summary(r["smile_removed"] for r in rows),
            "identity_kept": _rate(None if r["id_to_real_neutral"] is None else r["id_to_real_neutral"] < SAME_PERSON
                                   for r in rows),
            "closer_to_own_neutral": _rate(r["closer_than_others"] for r in rows),
            "neutral_stays_itself_dlib": _summary(stays),
            "realism": {k: v for k, v in realism.items() if k not in ("rows",)},
            "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}


def _to_smile(pipe, judges: Judges, shots: list[Shot], folder: Path, name: str, job: str) -> dict:
    """transfer: each other person's smile onto each neutral face; edit: smile=1. Judged against
    the person's own smiling photo."""
    people: dict = {}
    for s in shots:
        people.setdefault(s.person, {"neutral": [], "happiness": []})[s.expression].append(s)
    people = {p: v for p, v in people.items() if v["neutral"] and v["happiness"]}
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
        edits = ([(p, Transfer(d, 1.0)) for p, d in refs.items() if p != person][:6] if job == "transfer"
                 else [("smile=1", AttributeEdit(attrs, {"smile": 1.0}, force=True))])
        for source, edit in edits:
            try:
                out = pipe.run(photo, edit, largest=True).rgb
            except Exception:
                continue
            look_out = judges.look(out)
            d = _dist(look_out["descriptor"], look_real["descriptor"])
            rows.append({"person": person, "source": source, "input": v["neutral"][0].path,
                         "smile_added": _ratio(look_in["smile"], look_out["smile"], look_real["smile"]),
                         "id_to_real_smile": d, "_input": photo.rgb, "_output": out, "_real": real_rgb})
            pairs.append(RealismPair(out, real_rgb, person))
        if job == "edit":
            for attribute in monotonic:
                scores = []
                for amount in np.linspace(0, 1, 5):
                    try:
                        o = pipe.run(photo, AttributeEdit(attrs, {attribute: float(amount)}, force=True), largest=True).rgb
                    except Exception:
                        scores = []
                        break
                    scores.append(attribute_measures(judges.expression.blendshapes(o), attribute)["score"])
                monotonic[attribute].append(is_monotonic(scores) if scores else None)
    realism = realism_report(pairs, judges.mouth)
    sharp = {r["index"]: r["sharpness_ratio"] for r in realism["rows"]}
    for i, row in enumerate(rows):
        row["sharpness_ratio"] = sharp.get(i)
    _sheet(judges, rows, "sharpness_ratio", folder / f"{job}_{name}_mouths.png")
    report = {"pairs": len(rows), "people": len({r["person"] for r in rows}),
              "smile_added": _summary(r["smile_added"] for r in rows),
              "identity_kept": _rate(None if r["id_to_real_smile"] is None else r["id_to_real_smile"] < SAME_PERSON
                                     for r in rows),
              "realism": {k: v for k, v in realism.items() if k not in ("rows",)},
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}
    if job == "edit":
        report["monotonic"] = {a: _rate(v) for a, v in monotonic.items()}
    return report


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
        if look_in["smile"] is None or look_in["smile"] < 0.4:
            continue
        try:
            out = pipe.run(photo, Neutralize(1.0), largest=True).rgb
        except Exception:
            continue
        look_out = judges.look(out)
        taken[race] = taken.get(race, 0) + 1
        rows.append({**shot.labels, "input": shot.path,
                     "smile_removed": None if look_out["smile"] is None else
                     (look_in["smile"] - look_out["smile"]) / look_in["smile"],
                     "id_to_input": _dist(look_out["descriptor"], look_in["descriptor"])})
    out = {"photos": len(rows), "smile_removed": _summary(r["smile_removed"] for r in rows)}
    for label in ("ethnicity", "gender", "age"):
        groups: dict = {}
        for r in rows:
            groups.setdefault(r[label] or "unknown", []).append(r)
        out[label] = {g: {"smile_removed": _summary(x["smile_removed"] for x in v),
                          "identity_kept": _rate(None if x["id_to_input"] is None else x["id_to_input"] < SAME_PERSON
                                                 for x in v)}
                      for g, v in sorted(groups.items())}
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
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    return report


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(report: dict) -> str:
    lines = ["# Realism evaluation on held-out people", "",
             f"models: `{report['models']}` on {report['provider']}", "",
             "| set | pairs | expression | identity kept | closer to own | neutral stays (dlib) | "
             "mouth sharpness (median) | detectability AUC | controls jpeg70 / blur1.5 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in report.items():
        if not isinstance(r, dict) or "realism" not in r:
            continue
        expr = r.get("smile_removed") or r.get("smile_added")
        c = r["realism"]["controls"]
        lines.append(f"| {key} | {r['pairs']} | {_f(expr.get('mean'))} (median {_f(expr.get('median'))}) | "
                     f"{_f(r['identity_kept']['rate'])} | {_f(r.get('closer_to_own_neutral', {}).get('rate'))} | "
                     f"{_f(r.get('neutral_stays_itself_dlib', {}).get('mean'))} | "
                     f"{_f(r['realism']['sharpness_ratio']['median'])} | {_f(r['realism']['detectability_auc'])} | "
                     f"{_f(c.get('jpeg70'))} / {_f(c.get('blur1.5'))} |")
    if "edit_taiwanese" in report:
        m = report["edit_taiwanese"]["monotonic"]
        lines += ["", f"edit monotonic over 5 amounts: smile {_f(m['smile']['rate'])} (n {m['smile']['n']}), "
                      f"surprise {_f(m['surprise']['rate'])} (n {m['surprise']['n']})"]
    g = report.get("neutralize_utkface_groups")
    if g:
        lines += ["", f"## UTKFace smiling photos neutralized ({g['photos']}): smile removed (fraction of the input's)", "",
                  "| group | value | photos | smile removed (mean) | identity kept to input |", "|---|---|---|---|---|"]
        for label in ("ethnicity", "gender", "age"):
            for value, s in g[label].items():
                lines.append(f"| {label} | {value} | {s['smile_removed']['n']} | {_f(s['smile_removed'].get('mean'))} | "
                             f"{_f(s['identity_kept']['rate'])} |")
    lines += ["", "Realism scale: the controls are the real photos re-saved as JPEG 70 (indistinguishable, ~0.55) "
                  "and blurred with sigma 1.5 (~0.99), against the real photos of the same people."]
    return "\n".join(lines) + "\n"
