"""The config: config.yaml (or $COURSE_CONFIG) read once, every key checked, returned as a plain dict.

    cfg = load_config()        # validated; unknown keys, wrong types and values out of range are errors

Every mistake a student can make in the file raises CourseError with one sentence that says what was wrong
and what is allowed, before anything slow starts. The checks that need the model's own config files (the
patch must fit its images, the timesteps its schedule) ask src/models.py, which reads only those files.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path

from src.files import repo_path

BUNDLED_MODEL = "models/mnist-ddpm"


class CourseError(Exception):
    """A mistake in the course's inputs, explained in one sentence."""


# --- the config ----------------------------------------------------------------------------------

def _int(lo=None, hi=None):
    def check(v):
        return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)
    return check


def _num(lo=None, hi=None, lo_open=False):
    def check(v):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return False
        return (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    return check


def _list(item_check, min_len=1, max_len=50):
    def check(v):
        return isinstance(v, list) and min_len <= len(v) <= max_len and all(item_check(x) for x in v)
    check.item_check, check.max_len = item_check, max_len  # so a message can say which item is wrong
    return check


def _choice(*choices):
    def check(v):
        return isinstance(v, str) and v in choices
    check.choices = choices  # so a message can offer a near miss
    return check


# key: (default, check, what is allowed). The comments in config.yaml say what each knob does.
SCHEMA = {
    "model": (BUNDLED_MODEL, lambda v: isinstance(v, str) and v.strip() != "",
              "a local folder in diffusers layout (e.g. models/mnist-ddpm) or a hub id such as google/ddpm-celebahq-256"),
    "device": ("auto", _choice("auto", "cpu", "cuda", "mps"), "one of auto, cpu, cuda, mps"),
    "seed": (0, _int(0, 2**32 - 1), "an integer from 0 to 4294967295"),
    "budget_minutes": (10, _num(0.05, 1440), "a number of minutes from 0.05 to 1440 (a day)"),
    "full_settings": (False, lambda v: isinstance(v, bool), "true or false (without quotes)"),
    "num_inference_steps": (50, _int(1, 1000), "an integer from 1 to the model's training steps (1000)"),
    "eta": (0.0, _num(0, 1), "a number from 0 (DDIM) to 1 (DDPM-like)"),
    "guidance_scale": (1.0, _num(0, 20), "a number from 0 to 20 (1 = plain conditional sampling)"),
    "num_samples": (8, _int(1, 64), "an integer from 1 to 64"),
    "class_label": (3, _int(0, 9), "a digit from 0 to 9"),
    "image": ("images/astronaut.png", lambda v: isinstance(v, str) and v.strip() != "",
              "a path, from the repository root, to an image file"),
    "digit_index": (0, _int(0, 999), "an integer from 0 to 999 (one of the 1,000 held-out digits)"),
    "forward_timesteps": ([0, 50, 250, 500, 750, 999], _list(_int(0, 999), 1, 12),
                          "a list of 1 to 12 integers from 0 to the model's training steps - 1"),
    "patch_size": (8, _int(1, 1024), "an integer from 1 to the image size"),
    "patch_x": (10, _int(0, 1023), "an integer from 0 to image size - patch_size"),
    "patch_y": (10, _int(0, 1023), "an integer from 0 to image size - patch_size"),
    "mix_factor": (0.3, _num(0, 1), "a number from 0 (same noise) to 1 (independent noise)"),
    "strengths": ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], _list(_num(0, 1, lo_open=True), 1, 20),
                  "a list of 1 to 20 numbers in (0, 1]"),
    "grid_levels": (10, _int(2, 50), "an integer from 2 to 50"),
    "guidance_scales": ([0.0, 1.0, 3.0, 5.0, 7.0], _list(_num(0, 20), 1, 12), "a list of 1 to 12 numbers from 0 to 20"),
    "sdedit_start_indices": ([1, 3, 5, 7, 10, 20], _list(_int(0, 999), 1, 12),
                             "a list of 1 to 12 integers from 0 to num_inference_steps - 1"),
    "anagram_classes": ([6, 9], _list(_int(0, 9), 2, 2), "two digits from 0 to 9, e.g. [6, 9]"),
    "hybrid_classes": ([1, 8], _list(_int(0, 9), 2, 2), "two digits from 0 to 9, e.g. [1, 8]"),
    "hybrid_sigma": (2.0, _num(0, 10, lo_open=True), "a number in (0, 10] (pixels)"),
    "train_steps": (40, _int(1, 100000), "an integer from 1 to 100000 (1440: the ten-minute recipe in full)"),
}

