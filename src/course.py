"""Plumbing that is not course content: the config, the device, loading a model, notebook set-up.

    cfg = load_config()          # config.yaml (or $COURSE_CONFIG), validated, as a plain dict
    model = load_model(cfg)      # the UNet, its DDIM scheduler and its schedule (abar)

Every failure a student can cause (a typo in the config, a model id that does not exist, no network,
a folder without weights) raises CourseError with one sentence that says what was wrong and what
is allowed, before anything slow starts.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from src.functions import PROJECT_ROOT, betas_from_scheduler_config, alphas_cumprod_from_betas

BUNDLED_MODEL = "models/mnist-ddpm"
SWITCH_HINT = f"set `model: {BUNDLED_MODEL}` in config.yaml to use the course's offline model"
# when the course's own model is what is broken, switching to it is no advice
RESTORE_HINT = (f"restore the course's own model with `git checkout {BUNDLED_MODEL}` (or retrain it: "
                f"`python -m src.train ddpm`)")


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
    "train_steps": (300, _int(1, 100000), "an integer from 1 to 100000"),
}

# COURSE_FAST=1 (CI and the test command): the same notebooks with fewer steps and smaller sweeps
FAST = {"num_inference_steps": 10, "num_samples": 4, "train_steps": 20, "grid_levels": 5}


def config_path():
    """$COURSE_CONFIG if set (tests use it), else config.yaml at the repository root."""
    env = os.environ.get("COURSE_CONFIG")
    if env:
        p = Path(env)
        return p if p.is_absolute() else PROJECT_ROOT / p
    return PROJECT_ROOT / "config.yaml"


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
    _check_cross_fields(cfg, path.name)
    pick_device(cfg["device"], path.name)  # `device: cuda` on a laptop: say so now, not after loading
    model_facts = _check_model_name(cfg["model"], path.name)
    if model_facts is not None:  # a local folder: its size and training steps are known already
        _check_cross_fields(cfg, path.name, *model_facts)
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


def _check_cross_fields(cfg, name, sample_size=None, num_train_timesteps=None):
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


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resolve_model(name):
    """('local', folder) for a folder (paths from the repository root), ('hub', id) for a hub id,
    ('missing', folder) for a path that does not exist."""
    p = Path(name).expanduser()
    full = p if p.is_absolute() else PROJECT_ROOT / p
    if full.is_dir():
        return "local", full
    first = p.parts[0] if p.parts else ""
    looks_like_path = p.is_absolute() or name.startswith(".") or (PROJECT_ROOT / first).is_dir() or len(p.parts) > 2
    if looks_like_path or not HUB_ID.match(name):
        return "missing", full
    return "hub", name


def _is_bundled(folder):
    return Path(folder).resolve() == (PROJECT_ROOT / BUNDLED_MODEL).resolve()


def _hint(folder):
    """What to do when a local model folder is unusable: switch to the course's model, or restore it."""
    return RESTORE_HINT if _is_bundled(folder) else SWITCH_HINT


def _missing_model(name, where, source):
    """The sentence for a `model` that is neither a folder nor a hub id."""
    if _is_bundled(where):
        return (f"`model` in {source} is {name!r}, the course's own model, but its folder {where} is missing from "
                f"this copy of the course: {RESTORE_HINT}.")
    parent = where.parent
    siblings = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    close = difflib.get_close_matches(where.name, siblings, n=1)
    if close:
        rel = (parent / close[0]).relative_to(PROJECT_ROOT) if parent.is_relative_to(PROJECT_ROOT) else parent / close[0]
        hint = f"; did you mean {rel.as_posix()}?"
    else:
        hint = ""
    return (f"`model` in {source} is {name!r}, which is neither an existing folder ({where} does not exist{hint}) "
            f"nor a hub id of the form owner/name; {SWITCH_HINT}.")


