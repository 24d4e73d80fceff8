"""Loading a model: a local folder in diffusers layout or a Hugging Face hub id, the same real diffusers code.

    model = load_model(cfg)    # the UNet (eval, on its device), its DDIM scheduler and its schedule abar
    flow = load_model("models/mnist-flow-10min")   # a flow-matching model, by name (notebook 07)

Before any weights load, the model's two small config files are read and checked (a square 1- or 3-channel
UNet2DModel predicting eps, with a schedule the course can rebuild; or, loaded by name, a rectified-flow model whose
scheduler is FlowMatchEulerDiscreteScheduler). diffusers wraps most hub failures in a
misleading OSError and can hang on a network that never answers: the hub is asked first, with a 5 s timeout,
and every failure becomes one CourseError sentence (shared/ECOSYSTEM.md lists the traps).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from src import functions as F
from src.config import BUNDLED_MODEL, CourseError, check_model_fit, config_path
from src.files import repo_path

SWITCH_HINT = f"set `model: {BUNDLED_MODEL}` in config.yaml to use the course's offline model"
# when the course's own model is what is broken, switching to it is no advice
RESTORE_HINT = (f"restore the course's own model with `git checkout {BUNDLED_MODEL}` (or retrain it: "
                f"`python -m src.train ddpm`)")


# --- which model: a folder or a hub id -------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resolve_model(name):
    """('local', folder) for a folder (paths from the repository root), ('hub', id) for a hub id,
    ('missing', folder) for a path that does not exist."""
    p = Path(name).expanduser()
    full = repo_path(p)
    if full.is_dir():
        return "local", full
    first = p.parts[0] if p.parts else ""
    looks_like_path = p.is_absolute() or name.startswith(".") or repo_path(first).is_dir() or len(p.parts) > 2
    if looks_like_path or not HUB_ID.match(name):
        return "missing", full
    return "hub", name


def image_side(unet):
    """The side in pixels of the square images a UNet2DModel makes (its config's sample_size, an int or a pair)."""
    size = unet.config.sample_size
    return size if isinstance(size, int) else size[0]


def _is_bundled(folder):
    return Path(folder).resolve() == repo_path(BUNDLED_MODEL).resolve()


def is_bundled(name):
    """True when the `model` name (a folder or a hub id) is the course's own digit model, models/mnist-ddpm."""
    kind, where = resolve_model(name)
    return kind == "local" and _is_bundled(where)


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
        root = repo_path()
        rel = (parent / close[0]).relative_to(root) if parent.is_relative_to(root) else parent / close[0]
        hint = f"; did you mean {rel.as_posix()}?"
    else:
        hint = ""
    return (f"`model` in {source} is {name!r}, which is neither an existing folder ({where} does not exist{hint}) "
            f"nor a hub id of the form owner/name; {SWITCH_HINT}.")


def check_model_name(name, cfg_name):
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

# Scheduler classes of flow-matching models (src/flow.py): their UNet predicts the velocity eps - x_0, sampled
# with Euler steps in t in [0, 1]; diffusers' name for that output is prediction_type "flow_prediction"
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)
FLOW_PREDICTION = "flow_prediction"


@dataclass
class CourseModel:
    """A loaded model: the UNet (eval mode, on its device), its scheduler and its schedule.

    prediction_type: "epsilon" (a DDPM: scheduler is a DDIMScheduler, alphas_cumprod its abar) or
    "flow_prediction" (a rectified-flow model: scheduler is its FlowMatchEulerDiscreteScheduler, and it has no
    abar: alphas_cumprod and betas are None; sample it with src.flow.flow_sample).
    """

    name: str
    unet: object
    scheduler: object
    alphas_cumprod: torch.Tensor | None  # (T,) abar of the model's own schedule, float32 on the CPU
    betas: torch.Tensor | None
    prediction_type: str = "epsilon"

    @property
    def is_flow(self):
        return self.prediction_type == FLOW_PREDICTION

    @property
    def size(self):
        return image_side(self.unet)

    @property
    def channels(self):
        return self.unet.config.in_channels

    @property
    def null_label(self):
        return F.null_label_of(self.unet)

    @property
    def class_conditional(self):
        return self.null_label is not None

    @property
    def num_train_timesteps(self):
        return self.scheduler.config.num_train_timesteps if self.alphas_cumprod is None else len(self.alphas_cumprod)

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


