"""Expression motion: measuring it (optical flow between crops, templates over people),
carrying it with an edit, and moving the photo's own pixels with it."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from stoic_cli.latent import Attribute, attribute_motion, transfer_edit
from stoic_cli.pasteback import face_mask, warp_photo
from stoic_cli.pipeline import IDENTITY, estimate_flow, motion_pixels
from tests.conftest import write_cache

N = 128


def _texture(seed: int = 0, size: int = N) -> np.ndarray:
    """Smooth random blobs: something optical flow can lock on to."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 3)
    return np.clip((img - img.mean()) * 6 + 128, 0, 255).astype(np.uint8)


def _shifted_down(img: np.ndarray, px: int) -> np.ndarray:
    """The content moved down by `px` rows (as a dropping jaw moves the chin)."""
    return np.ascontiguousarray(np.concatenate([img[:1].repeat(px, 0), img[:-px]], 0))


def test_estimate_flow_finds_a_known_motion():
    """after(x) = before(x + flow): content moved down by 2 px -> flow_y = -2 px at the centre,
    zero at the crop's edges (faded out with the face mask)."""
    before = _texture()
    flow = estimate_flow(before, _shifted_down(before, 2)) * N
    centre = flow[54:74, 54:74]
    assert np.allclose(centre[..., 1].mean(), -2.0, atol=0.4)
    assert abs(centre[..., 0].mean()) < 0.3
    assert np.abs(flow[:3]).max() == 0 and np.abs(flow[:, :3]).max() == 0


def test_warping_by_the_estimated_flow_and_motion_pixels_agree_on_the_sign():
    """Warping a crop by the flow estimated between two crops turns the first into the second."""
    before = _texture(1)
    after = _shifted_down(before, 2)
    moved = warp_photo(before, estimate_flow(before, after) * N, IDENTITY).astype(np.float32)
    c = (slice(50, 78), slice(50, 78))
    assert np.abs(moved[c] - after[c].astype(np.float32)).mean() < 0.4 * np.abs(
        before[c].astype(np.float32) - after[c]).mean()
    # motion_pixels: fractions of the side -> pixels at any size, capped, faded at the edges
    field = np.zeros((32, 32, 2), np.float32)
    field[..., 1] = 0.5  # far beyond the cap
    px = motion_pixels(field, 256, limit=0.05)
    assert px[128, 128, 1] == pytest.approx(0.05 * 256 * face_mask(256)[128, 128], rel=1e-4)
    assert px[0, 0, 1] == 0


def test_warp_photo_moves_only_the_face_and_keeps_the_rest_byte_identical():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[:] = _texture(2, 400)[:300]
    matrix = np.array([[1.0, 0, -100], [0, 1.0, -80]])  # photo -> crop: a 128 px square at (100, 80)
    flow = np.zeros((N, N, 2), np.float32)
    flow[..., 1] = -2.0 * face_mask(N)  # the face's content moves 2 px down
    out = warp_photo(photo, flow, matrix)
    outside = np.ones(photo.shape[:2], bool)
    outside[80:80 + N, 100:100 + N] = False
    assert np.array_equal(out[outside], photo[outside])
    centre = (slice(80 + 54, 80 + 74), slice(100 + 54, 100 + 74))
    above = (slice(80 + 52, 80 + 72), slice(100 + 54, 100 + 74))
    assert np.abs(out[centre].astype(int) - photo[above]).mean() < 2
    assert np.array_equal(warp_photo(photo, np.zeros_like(flow), matrix), photo)


def _toy_cache(tmp_path, people: int = 3):
    """A training cache where every person's 'surprise' is their neutral crop moved down 2 px
    and 'happiness' the same crop moved right 2 px."""
    crops, rows = [], []
    for p in range(people):
        neutral = _texture(10 + p)
        for expr, img in (("neutral", neutral), ("surprise", _shifted_down(neutral, 2)),
                          ("happiness", np.ascontiguousarray(np.concatenate([neutral[:, :1].repeat(2, 1),
                                                                              neutral[:, :-2]], 1)))):
            rows.append({"row": len(crops), "dataset": "taiwanese", "person": f"p{p}", "expression": expr,
                         "age": -1, "gender": "", "view": 1, "split": "train", "source": f"x/{p}{expr}.jpg"})
            crops.append(img)
    return write_cache(tmp_path, crops, rows)


