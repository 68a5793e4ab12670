"""Closing the lips after rendering (stoic_cli.render.lips): the interior is found between red
lips, the rows read skip it, and the closing composes with the renderer's motion."""
import numpy as np

from stoic_cli.render.lips import LipGeometry, close_lips, closing, interior_mask, raise_corners
from stoic_cli.render.pasteback import render_face

SIZE = 256
IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
SKIN, LIP, TEETH, SEAM = (200, 150, 120), (170, 60, 70), (235, 230, 215), (60, 30, 30)


def closing_rows(crop: np.ndarray, amount: float = 1.0):
    """The rows each output pixel reads (lips.closing's), or None where nothing closes."""
    found = closing(crop, amount)
    return None if found is None else found.rows


def mouth(gap_rows: int, seed: int = 0) -> np.ndarray:
    """A skin-coloured crop with textured red lips around y = 0.68 and `gap_rows` of white
    teeth between them (0: the lips meet at a dark one-row seam)."""
    rng = np.random.default_rng(seed)
    crop = np.empty((SIZE, SIZE, 3), np.float32)
    crop[:] = SKIN
    y = int(0.68 * SIZE)
    x0, x1 = int(0.40 * SIZE), int(0.60 * SIZE)
    lip = 8
    top = y - gap_rows // 2
    crop[top - lip:top, x0:x1] = LIP
    if gap_rows:
        crop[top:top + gap_rows, x0 + 4:x1 - 4] = TEETH
        crop[top:top + gap_rows, x0:x0 + 4] = LIP
        crop[top:top + gap_rows, x1 - 4:x1] = LIP
        crop[top + gap_rows // 2, x0 + 4:x1 - 4] = SEAM  # the dark gap between upper and lower teeth
    else:
        crop[top - 1, x0:x1] = SEAM
    crop[top + gap_rows:top + gap_rows + lip, x0:x1] = LIP
    crop += rng.normal(0, 4, crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


def test_teeth_between_lips_are_the_interior_and_nothing_else():
    crop = mouth(12)
    inside = interior_mask(crop)
    y = int(0.68 * SIZE)
    assert inside[y, SIZE // 2], "the teeth's middle is inside"
    rows, cols = np.nonzero(inside)
    assert rows.min() >= y - 6 - 2 and rows.max() <= y + 6 + 1  # the teeth band, one row grown
    assert cols.min() >= int(0.40 * SIZE) and cols.max() < int(0.60 * SIZE)
    assert not inside[: int(0.58 * SIZE)].any(), "nothing above the mouth (nose, shadows)"


def test_what_a_dark_ring_encloses_is_inside_too():
    """A wide-open mouth: a tongue (as red as the lips) inside a ring of the dark inside; the
    ring alone is found by colour, and the tongue between its rows must close with it."""
    crop = mouth(14).astype(np.float32)
    top = int(0.68 * SIZE) - 7
    x0, x1 = int(0.40 * SIZE) + 4, int(0.60 * SIZE) - 4
    crop[top:top + 14, x0:x1] = (45, 40, 40)  # the dark inside, not red
    crop[top + 3:top + 12, x0 + 3:x1 - 3] = LIP  # the tongue
    inside = interior_mask(np.clip(crop, 0, 255).astype(np.uint8))
    assert inside[top + 3:top + 12, SIZE // 2].all(), "the tongue is inside"
    assert inside[top + 7, x0 + 3:x1 - 3].all()
    assert not inside[: int(0.58 * SIZE)].any()


def test_an_open_smiles_dark_corners_are_inside_too():
    """The shadow beside the teeth at each corner is as red as the lips around it; it is still
    the mouth's inside (closing without it left a dark dot at each corner)."""
    crop = mouth(12).astype(np.float32)
    top = int(0.68 * SIZE) - 6
    x0, x1 = int(0.40 * SIZE), int(0.60 * SIZE)
    for cols in (slice(x0, x0 + 4), slice(x1 - 4, x1)):
        crop[top + 2:top + 10, cols] = (45, 12, 16)  # dark, and red
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    inside = interior_mask(crop)
    assert inside[top + 5, x0 + 1] and inside[top + 5, x1 - 2], "the dark corners are inside"
    assert not inside[top - 4, x0 + 1] and not inside[top + 16, x0 + 1], "the lips around them are not"


def test_a_highlight_on_the_lower_lip_is_not_an_interior():
    """Less red than the lips and between lip rows, but beginning below the corners' line: a
    closed mouth's shiny lower lip, which closing would pull up with the chin."""
    crop = mouth(0).astype(np.float32)
    y = int(0.68 * SIZE)
    crop[y + 4:y + 7, int(0.43 * SIZE):int(0.57 * SIZE)] = (225, 200, 200)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    assert not interior_mask(crop).any()
    assert interior_mask(crop, LipGeometry(interior_top=(0.0, 1.0))).any(), "found without the rule"
    assert closing_rows(crop) is None


def test_closed_lips_are_left_alone():
    assert closing_rows(mouth(0)) is None
    crop = mouth(12)
    assert closing_rows(crop, amount=0.0) is None


def test_closing_reads_lips_instead_of_teeth():
    crop = mouth(12)
    source = closing_rows(crop)
    assert source is not None
    x = SIZE // 2
    read = source[:, x]
    assert np.all(np.diff(source, axis=0) > 0), "rows read stay in order (they may jump, never fold back)"
    teeth_rows = np.flatnonzero(crop[:, x].astype(int).sum(1) > 600)
    # After closing at most two output rows read teeth (the seam), where twelve did.
    reads_teeth = [r for r in range(SIZE) if teeth_rows.min() - 0.5 <= read[r] <= teeth_rows.max() + 0.5]
    assert len(reads_teeth) <= 3, reads_teeth
    # Far from the mouth every row reads itself.
    assert np.allclose(read[:100], np.arange(100)) and np.allclose(read[-20:], np.arange(SIZE - 20, SIZE))
    assert np.allclose(source[:, :60], np.arange(SIZE)[:, None])


def test_half_closing_leaves_more_of_the_interior():
    crop = mouth(12)
    full, half = closing_rows(crop, 1.0), closing_rows(crop, 0.5)
    x = SIZE // 2
    jump = lambda s: float(np.max(np.diff(s[:, x])))  # rows skipped at the seam
    assert 1.0 < jump(half) < jump(full)


def test_close_lips_composes_with_the_rendering():
    """Rendering with the composed parts equals rendering, then reading the closing's rows."""
    import cv2

    crop = mouth(12, seed=1)
    rng = np.random.default_rng(2)
    motion = np.zeros((SIZE, SIZE, 2), np.float32)
    motion[..., 0] = cv2.GaussianBlur(rng.normal(0, 0.004, (SIZE, SIZE)).astype(np.float32), (0, 0), 12)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[20:60, 100:150] = 0.5  # a fill far from the mouth stays
    fill = np.full((SIZE, SIZE, 3), 90, np.float32)
    motion2, mask2, fill2 = close_lips(crop, motion, mask, fill)
    assert np.allclose(mask2[20:60, 100:150], 0.5, atol=1e-4)
    closed = render_face(crop, motion2, mask2, fill2, IDENTITY).astype(np.float32)
    rendered = render_face(crop, motion, mask, fill, IDENTITY)
    source = closing_rows(rendered)
    xs = np.broadcast_to(np.arange(SIZE, dtype=np.float32)[None], (SIZE, SIZE))
    expected = cv2.remap(rendered, np.ascontiguousarray(xs), source, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    face = slice(60, 200)
    # Composition resamples twice where the direct route resamples once: small differences
    # only, and none in the teeth's colour.
    assert np.abs(closed[face, face] - expected[face, face]).mean() < 3
    y, x = int(0.68 * SIZE), SIZE // 2
    column = closed[y - 12:y + 12, x].sum(1)
    assert (column > 600).sum() <= 1, "at most a row of teeth left on the mouth's middle column"
    assert column.min() < 250, "the seam shows the interior's dark gap"


def test_the_closed_lips_seam_is_redrawn_without_teeth_and_shaded():
    """Where the closed lips meet, the jump in rows read would be spread by the paste-back over
    the teeth: the band there is drawn from the lip colours beside it, darker in the middle."""
    crop = mouth(12, seed=3)
    motion = np.zeros((SIZE, SIZE, 2), np.float32)
    mask = np.zeros((SIZE, SIZE), np.float32)
    fill = np.zeros((SIZE, SIZE, 3), np.float32)
    motion2, mask2, fill2 = close_lips(crop, motion, mask, fill)
    closed = render_face(crop, motion2, mask2, fill2, IDENTITY).astype(np.float32)
    y, x0, x1 = int(0.68 * SIZE), int(0.40 * SIZE), int(0.60 * SIZE)
    mouth_rows = closed[y - 16:y + 12, x0:x1]
    assert (mouth_rows.sum(-1) > 600).sum() == 0, "no teeth left anywhere between the corners"
    middle = closed[y - 16:y + 12, SIZE // 2].sum(1)
    line = int(np.argmin(middle))
    assert mask2[y - 16 + line, SIZE // 2] > 0.9, "the darkest row is the drawn seam"
    lip = np.median(middle[np.abs(np.arange(middle.size) - line) >= 4][middle[np.abs(np.arange(middle.size) - line) >= 4] < 450])
    assert 0.35 * lip < middle[line] < 0.8 * lip, "a shadow, darker than the lips but not black"
    far = np.zeros((SIZE, SIZE), bool)
    far[:120] = True
    assert np.all(mask2[far] == 0), "nothing is drawn away from the mouth"


def test_a_partial_closing_draws_no_seam_over_the_interior_it_leaves():
    crop = mouth(12, seed=3)
    zero = np.zeros((SIZE, SIZE, 2), np.float32)
    motion2, mask2, fill2 = close_lips(crop, zero, np.zeros((SIZE, SIZE), np.float32),
                                       np.zeros((SIZE, SIZE, 3), np.float32), amount=0.5)
    closed = render_face(crop, motion2, mask2, fill2, IDENTITY).astype(np.float32)
    y = int(0.68 * SIZE)
    assert (closed[y - 16:y + 12, SIZE // 2].sum(1) > 600).sum() >= 3, "half the teeth still show"
    assert mask2[y - 16:y + 12, SIZE // 2].max() < 0.05, "and nothing is drawn over them"


def test_no_lips_to_be_found_leaves_the_rendering_alone():
    """A greyscale photo has no red lips to find: the renderer's fill stays over the mouth."""
    import cv2

    grey = cv2.cvtColor(cv2.cvtColor(mouth(12), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    motion = np.zeros((SIZE, SIZE, 2), np.float32)
    mask = np.full((SIZE, SIZE), 0.5, np.float32)
    fill = np.full((SIZE, SIZE, 3), 90, np.float32)
    motion2, mask2, fill2 = close_lips(grey, motion, mask, fill)
    assert motion2 is motion and mask2 is mask and fill2 is fill
    _, mask3, _ = close_lips(mouth(12), motion, mask, fill)
    lips = [int(0.68 * SIZE) + dy for dy in (2, 4)]  # the closed lower lip, below the redrawn seam
    assert (mask3[lips, SIZE // 2] < 0.05).all(), "with lips found, the fill stays off them"



def test_a_smile_edit_keeps_the_fill_off_the_mouth_and_raises_its_corners():
    import cv2

    crop = mouth(0)
    motion = np.zeros((SIZE, SIZE, 2), np.float32)
    mask = np.full((SIZE, SIZE), 0.5, np.float32)
    fill = np.full((SIZE, SIZE, 3), 90, np.float32)
    motion2, mask2, _ = raise_corners(crop, motion, mask, fill, height=0.02)
    y, x = int(0.68 * SIZE), SIZE // 2
    assert mask2[y, x] < 0.05 and mask2[int(0.61 * SIZE), int(0.33 * SIZE)] < 0.05, "the fill is kept off the mouth"
    assert abs(mask2[20, 20] - 0.5) < 1e-4, "and only the mouth"
    corner = int(0.41 * SIZE)
    assert motion2[y, corner, 1] * SIZE > 2, "the corners read from below: they rise"
    assert abs(motion2[y, x, 1]) * SIZE < 0.5, "the middle stays"
    grey = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    parts = raise_corners(grey, motion, mask, fill, height=0.02)
    assert parts[0] is motion and parts[1] is mask, "without lips to be found, nothing changes"
