"""The time budget: what a notebook will cost with this model on this device, and the settings that fit.

Every notebook's parameter cell declares the counts it will spend UNet calls on, three ways: the full settings
(what the text's claims are measured with), the smoke settings (COURSE_FAST=1) and the least that still draws
every figure; and how many UNet calls (one image through the UNet once) those counts cost. `fit` times one UNet
call on this model and device, prints the estimate, and, when the estimate is over `budget_minutes` (config),
scales every count down together (never below its least) until their UNet time fits in 90 % of it (and leaves
at least 20 s for the rest):

    plan = budget.fit(model, cfg, calls=lambda v: v["n_seeds"] * v["steps"] * 20,
                      full={"n_seeds": 8, "steps": 25}, smoke={"n_seeds": 2, "steps": 10},
                      least={"n_seeds": 1, "steps": 2})
    n_seeds, steps = plan["n_seeds"], plan["steps"]

With `full_settings: true` the full (or smoke) counts are kept whatever they cost. The bundled 28-px model
fits its full settings with room to spare, so for it nothing changes; a 256-px model on a laptop CPU (about
4.4 s a call at the real widths of google/ddpm-celebahq-256) gets the counts that fit, and the notebook says so.
In smoke mode the budget is at most SMOKE_MINUTES. The estimate is UNet time only: on a 256-px model that is nearly
all of a notebook's time; on the bundled model the figures and Python take longer than its UNet calls.
"""

from __future__ import annotations

import time
import weakref
from contextlib import contextmanager

import torch

from src import functions as F
from src.course import use_all_cores
from src.models import image_side

SMOKE_MINUTES = 2.0  # smoke mode (CI, COURSE_FAST=1) never plans for more than this
# Of the budget, UNet calls get UNET_SHARE, and at least RESERVE_SECONDS are left for the rest: the kernel, imports,
# the model's load, the timing call, figures and Python (measured at 256 px: 15-25 s of a run, whatever its length).
UNET_SHARE = 0.9
RESERVE_SECONDS = 20
_timed = weakref.WeakKeyDictionary()  # unet -> seconds per image, measured once per UNet and process


def seconds_per_image(unet):
    """Seconds one image takes through `unet` once, on its own device: one timed call at batch 1; for a UNet
    under 0.1 s a call, a warmed-up call at batch 8 divided by 8 (small models gain a lot from batching)."""
    if unet in _timed:
        return _timed[unet]
    p = next(unet.parameters())
    cfg = unet.config
    size = image_side(unet)
    null = F.null_label_of(unet)  # a class-conditional UNet is timed with its "no class" label, as CFG calls it

    def call(batch):
        x = torch.zeros(batch, cfg.in_channels, size, size, device=p.device, dtype=p.dtype)
        t = torch.full((batch,), 500, device=p.device, dtype=torch.long)
        labels = None if null is None else torch.full((batch,), null, device=p.device, dtype=torch.long)
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            unet(x, t, class_labels=labels)
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    seconds = call(1)
    if seconds < 0.1:
        call(8)  # warm-up at the batch size that is timed
        seconds = min(seconds, call(8) / 8)
    _timed[unet] = seconds
    return seconds


def unet_seconds(budget_seconds):
    """The UNet time a notebook plans for within its budget: 90 % of it, and at least RESERVE_SECONDS left over."""
    return max(0.0, min(UNET_SHARE * budget_seconds, budget_seconds - RESERVE_SECONDS))


def scaled(counts, least, s):
    """Every count times s (rounded), never below its least: s = 1 keeps them, s = 0 gives the least."""
    return {k: max(least[k], min(v, round(v * s))) for k, v in counts.items()}


def fit(model, cfg, calls, full, smoke, least, per_image=None):
    """The counts to run with (a dict like `full`), after printing what they will cost; see the module docstring.

    calls: counts -> UNet image calls (grows with every count). per_image: seconds per image call (default:
    measured on model.unet; the bench passes the time of the real celebahq architecture).
    """
    if not (set(full) == set(smoke) == set(least)):
        raise ValueError("full, smoke and least must name the same counts")
    counts = dict(smoke if cfg["fast"] else full)
    minutes = min(cfg["budget_minutes"], SMOKE_MINUTES) if cfg["fast"] else cfg["budget_minutes"]
    budget_seconds = 60 * minutes
    unet_time = unet_seconds(budget_seconds)
    cores = use_all_cores(model)  # before the timing, which is then of the threads the notebook runs on
    per_image = seconds_per_image(model.unet) if per_image is None else per_image
    device = next(model.unet.parameters()).device.type
    need = calls(counts)
    on = f"all {torch.get_num_threads()} CPU cores (a model this large gains from them)" if cores else f"the {device}"
    head = f"One UNet call takes {_duration(per_image)} per image on {on}: "
    mode = "smoke-mode" if cfg["fast"] else "full"
    allowed = (f"the {_duration(unet_time)} of UNet time a {_duration(budget_seconds)} budget allows "
               f"(`budget_minutes`)")
    if need * per_image <= unet_time or cfg["full_settings"]:
        why = "" if need * per_image <= unet_time else f", more than {allowed}, kept: full_settings is true"
        print(head + f"the {mode} settings make ~{need:,} UNet calls, {_duration(need * per_image)} of UNet "
                     f"time{why}.")
        return counts
    lo, hi = 0.0, 1.0  # the largest s whose counts fit: calls() grows with every count, so bisect
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if calls(scaled(counts, least, mid)) * per_image <= unet_time else (lo, mid)
    plan = scaled(counts, least, lo)
    changed = ", ".join(f"{k} {plan[k]} (of {counts[k]})" for k in counts if plan[k] != counts[k])
    got = calls(plan) * per_image
    over = "" if got <= unet_time else " (the least this notebook can draw with: still over the budget)"
    if not changed:  # every count is at its least already
        print(head + f"the {mode} settings make ~{need:,} UNet calls, {_duration(need * per_image)} of UNet time: "
              f"more than {allowed}, but they are the least this notebook can draw with, so they are kept.")
        return plan
    print(head + f"the {mode} settings make ~{need:,} UNet calls, {_duration(need * per_image)} of UNet time, "
          f"more than {allowed}. Scaled down to {changed}: "
          f"~{calls(plan):,} calls, about {_duration(got)}{over}. Fewer samples give noisier numbers than the "
          f"text's, which are measured with the full settings; `full_settings: true` runs those.")
    return plan


def _duration(seconds):
    """3 ms, 4.4 s, 9.5 min, 2.1 h: a duration a person reads at a glance."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@contextmanager
def counting(unet):
    """Count the images that go through `unet` (a forward pre-hook; the TorchScript trace steps aside for hooks,
    so the outputs stay the same): `with counting(unet) as n: ...; n[0]` is the number of image calls."""
    n = [0]

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["sample"]
        n[0] += x.shape[0]

    handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield n
    finally:
        handle.remove()


def is_least(plan, least):
    """True when every count is at its least: the notebook can only draw its figures, not measure."""
    return all(plan[k] <= least[k] for k in least)


__all__ = ["fit", "seconds_per_image", "unet_seconds", "scaled", "counting", "is_least", "SMOKE_MINUTES"]
