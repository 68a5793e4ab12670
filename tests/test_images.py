"""Photo input/output: odd inputs become upright 8-bit RGB, edits go back out in the input's mode,
and unusable files raise ImageError with a message meant for the user."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stoic_cli.face import images
from stoic_cli.face.images import ImageError, Photo, load_photo, save_photo, save_rgb

RED, GREEN, BLUE = (230, 20, 20), (20, 200, 20), (20, 20, 230)


def upright_test_card(w: int = 64, h: int = 96) -> np.ndarray:
    """Portrait card whose orientation and handedness can be read back: red top-left block,
    green top-right block, blue bottom band."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:24, :24] = RED
    a[:24, -24:] = GREEN
    a[-24:, :] = BLUE
    return a


def assert_is_card(rgb: np.ndarray, w: int = 64, h: int = 96) -> None:
    assert rgb.shape == (h, w, 3)
    def near(y, x, colour):
        assert np.abs(rgb[y, x].astype(int) - colour).max() < 30, (y, x, rgb[y, x], colour)
    near(10, 10, RED)
    near(10, w - 10, GREEN)
    near(h - 10, w // 2, BLUE)
    near(h // 2, w // 2, (128, 128, 128))


def save_with_orientation(stored: np.ndarray, orientation: int, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation, k", [(6, 1), (8, -1), (3, 2), (1, 0)])
def test_exif_orientation_gives_upright_pixels(tmp_path, orientation, k):
    # A camera held sideways stores the picture rotated and records how to turn it back:
    # tag 6 = stored 90 degrees counter-clockwise (view needs a clockwise turn), 8 = the opposite.
    card = upright_test_card()
    stored = np.ascontiguousarray(np.rot90(card, k=k))
    path = tmp_path / f"o{orientation}.jpg"
    save_with_orientation(stored, orientation, path)
    with Image.open(path) as raw:
        assert raw.getexif().get(0x0112) == orientation
        assert raw.size == (stored.shape[1], stored.shape[0])
    photo = load_photo(path)
    assert_is_card(photo.rgb)
    assert photo.rgb.dtype == np.uint8 and photo.rgb.flags["C_CONTIGUOUS"]


def test_saved_edit_of_rotated_photo_is_upright_and_has_no_stale_orientation(tmp_path):
    card = upright_test_card()
    src = tmp_path / "side.jpg"
    save_with_orientation(np.ascontiguousarray(np.rot90(card, k=1)), 6, src)
    photo = load_photo(src)
    out = save_photo(photo, photo.rgb, tmp_path / "side_neutral.jpg")
    # Viewers apply the tag again: the saved file must not carry the old rotation.
    with Image.open(out) as saved:
        assert saved.getexif().get(0x0112, 1) == 1
    assert_is_card(load_photo(out).rgb)


def test_grayscale_in_grayscale_out(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    src = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(src)
    photo = load_photo(src)
    assert photo.original_mode == "L"
    assert photo.rgb.shape == (32, 64, 3)
    assert (photo.rgb == gray[..., None]).all()  # all three channels carry the grey
    edited = photo.rgb.copy()
    edited[:, :8] = 255
    out = save_photo(photo, edited, tmp_path / "gray_neutral.png")
    with Image.open(out) as img:
        assert img.mode == "L"
        back = np.asarray(img)
    expected = gray.copy()
    expected[:, :8] = 255
    np.testing.assert_array_equal(back, expected)
    # and as JPEG too (no alpha, still one channel)
    with Image.open(save_photo(photo, edited, tmp_path / "gray_neutral.jpg")) as img:
        assert img.mode == "L"


def test_rgba_keeps_alpha(tmp_path):
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = np.arange(50, dtype=np.uint8)[None, :] * 5
    rgba[..., 3] = np.linspace(0, 255, 40).astype(np.uint8)[:, None]
    src = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(src)
    photo = load_photo(src)
    assert photo.rgb.shape == (40, 50, 3)
    np.testing.assert_array_equal(photo.alpha, rgba[..., 3])
    np.testing.assert_array_equal(photo.rgb, rgba[..., :3])
    out = save_photo(photo, photo.rgb, tmp_path / "cutout_neutral.png")
    with Image.open(out) as img:
        assert img.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(img), rgba)
    # JPEG cannot hold alpha: the colours are written, not an error
    with Image.open(save_photo(photo, photo.rgb, tmp_path / "cutout_neutral.jpg")) as img:
        assert img.mode == "RGB"


def test_grayscale_with_alpha(tmp_path):
    la = np.stack([np.full((20, 30), 90, np.uint8), np.full((20, 30), 77, np.uint8)], -1)
    src = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(src)
    photo = load_photo(src)
    assert photo.original_mode == "L"
    assert (photo.alpha == 77).all()
    with Image.open(save_photo(photo, photo.rgb, tmp_path / "la_out.png")) as img:
        assert img.mode == "LA"
        np.testing.assert_array_equal(np.asarray(img), la)


def test_palette_with_transparency_keeps_alpha(tmp_path):
    p = Image.new("P", (16, 16), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    p.paste(1, (0, 0, 8, 16))
    src = tmp_path / "pal.png"
    p.save(src, transparency=1)
    photo = load_photo(src)
    assert (photo.rgb[:, 8:] == (255, 0, 0)).all()
    assert (photo.alpha[:, :8] == 0).all() and (photo.alpha[:, 8:] == 255).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = np.zeros((24, 24, 3), np.uint8)
    rgb[:, :12] = (200, 50, 20)
    rgb[:, 12:] = (30, 90, 220)
    src = tmp_path / "print.jpg"
    Image.fromarray(rgb).convert("CMYK").save(src, quality=95)
    with Image.open(src) as raw:
        assert raw.mode == "CMYK"
    photo = load_photo(src)
    assert photo.rgb.shape == (24, 24, 3) and photo.rgb.dtype == np.uint8
    assert np.abs(photo.rgb[12, 4].astype(int) - (200, 50, 20)).max() < 12
    assert np.abs(photo.rgb[12, 20].astype(int) - (30, 90, 220)).max() < 12
    with Image.open(save_photo(photo, photo.rgb, tmp_path / "print_neutral.jpg")) as img:
        assert img.mode == "RGB"


def test_16bit_png_becomes_8bit(tmp_path):
    values = np.array([[0, 257, 257 * 128, 65535], [1000, 30000, 50000, 65000]], np.uint16)
    src = tmp_path / "scan16.png"
    Image.fromarray(values).save(src)
    with Image.open(src) as raw:
        assert raw.mode.startswith("I")  # a real 16-bit file, not already 8-bit
    photo = load_photo(src)
    assert photo.rgb.dtype == np.uint8
    assert photo.original_mode == "L"
    expected = np.rint(values / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(photo.rgb[..., 0], expected)
    np.testing.assert_array_equal(photo.rgb[..., 2], expected)
    assert photo.rgb[0, 3, 0] == 255 and photo.rgb[0, 2, 0] == 128


def test_garbage_file_is_an_image_error(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a picture\n" * 20)
    with pytest.raises(ImageError) as exc:
        load_photo(bad)
    assert str(bad) in str(exc.value)
    assert "not an image" in str(exc.value)


def test_truncated_jpeg_is_an_image_error(tmp_path, london_paths):
    data = london_paths[0].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError) as exc:
        load_photo(cut)
    assert str(cut) in str(exc.value)


def test_empty_file_is_an_image_error(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png"):
        load_photo(empty)


def test_missing_file_and_folder_are_image_errors(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_photo(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_photo(tmp_path)


def test_too_large_image_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(src)
    assert load_photo(src).width == 300  # fine under the real limit
    monkeypatch.setattr(images, "MAX_PIXELS", 300 * 200 - 1)
    with pytest.raises(ImageError) as exc:
        load_photo(src)
    message = str(exc.value)
    assert "300x200" in message and "downscale" in message


def test_save_writes_a_complete_file_and_no_temporary(tmp_path):
    rgb = upright_test_card()
    out = save_rgb(rgb, tmp_path / "sub" / "card.png")
    assert out == tmp_path / "sub" / "card.png"
    assert [p.name for p in out.parent.iterdir()] == ["card.png"]
    np.testing.assert_array_equal(load_photo(out).rgb, rgb)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    rgb = upright_test_card()
    out = tmp_path / "card_neutral.jpg"
    out.write_bytes(b"previous result")

    def disk_full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\xff\xd8\xff half a jpeg")  # the encoder got this far
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_photo(Photo(rgb=rgb), rgb, out)
    # The previous output is untouched and no half-written file is left behind.
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card_neutral.jpg"]

    out.unlink()
    with pytest.raises(OSError):
        save_photo(Photo(rgb=rgb), rgb, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_outputs_keep_the_metadata_and_carry_the_provenance_tag(tmp_path, ext):
    from stoic_cli.face.images import read_provenance

    src = tmp_path / f"camera{ext}"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS 5D", 6  # make, model, rotated
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"  # when it was taken
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(src, exif=exif.tobytes())
    photo = images.load_photo(src)
    assert photo.rgb.shape == (30, 20, 3)  # the rotation is applied
    tag = {"command": "neutralize", "settings": {"strength": 1.0}, "input": "camera.jpg", "note": "a \"quoted\" <b>"}
    out = images.save_photo(photo, photo.rgb, tmp_path / f"out{ext}", tag)
    assert read_provenance(out) == tag
    with Image.open(out) as img:
        kept = img.getexif()
        assert kept[0x010F] == "Canon" and kept[0x0110] == "EOS 5D"
        assert kept.get(0x0112, 1) == 1  # orientation reset: the pixels are upright now
        if ext != ".tif":  # TIFF keeps its main tags only
            assert kept.get_ifd(0x8769)[0x9003] == "2024:05:01 10:00:00"
        assert img.size == (20, 30)
    assert read_provenance(src) is None  # a camera photo carries no stoic tag


def test_temporary_names_are_unique_and_short(tmp_path):
    out = tmp_path / ("x" * 200 + "_neutral.jpg")
    names = {images.partial_name(out) for _ in range(50)}
    assert len(names) == 50
    assert all(len(n.name) < 40 and n.name.startswith(".") and n.parent == tmp_path for n in names)
    images.save_rgb(np.zeros((8, 8, 3), np.uint8), out)  # a long legal name still works
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_loaded_pixels_are_writable_and_exact_across_bands(tmp_path, monkeypatch):
    from PIL import Image

    from stoic_cli.face import images

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    monkeypatch.setattr(images, "BAND_BYTES", 5 * 23 * 3)  # bands of 5 rows, the last one short
    photo = images.load_photo(tmp_path / "p.png")
    assert photo.rgb.flags.writeable and np.array_equal(photo.rgb, pixels)
