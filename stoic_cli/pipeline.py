"""One photo through stoic: detect -> align -> encode -> latent edit -> decode -> enhance ->
paste back (-> move). The latent edit is a function from the faces' own codes (and their
neutral codes) to edited codes, so neutralize, transfer and edit share everything else;
transfer and edit also carry the expression's motion, which moves the photo's own pixels."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from stoic_cli.alignment import align_face
from stoic_cli.detection import Face, FaceDetector, split_small_faces
from stoic_cli.images import Photo
from stoic_cli.latent import (Edit, LatentEdit, canonical_code, expression_basis, expression_displacement,
                             first_reaching, load_attributes, take_back_pull)
from stoic_cli.models import FaceModels, ModelNotFound
from stoic_cli.pasteback import apply_change, face_mask, region_mask, warp_photo

IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float64)  # crop -> crop


class NoFaceError(Exception):
    """No usable face in a photo; the message says why."""


@dataclass
class Reference:
    """A transfer reference's expression (see Pipeline.read_reference), with the aligned crop
    and its reconstruction it was read from (for measuring where an expression is lost)."""
    displacement: np.ndarray  # (1, latent_dim)
    motion: np.ndarray  # crop-space flow, fractions of the side
    crop: np.ndarray  # uint8 aligned crop, encoder-sized
    reconstruction: np.ndarray  # float, its own code decoded
    smile_added: float = 0.0  # units of the smile direction the smile judge added (see match_smile)


@dataclass
class FaceEdit:
    face: Face
    crop: np.ndarray  # uint8 aligned input crop
    edited_crop: np.ndarray  # uint8 crop with the change applied (for sheets and strips)
    matrix: np.ndarray


@dataclass
class EditResult:
    rgb: np.ndarray
    faces: list[FaceEdit] = field(default_factory=list)
    skipped_small: int = 0


def _lowpass(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _moved(magnitude: np.ndarray, level: float) -> np.ndarray:
    """0..1: where a change (grey levels, one crop), smoothed over a few pixels, reaches `level`."""
    return np.clip(_lowpass(magnitude, magnitude.shape[0] / 32) / level, 0, 1)


@dataclass
class FaceChange:
    """What an edit does to one aligned crop (float, 0..255 units, crop-sized): `add` is added
    where `weight` is 0; where `weight` reaches 1 the pixels become `replace` outright."""
    add: np.ndarray
    replace: np.ndarray | None = None
    weight: np.ndarray | None = None
    detail_weight: np.ndarray | None = None  # where the photo's finer-than-crop detail is dropped

    def on_crop(self, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The edited crop (uint8): the paste-back itself, applied to the crop in place of the
        photo (an identity warp), so sheets and strips show exactly what reaches photos."""
        return apply_change(crop, self.add, IDENTITY, mask, self.replace, self.weight, crop, self.detail_weight)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """The same grey-level change on R, G and B."""
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(y[..., None], 3, axis=2)


