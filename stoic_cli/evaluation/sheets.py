"""The pictures every evaluation shares: contact sheets (rows of input | output | real photo
under a label, worst cases first) and mouth sheets (the same at the mouth, full resolution).

The numbers say how often an edit fails; the sheets show how, so they lead with the worst."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from stoic_cli.face.images import save_rgb

SHEET_HEIGHT = 160
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE, LINE = 0.45, 18


# --------------------------------------------------------------------------- tiles

def face_region(box, shape, margin: float = 0.4) -> tuple[int, int, int, int]:
    """Square around a face box with some hair and chin, for thumbnails (the whole image without
    a box)."""
    h, w = shape[:2]
    if box is None:
        return 0, 0, w, h
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    c, d = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    return (a, b, c, d) if c > a and d > b else (0, 0, w, h)


def thumb(rgb: np.ndarray, region, height: int = SHEET_HEIGHT) -> np.ndarray:
    """`region` (x1, y1, x2, y2) of the image, scaled to `height`."""
    x1, y1, x2, y2 = region
    crop = rgb[y1:y2, x1:x2]
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- choosing rows

def worst_and_best(scores: Sequence[float | None], k: int, unscored: bool = True) -> list[tuple[str, int]]:
    """(tag, row index) for a sheet. When more than 2k rows are scored: the k lowest ("worst",
    lowest first) and the k highest ("best", highest first). Otherwise up to 2k rows with tag "",
    the scored lowest first, followed by the unscored ones when `unscored` (or when nothing is
    scored, so that a sheet never comes out empty while there are rows)."""
    scored = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: scores[i])
    if len(scored) > 2 * k:
        return [("worst", i) for i in scored[:k]] + [("best", i) for i in reversed(scored[-k:])]
    rest = [i for i, v in enumerate(scores) if v is None] if unscored or not scored else []
    return [("", i) for i in (scored + rest)[: 2 * k]]


def worst_first(rows: Iterable[dict], key: str, k: int) -> list[dict]:
    """The k rows with the lowest `key` (rows without one left out), lowest first."""
    return sorted([r for r in rows if r.get(key) is not None], key=lambda r: r[key])[:k]


# --------------------------------------------------------------------------- sheets

def make_sheet(rows: Sequence[Sequence[np.ndarray | None]], path: str | Path, labels: Sequence[str | Sequence[str]],
               titles: Sequence[str] | None = None, height: int = SHEET_HEIGHT, gap: int = 4) -> Path:
    """Contact sheet: each row is a strip of RGB images (e.g. input | output | true neutral)
    scaled to `height`, under its label (a string or a list of lines). `titles` name the columns.
    None in a row leaves a grey tile."""
    strips = []
    for row in rows:
        tiles = [np.full((height, height, 3), 200, np.uint8) if im is None else
                 cv2.resize(np.asarray(im, np.uint8), (max(1, round(im.shape[1] * height / im.shape[0])), height),
                            interpolation=cv2.INTER_AREA) for im in row]
        strips.append(tiles)
    line_sets = [[lab] if isinstance(lab, str) else list(lab) for lab in labels]
    text_w = max((cv2.getTextSize(t, FONT, FONT_SCALE, 1)[0][0] + 2 * gap for ls in line_sets for t in ls), default=0)
    width = max([sum(t.shape[1] + gap for t in s) + gap for s in strips] + [text_w])
    blocks = []
    if titles:
        band = np.full((LINE + gap, width, 3), 255, np.uint8)
        x = gap
        for title, tile in zip(titles, strips[0] if strips else []):
            cv2.putText(band, title, (x, LINE - 4), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
            x += tile.shape[1] + gap
        blocks.append(band)
    for tiles, lines in zip(strips, line_sets + [[]] * (len(strips) - len(line_sets))):
        block = np.full((len(lines) * LINE + gap + height + gap, width, 3), 255, np.uint8)
        for k, text in enumerate(lines):
            cv2.putText(block, text, (gap, (k + 1) * LINE - 4), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
        x, y = gap, len(lines) * LINE + gap
        for tile in tiles:
            block[y:y + height, x:x + tile.shape[1]] = tile
            x += tile.shape[1] + gap
        blocks.append(block)
    return save_rgb(np.concatenate(blocks) if blocks else np.full((height, height, 3), 255, np.uint8), path)


def mouth_strip(judge, images: Sequence[np.ndarray], height: int = 120) -> np.ndarray:
    """Each image's mouth at full resolution (a box of 2 x 1.2 eye distances, from `judge`'s
    68-point landmarks), side by side; black where no face is found."""
    tiles = []
    for img in images:
        marks = judge.landmarks(img)
        if marks is None:
            tiles.append(np.zeros((height, 2 * height, 3), np.uint8))
            continue
        eyes = np.linalg.norm(marks[36:42].mean(0) - marks[42:48].mean(0))
        cx, cy = marks[48:68].mean(0)
        w, h = 1.0 * eyes, 0.6 * eyes
        x0, y0 = int(max(0, cx - w)), int(max(0, cy - h))
        tile = img[y0:int(cy + h), x0:int(cx + w)]
        tiles.append(cv2.resize(tile, (2 * height, height), interpolation=cv2.INTER_CUBIC))
    return np.concatenate(tiles, 1)


def mouth_sheet(judge, rows: Iterable[Sequence[np.ndarray]], path: str | Path) -> Path | None:
    """One mouth strip per row of images (e.g. input | output | real), top to bottom; nothing is
    written without rows."""
    strips = [mouth_strip(judge, images) for images in rows]
    return save_rgb(np.concatenate(strips, 0), path) if strips else None