def test_motion_templates_from_a_toy_cache(tmp_path):
    from stoic_cli.train.data import load_cache
    from stoic_cli.train.motion import add_motion, motion_templates

    cache = _toy_cache(tmp_path)
    crops, labels = load_cache(cache)
    templates = motion_templates(crops, labels)
    assert set(templates) == {"surprise", "smile"}
    down, n = templates["surprise"]
    assert n == 3 and down.shape == (32, 32, 2)
    assert down[14:18, 14:18, 1].mean() * N == pytest.approx(-2.0, abs=0.4)
    right = templates["smile"][0]
    assert right[14:18, 14:18, 0].mean() * N == pytest.approx(-2.0, abs=0.4)
    # add_motion writes both into an attributes.json, leaving the directions alone
    path = tmp_path / "attributes.json"
    table = {"format": 1, "attributes": {"surprise": {"direction": [1.0], "min": -1, "max": 1},
                                         "age": {"direction": [2.0], "min": -30, "max": 30}}}
    path.write_text(json.dumps(table))
    assert add_motion(path, cache) == {"surprise": 3}
    written = json.loads(path.read_text())
    assert written["attributes"]["surprise"]["direction"] == [1.0]
    assert np.asarray(written["attributes"]["surprise"]["motion"]).shape == (32, 32, 2)
    assert "motion" not in written["attributes"]["age"]


def test_attribute_motion_adds_up_and_transfer_scales_it():
    up = np.zeros((4, 4, 2), np.float32)
    up[..., 1] = 0.01
    attrs = {"surprise": Attribute("surprise", np.zeros(2, np.float32), -1, 1, "", "", up),
             "smile": Attribute("smile", np.zeros(2, np.float32), -1, 1, "", "", 2 * up),
             "age": Attribute("age", np.zeros(2, np.float32), -30, 30, "years", "")}
    assert np.allclose(attribute_motion(attrs, {"surprise": 0.5, "smile": 1.0, "age": 10}), 2.5 * up)
    assert attribute_motion(attrs, {"age": 10}) is None
    assert np.allclose(transfer_edit(np.zeros((1, 2)), up, 0.5).motion, 0.5 * up)
    assert transfer_edit(np.zeros((1, 2)), None, 1.0).motion is None
    table = {"attributes": {"surprise": {"direction": [0, 0], "min": -1, "max": 1, "motion": up.tolist()}}}
    from stoic_cli.latent import load_attributes
    assert np.allclose(load_attributes(table)["surprise"].motion, up)


def test_train_motion_command_says_what_is_missing(tmp_path):
    from typer.testing import CliRunner

    from stoic_cli.cli import app

    result = CliRunner().invoke(app, ["train", "motion", "--attributes", str(tmp_path / "nope.json"),
                                      "--cache", str(tmp_path)])
    assert result.exit_code == 2
    assert "nope.json not found" in result.output


def test_shipped_models_carry_motion_for_expressions_and_jobs_that_use_it(shipped_models, detector):
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    models = FaceModels(shipped_models)
    table = models.attribute_table()
    for name in ("smile", "surprise", "sad", "angry", "disgust", "fear"):
        assert table[name].motion is not None and table[name].motion.shape == (32, 32, 2)
    assert table["age"].motion is None and table["gender"].motion is None
    # surprise drops the jaw: the lower face's pixels come from above (negative y)
    surprise = table["surprise"].motion * 128
    assert surprise[26:29, 12:20, 1].mean() < -0.5
    assert Pipeline(models, detector, job="edit").motion_gain == 1.0
    assert 0 < Pipeline(models, detector, job="transfer").motion_gain <= 1.0
    assert Pipeline(models, detector, job="neutralize").motion_gain == 0.0


def test_motion_moves_the_photos_face_and_nothing_else(shipped_models, detector, london_rgb):
    """An edit that leaves the codes alone but carries a motion: with motion_gain 0 the photo
    comes back byte-identical, with 1 the face moves (the dropped jaw) and the background and
    hair outside the crop stay byte-identical."""
    from stoic_cli.images import Photo
    from stoic_cli.latent import Edit
    from stoic_cli.models import FaceModels
    from stoic_cli.pipeline import Pipeline

    models = FaceModels(shipped_models)
    rgb = london_rgb["005_neutral.jpg"]
    photo = Photo(rgb)
    edit = Edit(lambda z, zn: z, models.attribute_table()["surprise"].motion)
    still = Pipeline(models, detector, motion_gain=0.0).run(photo, edit)
    assert np.array_equal(still.rgb, rgb)
    moved = Pipeline(models, detector, motion_gain=1.0).run(photo, edit)
    diff = np.abs(moved.rgb.astype(int) - rgb).max(axis=2)
    assert diff.max() > 20
    ys, xs = np.nonzero(diff)
    face = moved.faces[0].face
    (x0, y0), (x1, y1) = face.landmarks.min(0), face.landmarks.max(0)
    span = x1 - x0
    assert xs.min() > x0 - 1.5 * span and xs.max() < x1 + 1.5 * span
    assert not np.array_equal(moved.faces[0].edited_crop, still.faces[0].edited_crop)
