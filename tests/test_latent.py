"""Latent transforms: the neutral code with the neutralizer's pull taken back (outside the
expression directions), and how the jobs wire it (transfer: inputs corrected, the reference's
displacement plain)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stoic_cli.latent import Attribute, expression_basis, expression_displacement, first_reaching, take_back_pull

DIM = 8
AVERAGE = np.linspace(-1, 1, DIM).astype(np.float32)
IDENTITY_DIMS = slice(0, 5)  # the rest of the toy code is expression


def toy_neutralizer(r: float):
    """Removes the expression dimensions and pulls identity toward AVERAGE by the factor r."""
    def ntr(z: np.ndarray) -> np.ndarray:
        out = np.repeat(AVERAGE[None], len(z), 0)
        out[:, IDENTITY_DIMS] += r * (z[:, IDENTITY_DIMS] - AVERAGE[IDENTITY_DIMS])
        return out.astype(np.float32)
    return ntr


def link_models_without(models_dir, folder: Path, left_out: str = "attributes.json") -> None:
    """The shipped models less the file `left_out`, linked into `folder`."""
    for f in Path(models_dir).iterdir():
        if f.name != left_out and f.is_file():
            (folder / f.name).symlink_to(f.resolve())


def test_take_back_pull_keeps_more_of_the_person_and_none_of_the_expression():
    rng = np.random.default_rng(0)
    z = (AVERAGE + rng.normal(0, 1, (4, DIM))).astype(np.float32)
    r = 0.8
    ntr = toy_neutralizer(r)
    zn = ntr(z)
    corrected = take_back_pull(zn, ntr(zn))
    own = z[:, IDENTITY_DIMS] - AVERAGE[IDENTITY_DIMS]
    # identity kept: r before, 2r - r^2 after; the expression stays removed
    assert np.allclose(corrected[:, IDENTITY_DIMS] - AVERAGE[IDENTITY_DIMS], (2 * r - r * r) * own, atol=1e-5)
    assert np.allclose(corrected[:, 5:], AVERAGE[5:], atol=1e-6)
    assert np.allclose(take_back_pull(zn, ntr(zn), 0.0), zn)
    half = take_back_pull(zn, ntr(zn), 0.5)
    assert np.allclose(half, (zn + corrected) / 2, atol=1e-6)
    # a neutralizer without pull leaves nothing to take back
    exact = toy_neutralizer(1.0)
    assert np.allclose(take_back_pull(exact(z), exact(exact(z))), exact(z), atol=1e-6)


def leaky_neutralizer(r: float, leak: float):
    """Like toy_neutralizer, but leaves `leak` of the expression dimensions behind."""
    def ntr(z: np.ndarray) -> np.ndarray:
        out = toy_neutralizer(r)(z)
        out[:, 5:] += leak * (z[:, 5:] - AVERAGE[5:])
        return out.astype(np.float32)
    return ntr


def test_take_back_pull_leaves_the_expression_directions_alone():
    rng = np.random.default_rng(1)
    z = (AVERAGE + rng.normal(0, 1, (4, DIM))).astype(np.float32)
    r, leak, amount = 0.6, 0.3, 1.5
    ntr = leaky_neutralizer(r, leak)
    zn = ntr(z)
    expression = np.eye(DIM, dtype=np.float32)[:, 5:]  # orthonormal columns: the expression dims
    plain = take_back_pull(zn, ntr(zn), amount)
    kept = take_back_pull(zn, ntr(zn), amount, keep=expression)
    # the identity part is corrected alike
    assert np.allclose(kept[:, IDENTITY_DIMS], plain[:, IDENTITY_DIMS], atol=1e-6)
    assert not np.allclose(kept[:, IDENTITY_DIMS], zn[:, IDENTITY_DIMS], atol=1e-3)
    # the expression the neutralizer left stays as it was instead of growing with the step
    assert np.allclose(kept[:, 5:], zn[:, 5:], atol=1e-6)
    left = np.abs(zn[:, 5:] - AVERAGE[5:]).sum()
    assert np.abs(plain[:, 5:] - AVERAGE[5:]).sum() > 1.5 * left


def _attribute(name: str, direction, kind: str) -> Attribute:
    return Attribute(name=name, direction=np.asarray(direction, np.float32), minimum=-1, maximum=1,
                     unit="", help="", kind=kind)


def test_expression_basis_spans_the_expressions_only():
    rng = np.random.default_rng(2)
    smile, surprise, age = rng.normal(size=(3, DIM)).astype(np.float32)
    table = {"smile": _attribute("smile", smile, "expression"),
             "surprise": _attribute("surprise", surprise, "expression"),
             "age": _attribute("age", age, "appearance")}
    basis = expression_basis(table)
    assert basis.shape == (DIM, 2)
    assert np.allclose(basis.T @ basis, np.eye(2), atol=1e-5)
    for d in (smile, surprise):  # each expression direction lies in the span
        assert np.allclose(basis @ (basis.T @ d), d, atol=1e-4)
    assert not np.allclose(basis @ (basis.T @ age), age, atol=1e-2)
    assert expression_basis({"age": table["age"]}) is None


def test_shipped_attributes_name_their_kind(shipped_models):
    from stoic_cli.models import FaceModels

    table = FaceModels(shipped_models).attribute_table()
    kinds = {name: a.kind for name, a in table.items()}
    assert {n for n, k in kinds.items() if k == "expression"} == {"smile", "surprise", "sad", "angry", "disgust", "fear"}
    assert kinds["age"] == kinds["gender"] == "appearance"
    assert expression_basis(table).shape == (len(table["smile"].direction), 6)


def test_transfer_corrects_the_inputs_neutral_code_but_not_the_references(shipped_models, detector, london_rgb):
    from stoic_cli.alignment import align_face
    from stoic_cli.images import Photo
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    models = FaceModels(shipped_models)
    listed = models.meta["neutral_correction"]["transfer"]
    assert listed > 0
    transfer = Pipeline(models, detector, job="transfer")
    assert transfer.neutral_correction == listed
    assert Pipeline(models, detector, job="neutralize").neutral_correction == models.meta["neutral_correction"].get("neutralize", 0.0)
    assert Pipeline(models, detector, job="edit").neutral_correction == 0.0

    photo = Photo(london_rgb["094_smiling.jpg"])
    face = transfer.find_faces(photo, largest=True)[0][0]
    crop, _ = align_face(photo.rgb, face.landmarks, transfer.size)
    z = models.encode(crop[None])
    zn = models.neutralize(z)
    _, zn_input = transfer.codes(crop[None])
    keep = transfer.expression_basis
    assert keep is not None
    assert np.allclose(zn_input, take_back_pull(zn, models.neutralize(zn), listed, keep=keep), atol=1e-4)
    assert not np.allclose(zn_input, zn, atol=1e-2)
    displacement = transfer.read_reference(photo).displacement
    assert np.allclose(displacement, expression_displacement(z, zn), atol=1e-4)


@pytest.mark.parametrize("amount", [0.0, 1.0])
def test_codes_take_an_explicit_correction(shipped_models, detector, amount):
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    models = FaceModels(shipped_models)
    crops = np.full((2, 128, 128, 3), 128, np.uint8)
    crops[1, 40:90, 30:100] = 60
    pipe = Pipeline(models, detector, neutral_correction=amount)
    z, zn = pipe.codes(crops)
    plain = models.neutralize(z)
    assert np.allclose(zn, take_back_pull(plain, models.neutralize(plain), amount, keep=pipe.expression_basis),
                       atol=1e-4)
    assert np.allclose(pipe.codes(crops, correction=0.0)[1], plain, atol=1e-6)


def test_without_attributes_the_whole_pull_is_taken_back(shipped_models, detector, tmp_path):
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    link_models_without(shipped_models, tmp_path)
    models = FaceModels(tmp_path)
    pipe = Pipeline(models, detector, neutral_correction=1.0)
    assert pipe.expression_basis is None
    crops = np.full((1, 128, 128, 3), 128, np.uint8)
    z, zn = pipe.codes(crops)
    plain = models.neutralize(z)
    assert np.allclose(zn, take_back_pull(plain, models.neutralize(plain), 1.0), atol=1e-4)


def test_transfer_measures_the_references_motion_on_the_canonical_face(shipped_models, detector, london_rgb, tmp_path):
    """The motion is how the canonical face moves when the reference's displacement is added to
    it; models whose attributes.json has no canonical face measure it on the reference's own
    decoded faces (neutral -> own) instead."""
    import json

    from stoic_cli.alignment import align_face
    from stoic_cli.images import Photo
    from stoic_cli.latent import canonical_code
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline, estimate_flow

    models = FaceModels(shipped_models)
    canonical = canonical_code(models.attributes())
    assert canonical is not None and canonical.shape == (1, models.meta["latent_dim"])
    photo = Photo(london_rgb["094_smiling.jpg"])
    transfer = Pipeline(models, detector, job="transfer", match_smile=False)  # the plain displacement
    ref = transfer.read_reference(photo)
    before, after = models.decode(np.concatenate([canonical, canonical + ref.displacement]))
    assert np.allclose(ref.motion, estimate_flow(before, after), atol=1e-4)

    link_models_without(shipped_models, tmp_path)  # then attributes.json without the canonical face
    table = models.attributes()
    del table["canonical_face"]
    (tmp_path / "attributes.json").write_text(json.dumps(table))
    older = Pipeline(FaceModels(tmp_path), detector, job="transfer")
    assert older.canonical_face is None
    own_ref = older.read_reference(photo)
    assert np.allclose(own_ref.displacement, ref.displacement, atol=1e-5)
    face = older.find_faces(photo, largest=True)[0][0]
    crop, _ = align_face(photo.rgb, face.landmarks, older.size)
    z = models.encode(crop[None])
    own, neutral = models.decode(np.concatenate([z, models.neutralize(z)]))
    assert np.allclose(own_ref.motion, estimate_flow(neutral, own), atol=1e-3)
    assert not np.allclose(own_ref.motion, ref.motion, atol=1e-3)


def test_first_reaching_known_answers():
    amounts = np.array([0.0, 0.5, 1.0, 1.5])
    assert first_reaching(np.array([-2.0, -1.0, 0.5, 2.0]), 0.0, amounts) == 1.0
    assert first_reaching(np.array([1.0, 2.0, 3.0, 4.0]), 0.5, amounts) == 0.0  # already there
    assert first_reaching(np.array([-3.0, -2.5, -2.0, -1.0]), 0.0, amounts) == 1.5  # never: the most
    assert first_reaching(np.array([-1.0, 0.2, -0.5, 0.8]), 0.1, amounts) == 0.5  # the first that does


def test_transfer_adds_the_smile_the_judge_sees_but_the_code_lacks(shipped_models, detector, london_rgb, tmp_path):
    """London's 011 smiles (the judge agrees) but its displacement draws little smile on the
    canonical face: smile is added along the smile direction until the judge sees it there, to
    the displacement and so to the motion. 042's photo is not judged smiling: nothing is added.
    Without the judge, or with match_smile off, the displacement is the plain one."""
    from stoic_cli.images import Photo
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline, estimate_flow

    models = FaceModels(shipped_models)
    cap = models.meta["smile_match"]["cap"]
    transfer = Pipeline(models, detector, job="transfer")
    plain = Pipeline(models, detector, job="transfer", match_smile=False)
    assert transfer.smile_match is not None and plain.smile_match is None
    smile = transfer.attributes["smile"].direction
    canonical = transfer.canonical_face

    photo = Photo(london_rgb["011_smiling.jpg"])
    ref, ref_plain = transfer.read_reference(photo), plain.read_reference(photo)
    assert ref_plain.smile_added == 0.0
    assert 0 < ref.smile_added <= models.meta["smile_match"]["max_units"]
    assert np.allclose(ref.displacement, ref_plain.displacement + ref.smile_added * smile, atol=1e-5)
    on_photo = models.smile_logit(ref.crop[None])[0]
    drawn_plain, drawn = models.smile_logit(models.decode(np.concatenate([canonical + ref_plain.displacement,
                                                                           canonical + ref.displacement])))
    assert on_photo > cap > drawn_plain  # the photo smiles, the plain displacement does not draw it
    assert drawn >= cap  # the added smile does
    before, after = models.decode(np.concatenate([canonical, canonical + ref.displacement]))
    assert np.allclose(ref.motion, estimate_flow(before, after), atol=1e-4)
    assert np.abs(ref.motion).mean() > np.abs(ref_plain.motion).mean()

    # 042's photo is not judged smiling, though its displacement draws even less: matching it
    # would put a smile on every unsmiling expression, so nothing is added
    unsmiling = transfer.read_reference(Photo(london_rgb["042_smiling.jpg"]))
    on_photo = models.smile_logit(unsmiling.crop[None])[0]
    drawn = models.smile_logit(models.decode(canonical + unsmiling.displacement))[0]
    assert drawn < on_photo < models.meta["smile_match"]["smiling_above"]
    assert unsmiling.smile_added == 0.0

    link_models_without(shipped_models, tmp_path, "smile_judge.onnx")  # the same models without the judge
    without = Pipeline(FaceModels(tmp_path), detector, job="transfer")
    assert without.smile_match is None
    assert np.allclose(without.read_reference(photo).displacement, ref_plain.displacement, atol=1e-5)
