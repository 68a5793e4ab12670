"""stoic_cli.face.resample against OpenCV, which the editing path used before and the models were
trained with: every primitive within a few grey levels of cv2 on the London photos, and the
paste-back built on them against the same paste-back written with cv2."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoic_cli.face import resample
from stoic_cli.face.alignment import align_face, alignment_matrix
from stoic_cli.render import pasteback
from stoic_cli.render.pasteback import face_mask, render_face

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT}
PHOTOS = ["005_smiling.jpg", "042_neutral.jpg", "094_smiling.jpg"]


def assert_close(got: np.ndarray, expected: np.ndarray, mean: float = 0.5, most: float = 3) -> None:
    """Within a few grey levels of cv2, which rounds its bilinear weights its own way."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    diff = np.abs(got.astype(np.float64) - expected)
    assert diff.mean() < mean and diff.max() <= most, (diff.mean(), diff.max())


def tilted(size: int, scale: float, shift: float) -> np.ndarray:
    """A photo -> output matrix that rotates, scales and moves part of the output off the photo."""
    a = np.radians(17)
    m = scale * np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]])
    m[:, 2] = [shift, -0.3 * size]
    return m


@pytest.mark.parametrize("border", list(BORDERS))
@pytest.mark.parametrize("name", PHOTOS)
def test_warp_affine_is_cv2s(london_rgb, name, border):
    img = london_rgb[name]
    for scale, size in [(0.6, 256), (1.3, 333), (2.0, 128)]:
        m = tilted(size, scale, 40.0)
        expected = cv2.warpAffine(img, m, (size, size + 7), flags=cv2.INTER_LINEAR, borderMode=BORDERS[border])
        assert_close(resample.warp_affine(img, resample.invert_affine(m), (size, size + 7), border), expected)
    # float data (masks, flows) and the inverse map given as it is (WARP_INVERSE_MAP)
    f = img[..., 1].astype(np.float32) / 255
    expected = cv2.warpAffine(f, m, (200, 150), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=BORDERS[border])
    np.testing.assert_allclose(resample.warp_affine(f, m, (200, 150), border), expected, atol=1e-3)


@pytest.mark.parametrize("border", list(BORDERS))
def test_cubic_sampling_is_cv2s(border):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:20, 0:30].astype(np.float32)
    assert np.array_equal(np.moveaxis(resample.sample_cubic(img, xs, ys, border), 0, -1), img), "pixel centres read exactly"
    mx, my = xs * 1.1 + 0.3, ys * 0.9 + 2.7  # between the taps, and past the border
    expected = cv2.remap(img, mx, my, cv2.INTER_CUBIC, borderMode=BORDERS[border], borderValue=0)
    got = np.moveaxis(resample.sample_cubic(img, mx, my, border), 0, -1)
    assert np.abs(got - expected).max() < 1e-2
    grey = img[..., 0]
    assert np.abs(resample.sample_cubic(grey, mx, my, border) - cv2.remap(grey, mx, my, cv2.INTER_CUBIC,
                  borderMode=BORDERS[border], borderValue=0)).max() < 1e-2


def test_invert_affine_is_cv2s():
    m = tilted(256, 0.37, 12.5)
    np.testing.assert_allclose(resample.invert_affine(m), cv2.invertAffineTransform(m), atol=1e-12)
    assert not resample.invert_affine(np.zeros((2, 3))).any()  # singular: zeros, as cv2


@pytest.mark.parametrize("name", PHOTOS)
def test_a_flow_remap_with_mirrored_border_is_cv2s(london_rgb, name):
    """Pixels read where a smooth displacement says, the region touching the photo's corner so
    that reads fall outside and are mirrored (cv2.remap, BORDER_REFLECT)."""
    img = london_rgb[name]
    yy, xx = np.mgrid[0:220, 0:260].astype(np.float32)
    mx = xx + 6 * np.sin(yy / 17) - 3.5
    my = yy + 5 * np.cos(xx / 23) - 4.25
    expected = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    got = resample.cast(np.moveaxis(resample.sample(img, mx, my, "reflect"), 0, -1), np.uint8)
    assert_close(got, expected)
    assert (mx < 0).any() and (my < 0).any()