def blend_change(crop: np.ndarray, own: np.ndarray, new: np.ndarray, replace_level: float | None,
                 tone_sigma: float | None = 8.0, detail_level: float | None = None,
                 fidelity: float = 1.0, detail_region: tuple[float, float, float, float] | None = None
                 ) -> FaceChange:
    """How the model's proposal (`own` -> `new`, float 0..255, crop-sized) changes the crop.

    - Tones stay the photo's: expression lives in mid frequencies (mouth, brows, cheeks) while
      skin tone and lighting live in low ones, and a blurry decoder drifts there toward the
      training average. So only the change above a Gaussian of `tone_sigma` px is applied.
    - Where the model changes the face a lot (an open smile closing), adding a difference leaves
      ghosts of the old teeth and lips, so there the model's own structure is used, on the
      photo's colours and low-frequency tones. `replace_level` is the change (grey levels) at
      which that takes over fully; None adds the difference everywhere.
    - Fidelity (CodeFormer's trade-off): at 1 the photo keeps its own detail finer than the
      crop everywhere, so the face stays as sharp as the photo but faint traces of the old
      expression (teeth and lip edges) can remain; below 1 that detail is dropped, by up to
      1 - `fidelity`, where the change exceeds `detail_level` grey levels (a sharper map than
      the replacement's, so only moved edges lose it): cleaner, but as soft as the model.
      There the model's tones and colours (also its colour detail, e.g. the lips) are used
      too: closing an open mouth needs lip and skin where the photo only has the dark of the
      mouth, and the old lips' red must not outline the smile that is gone.
    - `detail_region` (centre x, centre y, radius x, radius y as fractions of the crop) limits
      that to a soft ellipse, e.g. the mouth, where the old expression's detail (teeth, lip
      edges) gives it away; eyes and skin elsewhere keep the photo's detail. None: the face."""
    crop = crop.astype(np.float32)
    n = crop.shape[0]
    change = new - own
    if tone_sigma:
        tone_sigma *= n / 128  # given in pixels of a 128 px crop
        change = change - _lowpass(change, tone_sigma)
    # Brightness only: the decoder's colour drift (irises turning violet, skin going grey)
    # must not reach the photo, whose own colours stay.
    change = _luma(change)
    if replace_level is None:
        return FaceChange(change)
    magnitude = np.abs(change).mean(axis=2)
    weight = _moved(magnitude, replace_level)
    if tone_sigma:
        # the photo's colours and tones, the model's brightness structure
        new_low, crop_low = _lowpass(new, tone_sigma), _lowpass(crop, tone_sigma)
        structure_change = (new - new_low) - (crop - crop_low)
        structure = crop + _luma(structure_change)
    else:
        structure = new
    detail = None
    if detail_level and fidelity < 1:
        drop = (1 - fidelity) * weight
        if detail_region is not None:
            drop = drop * region_mask(n, detail_region)
        detail = drop * np.clip(_lowpass(magnitude, n / 128) / detail_level, 0, 1)
        if tone_sigma:
            # The model's own tones, shifted by how its reconstruction's colour differs from the
            # photo's over the face (a dark-skinned face must not get the decoder's average skin).
            face = face_mask(n)[..., None]
            offset = ((crop - own) * face).sum(axis=(0, 1)) / face.sum()
            # and its colour detail: lips are finer than the tones, so otherwise the red of the
            # old smile's lips stays in place, on the new mouth's brightness
            colour_detail = structure_change - _luma(structure_change)
            tones = drop[..., None] * (new_low + offset - crop_low + colour_detail)
            change, structure = change + tones, structure + tones
    return FaceChange(change, structure, weight, detail)


