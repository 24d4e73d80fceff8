"""Files: where paths start (the repository root), reading images, and saving outputs without losing any.

    repo_path("images/astronaut.png")   # a path from the repository root, wherever Python was started
    files.load_image(path, 28, 1)        # -> ((1, 1, 28, 28) tensor in [-1, 1], what was changed)
    files.save_figure(fig, "grid.png")   # -> output/grid.png, or grid_1.png if that exists: nothing is overwritten

Nothing here does diffusion math (src/functions.py) or draws (src/figures.py). torch is imported inside
the functions that need it, so src.run_course can anchor its paths without the 3 s import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def repo_path(*parts):
    """A path from the repository root (an absolute path is kept as it is).

    The root is read at call time, so a test that points PROJECT_ROOT at a copy of the course moves
    every path of every module that asks here.
    """
    path = Path(*parts) if parts else Path()
    return path if path.is_absolute() else PROJECT_ROOT / path


def output_dir():
    """Where saved figures go: output/ at the repository root, or $COURSE_OUTPUT (the tests use a temporary one)."""
    return Path(os.environ["COURSE_OUTPUT"]) if os.environ.get("COURSE_OUTPUT") else repo_path("output")


# --- images in -------------------------------------------------------------------------------------

def image_to_tensor(image, size, channels):
    """A PIL image -> (1, C, size, size) tensor in [-1, 1], and a sentence saying what was changed.

    Any mode is accepted (RGBA, greyscale, palette, 16-bit, EXIF-rotated): it is turned upright,
    converted to the model's channels, centre-cropped to a square and resized.
    """
    import torch
    from PIL import Image, ImageOps

    if channels not in (1, 3):
        raise ValueError(f"channels={channels}: images can be converted to 1 (greyscale) or 3 (RGB) channels only.")
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"first of its {image.n_frames} frames used")
    upright = ImageOps.exif_transpose(image)
    if upright is not image and upright.size != image.size or image.getexif().get(0x0112, 1) != 1:
        notes.append("turned upright from its EXIF orientation")
    image = upright
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit or float greyscale: scale to 8 bits
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        top = arr.max(initial=0)
        peak = 1.0 if image.mode == "F" and top <= 1 else 65535.0 if top > 255 else 255.0
        notes.append(f"{'floating-point' if image.mode == 'F' else '16-bit'} values scaled to 8 bits")
        image = Image.fromarray((arr / peak * 255).clip(0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        # the background that contrasts with what is drawn, so dark ink on a transparent sheet stays visible
        rgba_arr = np.asarray(rgba, dtype=np.float64)
        alpha = rgba_arr[..., 3]
        drawn = (rgba_arr[..., :3].mean(-1) * alpha).sum() / max(alpha.sum(), 1e-9)
        white = drawn < 128 if alpha.sum() > 0 else channels == 3
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if white else (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
        notes.append("transparency flattened onto " + ("white" if white else "black"))
    target = "RGB" if channels == 3 else "L"
    if image.mode != target:
        notes.append(f"converted from {image.mode} to {'RGB' if channels == 3 else 'greyscale'}")
        image = image.convert(target)
    w, h = image.size
    if w != h:
        side = min(w, h)
        image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        notes.append(f"centre-cropped from {w}x{h} to {side}x{side}")
    if image.size != (size, size):
        notes.append(f"resized from {image.size[0]}x{image.size[1]} to {size}x{size}")
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1
    x = torch.from_numpy(arr).reshape(size, size, channels).permute(2, 0, 1).unsqueeze(0)
    note = "; ".join(notes) if notes else "used as it is"
    return x, note


def load_image(path, size, channels):
    """Read an image file (path from the repository root) -> ((1, C, size, size) in [-1, 1], note)."""
    from PIL import Image, UnidentifiedImageError

    path = repo_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image at {path}: give a path to a PNG or JPEG file, from the repository root.")
    try:
        with Image.open(path) as image:
            image.load()
            return image_to_tensor(image, size, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0][:120] if isinstance(e, OSError) and not isinstance(e, UnidentifiedImageError) else ""
        raise ValueError(f"{path.name} is not an image Pillow can read ({type(e).__name__}{': ' + why if why else ''}): "
                         f"use a PNG, JPEG, GIF, BMP, WebP or TIFF file.") from None


# --- images out ------------------------------------------------------------------------------------

def to_uint8(x):
    """(..., C, H, W) in [-1, 1] -> (..., H, W, C) uint8 NumPy array (C = 1 is kept as a last axis)."""
    import torch

    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def to_pil(x):
    """One (C, H, W) or (1, C, H, W) image in [-1, 1] -> a PIL image (greyscale or RGB)."""
    from PIL import Image

    arr = to_uint8(x.reshape(-1, *x.shape[-3:])[0])
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


# --- saving: atomic, never overwriting -------------------------------------------------------------

def save_output(data, name, folder=None):
    """Write bytes to output/<name> without ever overwriting; returns the path written.

    An existing name gets a numeric suffix (grid.png, grid_1.png, ...). The file is written under a
    temporary name and renamed, so an interrupted save never leaves a half-written file behind.
    """
    if not name or name != Path(name).name or name in (".", "..") or "\\" in name:
        raise ValueError(f"{name!r} is not a plain file name such as grid.png: outputs are saved in output/ itself.")
    folder = Path(folder) if folder is not None else output_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=suffix)
    try:
        umask = os.umask(0o22)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make figures private to their author
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        n = 0
        while True:
            path = folder / (name if n == 0 else f"{stem}_{n}{suffix}")
            try:
                os.link(tmp, path)  # atomic, and fails if the name exists: no race, no overwrite
                return path
            except FileExistsError:
                n += 1
            except OSError:  # no hard links on this file system (FAT, some mounts): claim the name, then rename
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    n += 1
                    continue
                try:
                    os.replace(tmp, path)  # atomic: the claimed empty file becomes the whole file at once
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
                return path
    finally:
        Path(tmp).unlink(missing_ok=True)


def figure_bytes(fig, fmt="png", dpi=100):
    """A matplotlib figure rendered to PNG bytes (with no date in the metadata, so reruns match)."""
    import io

    import matplotlib

    fmt = {"jpeg": "jpg", "tif": "tiff"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    # what each writer stamps (version, date) is blanked; jpg/tiff/webp take no metadata argument
    metadata = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
                "svg": {"Creator": None, "Date": None}}.get(fmt)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "course"}):  # svg ids are random otherwise
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", **({"metadata": metadata} if metadata else {}))
    return buf.getvalue()


def save_figure(fig, name, folder=None):
    """Save a matplotlib figure to output/<name> (never overwriting); returns the path."""
    return save_output(figure_bytes(fig, Path(name).suffix[1:].lower() or "png"), name, folder)


def gif_bytes(frames, duration=500, scale=1):
    """An animated GIF (looping) from a list of (C, H, W) images in [-1, 1] (or PIL images); scale enlarges them."""
    import io

    from PIL import Image

    if len(frames) == 0:
        raise ValueError("gif_bytes needs at least one frame.")
    pil = [f if isinstance(f, Image.Image) else to_pil(f) for f in frames]
    if scale != 1:
        pil = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pil]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=duration, loop=0)
    return buf.getvalue()


def save_gif(frames, name, duration=500, scale=1, folder=None):
    """Save an animated GIF of `frames` to output/<name> (never overwriting); returns the path."""
    return save_output(gif_bytes(frames, duration, scale), name, folder)
