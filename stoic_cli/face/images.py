"""Reading and writing photos: every odd input becomes upright 8-bit RGB, and goes back out
in the mode it came in (grayscale stays grayscale, alpha is kept) with its metadata (EXIF with
the orientation reset, since it is applied; the ICC profile) and a provenance tag saying that
stoic edited it, how, and with which models."""
from __future__ import annotations

import html
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}  # a GIF: its first frame

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


ORIENTATION, SOFTWARE = 0x0112, 0x0131  # EXIF tags
EXIF_SUB_IFDS = (0x8769, 0x8825)  # the Exif (exposure, date taken) and GPS sub-IFDs
# A TIFF's own layout (size, strips, samples) lives in its tags too; it must not be copied.
TIFF_LAYOUT_TAGS = {254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339}
TAG_KEY = "stoic"  # PNG text chunk / XMP attribute holding the provenance JSON
_XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:stoic="https://github.com/stoic-cli/ns/1.0/" stoic:edit="{}"/>'
        '</rdf:RDF></x:xmpmeta>')
_XMP_TAG = re.compile(rb'stoic:edit="([^"]*)"')


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


def _kept_exif(img: Image.Image) -> Image.Exif | None:
    """The photo's EXIF (camera, date, GPS...) to write back into its edits: the orientation
    reset (it is applied to the pixels), TIFF's own layout tags left out."""
    try:
        exif = img.getexif()
        subs = {ifd: dict(exif.get_ifd(ifd)) for ifd in EXIF_SUB_IFDS if ifd in exif}
    except Exception:  # a damaged EXIF block must not make the photo unreadable
        return None
    kept = Image.Exif()
    for k, v in exif.items():
        if k not in TIFF_LAYOUT_TAGS and k not in EXIF_SUB_IFDS:
            kept[k] = v
    for ifd, values in subs.items():
        kept.get_ifd(ifd).update(values)
    if ORIENTATION in kept:
        kept[ORIENTATION] = 1
    return kept if len(kept) or subs else None


def pil_to_photo(img: Image.Image, path: Path | None = None) -> Photo:
    exif = _kept_exif(img)
    ImageOps.exif_transpose(img, in_place=True)  # phones store sideways pixels plus a rotation tag
    mode = img.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8bit(img)
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A")).copy()
    rgb = _rgb_pixels(img if img.mode == "RGB" else img.convert("RGB"))
    original = "L" if mode in ("L", "LA", "1") else ("CMYK" if mode == "CMYK" else "RGB")
    info = {}
    if img.info.get("icc_profile") and original == "RGB":
        info["icc_profile"] = img.info["icc_profile"]
    if exif is not None:
        info["exif"] = exif
    return Photo(rgb=rgb, path=path, original_mode=original, alpha=alpha, info=info)


BAND_BYTES = 1 << 24