# COURSE_FAST=1 (CI and the test command): the same notebooks with fewer steps and smaller sweeps
FAST = {"num_inference_steps": 10, "num_samples": 4, "train_steps": 4, "grid_levels": 5}


def config_path():
    """$COURSE_CONFIG if set (tests use it), else config.yaml at the repository root."""
    return repo_path(os.environ.get("COURSE_CONFIG") or "config.yaml")


def is_fast():
    """True when COURSE_FAST=1: the smoke mode CI uses."""
    return os.environ.get("COURSE_FAST", "").strip() not in ("", "0", "false", "False")


class _DuplicateKey(Exception):
    pass


def _yaml_loader():
    """PyYAML's safe loader, with two traps for students removed: a key written twice (the second
    one silently won) is an error, and 1e-3 is a number (YAML 1.1 reads it as text)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise _DuplicateKey(key_node.value, seen[key_node.value], key_node.start_mark.line + 1)
                    seen[key_node.value] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))
    return Loader


def _read_config_file(path):
    """The YAML mapping in `path`, or CourseError with the line to look at."""
    import yaml

    if not path.is_file():
        raise CourseError(f"No config file at {path}: create it (copy the course's config.yaml) or set "
                          f"COURSE_CONFIG to an existing file.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Windows Notepad's byte-order mark
    except UnicodeDecodeError as e:
        raise CourseError(f"{path.name} is not UTF-8 text (byte {e.start} cannot be read): save it as UTF-8 "
                          f"in your editor.") from None
    try:
        raw = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        key, first, second = e.args
        raise CourseError(f"`{key}` appears twice in {path.name} (lines {first} and {second}): keep one, "
                          f"otherwise the second silently wins.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None)
        why = f" ({problem})" if problem else ""
        tabs = " and use spaces, not tabs," if "\t" in text else ""
        raise CourseError(f"{path.name} is not valid YAML{where}{why}: check the indentation{tabs} and the "
                          f"`key: value` form.") from None
    if raw is None:
        raise CourseError(f"{path.name} is empty: it needs at least `model:`; copy the course's config.yaml.")
    if not isinstance(raw, dict):
        raise CourseError(f"{path.name} must be a list of `key: value` lines, not a {type(raw).__name__}.")
    return raw


def _show(value, limit=80):
    """repr(value), shortened for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...]" if isinstance(value, list) else text[:limit] + "..."


DEVICE_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "apple": "mps", "metal": "mps", "m1": "mps", "m2": "mps"}


