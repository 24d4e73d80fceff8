"""A student's own image, of any size and mode, becomes a (1, C, size, size) tensor in [-1, 1] for the
model (centre-crop + resize), with a note of what was done; a file that is not an image is one sentence."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from src import files

rng = np.random.default_rng(0)
RGB = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)  # 50 wide, 30 high


def from_file(image, fmt="PNG", **save_args):
    """The image written to and read back from `fmt` bytes, as a student's file would be opened."""
    buf = io.BytesIO()
    image.save(buf, fmt, **save_args)
    buf.seek(0)
    return Image.open(buf)


def check(image, size, channels, *notes):
    x, note = files.image_to_tensor(image, size, channels)
    assert x.shape == (1, channels, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
    for part in notes:
        assert part in note, f"{part!r} missing from note: {note}"
    return x, note


def u16(array):
    return Image.frombytes("I;16", array.shape[::-1], array.astype("<u2").tobytes())


MODES = {  # name: (image, notes for a 28x28 greyscale model)
    "RGB": (Image.fromarray(RGB), ["converted from RGB to greyscale", "centre-cropped from 50x30 to 30x30",
                                   "resized from 30x30 to 28x28"]),
    "RGBA": (Image.fromarray(RGB).convert("RGBA"), ["transparency flattened onto"]),
    "LA": (Image.fromarray(RGB).convert("LA"), ["transparency flattened onto"]),
    "L": (Image.fromarray(RGB).convert("L"), ["centre-cropped"]),
    "1": (Image.fromarray(RGB).convert("1"), ["converted from 1 to greyscale"]),
    "P": (Image.fromarray(RGB).convert("P"), ["converted from P to greyscale"]),
    "P+transparency": (from_file(Image.fromarray(RGB).convert("P"), "PNG", transparency=0),
                       ["transparency flattened onto"]),
    "CMYK": (Image.fromarray(RGB).convert("CMYK"), ["converted from CMYK to greyscale"]),
    "I;16 PNG": (from_file(u16(rng.integers(0, 65536, (30, 50)))), ["16-bit values scaled to 8 bits"]),
    "I (32-bit)": (Image.fromarray(rng.integers(0, 65536, (30, 50)).astype(np.int32)), ["16-bit values scaled"]),
    "F (float 0-1)": (Image.fromarray(rng.random((30, 50)).astype(np.float32)), ["floating-point values scaled"]),
    "animated GIF": (from_file(Image.new("L", (20, 20), 0), "GIF", save_all=True,
                               append_images=[Image.new("L", (20, 20), 255)]), ["first of its 2 frames used"]),
    "1x1": (Image.new("L", (1, 1), 128), ["resized from 1x1 to 28x28"]),
    "1000x3": (Image.new("RGB", (1000, 3), (10, 20, 30)), ["centre-cropped from 1000x3 to 3x3"]),
    "already 28x28 L": (Image.new("L", (28, 28), 0), ["used as it is"]),
}


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)], ids=["grey-28", "rgb-32"])
def test_any_mode_and_size_becomes_the_models_shape(name, channels, size):
    image, notes = MODES[name]
    if channels == 3:  # the conversion notes differ, the shape and range checks do not
        notes = [n for n in notes if "greyscale" not in n and "used as it is" not in n and "resized" not in n]
    check(image, size, channels, *notes)


def test_the_conversion_keeps_the_picture():
    """Greyscale of an RGB photo is its luminance, the crop is the centre, 16-bit is scaled (not clipped)."""
    x, _ = check(Image.fromarray(RGB), 30, 1)
    expected = np.asarray(Image.fromarray(RGB).convert("L"), dtype=np.float32)[:, 10:40] / 127.5 - 1
    assert np.allclose(x[0, 0].numpy(), expected)
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    x, _ = check(from_file(u16(ramp)), 16, 1)
    assert x[0, 0, 0, 0] == -1 and x[0, 0, 0, -1] == 1 and (x[0, 0, 0].diff() > 0).all()


def test_exif_rotated_jpeg_is_turned_upright():
    """A phone photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view)."""
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high as stored
    stored[:, :20] = 255  # left half white
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    photo = from_file(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)
    x, note = check(photo, 20, 3, "turned upright from its EXIF orientation", "centre-cropped from 20x40 to 20x20")
    upright = np.rot90(stored, k=-1)  # what a viewer shows: 20 wide, 40 high, white on top
    expected = upright[10:30].astype(np.float32) / 127.5 - 1
    assert np.abs(x[0].permute(1, 2, 0).numpy() - expected).mean() < 0.1
    _, note = check(from_file(Image.fromarray(stored), "JPEG"), 20, 3)
    assert "EXIF" not in note


@pytest.mark.parametrize("ink, channels", [(0, 1), (0, 3), (255, 1), (255, 3)], ids=["dark-grey", "dark-rgb",
                                                                                  "light-grey", "light-rgb"])
def test_transparent_drawing_stays_visible(ink, channels):
    """Ink on a transparent sheet is flattened onto the background that contrasts with it."""
    sheet = np.zeros((28, 28, 4), np.uint8)
    sheet[8:20, 6:22] = (ink, ink, ink, 255)
    x, note = check(Image.fromarray(sheet), 28, channels, "transparency flattened onto")
    assert x.std() > 0.5, f"the drawing vanished: {note}"


def test_a_file_that_is_not_an_image_is_one_sentence(tmp_path):
    (tmp_path / "notes.png").write_text("this is text, not a PNG")
    with pytest.raises(ValueError) as info:
        files.load_image(tmp_path / "notes.png", 28, 1)
    message = str(info.value)
    assert "notes.png is not an image Pillow can read" in message and "PNG, JPEG" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_truncated_image_is_one_sentence(tmp_path):
    data = from_file(Image.fromarray(RGB)).fp.getvalue()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png is not an image Pillow can read \(OSError: .*truncated"):
        files.load_image(tmp_path / "cut.png", 28, 1)


def test_a_missing_image_and_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image at .*nothing.png.*PNG or JPEG"):
        files.load_image(tmp_path / "nothing.png", 28, 1)
    with pytest.raises(FileNotFoundError, match="No image at"):
        files.load_image(tmp_path, 28, 1)


def test_load_image_reads_real_files_and_closes_them(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "photo.png")
    x, note = files.load_image(tmp_path / "photo.png", 28, 3)
    assert x.shape == (1, 3, 28, 28) and "centre-cropped" in note
    (tmp_path / "photo.png").unlink()  # the file is not held open (Windows would refuse otherwise)


def test_the_courses_own_images_load():
    for path in sorted((files.PROJECT_ROOT / "images").glob("*")):
        check_shape = files.load_image(path, 28, 1)[0].shape
        assert check_shape == (1, 1, 28, 28), path


def test_unsupported_channel_count_is_clear():
    with pytest.raises(ValueError, match=r"channels=4: .*1 \(greyscale\) or 3 \(RGB\)"):
        files.image_to_tensor(Image.fromarray(RGB), 28, 4)
