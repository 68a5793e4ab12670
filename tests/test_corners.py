"""Lowering a smile's lifted mouth corners by motion (stoic_cli.render.corners): the lip line is
found between red lips, a lifted one is straightened, and a straight or hanging one is left
alone; a smile edit raises and widens them instead."""
import cv2
import numpy as np

from stoic_cli.render.corners import CornerGeometry, corner_sources, lip_line, raise_sources

SIZE = 256
SKIN, LIP, SEAM = (200, 150, 120), (170, 60, 70), (70, 35, 35)


def curved_mouth(lift: float, seed: int = 0) -> np.ndarray:
    """A skin-coloured crop with red lips whose seam runs through y = 0.68 at the middle and
    `lift` pixels higher at the corners (negative: the corners hang)."""
    rng = np.random.default_rng(seed)
    crop = np.empty((SIZE, SIZE, 3), np.float32)
    crop[:] = SKIN
    x0, x1 = int(0.38 * SIZE), int(0.62 * SIZE)
    middle, half = (x0 + x1) / 2, (x1 - x0) / 2
    for x in range(x0, x1):
        seam = int(round(0.68 * SIZE - lift * ((x - middle) / half) ** 2))
        thick = int(round(7 * (1 - 0.5 * abs(x - middle) / half)))  # lips thin towards the corners
        crop[seam - thick:seam + thick + 1, x] = LIP
        crop[seam, x] = SEAM
    crop += rng.normal(0, 3, crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


def fitted_lift(crop: np.ndarray) -> float:
    cols, rows, weights = lip_line(crop)
    middle, half = (cols.min() + cols.max()) / 2, (cols.max() - cols.min()) / 2
    u = (cols - middle) / half
    k = np.polyfit(u, rows, 2, w=np.sqrt(weights))[0]
    return float(-k)


def test_lip_line_follows_the_seam():
    crop = curved_mouth(8)
    cols, rows, _ = lip_line(crop)
    assert cols.min() <= int(0.40 * SIZE) and cols.max() >= int(0.60 * SIZE) - 1
    middle = rows[np.argmin(np.abs(cols - SIZE / 2))]
    assert abs(middle - 0.68 * SIZE) <= 1
    assert 5 <= fitted_lift(crop) <= 10


def test_straight_and_hanging_lips_are_left_alone():
    assert corner_sources(curved_mouth(0)) is None
    assert corner_sources(curved_mouth(-6)) is None
    assert corner_sources(curved_mouth(8), amount=0.0) is None


def test_a_line_lifted_beyond_belief_is_a_misreading_and_left_alone():
    assert corner_sources(curved_mouth(8)) is not None
    assert corner_sources(curved_mouth(8), geometry=CornerGeometry(most_believed=0.02)) is None


def test_lifted_corners_come_down_and_in():
    crop = curved_mouth(8)
    sources = corner_sources(crop)
    assert sources is not None
    source_x, source_y = sources
    lowered = cv2.remap(crop, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert fitted_lift(lowered) < 0.4 * fitted_lift(crop), "the lip line is nearly straight"
    cols_before, _, _ = lip_line(crop)
    cols_after, _, _ = lip_line(lowered)
    assert np.ptp(cols_after) < np.ptp(cols_before), "the mouth is narrower"
    # Far from the mouth nothing moves, and the motion never folds over.
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    far = (ys < 0.5 * SIZE) | (ys > 0.9 * SIZE) | (xs < 0.2 * SIZE) | (xs > 0.8 * SIZE)
    assert np.abs(source_x - xs)[far].max() < 0.5 and np.abs(source_y - ys)[far].max() < 0.5
    assert (np.diff(source_x, axis=1) > 0).all() and (np.diff(source_y, axis=0) > 0).all()


def test_a_smile_edit_raises_the_corners_and_widens_the_mouth():
    crop = curved_mouth(0)
    height = 0.02
    source_x, source_y = raise_sources(crop, height)
    raised = cv2.remap(crop, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert abs(fitted_lift(raised) - height * SIZE) < 2, "the corners lie the height asked for above the middle"
    cols_before, _, _ = lip_line(crop)
    cols_after, _, _ = lip_line(raised)
    assert np.ptp(cols_after) > np.ptp(cols_before), "the mouth is wider"
    assert (np.diff(source_x, axis=1) > 0).all() and (np.diff(source_y, axis=0) > 0).all()
    # The rise is capped (a misread line moves little), and nothing rises without lips.
    most = CornerGeometry().most_lift
    capped_x, capped_y = raise_sources(crop, 10 * most)
    assert np.abs(capped_y - np.mgrid[0:SIZE, 0:SIZE][0]).max() <= most * SIZE + 0.5
    assert raise_sources(np.full((SIZE, SIZE, 3), SKIN, np.uint8), height) is None


def test_close_lips_lowers_the_corners_only_as_far_as_asked():
    """Neutralize asks for no lowering where the code shows no smile: a neutral mouth's line
    that bends up is then left as it is, while the same line asked to come down does."""
    from stoic_cli.render.lips import close_lips

    crop = curved_mouth(8)
    zero = np.zeros((SIZE, SIZE, 2), np.float32)
    mask, fill = np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE, 3), np.float32)
    kept, _, _ = close_lips(crop, zero, mask, fill, amount=1.0, lowering=0.0)
    lowered, _, _ = close_lips(crop, zero, mask, fill, amount=1.0, lowering=1.0)
    corner, y = int(0.40 * SIZE), int(0.68 * SIZE - 8)
    assert np.abs(kept).max() == 0, "no corner moved"
    assert lowered[y, corner, 1] * SIZE < -2, "asked to, the corners read from above: they come down"