def _bad_value(key, value, allowed, name):
    """The sentence for a value that fails its SCHEMA check (which item of a list, a near miss)."""
    hint = ""
    check = SCHEMA[key][1]
    if isinstance(value, list) and value and getattr(check, "item_check", None):
        bad = [x for x in value if not check.item_check(x)]
        if bad and len(value) <= check.max_len:
            hint = f" ({_show(bad[0])} is not)"
    if isinstance(value, str) and getattr(check, "choices", None):
        word = value.strip().lower()
        word = DEVICE_ALIASES.get(word.split(":")[0], word) if key == "device" else word
        close = difflib.get_close_matches(word, check.choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    if isinstance(value, str) and _is_number(value):
        hint = " (it is text in quotes: write the number without quotes)"
    return f"`{key}` in {name} is {_show(value)}, but it must be {allowed}{hint}."


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_config(path=None, **overrides):
    """Read, validate and return the config as a plain dict (with `fast` telling smoke mode).

    Unknown keys, wrong types, values out of range and cross-field mistakes (a patch outside the
    image, a timestep past the model's training steps: read from a local model folder's two small
    JSON files) raise CourseError before any model loads; nothing is written anywhere.
    With COURSE_FAST=1, the FAST values cap the config's and the SDEdit starts are scaled to match.
    """
    path = Path(path) if path is not None else config_path()
    raw = _read_config_file(path)
    raw.update(overrides)
    for key in raw:
        if key not in SCHEMA:
            close = difflib.get_close_matches(str(key), SCHEMA, n=1) or difflib.get_close_matches(
                str(key).lower(), SCHEMA, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise CourseError(f"Unknown key `{key}` in {path.name}{hint}; allowed keys: {', '.join(SCHEMA)}.")
    # a copy of each default: a notebook that appends to cfg["strengths"] must not change the next load_config()
    cfg = {key: raw[key] if key in raw else copy.deepcopy(default) for key, (default, _, _) in SCHEMA.items()}
    for key, (_, check, allowed) in SCHEMA.items():
        if not check(cfg[key]):
            raise CourseError(_bad_value(key, cfg[key], allowed, path.name))
    from src import models  # not at the top: models.py needs this module's CourseError

    check_model_fit(cfg, path.name)
    models.pick_device(cfg["device"], path.name)  # `device: cuda` on a laptop: say so now, not after loading
    model_facts = models.check_model_name(cfg["model"], path.name)
    if model_facts is not None:  # a local folder: its size and training steps are known already
        check_model_fit(cfg, path.name, *model_facts)
    _check_image(cfg["image"], path.name)
    if is_fast():
        steps = cfg["num_inference_steps"]
        cfg.update({k: min(cfg[k], v) for k, v in FAST.items()})
        fast_steps = cfg["num_inference_steps"]
        # the same noise levels in fewer steps: start index i of S is i * S_fast / S of S_fast
        cfg["sdedit_start_indices"] = list(dict.fromkeys(
            min(fast_steps - 1, round(i * fast_steps / steps)) for i in cfg["sdedit_start_indices"]))
    cfg["fast"] = is_fast()
    return cfg


def non_default_keys(cfg):
    """The keys whose value differs from the course's default (config.yaml as shipped holds the defaults)."""
    return [key for key, (default, _, _) in SCHEMA.items() if cfg[key] != default]


def check_model_fit(cfg, name, sample_size=None, num_train_timesteps=None):
    """Rules that tie keys together, and (once the model's config is known) to the model."""
    steps = cfg["num_inference_steps"]
    bad = [i for i in cfg["sdedit_start_indices"] if i >= steps]
    if bad:
        raise CourseError(f"`sdedit_start_indices` in {name} has {bad}, but each must be below "
                          f"num_inference_steps ({steps}).")
    if cfg["anagram_classes"][0] == cfg["anagram_classes"][1]:
        raise CourseError(f"`anagram_classes` in {name} is {cfg['anagram_classes']}: give two different digits.")
    if num_train_timesteps is not None:
        if steps > num_train_timesteps:
            raise CourseError(f"`num_inference_steps` in {name} is {steps}, but the model was trained with "
                              f"{num_train_timesteps} steps, so it must be at most {num_train_timesteps}.")
        late = [t for t in cfg["forward_timesteps"] if t >= num_train_timesteps]
        if late:
            raise CourseError(f"`forward_timesteps` in {name} has {late}, but each must be below the model's "
                              f"{num_train_timesteps} training steps (0 to {num_train_timesteps - 1}).")
    if sample_size is not None:
        size, x, y = cfg["patch_size"], cfg["patch_x"], cfg["patch_y"]
        if size > sample_size or x + size > sample_size or y + size > sample_size:
            raise CourseError(f"The patch in {name} (patch_size {size} at patch_x {x}, patch_y {y}) does not fit in the "
                              f"model's {sample_size}x{sample_size} images: need patch_size <= {sample_size} and "
                              f"patch_x, patch_y <= {max(0, sample_size - size)}.")


def _check_image(name, cfg_name):
    """The `image` exists and Pillow recognises it (reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    full = repo_path(name)
    if not full.is_file():
        raise CourseError(f"`image` in {cfg_name} is {name!r}, but there is no file {full}: give a path from the "
                          f"repository root, e.g. images/astronaut.png.")
    try:
        with Image.open(full):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CourseError(f"`image` in {cfg_name} is {name!r}, but that file is not an image Pillow can read "
                          f"({type(e).__name__}): use a PNG, JPEG, GIF, BMP, WebP or TIFF file.") from None