@pytest.mark.parametrize("name", PHOTOS)
def test_resize_area_is_cv2s(london_rgb, name):
    img = london_rgb[name]
    for size in [(200, 200), (100, 100), (133, 133), (257, 131), (31, 37), (399, 400)]:  # whole and partial blocks
        expected = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        assert_close(resample.resize_area(img, size), expected)
    big = cv2.resize(img, (2300, 1700), interpolation=cv2.INTER_LINEAR)  # many bands, many taps
    assert_close(resample.resize_area(big, (300, 217)), cv2.resize(big, (300, 217), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError):
        resample.resize_area(img, (401, 10))


def test_warp_area_is_a_warp_then_an_area_resize(london_rgb):
    img = london_rgb["038_smiling.jpg"]
    m = tilted(700, 1.75, -90.0)
    to_source = resample.invert_affine(m)
    expected = resample.resize_area(resample.warp_affine(img, to_source, (700, 700)), (256, 256))
    np.testing.assert_array_equal(resample.warp_area(img, to_source, 700, 256), expected)


@pytest.mark.parametrize("ksize", [3, 5, 11, 21, 33])
def test_gaussian_blur_is_cv2s(ksize):
    rng = np.random.default_rng(ksize)
    image = rng.random((96, 80)).astype(np.float32)
    np.testing.assert_allclose(resample.gaussian_blur(image, ksize), cv2.GaussianBlur(image, (ksize, ksize), 0),
                               atol=1e-6)


def test_face_mask_is_the_one_cv2_made():
    def cv2_mask(size, feather=0.08):  # face_mask as it was written with cv2.GaussianBlur
        cx, cy, rx, ry = pasteback.face_ellipse(size)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        d = np.sqrt(((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2)
        k = max(3, int(size * feather) | 1)
        mask = cv2.GaussianBlur(np.clip((1.0 - d) / feather + 0.5, 0, 1), (k, k), 0)
        ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) - 1.0) / (0.06 * size), 0, 1)
        return mask * np.minimum(ramp[:, None], ramp[None, :])

    for size in (64, 128, 256, 437):
        np.testing.assert_allclose(face_mask(size), cv2_mask(size), atol=1e-6)


def cv2_render_face(image, motion, mask, fill, matrix):
    """render_face as it was written with cv2 (warpAffine into the crop's box, remap, blend), the
    photo read bicubic."""
    size = motion.shape[0]
    face = face_mask(size)
    out = image.copy()
    x0, y0, x1, y1 = pasteback.crop_region(matrix, size, image.shape[:2])
    m = matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)

    def to_photo(a, border=cv2.BORDER_CONSTANT):
        return cv2.warpAffine(a.astype(np.float32), m, (x1 - x0, y1 - y0),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0)

    shift = to_photo(motion * size * face[..., None]) @ np.linalg.inv(matrix[:, :2]).astype(np.float32).T
    moved = np.abs(shift).max(axis=2) > 1e-3
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    src = cv2.remap(out, xx + shift[..., 0], yy + shift[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    out[y0:y1, x0:x1][moved] = src[moved]
    weight = to_photo(mask * face)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = np.clip(np.rint(region * (1 - weight) + to_photo(fill, cv2.BORDER_REPLICATE) * weight), 0, 255)
    hit = weight[..., 0] > 0
    out[y0:y1, x0:x1][hit] = blended.astype(np.uint8)[hit]
    return out


def rendering(size: int, seed: int):
    """A renderer's output with motion and mask that vary over the face."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    motion = np.stack([0.03 * np.sin(7 * yy + seed), 0.04 * np.cos(5 * xx - seed)], axis=-1).astype(np.float32)
    mask = np.clip(np.sin(9 * xx) * np.cos(6 * yy) + 0.2, 0, 1).astype(np.float32)
    fill = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return motion, mask, fill


@pytest.mark.parametrize("name", ["011_smiling.jpg", "094_neutral.jpg"])
def test_render_face_is_the_cv2_one(london_faces, london_rgb, name):
    img = london_rgb[name]
    lm = london_faces[name][0].landmarks
    for size in (256, 128):
        _, matrix = align_face(img, lm, size)
        parts = rendering(size, seed=size)
        expected = cv2_render_face(img, *parts, matrix)
        got = render_face(img, *parts, matrix)
        assert_close(got, expected, mean=0.05)
        assert (got != img).mean() > 0.05


def test_render_face_in_bands_is_the_same(london_faces, london_rgb, monkeypatch):
    """A big photo is rendered a band of rows at a time; pixels that the motion reads from a
    band already rendered still come from the photo as it was."""
    name = "042_smiling.jpg"
    img = london_rgb[name]
    crop, matrix = align_face(img, london_faces[name][0].landmarks, 256)
    motion, mask, fill = rendering(256, seed=3)
    motion[..., 1] += 0.08  # far enough to read across several bands
    whole = render_face(img, motion, mask, fill, matrix)
    monkeypatch.setattr(pasteback, "BAND_PIXELS", 600)
    banded = render_face(img, motion, mask, fill, matrix)
    assert np.array_equal(banded, whole)
    assert (whole != img).any()


def test_alignment_matches_cv2(london_faces, london_rgb):
    """align_face's crop (a native-resolution warp area-averaged down) as cv2 made it."""
    for name in PHOTOS:
        lm = london_faces[name][0].landmarks
        crop, _ = align_face(london_rgb[name], lm, 128)
        big = max(128, round(128 / np.sqrt(abs(np.linalg.det(alignment_matrix(lm, 128)[:, :2])))))
        native = cv2.warpAffine(london_rgb[name], alignment_matrix(lm, big), (big, big), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        assert big > 128  # these faces are shrunk: the warp and the area resize both count
        assert_close(crop, cv2.resize(native, (128, 128), interpolation=cv2.INTER_AREA))
