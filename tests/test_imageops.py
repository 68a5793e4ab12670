"""The numpy image operations of the mouth's post-steps (stoic_cli.render.imageops) against
known answers: the editing path has no OpenCV to lean on."""
import cv2
import numpy as np

from stoic_cli.render.imageops import any_within, blur, close, components, grey, poisson_blend, redness, remap


def test_redness_ranks_lips_over_skin_over_teeth():
    lip, skin, teeth = (170, 60, 70), (200, 150, 120), (235, 230, 215)
    a = redness(np.array([[lip, skin, teeth]], np.uint8))[0]
    assert a[0] > a[1] > a[2]
    assert abs(float(a[2])) < 5 and 35 < float(a[0]) < 60  # near-neutral teeth; CIELAB a* of a lip red
    assert np.allclose(grey(np.array([[[255, 0, 0]]], np.uint8)), 0.299 * 255)


def test_any_within_looks_the_right_way_and_no_further():
    m = np.zeros((10, 1), bool)
    m[5] = True
    above, below = any_within(m, 2, above=True)[:, 0], any_within(m, 2, above=False)[:, 0]
    assert np.flatnonzero(above).tolist() == [6, 7]  # rows with the True row within 2 above
    assert np.flatnonzero(below).tolist() == [3, 4]


def test_close_bridges_a_gap_and_keeps_the_outline():
    m = np.zeros((7, 14), bool)
    m[2:5, 2:6] = True
    m[2:5, 7:12] = True  # one column of gap
    closed = close(m)
    assert closed[2:5, 2:12].all(), "the gap is bridged"
    assert np.array_equal(closed[:, :6], m[:, :6]) and np.array_equal(closed[:, 7:], m[:, 7:])


def test_components_labels_and_measures_each_blob():
    m = np.zeros((9, 9), bool)
    m[1:3, 1:4] = True  # 2 x 3
    m[5:9, 6] = True  # 4 x 1
    m[4, 5] = True  # touches the second blob diagonally
    labels, stats = components(m)
    assert sorted(stats) == sorted([(1, 1, 3, 2, 6), (5, 4, 2, 5, 5)])
    assert labels[1, 1] != labels[6, 6] and labels[4, 5] == labels[8, 6] and labels[0, 0] == 0
    assert components(np.zeros((3, 3), bool))[1] == []


def test_remap_reads_where_told():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:20, 0:30].astype(np.float32)
    assert np.allclose(remap(img, xs, ys), img)
    assert np.allclose(remap(img, xs + 1, ys)[:, :-1], img[:, 1:])


def test_poisson_blend_keeps_the_sources_detail_in_the_targets_tone():
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:60, 0:80].astype(np.float32)
    target = np.repeat((100 + 0.5 * xs)[..., None], 3, -1)  # a lit gradient
    detail = blur(rng.normal(0, 20, (60, 80)), 1.0)[..., None].repeat(3, -1)
    source = 180 + detail  # far brighter, with texture
    inside = ((xs - 40) / 20) ** 2 + ((ys - 30) / 12) ** 2 <= 1
    out = poisson_blend(source, target, inside)
    assert np.array_equal(out[~inside], target[~inside]), "the target outside"
    # The texture stays: the difference from the source inside is smooth (harmonic).
    correction = (out - source)[..., 0]
    lap = 4 * correction[1:-1, 1:-1] - correction[:-2, 1:-1] - correction[2:, 1:-1] - correction[1:-1, :-2] - correction[1:-1, 2:]
    core = inside[1:-1, 1:-1] & ~close(~inside)[1:-1, 1:-1]
    assert np.abs(lap[core]).max() < 0.5
    # And the tone is the target's: near the border the result meets the target.
    ring = inside & ~(((xs - 40) / 18) ** 2 + ((ys - 30) / 10) ** 2 <= 1)
    assert np.abs(out - target)[ring].mean() < 0.25 * np.abs(source - target)[ring].mean()