def _rgb_pixels(img: Image.Image) -> np.ndarray:
    """A writable array of an RGB image's pixels, copied a band of rows at a time: the decoded
    image and a second whole-photo copy of its bytes never coexist, and the pipeline may edit
    the array in place (a 12000 px photo then fits its memory budget)."""
    w, h = img.size
    out = np.empty((h, w, 3), np.uint8)
    band = max(1, BAND_BYTES // max(1, 3 * w))
    for y in range(0, h, band):
        out[y:y + band] = np.asarray(img.crop((0, y, w, min(h, y + band))))
    return out


def load_photo(path: str | Path) -> Photo:
    """Load any photo as upright RGB; raise ImageError with a plain message when it can't be used."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    return _open_photo(path, path, path)


def load_photo_bytes(data: bytes, name: str = "stdin") -> Photo:
    """A photo from bytes (`-` on the command line: standard input), with its format kept in
    `info["format"]` so the edit goes back out the same way."""
    import io

    if not data:
        raise ImageError(f"{name}: empty input")
    return _open_photo(io.BytesIO(data), name, None)


def _open_photo(source, name, path: Path | None) -> Photo:
    try:
        with Image.open(source) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(
                    f"{name}: image is {img.width}x{img.height}, larger than the "
                    f"{MAX_PIXELS // 1_000_000} MP stoic accepts; downscale it first")
            img.load()
            photo = pil_to_photo(img, path)
            photo.info["format"] = img.format
            return photo
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: image too large (over twice the {MAX_PIXELS // 1_000_000} MP stoic accepts, "
                         "a decompression bomb or a huge scan); downscale it first") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file stoic can read") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read image ({exc})") from exc


def photo_to_pil(photo: Photo, rgb: np.ndarray | None = None) -> Image.Image:
    rgb = photo.rgb if rgb is None else rgb
    img = Image.fromarray(np.ascontiguousarray(rgb if rgb.dtype == np.uint8 else rgb.astype(np.uint8)), "RGB")
    if photo.original_mode == "L":
        img = img.convert("L")
    if photo.alpha is not None:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
        img.putalpha(Image.fromarray(photo.alpha))
    return img


def _metadata(img: Image.Image, ext: str, photo: Photo, provenance: dict | None) -> dict:
    """Pillow save arguments that carry the input's metadata and the provenance tag."""
    kwargs: dict = {}
    if "icc_profile" in photo.info and img.mode in ("RGB", "RGBA"):
        kwargs["icc_profile"] = photo.info["icc_profile"]
    exif = Image.Exif()
    source = photo.info.get("exif")
    if source is not None:
        for k, v in source.items():
            if k not in EXIF_SUB_IFDS:
                exif[k] = v
        for ifd in EXIF_SUB_IFDS:
            values = source.get_ifd(ifd)
            if values:
                exif.get_ifd(ifd).update(values)
    tag = json.dumps(provenance, sort_keys=True, ensure_ascii=True) if provenance else None
    if tag:
        exif[SOFTWARE] = provenance.get("software", "stoic")
    if len(exif) and ext in (".jpg", ".jpeg", ".png", ".webp"):
        kwargs["exif"] = exif.tobytes()
    if ext in (".tif", ".tiff"):  # TIFF keeps metadata in its own tags (its sub-IFDs are not copied)
        kwargs["tiffinfo"] = {k: v for k, v in exif.items() if k not in EXIF_SUB_IFDS}
    if tag and ext == ".png":
        from PIL.PngImagePlugin import PngInfo
        text = PngInfo()
        text.add_text(TAG_KEY, tag)
        text.add_text("Software", provenance.get("software", "stoic"))
        kwargs["pnginfo"] = text
    elif tag and ext in (".jpg", ".jpeg", ".webp"):
        kwargs["xmp"] = _XMP.format(html.escape(tag, quote=True)).encode()
    elif tag and ext in (".tif", ".tiff"):
        kwargs["tiffinfo"][700] = _XMP.format(html.escape(tag, quote=True)).encode()
    return kwargs


def read_provenance(path: str | Path) -> dict | None:
    """The provenance tag stoic wrote into an image, or None (not stoic's, or unreadable)."""
    try:
        with Image.open(path) as img:
            raw = img.info.get(TAG_KEY)
            if raw is None and isinstance(img.info.get("comment"), bytes) and img.format == "GIF":
                raw = img.info["comment"].decode("ascii", "replace")
            if raw is None:
                xmp = img.info.get("xmp") or (img.tag_v2.get(700) if hasattr(img, "tag_v2") else None)
                match = _XMP_TAG.search(xmp) if isinstance(xmp, bytes) else None
                raw = html.unescape(match.group(1).decode()) if match else None
        tag = json.loads(raw) if raw else None
    except (OSError, ValueError, SyntaxError):
        return None
    return tag if isinstance(tag, dict) else None


def partial_name(out_path: Path) -> Path:
    """A temporary name beside the output, unique to this process and call, and short, so two
    runs writing one folder never share it and a long legal output name still fits."""
    return out_path.with_name(f".stoic-{os.getpid()}-{secrets.token_hex(4)}{out_path.suffix}")


def _encode(photo: Photo, rgb: np.ndarray, ext: str, provenance: dict | None) -> tuple[Image.Image, dict]:
    img = photo_to_pil(photo, rgb)
    kwargs = _metadata(img, ext, photo, provenance)
    if ext in (".jpg", ".jpeg"):
        if img.mode in ("RGBA", "LA"):
            img = img.convert("RGB" if img.mode == "RGBA" else "L")
        kwargs.update(quality=95, subsampling=0)
    return img, kwargs


def save_photo(photo: Photo, rgb: np.ndarray, out_path: str | Path, provenance: dict | None = None) -> Path:
    """Write an edited photo in the input's mode, with the input's metadata and `provenance`.
    Writes to a temporary name first and renames it, so an interrupted batch never leaves a
    half-written file that a rerun would skip, and of two runs writing one output, one wins
    whole."""
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    img, kwargs = _encode(photo, rgb, ext, provenance)
    return _write_atomically(out_path, lambda tmp: img.save(tmp, format=Image.registered_extensions().get(ext),
                                                            **kwargs))


def _write_atomically(out_path: Path, write) -> Path:
    """`write(tmp)` to a temporary name beside `out_path`, then renamed onto it."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(out_path)
    try:
        write(tmp)
        tmp.replace(out_path)
    except BaseException:  # disk full, Ctrl-C: no half-written temporary left behind
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def photo_bytes(photo: Photo, rgb: np.ndarray, provenance: dict | None = None) -> bytes:
    """An edited photo encoded like save_photo, in the format it was read in (BMP and GIF as
    PNG, which can carry the tag): for writing to standard output."""
    import io

    fmt = {"JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif"}.get(photo.info.get("format"), ".png")
    img, kwargs = _encode(photo, rgb, fmt, provenance)
    buffer = io.BytesIO()
    img.save(buffer, format=Image.registered_extensions()[fmt], **kwargs)
    return buffer.getvalue()


def save_rgb(rgb: np.ndarray, out_path: str | Path, provenance: dict | None = None) -> Path:
    """Save a plain RGB array (contact sheets, crops)."""
    return save_photo(Photo(rgb=rgb), rgb, out_path, provenance)


def save_gif(frames: list[np.ndarray], out_path: str | Path, provenance: dict | None = None,
             duration_ms: int = 120) -> Path:
    """An animated GIF that plays the frames forth and back, written like save_photo."""
    imgs = [Image.fromarray(np.ascontiguousarray(f)) for f in frames + frames[-2:0:-1]]
    kwargs = {"comment": json.dumps(provenance, sort_keys=True)} if provenance else {}
    return _write_atomically(Path(out_path), lambda tmp: imgs[0].save(
        tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0, **kwargs))