def estimate_flow(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Where each pixel of `after` comes from in `before` (two crop-sized faces, float or uint8,
    0..255): dense optical flow in fractions of the crop side, smoothed over a few pixels and
    faded out at the face mask's edge, so that only the face moves."""
    n = before.shape[0]
    grey = lambda img: np.clip(_luma(np.asarray(img, np.float32))[..., 0], 0, 255).astype(np.uint8)
    flow = cv2.calcOpticalFlowFarneback(grey(after), grey(before), None, pyr_scale=0.5, levels=3,
                                        winsize=max(5, n // 8 | 1), iterations=3, poly_n=5,
                                        poly_sigma=1.1, flags=0)
    flow = _lowpass(flow, n / 32) * face_mask(n)[..., None]
    return (flow / n).astype(np.float32)


def motion_pixels(motion: np.ndarray, size: int, limit: float = 0.08) -> np.ndarray:
    """A motion field (fractions of the side) as a `size`-pixel crop flow, each component capped
    at `limit` of the side and faded out at the face mask's edge."""
    field = cv2.resize(np.asarray(motion, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return (np.clip(field, -limit, limit) * size * face_mask(size)[..., None]).astype(np.float32)


def _along(z: np.ndarray, z_edit: np.ndarray, gain: float) -> np.ndarray:
    """The code `gain` times as far from `z` along the edit (`z_edit` itself at 1)."""
    return z_edit if gain == 1 else z + gain * (z_edit - z)


def strengthen_mouth(own: np.ndarray, new: np.ndarray, further: np.ndarray,
                     region: tuple[float, float, float, float], gate: float) -> np.ndarray:
    """`new` (decoded faces, (n, size, size, 3), float) with `further` (the same edit decoded from
    a code pushed further along it) inside the mouth `region`, where the edit moves the mouth by
    `gate` grey levels or more. The paste-back keeps part of the photo there (its colours, its
    tones outside the region), so a mouth decoded at the requested strength reaches the photo
    only partly changed: a smile removed halfway. The gate leaves small changes alone, so a mouth
    that is already neutral is not pushed further toward the average one."""
    moved = np.stack([_moved(m, gate) for m in np.abs(new - own).mean(axis=3)])
    weight = (region_mask(new.shape[1], region)[None] * moved)[..., None]
    return new + weight * (further - new)


def _per_job(meta: dict, key: str, job: str | None, default: float) -> float:
    """A stoic.json setting given as one number for every job or as {job: value}."""
    table = meta.get(key, default)
    return float(table.get(job, default) if isinstance(table, dict) else table)


class Pipeline:
    """How the model's proposal reaches the photo is set by the models' stoic.json (each chosen
    on validation people; see models/README.md), or by the arguments:

    - `mouth_gain`: inside `detail_region`, where the edit moves the mouth, the face is decoded
      from the code pushed `mouth_gain` times as far along the edit (see strengthen_mouth);
      1: as asked.
    - `face_gain`: how far the rest of the face goes along the edit, per job (`job`:
      "neutralize", "transfer", "edit"; stoic.json maps jobs to gains, 1 where unlisted).
      Neutralizing, the neutral code's pull outside the mouth is mostly toward the training
      people's average face, not away from the expression, so it is followed only partly.
    - `motion_gain`: per job like `face_gain`; how much of an Edit's motion moves the photo's
      own pixels (1: as asked, 0: off, the decoded change alone).
    - `neutral_correction`: per job like `face_gain`; how much of the neutralizer's pull on
      already neutral faces is taken back from the faces' neutral codes, outside the
      expression directions of attributes.json (see take_back_pull; 0: the neutralizer's code
      as is). A transfer reference's displacement always uses the plain neutral code.
    - `change_gain` scales the decoded change (1: as decoded).
    - `match_smile`: whether a transfer reference's smile is checked with the smile judge and
      topped up (see read_reference; stoic.json's `smile_match` sets how far).
    - `replace_level`: where the change is large, the model's structure replaces the photo's
      (see blend_change).
    - `fidelity` / `detail_level` / `detail_region`: how much of the photo's own fine detail
      survives there, and where it may be dropped."""

    def __init__(self, models: FaceModels, detector: FaceDetector | None = None,
                 min_eye_distance: float = 20.0, replace_level: float | None = None,
                 change_gain: float | None = None, detail_level: float | None = None,
                 fidelity: float | None = None, mouth_gain: float | None = None,
                 face_gain: float | None = None, motion_gain: float | None = None,
                 neutral_correction: float | None = None, job: str | None = None,
                 match_smile: bool = True):
        self.models = models
        self.match_smile = match_smile
        self.mouth_gain = float(models.meta.get("mouth_gain", 1.0)) if mouth_gain is None else mouth_gain
        self.face_gain = _per_job(models.meta, "face_gain", job, 1.0) if face_gain is None else face_gain
        self.motion_gain = _per_job(models.meta, "motion_gain", job, 0.0) if motion_gain is None else motion_gain
        self.neutral_correction = (_per_job(models.meta, "neutral_correction", job, 0.0)
                                   if neutral_correction is None else neutral_correction)
        self.detail_level = float(models.meta.get("detail_level") or 16.0) if detail_level is None else detail_level
        self.fidelity = float(models.meta.get("fidelity", 1.0)) if fidelity is None else fidelity
        self.replace_level = float(models.meta.get("replace_level", 24.0)) if replace_level is None else replace_level
        self.change_gain = float(models.meta.get("change_gain", 1.0)) if change_gain is None else change_gain
        region = models.meta.get("detail_region")  # the mouth: where detail may go and mouth_gain acts
        self.detail_region = tuple(map(float, region)) if region else None
        self.detector = detector or FaceDetector()
        self.min_eye_distance = min_eye_distance
        self.size = models.image_size  # the encoder's input
        self.out_size = models.output_size  # the enhancer's output: edits are blended at this size
        self.mask = face_mask(self.out_size)

    def find_faces(self, photo: Photo, largest: bool = False) -> tuple[list[Face], int]:
        faces = self.detector.detect(photo.rgb)
        if not faces:
            raise NoFaceError("no face found")
        usable, small = split_small_faces(faces, self.min_eye_distance)
        if not usable:
            raise NoFaceError(f"{len(small)} face(s) found but all too small to edit "
                              f"(eyes under {self.min_eye_distance:.0f} px apart)")
        if largest:
            usable = usable[:1]
        return usable, len(small)

    def codes(self, crops: np.ndarray, correction: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Own and neutral codes; `correction` (default: the job's `neutral_correction`) takes
        back that much of the neutralizer's pull on neutral faces."""
        z = self.models.encode(crops)
        zn = self.models.neutralize(z)
        correction = self.neutral_correction if correction is None else correction
        if correction:
            zn = take_back_pull(zn, self.models.neutralize(zn), correction, keep=self.expression_basis)
        return z, zn

    @functools.cached_property
    def attribute_file(self) -> dict | None:
        """attributes.json's table, read once for the properties below (None without it)."""
        try:
            return self.models.attributes()
        except ModelNotFound:
            return None

    @functools.cached_property
    def expression_basis(self) -> np.ndarray | None:
        """The expression directions that taking back the neutralizer's pull leaves alone
        (None without attributes.json: then the whole pull is taken back)."""
        return None if self.attribute_file is None else expression_basis(self.attributes)

    @functools.cached_property
    def canonical_face(self) -> np.ndarray | None:
        """attributes.json's canonical face code (None without one: then a reference's motion is
        measured on its own decoded faces)."""
        return None if self.attribute_file is None else canonical_code(self.attribute_file)

    @functools.cached_property
    def smile_match(self) -> dict | None:
        """stoic.json's `smile_match` settings (smiling_above, cap, max_units, steps) when transfer checks a
        reference's smile with the smile judge; None when off or a part is missing (the judge,
        the canonical face or the smile direction)."""
        settings = self.models.meta.get("smile_match")
        if not (self.match_smile and settings and self.models.has("smile_judge")
                and self.canonical_face is not None and "smile" in self.attributes):
            return None
        return settings

    @functools.cached_property
    def attributes(self) -> dict:
        """attributes.json's directions by name ({} without it)."""
        return {} if self.attribute_file is None else load_attributes(self.attribute_file)

    def smile_shortfall(self, crop: np.ndarray, displacement: np.ndarray) -> float:
        """Units of the smile direction a reference's displacement lacks (see read_reference):
        the judge reads the photo's smile as a logit. Only a photo judged smiling (above
        `smiling_above`) is topped up: an angry or sad mouth still scores higher than the
        displacement's muted drawing of it, and matching that would make it smile. The target
        is capped at `cap` (past it a face clearly smiles); the canonical face is decoded with
        the displacement plus 0 .. max_units of smile, and the first amount judged to smile as
        much is returned."""
        settings = self.smile_match
        on_photo = float(self.models.smile_logit(crop[None])[0])
        if on_photo <= float(settings.get("smiling_above", 0.0)):
            return 0.0
        amounts = np.linspace(0.0, float(settings["max_units"]), int(settings["steps"]), dtype=np.float32)
        want = min(on_photo, float(settings["cap"]))
        smile = self.attributes["smile"].direction
        faces = self.models.decode((self.canonical_face + displacement + amounts[:, None] * smile).astype(np.float32))
        return first_reaching(self.models.smile_logit(faces), want, amounts)

    def read_reference(self, photo: Photo) -> Reference:
        """The photo's largest usable face as a transfer reference: its displacement from its
        own neutral code, and its motion (a crop-space flow in fractions of the side, see Edit).
        Raises NoFaceError.

        The motion is how the canonical face (attributes.json) moves when the displacement is
        added to it. The decoder draws an expression best on the faces it was shown most; on an
        unusual reference's own code it mutes the smile (a flow between those decoded faces
        moved little), while the same displacement decoded on the canonical face still smiles.
        On validation people 118 of 160 transfers reached 70 % of the reference's smile, against
        103 with the reference's own faces (models/README.md). Without a canonical face, the
        motion is measured between the reference's own decoded neutral face and decoded face.

        The smile the photo shows is checked (smile_match, with the smile judge): on some faces
        the neutralizer keeps part of the smile as the person's own, and the displacement then
        carries little (London's 011: 0.25 units of the smile direction, 0.06 judged on the
        canonical face, against 0.95 on the photo). What the judge still misses is added along
        the smile direction, to both the displacement and the motion. On validation people
        138 of 160 transfers reached 70 % of the reference's smile, against 118 without it, with
        identity kept less often on LFW open-mouth and UTKFace pairs (models/README.md).

        The plain neutral code: taking the neutralizer's pull back here too would also shrink
        the expression the displacement carries (on validation pairs 54 % instead of 71 % of
        transfers reached 70 % of the reference's smile, both at motion gain 1)."""
        faces, _ = self.find_faces(photo, largest=True)
        crop, _ = align_face(photo.rgb, faces[0].landmarks, self.size)
        z, zn = self.codes(crop[None], correction=0.0)
        displacement = expression_displacement(z, zn)
        added = self.smile_shortfall(crop, displacement) if self.smile_match else 0.0
        if added:
            displacement = displacement + np.float32(added) * self.attributes["smile"].direction
        base = zn if self.canonical_face is None else self.canonical_face
        own, before, after = self.models.decode(np.concatenate([z, base, base + displacement]).astype(np.float32))
        return Reference(displacement, estimate_flow(before, after), crop, own, added)

    def apply(self, photo: Photo, faces: list[Face], edit: Edit | LatentEdit) -> EditResult:
        edit = edit if isinstance(edit, Edit) else Edit(edit)
        aligned = [align_face(photo.rgb, f.landmarks, self.out_size) for f in faces]
        crops = np.stack([c for c, _ in aligned])
        if self.out_size != self.size:  # the encoder reads the same crop, area-averaged
            crops_in = np.stack([cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_AREA)
                                 for c in crops])
        else:
            crops_in = crops
        z, zn = self.codes(crops_in)
        z_edit = edit.codes(z, zn)
        strengthen = self.detail_region is not None and self.mouth_gain != 1
        codes = [z, _along(z, z_edit, self.face_gain)] + ([_along(z, z_edit, self.mouth_gain)] if strengthen else [])
        # Decode own and edited codes in one batch; only their difference reaches the photo.
        decoded = self.models.decode(np.concatenate(codes).astype(np.float32))
        k = len(z)
        own, new = decoded[:k], decoded[k:2 * k]
        if strengthen:
            new = strengthen_mouth(own, new, decoded[2 * k:], self.detail_region, self.replace_level)
        new = own + self.change_gain * (new - own)
        out = photo.rgb
        edits = []
        flow = None
        if edit.motion is not None and self.motion_gain:
            flow = self.motion_gain * motion_pixels(edit.motion, self.out_size)
        for face, (crop, matrix), a, b in zip(faces, aligned, own, new):
            change = blend_change(crop, a, b, self.replace_level, detail_level=self.detail_level,
                                  fidelity=self.fidelity, detail_region=self.detail_region)
            out = apply_change(out, change.add, matrix, self.mask, change.replace, change.weight, crop,
                               change.detail_weight)
            edited = change.on_crop(crop, self.mask)
            if flow is not None:  # the look first, then the motion carries it (and the photo) along
                out = warp_photo(out, flow, matrix)
                edited = warp_photo(edited, flow, IDENTITY)
            edits.append(FaceEdit(face, crop, edited, matrix))
        return EditResult(out, edits)

    def run(self, photo: Photo, edit: Edit | LatentEdit, largest: bool = False) -> EditResult:
        faces, small = self.find_faces(photo, largest)
        result = self.apply(photo, faces, edit)
        result.skipped_small = small
        return result
