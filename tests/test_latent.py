"""Latent edits: every job is a function of the faces' own and neutral codes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stoic_cli.edit.latent import (Attribute, attribute_edit, expression_displacement, neutralize_edit,
                             transfer_edit)


def link_models_without(models_dir, folder: Path, left_out: str = "attributes.json") -> None:
    """The shipped models less the file `left_out`, linked into `folder`."""
    for f in Path(models_dir).iterdir():
        if f.name != left_out and f.is_file():
            (folder / f.name).symlink_to(f.resolve())


def test_shipped_attributes_name_their_kind(shipped_models):
    from stoic_cli.runtime.models import FaceModels

    table = FaceModels(shipped_models).attribute_table()
    kinds = {name: a.kind for name, a in table.items()}
    assert {n for n, k in kinds.items() if k == "expression"} == {"smile", "surprise", "sad", "angry", "disgust", "fear"}
    assert kinds["age"] == kinds["gender"] == "appearance"


def test_the_three_edits_are_functions_of_own_and_neutral_codes():
    rng = np.random.default_rng(0)
    z, zn = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    assert np.allclose(neutralize_edit(1.0)(z, zn), zn)
    assert np.allclose(neutralize_edit(0.0)(z, zn), z)
    assert np.allclose(neutralize_edit(0.5)(z, zn), (z + zn) / 2)
    ref, ref_n = rng.normal(size=(1, 8)), rng.normal(size=(1, 8))
    d = expression_displacement(ref, ref_n)
    assert np.allclose(transfer_edit(d, 0.5)(z, zn), zn + 0.5 * (ref - ref_n))
    up = Attribute("smile", np.ones(8, np.float32), -1, 1, "typical", "")
    down = Attribute("age", -np.ones(8, np.float32), -30, 30, "years", "")
    edit = attribute_edit({"smile": up, "age": down}, {"smile": 0.5, "age": 2.0})
    assert np.allclose(edit(z, zn), z - 1.5)


def test_reference_is_read_as_its_displacement(shipped_models, detector, london_rgb):
    from stoic_cli.face.images import Photo
    from stoic_cli.runtime.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    pipe = Pipeline(FaceModels(shipped_models, device="cpu"), detector)
    ref = pipe.read_reference(Photo(london_rgb["094_smiling.jpg"]))
    z, zn = pipe.codes(ref.crop[None])
    assert np.allclose(ref.displacement, z - zn, atol=1e-5)
    assert ref.reconstruction.shape == (128, 128, 3)
