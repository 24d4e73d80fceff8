"""Plumbing that is not course content: the config, the device, loading a model, notebook set-up.

    cfg = load_config()          # config.yaml (or $COURSE_CONFIG), validated, as a plain dict
    model = load_model(cfg)      # the UNet, its DDIM scheduler and its schedule (abar)

Every failure a student can cause (a typo in the config, a model id that does not exist, no network,
a folder without weights) raises CourseError with one sentence that says what was wrong and what
is allowed, before anything slow starts.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from src.functions import PROJECT_ROOT, betas_from_scheduler_config, alphas_cumprod_from_betas

BUNDLED_MODEL = "models/mnist-ddpm"
SWITCH_HINT = f"set `model: {BUNDLED_MODEL}` in config.yaml to use the course's offline model"


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
    return lambda v: isinstance(v, list) and min_len <= len(v) <= max_len and all(item_check(x) for x in v)


# key: (default, check, what is allowed). The comments in config.yaml say what each knob does.
SCHEMA = {
    "model": (BUNDLED_MODEL, lambda v: isinstance(v, str) and v.strip() != "",
              "a local folder in diffusers layout (e.g. models/mnist-ddpm) or a hub id such as google/ddpm-celebahq-256"),
    "device": ("auto", lambda v: v in ("auto", "cpu", "cuda", "mps"), "one of auto, cpu, cuda, mps"),
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


def load_config(path=None, **overrides):
    """Read, validate and return the config as a plain dict (with `fast` telling smoke mode).

    Unknown keys, wrong types, values out of range and cross-field mistakes (a patch outside the
    image, a timestep past the model's training steps) raise CourseError before any model loads.
    """
    import yaml

    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        raise CourseError(f"No config file at {path}: create it (see README) or set COURSE_CONFIG to an existing file.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CourseError(f"{path.name} is not valid YAML{where}: check the indentation and the `key: value` form.") from None
    if raw is None:
        raise CourseError(f"{path.name} is empty: it needs at least `model:`; copy the course's config.yaml.")
    if not isinstance(raw, dict):
        raise CourseError(f"{path.name} must be a list of `key: value` lines, not a {type(raw).__name__}.")
    raw.update(overrides)
    for key in raw:
        if key not in SCHEMA:
            close = difflib.get_close_matches(str(key), SCHEMA, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise CourseError(f"Unknown key `{key}` in {path.name}{hint}; allowed keys: {', '.join(SCHEMA)}.")
    cfg = {key: raw.get(key, default) for key, (default, _, _) in SCHEMA.items()}
    for key, (_, check, allowed) in SCHEMA.items():
        if not check(cfg[key]):
            raise CourseError(f"`{key}` in {path.name} is {cfg[key]!r}, but it must be {allowed}.")
    if is_fast():
        cfg.update({k: min(cfg[k], v) for k, v in FAST.items()})
    cfg["fast"] = is_fast()
    _check_cross_fields(cfg, path.name)
    _check_model_name(cfg["model"], path.name)
    _check_image(cfg["image"], path.name)
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
    """('local', folder) for a folder (paths from the repository root), ('hub', id) for a hub id."""
    p = Path(name).expanduser()
    full = p if p.is_absolute() else PROJECT_ROOT / p
    if full.is_dir():
        return "local", full
    first = p.parts[0] if p.parts else ""
    looks_like_path = p.is_absolute() or name.startswith(".") or (PROJECT_ROOT / first).is_dir() or len(p.parts) > 2
    if looks_like_path or not HUB_ID.match(name):
        return "missing", full
    return "hub", name


def _check_model_name(name, cfg_name):
    kind, where = resolve_model(name)
    if kind == "missing":
        raise CourseError(f"`model` in {cfg_name} is {name!r}, which is neither an existing folder ({where} does not exist) "
                          f"nor a hub id of the form owner/name; {SWITCH_HINT}.")
    if kind == "local":
        _check_local_folder(where)


def _check_image(name, cfg_name):
    p = Path(name)
    full = p if p.is_absolute() else PROJECT_ROOT / p
    if not full.is_file():
        raise CourseError(f"`image` in {cfg_name} is {name!r}, but there is no file {full}: give a path from the "
                          f"repository root, e.g. images/astronaut.png.")


# --- the device ----------------------------------------------------------------------------------

def pick_device(device="auto"):
    """auto: cuda, then mps, then cpu. Asking for a device this machine lacks is an error, not a
    silent fallback: a 256-pixel model that quietly runs on the CPU takes an hour instead of a minute."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CourseError("`device` is 'cuda', but this machine has no CUDA GPU that torch can use: "
                          "set `device: auto` (or cpu) in config.yaml; in Colab, pick a GPU runtime.")
    if device == "mps" and not has_mps:
        raise CourseError("`device` is 'mps', but this machine has no Apple GPU that torch can use: "
                          "set `device: auto` (or cpu) in config.yaml.")
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
    unet_sub, sched_sub = _layout(folder)
    unet_dir = folder / unet_sub if unet_sub else folder
    if not (unet_dir / "config.json").is_file():
        raise CourseError(f"The model folder {folder} has no config.json (nor unet/config.json), so it is not a "
                          f"diffusers model folder; save one with save_pretrained, or {SWITCH_HINT}.")
    if not any((unet_dir / w).is_file() for w in WEIGHT_FILES):
        raise CourseError(f"The model folder {unet_dir} has a config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
                          f"copy them in, or {SWITCH_HINT}.")
    sched_dir = folder / sched_sub if sched_sub else folder
    if not (sched_dir / "scheduler_config.json").is_file():
        raise CourseError(f"The model folder {folder} has no scheduler_config.json, so its noise schedule is unknown; "
                          f"add one (DDPMScheduler().save_pretrained(folder)), or {SWITCH_HINT}.")