def _check_model_name(name, cfg_name):
    """Check `model` without loading anything; for a local folder return (sample_size, num_train_timesteps)."""
    kind, where = resolve_model(name)
    if kind == "missing":
        raise CourseError(_missing_model(name, where, cfg_name))
    if kind == "local":
        unet_sub, sched_sub = _check_local_folder(where)
        unet_cfg = _read_json(where / (unet_sub or "") / "config.json", where)
        sched_cfg = _read_json(where / (sched_sub or "") / "scheduler_config.json", where)
        return _check_model_configs(unet_cfg, sched_cfg, where, _hint(where))
    return None


def _check_image(name, cfg_name):
    """The `image` exists and Pillow recognises it (reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(name)
    full = p if p.is_absolute() else PROJECT_ROOT / p
    if not full.is_file():
        raise CourseError(f"`image` in {cfg_name} is {name!r}, but there is no file {full}: give a path from the "
                          f"repository root, e.g. images/astronaut.png.")
    try:
        with Image.open(full):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CourseError(f"`image` in {cfg_name} is {name!r}, but that file is not an image Pillow can read "
                          f"({type(e).__name__}): use a PNG, JPEG, GIF, BMP, WebP or TIFF file.") from None


# --- the device ----------------------------------------------------------------------------------

def pick_device(device="auto", source="config.yaml"):
    """auto: cuda, then mps, then cpu. Asking for a device this machine lacks is an error, not a
    silent fallback: a 256-pixel model that quietly runs on the CPU takes an hour instead of a minute."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise CourseError(f"`device` in {source} is {device!r}, but it must be one of auto, cpu, cuda, mps.")
    if device == "cuda" and not torch.cuda.is_available():
        raise CourseError(f"`device` in {source} is 'cuda', but this machine has no CUDA GPU that torch can use: "
                          f"set `device: auto` (or cpu) in {source}; in Colab, pick a GPU runtime.")
    if device == "mps" and not has_mps:
        raise CourseError(f"`device` in {source} is 'mps', but this machine has no Apple GPU that torch can use: "
                          f"set `device: auto` (or cpu) in {source}.")
    return torch.device(device)


# --- the model -----------------------------------------------------------------------------------

@dataclass
class CourseModel:
    """A loaded model: the UNet (eval mode, on its device), its DDIM scheduler and its schedule."""

    name: str
    unet: object
    scheduler: object
    alphas_cumprod: torch.Tensor  # (T,) abar of the model's own schedule, float32 on the CPU
    betas: torch.Tensor

    @property
    def size(self):
        return self.unet.config.sample_size

    @property
    def channels(self):
        return self.unet.config.in_channels

    @property
    def null_label(self):
        n = self.unet.config.get("num_class_embeds")
        return None if n is None else n - 1

    @property
    def class_conditional(self):
        return self.null_label is not None

    @property
    def num_train_timesteps(self):
        return len(self.alphas_cumprod)

    @property
    def device(self):
        return next(self.unet.parameters()).device

    def noise(self, n, generator):
        """n starting noises x_T shaped for this model, drawn on the CPU from `generator`."""
        return torch.randn(n, self.channels, self.size, self.size, generator=generator)


WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _layout(folder):
    """(unet subfolder, scheduler subfolder) of a diffusers folder: flat (google/ddpm-*) or pipeline."""
    if (folder / "config.json").is_file():
        return None, None if (folder / "scheduler_config.json").is_file() else "scheduler"
    if (folder / "unet" / "config.json").is_file():
        return "unet", "scheduler"
    return None, None


def _check_local_folder(folder):
    """The files a local model folder needs are there; returns its (unet, scheduler) subfolders."""
    hint = _hint(folder)
    unet_sub, sched_sub = _layout(folder)
    unet_dir = folder / unet_sub if unet_sub else folder
    if not (unet_dir / "config.json").is_file():
        raise CourseError(f"The model folder {folder} has no config.json (nor unet/config.json), so it is not a "
                          f"diffusers model folder; save one with save_pretrained, or {hint}.")
    if not any((unet_dir / w).is_file() for w in WEIGHT_FILES):
        raise CourseError(f"The model folder {unet_dir} has a config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
                          f"copy them in, or {hint}.")
    sched_dir = folder / sched_sub if sched_sub else folder
    if not (sched_dir / "scheduler_config.json").is_file():
        raise CourseError(f"The model folder {folder} has no scheduler_config.json, so its noise schedule is unknown; "
                          f"add one (DDPMScheduler().save_pretrained(folder)), or {hint}.")
    return unet_sub, sched_sub


