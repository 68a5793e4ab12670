"""Realism of edited photos, measured on the mouth (where expression edits change most):
sharpness against the person's real photo of the target expression, and how well a simple
detector (HOG + logistic regression, cross-validated by person) tells outputs from real photos.
Two controls give that AUC its scale: the real photos re-saved as JPEG (a change no one should
see: near chance) and blurred (a change anyone sees: near certain).

dlib and scikit-learn are imported lazily, as in judges.py: the patch and sharpness helpers work
on plain arrays without the eval extra."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from stoic_cli.evaluation.judges import dlib_face_boxes, extra_missing, pick_faces
from stoic_cli.evaluation.report import by_group, fmt

# HOG needs (window - 16) divisible by 8; 96 x 56 is the nearest such size to 1.5 : 0.9 eye
# distances at the eye distance of the datasets' portraits, so those patches are barely resampled.
PATCH_SIZE = (96, 56)  # width, height
PATCH_WIDTH, PATCH_HEIGHT = 1.5, 0.9  # in eye distances
JPEG_QUALITY, BLUR_SIGMA = 70, 1.5
CONTROLS = {"jpeg70": "real photo re-saved as JPEG quality 70",
            "blur1.5": "real photo blurred (Gaussian sigma 1.5)"}


class MouthJudge:
    """dlib's 68-point landmarks of one face (the iBUG layout: mouth 48-67, eyes 36-47)."""

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise extra_missing("dlib / face_recognition_models", exc) from exc
        path = Path(frm.pose_predictor_model_location())
        if not path.exists():
            raise extra_missing(f"dlib's 68-point model ({path})")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(path))
        # One judge may serve several threads (a report's worker pool): dlib's objects are not
        # documented as thread-safe, so calls are serialised.
        self._lock = threading.Lock()

    def landmarks(self, rgb: np.ndarray, box=None) -> np.ndarray | None:
        """(68, 2) x, y of the largest face, or of the one best overlapping `box` (x1, y1, x2,
        y2; used itself as the face rectangle if dlib finds none); None without a face."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        with self._lock:
            boxes = pick_faces(dlib_face_boxes(self.detector, rgb), box)
            if not boxes:
                return None
            x1, y1, x2, y2 = (int(round(v)) for v in boxes[0])
            shape = self.shape(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def gray(rgb: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb


def mouth_patch(rgb: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = PATCH_SIZE) -> np.ndarray:
    """Grey uint8 patch (height, width = size[1], size[0]) centred on the mouth, 1.5 x 0.9 eye
    distances, axis-aligned; a fixed size so photos of any resolution compare. Edges are
    replicated where the patch leaves the image."""
    pts = np.asarray(landmarks, np.float64)
    eyes = np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    if not eyes >= 2:
        raise ValueError(f"eye distance {eyes:.2f} px is too small for a mouth patch")
    cx, cy = pts[48:68].mean(0)
    half_w, half_h = PATCH_WIDTH * eyes / 2, PATCH_HEIGHT * eyes / 2
    x1, x2 = int(round(cx - half_w)), int(round(cx + half_w))
    y1, y2 = int(round(cy - half_h)), int(round(cy + half_h))
    image = gray(rgb)
    h, w = image.shape
    top, left, bottom, right = max(0, -y1), max(0, -x1), max(0, y2 - h), max(0, x2 - w)
    if top or left or bottom or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    region = image[y1 + top:y2 + top, x1 + left:x2 + left]
    shrink = region.shape[1] > size[0] and region.shape[0] > size[1]
    return cv2.resize(region, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def mouth_sharpness(patch: np.ndarray) -> float:
    """Variance of the Laplacian of the grey patch: blur lowers it."""
    return float(cv2.Laplacian(gray(patch), cv2.CV_64F).var())


def _sklearn():
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import GroupKFold
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise extra_missing("scikit-learn", exc) from exc
    return LogisticRegression, roc_auc_score, GroupKFold, StandardScaler


def hog_features(patches: Sequence[np.ndarray]) -> np.ndarray:
    """HOG (8 px cells, 16 px blocks, 9 bins) of each patch, one row per patch."""
    patches = [gray(p) for p in patches]
    size = (patches[0].shape[1], patches[0].shape[0])
    hog = cv2.HOGDescriptor(size, (16, 16), (8, 8), (8, 8), 9)
    return np.stack([hog.compute(np.ascontiguousarray(p)).ravel() for p in patches]).astype(np.float64)


def person_folds(people: Sequence, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays, no person on both sides; fewer folds when fewer people."""
    _, _, GroupKFold, _ = _sklearn()
    groups = np.unique(np.asarray(people).astype(str), return_inverse=True)[1]
    n = min(folds, int(groups.max()) + 1 if len(groups) else 0)
    if n < 2:
        raise ValueError("cross-validating by person needs at least two people")
    splitter = GroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def out_of_fold_scores(real_patches, real_people, fake_patches, fake_people, folds: int = 5,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): fake = 1, real = 0, each score from a model that never saw the person."""
    LogisticRegression, _, _, StandardScaler = _sklearn()
    x = hog_features(list(real_patches) + list(fake_patches))
    y = np.r_[np.zeros(len(real_patches)), np.ones(len(fake_patches))]
    people = list(real_people) + list(fake_people)
    scores = np.zeros(len(y))
    for train, test in person_folds(people, folds, seed):
        if len(np.unique(y[train])) < 2:  # nothing to learn: a constant score
            scores[test] = y[train].mean()
            continue
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(x[train]), y[train])
        scores[test] = model.decision_function(scaler.transform(x[test]))
    return y, scores


def detectability_auc(real_patches, real_people, fake_patches, fake_people, folds: int = 5,
                      seed: int = 0) -> float:
    """ROC AUC of fake (1) vs real (0) from pooled out-of-fold scores; 0.5 = indistinguishable.
    NaN when there are not two people or not both kinds."""
    if not len(real_patches) or not len(fake_patches) or len(set(map(str, [*real_people, *fake_people]))) < 2:
        return math.nan
    _, roc_auc_score, _, _ = _sklearn()
    y, scores = out_of_fold_scores(real_patches, real_people, fake_patches, fake_people, folds, seed)
    return float(roc_auc_score(y, scores))


def jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def blur(rgb: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    return cv2.GaussianBlur(np.ascontiguousarray(rgb, np.uint8), (0, 0), sigma)


CONTROL_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"jpeg70": jpeg, "blur1.5": blur}


def detectability_controls(real_rgbs: Sequence[np.ndarray], real_people: Sequence, judge: MouthJudge | None = None,
                           boxes: Sequence | None = None, real_patches: Sequence[np.ndarray] | None = None,
                           folds: int = 5, seed: int = 0) -> dict[str, float]:
    """AUC of a transformed copy of each real photo against the real photos themselves (same
    people, so the copy and its original always share a fold). The copies' landmarks are found
    again, as an output's are. `real_patches` (one per photo) saves recomputing the originals'."""
    judge = judge or MouthJudge()
    boxes = list(boxes) if boxes is not None else [None] * len(real_rgbs)
    if real_patches is None:
        marks = [judge.landmarks(rgb, b) for rgb, b in zip(real_rgbs, boxes)]
        real_patches = [None if m is None else mouth_patch(rgb, m) for rgb, m in zip(real_rgbs, marks)]
    keep = [i for i, p in enumerate(real_patches) if p is not None]
    out = {}
    for name, transform in CONTROL_TRANSFORMS.items():
        fakes, fake_people = [], []
        for i in keep:
            copy = transform(real_rgbs[i])
            marks = judge.landmarks(copy, boxes[i])
            if marks is not None:
                fakes.append(mouth_patch(copy, marks))
                fake_people.append(real_people[i])
        out[name] = detectability_auc([real_patches[i] for i in keep], [real_people[i] for i in keep],
                                      fakes, fake_people, folds, seed)
    return out


# --------------------------------------------------------------------------- report

@dataclass
class RealismPair:
    """An edited output, the same person's real photo of the target expression, and labels
    such as gender, age, ethnicity (for by_group). Boxes, if given, pick the face."""
    output: np.ndarray
    real: np.ndarray
    person: str
    labels: dict = field(default_factory=dict)
    output_box: Sequence | None = None
    real_box: Sequence | None = None


def age_band(age) -> str:
    try:
        age = float(age)
    except (TypeError, ValueError):
        age = math.nan
    if math.isnan(age):
        return "unknown"
    return "<20" if age < 20 else "20-39" if age < 40 else "40-59" if age < 60 else "60+"


def _auc(real_scores, fake_scores) -> float:
    if not len(real_scores) or not len(fake_scores):
        return math.nan
    _, roc_auc_score, _, _ = _sklearn()
    return float(roc_auc_score(np.r_[np.zeros(len(real_scores)), np.ones(len(fake_scores))],
                               np.r_[real_scores, fake_scores]))


def summarise_rows(rows: list[dict]) -> dict:
    """Sharpness ratio mean / median and the detectability AUC of these rows' out-of-fold scores."""
    ratios = [r["sharpness_ratio"] for r in rows if r.get("sharpness_ratio") is not None]
    return {"pairs": len(rows),
            "sharpness_ratio_mean": float(np.mean(ratios)) if ratios else math.nan,
            "sharpness_ratio_median": float(np.median(ratios)) if ratios else math.nan,
            "detectability_auc": _auc([r["real_score"] for r in rows if "real_score" in r],
                                      [r["fake_score"] for r in rows if "fake_score" in r])}


