"""Latent edits: every job is an edit object whose codes are a function of the faces' own and
neutral codes, with its settings checked against their documented ranges."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import pytest

from stoic_cli.edit.edits import AttributeEdit, Neutralize, Reference, Transfer
from stoic_cli.runtime.settings import Attribute


def link_models_without(models_dir, folder: Path, left_out: str = "attributes.json") -> None:
    """The shipped models less the file `left_out`, linked into `folder`."""
    for f in Path(models_dir).iterdir():
        if f.name != left_out and f.is_file():
            (folder / f.name).symlink_to(f.resolve())


def test_shipped_attributes_name_their_kind(shipped_models):
    from stoic_cli.runtime.models import FaceModels

    table = FaceModels(shipped_models).attributes()
    kinds = {name: a.kind for name, a in table.items()}
    assert {n for n, k in kinds.items() if k == "expression"} == {"smile", "surprise", "sad", "angry", "disgust", "fear"}
    assert kinds["age"] == kinds["gender"] == "appearance"


def test_the_three_edits_are_functions_of_own_and_neutral_codes():
    rng = np.random.default_rng(0)
    z, zn = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    assert np.allclose(Neutralize(1.0).codes(z, zn), zn)
    assert np.allclose(Neutralize(0.0).codes(z, zn), z)
    assert np.allclose(Neutralize(0.5).codes(z, zn), (z + zn) / 2)
    assert np.allclose(Neutralize(1.0).scaled(0.5).codes(z, zn), (z + zn) / 2)
    ref, ref_n = rng.normal(size=(1, 8)), rng.normal(size=(1, 8))
    transfer = Transfer(Reference.from_codes(ref, ref_n, np.zeros((4, 4, 3), np.uint8)), 0.5)
    assert np.allclose(transfer.codes(z, zn), zn + 0.5 * (ref - ref_n))
    assert np.allclose(transfer.scaled(0).codes(z, zn), zn)
    up = Attribute("smile", np.ones(8, np.float32), -1, 1, "typical", "")
    down = Attribute("age", -np.ones(8, np.float32), -30, 30, "years", "")
    edit = AttributeEdit({"smile": up, "age": down}, {"smile": 0.5, "age": 2.0})
    assert np.allclose(edit.codes(z, zn), z - 1.5)
    assert np.allclose(edit.scaled(0.0).codes(z, zn), z)
    assert edit.name == "edit" and edit.describe() == {"smile": 0.5, "age": 2.0}
    # Only a smile's positive amounts raise the mouth corners after rendering, in proportion.
    assert edit.corner_raise == pytest.approx(0.5 * AttributeEdit.CORNER_RAISE_PER_SMILE)
    assert edit.scaled(0.0).corner_raise == 0
    assert AttributeEdit({"smile": up}, {"smile": -1.0}).corner_raise == 0
    assert AttributeEdit({"age": down}, {"age": 10.0}).corner_raise == 0
    assert Neutralize(1.0).corner_raise == transfer.corner_raise == 0
    still = Attribute("smile", np.zeros(8, np.float32), -1, 1, "typical", "")
    assert AttributeEdit({"smile": still}, {"smile": 1.0}).corner_raise == 0, "a zero direction asks for nothing"


@pytest.mark.parametrize("make", [lambda: Neutralize(float("nan")), lambda: Neutralize(float("inf")),
                                  lambda: Neutralize(1e9), lambda: Neutralize(-0.5),
                                  lambda: Transfer(Reference(np.zeros((1, 8)), None), float("nan")),
                                  lambda: Transfer(Reference(np.zeros((1, 8)), None), 3.0)])
def test_settings_outside_their_range_are_refused(make):
    with pytest.raises(ValueError, match="is outside"):
        make()


def test_attribute_amounts_are_checked_unless_forced():
    smile = {"smile": Attribute("smile", np.ones(8, np.float32), -1, 1)}
    with pytest.raises(ValueError, match="smile=5 is outside -1..1"):
        AttributeEdit(smile, {"smile": 5.0})
    assert AttributeEdit(smile, {"smile": 5.0}, force=True).amounts == {"smile": 5.0}
    with pytest.raises(ValueError, match="not a number"):
        AttributeEdit(smile, {"smile": float("nan")}, force=True)
    with pytest.raises(ValueError, match="unknown attribute"):
        AttributeEdit(smile, {"grin": 0.5})


def test_reference_is_read_as_its_displacement(shipped_models, detector, london_rgb):
    from stoic_cli.face.images import Photo
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    pipe = Pipeline(FaceModels(shipped_models, device="cpu"), detector)
    ref = pipe.read_reference(Photo(london_rgb["094_smiling.jpg"]))
    z, zn = pipe.codes(ref.crop[None])
    assert np.allclose(ref.displacement, z - zn, atol=1e-5)
    assert ref.crop.shape == (256, 256, 3) and ref.crop.dtype == np.uint8  # the renderer's size: its mouth is used


def test_the_neutral_code_keeps_the_person_part():
    from stoic_cli.edit.latent import neutral_codes

    rng = np.random.default_rng(1)
    z, ntr = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)
    zn = neutral_codes(z, ntr, expression_dims=3)
    assert np.array_equal(zn[:, :5], z[:, :5]) and np.array_equal(zn[:, 5:], ntr[:, 5:])
    assert np.array_equal(neutral_codes(z, ntr, expression_dims=0), ntr)  # no split: the whole output
    # so a transfer moves only the expression part, whoever the reference is
    ref = Reference.from_codes(ntr[:1] + 1, neutral_codes(ntr[:1] + 1, ntr[:1], 3), np.zeros((4, 4, 3), np.uint8))
    assert np.array_equal(Transfer(ref).codes(z, zn)[:, :5], z[:, :5])


def test_shipped_codes_name_their_split(shipped_models):
    from stoic_cli.runtime.models import FaceModels

    assert FaceModels(shipped_models).settings.expression_dims == 64


def test_a_transfer_takes_the_references_mouth_only_at_its_full_expression():
    from stoic_cli.edit.edits import Neutralize, Reference, Transfer

    mouth = object()  # opaque to the edits
    ref = Reference(np.ones((1, 8)), np.zeros((4, 4, 3), np.uint8), "ref.jpg", mouth)
    assert Transfer(ref, 1.0).mouth_source is mouth and Transfer(ref, 1.5).mouth_source is mouth
    assert Transfer(ref, 0.5).mouth_source is None, "a partial transfer keeps the face's own mouth"
    assert Transfer(Reference(np.zeros((1, 8)), None, "", mouth)).mouth_source is None, "no expression, no new mouth"
    assert Transfer(Reference(np.ones((1, 8)), None)).mouth_source is None
    assert Neutralize().mouth_source is None and Neutralize(0.5).lip_closing == 0.5 and Neutralize(1.5).lip_closing == 1.0
    assert Transfer(ref).lip_closing == 0.0


def test_the_smile_a_code_shows_is_read_along_the_smile_direction():
    from stoic_cli.edit.latent import amount_along

    rng = np.random.default_rng(0)
    direction, zn = rng.normal(size=16), rng.normal(size=(3, 16))
    z = zn + np.array([[0.0], [0.7], [-0.4]]) * direction
    assert np.allclose(amount_along(z, zn, direction), [0.0, 0.7, -0.4])


def test_neutralize_lowers_the_corners_by_the_smile_the_code_shows():
    from stoic_cli.edit.edits import Neutralize, Transfer

    n = Neutralize()
    assert n.corner_lowering(n.SMILE_NONE - 1.0) == 0.0 and n.corner_lowering(n.SMILE_NONE) == 0.0
    assert 0.0 < n.corner_lowering((n.SMILE_NONE + n.SMILE_FULL) / 2) < 1.0
    assert n.corner_lowering(n.SMILE_FULL) == 1.0 and n.corner_lowering(n.SMILE_FULL + 3.0) == 1.0
    assert Neutralize(0.5).corner_lowering(n.SMILE_FULL) == 0.5, "a partial neutralize lowers partly"
    assert Neutralize(0.5).corner_lowering(None) == 0.5, "no smile direction: every lifted line, as asked"
    assert Transfer(None).corner_lowering(2.0) == 0.0
    assert Neutralize().removes_expression and not Transfer(None).removes_expression


def test_a_neutral_code_never_smiles_more_than_the_face():
    """Where the neutralizer's change points toward a smile (a face unlike its training people,
    a frown), that part of the change is left out; a smile's removal is untouched, and so is
    the person part."""
    from stoic_cli.edit.latent import amount_along, neutral_codes

    rng = np.random.default_rng(1)
    dims, smile = 4, np.concatenate([np.zeros(4), rng.normal(size=4)])
    z = rng.normal(size=(2, 8)).astype(np.float32)
    other = rng.normal(size=(2, 8)) * np.concatenate([np.zeros(4), np.ones(4)])
    other -= amount_along(other, np.zeros_like(other), smile)[:, None] * smile  # no smile in it
    toward = z - np.array([[0.8], [-0.5]]) * smile + other  # face 0 loses 0.8 smile, face 1 gains 0.5
    plain = neutral_codes(z, toward.astype(np.float32), dims)
    zn = neutral_codes(z, toward.astype(np.float32), dims, smile)
    assert np.allclose(amount_along(z, zn, smile), [0.8, 0.0], atol=1e-5)
    assert np.allclose(zn[0], plain[0]), "a smile's removal is untouched"
    assert np.allclose(zn[1] - z[1], other[1], atol=1e-5), "the rest of the change stays"
    assert np.array_equal(zn[:, :dims], z[:, :dims]), "the person part is the face's own"


def test_the_smile_direction_comes_from_attributes_json_when_it_has_one(shipped_models, tmp_path):
    import json

    from stoic_cli.runtime.models import FaceModels

    shipped = FaceModels(shipped_models)
    assert shipped.smile_direction.shape == (256,)
    models = tmp_path / "models"
    models.mkdir()
    for f in shipped_models.iterdir():
        if f.name != "attributes.json" and f.is_file():
            (models / f.name).symlink_to(f)
    assert FaceModels(models).smile_direction is None, "no attributes.json"
    age = json.loads((shipped_models / "attributes.json").read_text())["attributes"]["age"]
    (models / "attributes.json").write_text(json.dumps({"format": 1, "attributes": {"age": age}}))
    assert FaceModels(models).smile_direction is None, "attribute directions without a smile"