def _read_json(path, folder):
    """A model folder's small JSON file as a dict (no weights are read)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CourseError(f"{path} is not valid JSON ({str(e).splitlines()[0]}): the model folder is damaged; "
                          f"{_hint(folder)}.") from None
    if not isinstance(data, dict):
        raise CourseError(f"{path} holds a {type(data).__name__}, not a JSON object: the model folder is damaged; "
                          f"{_hint(folder)}.")
    return data


def _check_model_configs(unet_cfg, sched_cfg, name, hint):
    """What the course's sampler needs from a model, read from its two config files before any weights
    load: a square, 1- or 3-channel pixel-space UNet2DModel predicting eps with a known beta schedule.

    Returns (sample_size, num_train_timesteps).
    """
    from src.functions import DIFFUSERS_SCHEDULE_NAMES

    cls = unet_cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise CourseError(f"The model {str(name)!r} is a {cls}, but the course samples with a UNet2DModel "
                          f"(a pixel-space DDPM such as google/ddpm-celebahq-256); {hint}.")
    size = unet_cfg.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CourseError(f"The model {str(name)!r} has sample_size {size!r} in its config.json, but the course "
                          f"needs square images of one integer size; {hint}.")
    cin, cout = unet_cfg.get("in_channels", 3), unet_cfg.get("out_channels", 3)
    if cin not in (1, 3) or cout != cin:
        raise CourseError(f"The model {str(name)!r} has {cin} input and {cout} output channels, but the course "
                          f"needs 1 (greyscale) or 3 (RGB) of each (a noise prediction shaped like the image); {hint}.")
    prediction = sched_cfg.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise CourseError(f"The model {str(name)!r} predicts {prediction!r} (prediction_type in its "
                          f"scheduler_config.json), but the course's sampler needs 'epsilon' (noise) prediction; {hint}.")
    schedule = sched_cfg.get("beta_schedule", "linear")
    if sched_cfg.get("trained_betas") is None and schedule not in DIFFUSERS_SCHEDULE_NAMES:
        raise CourseError(f"The model {str(name)!r} has beta_schedule {schedule!r} in its scheduler_config.json, "
                          f"but the course knows only {', '.join(DIFFUSERS_SCHEDULE_NAMES)}; {hint}.")
    steps = sched_cfg.get("num_train_timesteps", 1000)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise CourseError(f"The model {str(name)!r} has num_train_timesteps {steps!r} in its scheduler_config.json, "
                          f"but it must be an integer of at least 2; {hint}.")
    return size, steps


def _cause_names(error):
    """Class names of an exception and everything it was raised from (hub errors hide inside OSError)."""
    names, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        names.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    return names


class _HubUnreachable(Exception):
    """The hub did not answer (no network, a proxy, a closed port): the cache may still help."""


def _offline_hint(repo_id):
    return (f"{SWITCH_HINT}, or download the model beforehand while online "
            f"(`hf download {repo_id} --local-dir models/{repo_id.split('/')[-1]}`) and set `model:` to that folder")


def _probe_hub(repo_id):
    """Ask the hub about repo_id (5 s timeout) before diffusers does, to fail fast and clearly.

    Returns (unet subfolder, scheduler subfolder) from the repository's file list; raises CourseError
    for a repository that does not exist or is gated, _HubUnreachable when the hub does not answer.
    """
    from huggingface_hub import model_info

    try:
        info = model_info(repo_id, timeout=5)
    except Exception as e:  # noqa: BLE001 - classified by name: the hub's classes move between versions
        names = _cause_names(e)
        if any(n in names for n in ("RepositoryNotFoundError", "HFValidationError", "RevisionNotFoundError")):
            raise CourseError(f"There is no model called {repo_id!r} on the Hugging Face hub (check the spelling, "
                              f"e.g. google/ddpm-celebahq-256; a private model needs `hf auth login`); "
                              f"{SWITCH_HINT}.") from None
        if "GatedRepoError" in names:
            raise CourseError(f"The hub model {repo_id!r} is gated: accept its licence on huggingface.co and log in "
                              f"with `hf auth login`; {SWITCH_HINT}.") from None
        raise _HubUnreachable(names[-1]) from None
    files = {s.rfilename for s in (info.siblings or [])}
    if "config.json" in files:
        return None, None if "scheduler_config.json" in files else "scheduler"
    if "unet/config.json" in files:
        return "unet", "scheduler"
    raise CourseError(f"The hub repository {repo_id!r} holds no diffusers UNet (no config.json or unet/config.json); "
                      f"use a DDPM model such as google/ddpm-celebahq-256, or {SWITCH_HINT}.")


def _cached_layout(repo_id):
    """(unet subfolder, scheduler subfolder) of repo_id in the local hub cache, or None if it is not there."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename):
        try:
            return isinstance(try_to_load_from_cache(repo_id, filename), str)
        except Exception:  # noqa: BLE001 - an odd id or cache: treat as not cached
            return False

    if cached("config.json"):
        return None, None if cached("scheduler_config.json") else "scheduler"
    if cached("unet/config.json"):
        return "unet", "scheduler"
    return None


