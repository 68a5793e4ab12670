"""Reading and writing photos: every odd input becomes upright 8-bit RGB, and goes back out
in the mode it came in (grayscale stays grayscale, alpha is kept)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Pillow refuses images above ~179 MP as a decompression-bomb guard; we allow a bit more
# (a 200 MP panorama is a real photo) and report anything larger as an input error.
MAX_PIXELS = 250_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(Exception):
    """An input photo that cannot be used; the message is meant for the user."""


@dataclass
class Photo:
    """An upright RGB uint8 array plus what is needed to save an edit like the original."""

    rgb: np.ndarray
    path: Path | None = None
    original_mode: str = "RGB"
    alpha: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float images scaled to 8 bits by their actual range type."""
    arr = np.asarray(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = (arr.astype(np.float32) / 257.0)
    elif img.mode == "I":
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = arr.astype(np.float32) * (255.0 / top)
    elif img.mode == "F":
        top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = arr.astype(np.float32) * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def pil_to_photo(img: Image.Image, path: Path | None = None) -> Photo:
    img = ImageOps.exif_transpose(img)  # phones store sideways pixels plus a rotation tag
    mode = img.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8bit(img)
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A")).copy()
    if img.mode == "CMYK":
        rgb = np.asarray(img.convert("RGB"))
    else:
        rgb = np.asarray(img.convert("RGB"))
    original = "L" if mode in ("L", "LA", "1") else ("CMYK" if mode == "CMYK" else "RGB")
    info = {}
    if img.info.get("icc_profile") and original == "RGB":
        info["icc_profile"] = img.info["icc_profile"]
    return Photo(rgb=np.ascontiguousarray(rgb), path=path, original_mode=original, alpha=alpha, info=info)


def load_photo(path: str | Path) -> Photo:
    """Load any photo as upright RGB; raise ImageError with a plain message when it can't be used."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: image is {img.width}x{img.height}, larger than the "
                    f"{MAX_PIXELS // 1_000_000} MP stoic accepts; downscale it first")
            img.load()
            return pil_to_photo(img, path)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file stoic can read") from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from exc


def photo_to_pil(photo: Photo, rgb: np.ndarray | None = None) -> Image.Image:
    rgb = photo.rgb if rgb is None else rgb
    img = Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)), "RGB")
    if photo.original_mode == "L":
        img = img.convert("L")
    if photo.alpha is not None:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
        img.putalpha(Image.fromarray(photo.alpha))
    return img


def save_photo(photo: Photo, rgb: np.ndarray, out_path: str | Path) -> Path:
    """Write an edited photo in the input's mode. Writes to a temporary name first so that an
    interrupted batch never leaves a half-written file that a rerun would skip."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    img = photo_to_pil(photo, rgb)
    ext = out_path.suffix.lower()
    kwargs: dict = {}
    if ext in (".jpg", ".jpeg"):
        if img.mode in ("RGBA", "LA"):
            img = img.convert("RGB" if img.mode == "RGBA" else "L")
        kwargs = {"quality": 95, "subsampling": 0}
    if "icc_profile" in photo.info and img.mode in ("RGB", "RGBA"):
        kwargs["icc_profile"] = photo.info["icc_profile"]
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}")
    fmt = Image.registered_extensions().get(ext)
    try:
        img.save(tmp, format=fmt, **kwargs)
        tmp.replace(out_path)
    except BaseException:  # disk full, Ctrl-C: no half-written temporary left behind
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def save_rgb(rgb: np.ndarray, out_path: str | Path) -> Path:
    """Save a plain RGB array (contact sheets, crops)."""
    return save_photo(Photo(rgb=rgb), rgb, out_path)