def _group_key(label: str):
    return (lambda row: age_band(row.get("age"))) if label == "age" else label


def realism_report(pairs: Iterable[RealismPair | tuple], judge: MouthJudge | None = None,
                   folds: int = 5, seed: int = 0) -> dict:
    """Mouth sharpness (output / real, per pair), the detectability AUC of outputs vs real photos
    and its two controls, per-group summaries for every label, and the pairs skipped because
    no landmarks were found on the output or the real photo."""
    pairs = [p if isinstance(p, RealismPair) else RealismPair(*p) for p in pairs]
    judge = judge or MouthJudge()
    rows, skipped, reals, real_boxes = [], [], [], []
    real_patches, fake_patches = [], []
    for i, pair in enumerate(pairs):
        marks_out = judge.landmarks(pair.output, pair.output_box)
        marks_real = judge.landmarks(pair.real, pair.real_box)
        if marks_out is None or marks_real is None:
            missing = [n for n, m in (("output", marks_out), ("real", marks_real)) if m is None]
            skipped.append({"index": i, "person": str(pair.person), "missing": missing})
            continue
        fake, real = mouth_patch(pair.output, marks_out), mouth_patch(pair.real, marks_real)
        sharp_out, sharp_real = mouth_sharpness(fake), mouth_sharpness(real)
        rows.append({**pair.labels, "index": i, "person": str(pair.person),
                     "output_sharpness": sharp_out, "real_sharpness": sharp_real,
                     "sharpness_ratio": sharp_out / sharp_real if sharp_real > 0 else None})
        fake_patches.append(fake), real_patches.append(real)
        reals.append(pair.real), real_boxes.append(pair.real_box)
    people = [r["person"] for r in rows]
    controls = {name: math.nan for name in CONTROLS}
    if len(set(people)) >= 2:
        _, scores = out_of_fold_scores(real_patches, people, fake_patches, people, folds, seed)
        for row, real_score, fake_score in zip(rows, scores[:len(rows)], scores[len(rows):]):
            row["real_score"], row["fake_score"] = float(real_score), float(fake_score)
        controls = detectability_controls(reals, people, judge, real_boxes, real_patches, folds, seed)
    labels = sorted({k for p in pairs for k in p.labels})
    groups = {label: by_group(rows, _group_key(label), summarise_rows) for label in labels}
    overall = summarise_rows(rows)
    return {
        "counts": {"pairs": len(pairs), "used": len(rows), "skipped": len(skipped),
                   "people": len(set(people)), "folds": min(folds, len(set(people)))},
        "sharpness_ratio": {"mean": overall["sharpness_ratio_mean"], "median": overall["sharpness_ratio_median"]},
        "detectability_auc": overall["detectability_auc"],
        "controls": controls, "groups": groups, "rows": rows, "skipped": skipped,
    }