def _hub_layout(repo_id):
    """(unet subfolder, scheduler subfolder, local_files_only) for a hub id: asks the hub, or, offline
    (HF_HUB_OFFLINE=1 or no answer), the local cache; a clear CourseError when neither can help."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        layout = _cached_layout(repo_id)
        if layout is None:
            raise CourseError(f"HF_HUB_OFFLINE is set and {repo_id!r} is not in the local hub cache, so it cannot "
                              f"be loaded; {SWITCH_HINT}, or unset HF_HUB_OFFLINE while online once.")
        return (*layout, True)
    try:
        return (*_probe_hub(repo_id), False)
    except _HubUnreachable as e:
        layout = _cached_layout(repo_id)
        if layout is None:
            raise CourseError(f"Cannot reach the Hugging Face hub to fetch {repo_id!r} ({e}): you seem to be "
                              f"offline; {_offline_hint(repo_id)}.") from None
        warnings.warn(f"The Hugging Face hub cannot be reached ({e}): using the copy of {repo_id!r} in your "
                      f"local cache.", stacklevel=3)
        return (*layout, True)


def _load_failure(name, error, hint, local_only):
    """One sentence for an exception raised by diffusers while loading `name`."""
    names, text = _cause_names(error), str(error)
    if "size mismatch" in text or "shape" in text.lower():
        return (f"The weights in {name} do not fit the architecture in its config.json (a size mismatch): the "
                f"files come from different models; {hint}.")
    if local_only and not Path(str(name)).is_dir():
        return (f"{name!r} is only partly in the local hub cache (its download was interrupted?) and the hub "
                f"cannot be asked, so it cannot be loaded; {_offline_hint(name)}.")
    first = text.strip().splitlines()[0][:200] if text.strip() else "no message"
    return f"Could not load the model {name!r} ({names[0]}: {first}); {hint}."


@contextlib.contextmanager
def _quiet_hub_warnings():
    """diffusers 0.42 passes huggingface_hub 2.x a deprecated argument on every hub load: a warning a student
    cannot act on. Only that one is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        yield