def _check_model_configs(unet_cfg, sched_cfg, name, hint, allow_flow=False):
    """What the course's sampler needs from a model, read from its two config files before any weights
    load: a square, 1- or 3-channel pixel-space UNet2DModel predicting eps with a known beta schedule, or
    (allow_flow: a model loaded by name, not as config.yaml's `model`) a flow-matching one (FLOW_SCHEDULERS).

    Returns (sample_size, num_train_timesteps).
    """
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
    if sched_cfg.get("_class_name") in FLOW_SCHEDULERS:
        if not allow_flow:
            raise CourseError(f"The model {str(name)!r} is a flow-matching model ({sched_cfg['_class_name']} in its "
                              f"scheduler_config.json): notebook 07 loads it by name, but the notebooks' `model` must "
                              f"predict the noise eps for their DDIM sampler; {hint}.")
        return size, sched_cfg.get("num_train_timesteps", 1000)
    prediction = sched_cfg.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise CourseError(f"The model {str(name)!r} predicts {prediction!r} (prediction_type in its "
                          f"scheduler_config.json), but the course's sampler needs 'epsilon' (noise) prediction; {hint}.")
    schedule = sched_cfg.get("beta_schedule", "linear")
    if sched_cfg.get("trained_betas") is None and schedule not in F.DIFFUSERS_SCHEDULE_NAMES:
        raise CourseError(f"The model {str(name)!r} has beta_schedule {schedule!r} in its scheduler_config.json, "
                          f"but the course knows only {', '.join(F.DIFFUSERS_SCHEDULE_NAMES)}; {hint}.")
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
    alphas_cumprod is computed by src.functions from that same config. By name, a flow-matching model
    (FLOW_SCHEDULERS) loads too: its own scheduler, prediction_type "flow_prediction", no alphas_cumprod.
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
    flow = sched_cfg.get("_class_name") in FLOW_SCHEDULERS
    sample_size, num_train_timesteps = _check_model_configs(unet_cfg, sched_cfg, name, hint, allow_flow=cfg is None)
    if cfg is not None:
        check_model_fit(cfg, source_name, sample_size, num_train_timesteps)
    try:
        with _quiet_hub_warnings():
            unet, info = UNet2DModel.from_pretrained(source, subfolder=unet_sub, low_cpu_mem_usage=False,
                                                     local_files_only=local_only, output_loading_info=True)
        if flow:
            from diffusers import FlowMatchEulerDiscreteScheduler

            scheduler = FlowMatchEulerDiscreteScheduler.from_config(sched_cfg)
        else:
            scheduler = DDIMScheduler.from_config(sched_cfg)
    except Exception as e:  # noqa: BLE001 - turned into one sentence
        raise CourseError(_load_failure(name, e, hint, local_only and kind == "hub")) from None
    missing, unexpected = info.get("missing_keys") or [], info.get("unexpected_keys") or []
    if missing or unexpected:  # diffusers only logs this, and the missing parts stay random
        what = (f"lack {len(missing)} of the parameters its config.json describes (e.g. {missing[0]})" if missing
                else f"hold {len(unexpected)} parameters its config.json does not describe (e.g. {unexpected[0]})")
        raise CourseError(f"The weights in {name} {what}: the files come from different models; {hint}.")
    unet = unet.eval().requires_grad_(False).to(device)
    if flow:
        return CourseModel(name=name, unet=unet, scheduler=scheduler, alphas_cumprod=None, betas=None,
                           prediction_type=FLOW_PREDICTION)
    try:
        betas = F.betas_from_scheduler_config(dict(scheduler.config))
    except ValueError as e:
        raise CourseError(f"The model {name!r} has a noise schedule the course cannot rebuild ({e}); {hint}.") from None
    return CourseModel(name=name, unet=unet, scheduler=scheduler, alphas_cumprod=F.alphas_cumprod_from_betas(betas),
                       betas=betas)