def _fmt(value: float | None) -> str:
    return fmt(value, missing="n/a")


def realism_markdown(report: dict) -> str:
    """A short table: sharpness ratio, detectability AUC, and the controls that give it its scale."""
    c, s = report["counts"], report["sharpness_ratio"]
    lines = ["| measure | value | reading |", "|---|---|---|",
             f"| mouth sharpness, output / real (mean) | {_fmt(s['mean'])} | 1 = as sharp as the real photo |",
             f"| mouth sharpness, output / real (median) | {_fmt(s['median'])} | |",
             f"| detectability AUC, output vs real | {_fmt(report['detectability_auc'])} | "
             "0.5 = indistinguishable, 1 = always told apart |"]
    for name, what in CONTROLS.items():
        lines.append(f"| control: {what} | {_fmt(report['controls'].get(name))} | reference point |")
    lines.append(f"| pairs used / skipped (no landmarks) | {c['used']} / {c['skipped']} | "
                 f"{c['people']} people, {c['folds']} folds by person |")
    for label, groups in report["groups"].items():
        lines += ["", f"| {label} | pairs | sharpness ratio (mean) | detectability AUC |", "|---|---|---|---|"]
        lines += [f"| {g} | {v['pairs']} | {_fmt(v['sharpness_ratio_mean'])} | {_fmt(v['detectability_auc'])} |"
                  for g, v in groups.items()]
    return "\n".join(lines) + "\n"