def load_model(cfg_or_name, device=None):
    """Load a UNet2DModel and its scheduler by name: a local folder or a hub id.

    Takes the config dict (uses `model` and `device`) or a name. Returns a CourseModel whose
    scheduler is a DDIMScheduler built from the model's own scheduler config, and whose
    alphas_cumprod is computed by src.functions from that same config.
    Before any weights load, the model's two small config files are checked (and, given the config,
    the patch and timesteps against the model's size and training steps).
    """
    from diffusers import DDIMScheduler, UNet2DModel
    from diffusers.utils import logging as diffusers_logging

    cfg = cfg_or_name if isinstance(cfg_or_name, dict) else None
    name = cfg["model"] if cfg else cfg_or_name
    source_name = config_path().name
    device = pick_device(device or (cfg["device"] if cfg else "auto"), source_name)
    kind, where = resolve_model(name)
    if kind == "missing":
        raise CourseError(_missing_model(name, where, source_name))
    diffusers_logging.disable_progress_bar()  # its bars get a new random id each run: noisy diffs
    if kind == "local":
        unet_sub, sched_sub = _check_local_folder(where)
        source, hint, local_only = str(where), _hint(where), True
        unet_cfg = _read_json(where / (unet_sub or "") / "config.json", where)
        sched_cfg = _read_json(where / (sched_sub or "") / "scheduler_config.json", where)
    else:
        unet_sub, sched_sub, local_only = _hub_layout(name)
        source, hint = name, SWITCH_HINT
        try:  # two small JSON files: check them before a download of hundreds of MB
            with _quiet_hub_warnings():
                unet_cfg = dict(UNet2DModel.load_config(source, subfolder=unet_sub, local_files_only=local_only))
                sched_cfg = dict(DDIMScheduler.load_config(source, subfolder=sched_sub, local_files_only=local_only))
        except Exception as e:  # noqa: BLE001 - turned into one sentence
            raise CourseError(_load_failure(name, e, hint, local_only)) from None
    sample_size, num_train_timesteps = _check_model_configs(unet_cfg, sched_cfg, name, hint)
    if cfg is not None:
        _check_cross_fields(cfg, source_name, sample_size, num_train_timesteps)
    try:
        with _quiet_hub_warnings():
            unet, info = UNet2DModel.from_pretrained(source, subfolder=unet_sub, low_cpu_mem_usage=False,
                                                     local_files_only=local_only, output_loading_info=True)
        scheduler = DDIMScheduler.from_config(sched_cfg)
    except Exception as e:  # noqa: BLE001 - turned into one sentence
        raise CourseError(_load_failure(name, e, hint, local_only and kind == "hub")) from None
    missing, unexpected = info.get("missing_keys") or [], info.get("unexpected_keys") or []
    if missing or unexpected:  # diffusers only logs this, and the missing parts stay random
        what = (f"lack {len(missing)} of the parameters its config.json describes (e.g. {missing[0]})" if missing
                else f"hold {len(unexpected)} parameters its config.json does not describe (e.g. {unexpected[0]})")
        raise CourseError(f"The weights in {name} {what}: the files come from different models; {hint}.")
    try:
        betas = betas_from_scheduler_config(dict(scheduler.config))
    except ValueError as e:
        raise CourseError(f"The model {name!r} has a noise schedule the course cannot rebuild ({e}); {hint}.") from None
    return CourseModel(name=name, unet=unet.eval().requires_grad_(False).to(device), scheduler=scheduler,
                       alphas_cumprod=alphas_cumprod_from_betas(betas), betas=betas)


# --- notebooks -----------------------------------------------------------------------------------

def _one_sentence(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: a CourseError is shown as its sentence, without a stack trace.

    It is shown through the shell's own error display, so the cell still counts as failed
    (nbclient/nbmake raise CellExecutionError, "Run all" stops there) and the output is an error.
    """
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    show = getattr(shell, "_showtraceback", None)  # ipykernel: an "error" output; terminal IPython: prints it
    if show is not None:
        show(etype, value, stb)
    else:
        print(f"{etype.__name__}: {value}", file=sys.stderr)
    return stb


def setup_notebook(threads=None):
    """Once per notebook: CPU threads, quiet diffusers bars, and course errors shown as one sentence."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    if threads is None and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core for Jupyter; all cores spin-wait badly
    if threads:
        torch.set_num_threads(threads)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.set_custom_exc((CourseError,), _one_sentence)


def describe(cfg, keys):
    """One line per knob a notebook uses: `key = value`, for the parameter cell's echo."""
    return "\n".join(f"{k:>22} = {cfg[k]!r}" for k in keys) + ("\n(COURSE_FAST=1: smoke mode)" if cfg["fast"] else "")