def _cause_names(error):
    """Class names of an exception and everything it was raised from (hub errors hide inside OSError)."""
    names, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        names.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    return names


def _probe_hub(repo_id):
    """Ask the hub about repo_id (5 s timeout) before diffusers does, to fail fast and clearly.

    Returns (unet subfolder, scheduler subfolder) from the repository's file list.
    """
    from huggingface_hub import constants, model_info

    if constants.HF_HUB_OFFLINE:
        return None  # offline: only the local cache can answer (tried by the caller)
    try:
        info = model_info(repo_id, timeout=5)
    except Exception as e:  # noqa: BLE001 - classified by name: the hub's classes move between versions
        names = _cause_names(e)
        if any(n in names for n in ("RepositoryNotFoundError", "HFValidationError")):
            raise CourseError(f"There is no model called {repo_id!r} on the Hugging Face hub (check the spelling, "
                              f"e.g. google/ddpm-celebahq-256); {SWITCH_HINT}.") from None
        if "GatedRepoError" in names:
            raise CourseError(f"The hub model {repo_id!r} is gated: accept its licence on huggingface.co and log in "
                              f"with `hf auth login`; {SWITCH_HINT}.") from None
        raise CourseError(f"Cannot reach the Hugging Face hub to fetch {repo_id!r} ({names[-1]}): you seem to be "
                          f"offline; {SWITCH_HINT}, or download the model beforehand "
                          f"(`hf download {repo_id} --local-dir models/{repo_id.split('/')[-1]}`).") from None
    files = {s.rfilename for s in (info.siblings or [])}
    if "config.json" in files:
        return None, None if "scheduler_config.json" in files else "scheduler"
    if "unet/config.json" in files:
        return "unet", "scheduler"
    raise CourseError(f"The hub repository {repo_id!r} holds no diffusers UNet (no config.json or unet/config.json); "
                      f"use a DDPM model such as google/ddpm-celebahq-256, or {SWITCH_HINT}.")


def load_model(cfg_or_name, device=None):
    """Load a UNet2DModel and its scheduler by name: a local folder or a hub id.

    Takes the config dict (uses `model` and `device`) or a name. Returns a CourseModel whose
    scheduler is a DDIMScheduler built from the model's own scheduler config, and whose
    alphas_cumprod is computed by src.functions from that same config.
    """
    from diffusers import DDIMScheduler, UNet2DModel
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import constants

    cfg = cfg_or_name if isinstance(cfg_or_name, dict) else None
    name = cfg["model"] if cfg else cfg_or_name
    device = pick_device(device or (cfg["device"] if cfg else "auto"))
    kind, where = resolve_model(name)
    if kind == "missing":
        raise CourseError(f"The model {name!r} is neither an existing folder ({where} does not exist) nor a hub id "
                          f"of the form owner/name; {SWITCH_HINT}.")
    diffusers_logging.disable_progress_bar()  # its bars get a new random id each run: noisy diffs
    kwargs = {"low_cpu_mem_usage": False}
    if kind == "local":
        _check_local_folder(where)
        unet_sub, sched_sub = _layout(where)
        source = str(where)
    else:
        layout = _probe_hub(name)
        offline = layout is None
        unet_sub, sched_sub = layout if layout else (None, None)
        source = name
        if offline:
            kwargs["local_files_only"] = True
    try:
        unet = UNet2DModel.from_pretrained(source, subfolder=unet_sub, **kwargs)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder=sched_sub,
                                                  **({"local_files_only": True} if kwargs.get("local_files_only") else {}))
    except Exception as e:  # noqa: BLE001 - turned into one sentence below
        names, text = _cause_names(e), str(e)
        if kind == "hub" and constants.HF_HUB_OFFLINE:
            raise CourseError(f"HF_HUB_OFFLINE is set and {name!r} is not in the local hub cache, so it cannot be "
                              f"loaded; {SWITCH_HINT}, or unset HF_HUB_OFFLINE while online once.") from None
        if "size mismatch" in text or "shape" in text.lower():
            raise CourseError(f"The weights in {name} do not fit the architecture in its config.json (a size "
                              f"mismatch): the files come from different models; {SWITCH_HINT}.") from None
        raise CourseError(f"Could not load the model {name!r} ({names[0]}: {text.splitlines()[0][:200]}); "
                          f"{SWITCH_HINT}.") from None
    if cfg is not None:
        _check_cross_fields(cfg, "config.yaml", unet.config.sample_size, scheduler.config.num_train_timesteps)
    betas = betas_from_scheduler_config(dict(scheduler.config))
    return CourseModel(name=name, unet=unet.eval().requires_grad_(False).to(device), scheduler=scheduler,
                       alphas_cumprod=alphas_cumprod_from_betas(betas), betas=betas)


# --- notebooks -----------------------------------------------------------------------------------

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
        def one_sentence(shell, etype, value, tb, tb_offset=None):
            shell.write_err(f"{etype.__name__}: {value}\n")  # the sentence, without a stack trace first
            return [f"{etype.__name__}: {value}"]
        ip.set_custom_exc((CourseError,), one_sentence)


def describe(cfg, keys):
    """One line per knob a notebook uses: `key = value`, for the parameter cell's echo."""
    return "\n".join(f"{k:>22} = {cfg[k]!r}" for k in keys) + ("\n(COURSE_FAST=1: smoke mode)" if cfg["fast"] else "")
