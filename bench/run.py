"""How fast the course runs: side by side with the seeds' loops, diffusers' pipeline and the machine's floor.

    python bench/run.py                   # everything but the whole-course run (~5-10 min on 2 cores)
    python bench/run.py --course          # also time `python -m src.run_course`
    python bench/run.py --only sampler grid   # some sections
    python bench/run.py --quick           # seconds: tiny sizes, for the test (figures meaningless)

Prints a Markdown table and writes it, with the machine's description and every raw timing, to
bench/results.md (--out elsewhere). Every figure comes from this one run on this one machine: the same
model, batch and number of steps on both sides of a ratio, a warm-up first, then the median of several
repeats, taken in turns (A, B, A, B, ...) so that a slow patch of time hurts both sides alike.

Sections (the numbers are the issue's):
  sampler    1, 2, 7  F.sample vs its bare UNet calls vs diffusers.DDIMPipeline; sample of 16 and a pair
  tuning     +        what the issue says to try: channels_last and torch's thread count, on F.sample
  seeds      3        the similar-noise experiment: the seed notebook's two batch-1 loops vs one F.sample
  grid       4        the forward-backward grid: the seed's nested loops vs F.sample with per-row starts
  big        3, 6     the similar-noise experiment and the floor on a random google/ddpm-*-256 UNet
  floor      6        FLOPs per forward / measured torch.mm rate = the shortest possible 50-step sample
  start      7+       a fresh process: import, model load, first sample, peak memory, first figure
  notebooks  +        a fresh kernel per notebook: time until its first figure appears
  course     5        `python -m src.run_course`, the whole course (only with --course)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

BUNDLED = "models/mnist-ddpm"
SECTIONS = ("sampler", "tuning", "seeds", "grid", "big", "floor", "start", "notebooks", "course")

# google/ddpm-celebahq-256's UNet2DModel config.json (shared by google/ddpm-{cat,church,bedroom}-256;
# see shared/ECOSYSTEM.md), written out so nothing is downloaded; the weights are random, which is
# honest for timing: the time of a forward does not depend on the values of the weights.
GOOGLE_256_UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, act_fn="silu", downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, time_embedding_type="positional", center_input_sample=False,
    mid_block_scale_factor=1,
)
# its scheduler_config.json (a DDPMScheduler; loaded as DDIM like the course does; variance_type is DDPM-only)
GOOGLE_256_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                            clip_sample=True)

# Images count as equal when max |course - reference| <= TOL_ABS + TOL_REL * max |reference| (pixel values
# in [-1, 1]; the relative part only matters for random-weight models whose outputs leave that range).
TOL_ABS, TOL_REL = 1e-5, 1e-5

DEFAULTS = dict(          # full run                                   --quick
    steps=(50, 5),        # DDIM steps S for the bundled model
    batch=(16, 4),        # "a sample of 16"
    pair=(2, 2),          # the similar-noise pair
    repeats=(7, 1),       # timed repeats after the warm-up; the median is reported
    warmup=(1, 1),        # untimed rounds first
    grid_levels=(20, 4),  # rows of the forward-backward grid (= its DDIM steps, as in the seed)
    big_steps=(2, 2),     # DDIM steps on the 256-px UNet (a forward there takes seconds)
    big_repeats=(2, 1),
    mm_size=(2048, 256),  # n of the n x n torch.mm that measures the machine's matrix-multiply rate
)


# --- timing ----------------------------------------------------------------------------------------

def timeit(fns, repeats, warmup=1, warmup_fns=None):
    """Time several callables in turns: `warmup` untimed rounds (or `warmup_fns` once each), then
    `repeats` timed rounds; each round runs every callable once, in an order that rotates.

    Returns ({name: [seconds, ...]}, {name: last return value}).
    """
    names = list(fns)
    times, outputs = {n: [] for n in names}, {}
    for fn in (warmup_fns or []):
        fn()
    for r in range(0 if warmup_fns else warmup):
        for n in names:
            outputs[n] = fns[n]()
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            outputs[n] = fns[n]()
            times[n].append(time.perf_counter() - t0)
    return times, outputs


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def paired_ratio(times, a, b):
    """The median over rounds of a's time / b's time in the same round. timeit runs every side once per
    round, back to back, so a machine that speeds up or slows down between rounds (a shared one moves by
    10-30 % within minutes) changes both times of a round alike and cancels out of their ratio; the
    ratio of the two medians would not cancel it."""
    return median([x / y for x, y in zip(times[a], times[b])])


def fmt_time(s):
    if s != s:  # nan
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def fmt_bytes(n):
    return f"{n / 2**20:.0f} MiB"


def max_diff(a, b):
    """(max |a - b|, whether that is within the tolerance) for tensors or lists of tensors."""
    import torch

    if isinstance(a, (list, tuple)):
        a, b = torch.cat([x.reshape(-1) for x in a]), torch.cat([x.reshape(-1) for x in b])
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    if a.shape != b.shape:
        return float("inf"), False
    d = (a - b).abs().max().item()
    return d, d <= TOL_ABS + TOL_REL * max(1.0, b.abs().max().item())


class Results:
    """The table's rows, the raw timings and the notes, collected as the sections run."""

    def __init__(self):
        self.rows, self.raw, self.notes, self.measured = [], [], [], {}

    def row(self, item, what, course="-", reference="-", ratio="-", target="-", met="-"):
        self.rows.append(dict(item=item, what=what, course=course, reference=reference, ratio=ratio,
                              target=target, met=met))

    def ratio_row(self, item, what, course_s, ref_s, ratio, target, faster=False):
        """The median times, and ratio = course/reference measured repeat by repeat (paired_ratio), shown as
        is (target <= x) or, with faster, as reference/course (target >= x)."""
        value = 1 / ratio if faster else ratio
        shown = f"{value:.2f}"
        met = "yes" if (float(shown) >= target if faster else float(shown) <= target) else "no"
        label = f"{shown}x " + ("faster" if faster else "")
        self.row(item, what, fmt_time(course_s), fmt_time(ref_s), label.strip(),
                 f"{'>=' if faster else '<='} {target:g}x", met)

    def equal_row(self, item, what, diff, ok):
        self.row(item, what, f"max abs diff {diff:.1e}", "-", "-",
                 f"<= {TOL_ABS:g} + {TOL_REL:g} max|ref|", "yes" if ok else "no")

    def timings(self, label, times):
        for name, ts in times.items():
            self.raw.append(f"{label} / {name}: median {fmt_time(median(ts))} of "
                            f"[{', '.join(f'{t:.3f}' for t in ts)}] s")


# --- models ----------------------------------------------------------------------------------------

class Bench:
    """A UNet with its DDIM scheduler and schedule, plus what the course and the seeds need to call it."""

    def __init__(self, name, unet, scheduler_config, alphas_cumprod):
        import torch

        self.name, self.unet, self.alphas_cumprod = name, unet, alphas_cumprod
        self.scheduler_config = dict(scheduler_config)
        self.size, self.channels = unet.config.sample_size, unet.config.in_channels
        n = unet.config.get("num_class_embeds")
        self.null_label = None if n is None else n - 1
        # the seeds' models were unconditional (`model(current, t)`); a class-conditional UNet needs a
        # label, so the seed loops get the "no class" label: exactly what F.sample gives it by default
        self.seed_labels = None if self.null_label is None else torch.tensor([self.null_label])
        self.clip_sample = bool(self.scheduler_config.get("clip_sample", False))

    def ddim_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.scheduler_config)

    def noise(self, n, seed):
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.channels, self.size, self.size, generator=g)


def load_bundled(name=BUNDLED):
    """The course's model through the course's loader (retried: training may be rewriting the file)."""
    from src.course import load_model

    for attempt in range(3):
        try:
            m = load_model(name, device="cpu")
            break
        except Exception:  # noqa: BLE001 - a half-written safetensors file while training saves
            if attempt == 2:
                raise
            time.sleep(5)
    return Bench(name, m.unet, m.scheduler.config, m.alphas_cumprod)


def make_google_256(quick=False):
    """A random-initialised UNet2DModel with google/ddpm-celebahq-256's architecture (quick: shrunk to
    64 px and a quarter of the channels, the same blocks, so the code path runs in seconds)."""
    import torch
    from diffusers import DDIMScheduler, UNet2DModel
    from src import functions as F

    cfg = dict(GOOGLE_256_UNET)
    if quick:
        cfg.update(sample_size=64, block_out_channels=tuple(c // 4 for c in cfg["block_out_channels"]))
    torch.manual_seed(0)
    unet = UNet2DModel(**cfg).eval().requires_grad_(False)
    sched = DDIMScheduler(**GOOGLE_256_SCHEDULER)
    ac = F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(dict(sched.config)))
    label = "random google/ddpm-celebahq-256 UNet" + (" (quick: 64 px, 1/4 channels)" if quick else "")
    return Bench(label, unet, sched.config, ac)


# --- the three ways to sample: the course, bare UNet calls, diffusers' pipeline, the seeds ----------

def course_sample(b, noise, steps, start_index=0, return_trajectory=False):
    """The course's DDIM sampler, as the notebooks call it (no class label: the model's "no class")."""
    from src import functions as F

    return F.sample(b.unet, noise, b.alphas_cumprod, steps, eta=0.0, start_index=start_index,
                    clip_sample=b.clip_sample, return_trajectory=return_trajectory, progress=False)


def course_sample_plain(b, noise, steps):
    """F.sample with the UNet called as a plain module (diffusers' forward, Python and all), not through
    F.unet_forward's TorchScript trace: the course before the trace, for the tuning section."""
    import torch
    from src import functions as F

    def plain_epsilon(x_t, t, rows):
        labels = None if b.null_label is None else torch.full((len(x_t),), b.null_label, dtype=torch.long)
        return b.unet(x_t, torch.full((len(x_t),), int(t), dtype=torch.long), class_labels=labels).sample
    return F.sample(b.unet, noise, b.alphas_cumprod, steps, eta=0.0, clip_sample=b.clip_sample,
                    epsilon_fn=plain_epsilon, progress=False)


def bare_forwards(b, noise, steps):
    """Only the UNet calls F.sample makes (F.unet_forward: S forwards on the same batch), inputs prepared
    beforehand."""
    import torch
    from src import functions as F

    B = noise.shape[0]
    ts = [torch.full((B,), int(t), dtype=torch.long) for t in F.ddim_timesteps(steps, len(b.alphas_cumprod))]
    labels = None if b.null_label is None else torch.full((B,), b.null_label, dtype=torch.long)

    def run():
        with torch.inference_mode():
            for t in ts:
                out = F.unet_forward(b.unet, noise, t, labels)
        return out
    return run


def make_pipeline(b):
    """diffusers.DDIMPipeline on the same UNet."""
    from diffusers import DDIMPipeline

    pipe = DDIMPipeline(unet=b.unet, scheduler=b.ddim_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_images(b, pipe, n, steps, seed):
    """DDIMPipeline's images as a (B, C, H, W) tensor in [0, 1] (output_type="pt": no PIL, no NumPy).

    The pipeline calls unet(image, t) without a class label, which a class-conditional UNet rejects, so
    a forward pre-hook adds the "no class" label for the length of the call (on the UNet all the time, it
    would also switch the course's F.unet_forward to plain calls, which skip no hooks)."""
    import torch

    def add_null_label(module, args, kwargs):
        if kwargs.get("class_labels") is None and len(args) < 3:
            kwargs["class_labels"] = torch.full((args[0].shape[0],), b.null_label, dtype=torch.long)
        return args, kwargs
    hook = None if b.null_label is None else b.unet.register_forward_pre_hook(add_null_label, with_kwargs=True)
    try:
        return pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                    output_type="pt").images
    finally:
        if hook is not None:
            hook.remove()


def course_images(b, n, steps, seed):
    """The course's images made the way the pipeline makes its own: noise from the seed, DDIM, then
    mapped to [0, 1], so both sides do the same work and give comparable tensors."""
    x = course_sample(b, b.noise(n, seed), steps)
    return (x / 2 + 0.5).clamp(0, 1)


# A faithful copy of the seed notebook's similar-noise loop (seed repository: src/similar_noise.ipynb,
# "output generation" cell): the two images one after the other, batch 1, a model call and a
# scheduler.step per step. Only change: `class_labels=` for class-conditional models (see Bench).
def seed_similar_noise(b, noise_1, noise_2, steps):
    import torch
    from tqdm import tqdm

    model, ddim_scheduler = b.unet, b.ddim_scheduler()
    ddim_scheduler.set_timesteps(steps)
    images = list()
    for current in [noise_1, noise_2]:
        for t in tqdm(ddim_scheduler.timesteps, disable=True):  # the seed's bar, switched off (as ours)
            with torch.no_grad():
                predicted_noise = model(current, t, class_labels=b.seed_labels).sample
                current = ddim_scheduler.step(predicted_noise, t, current).prev_sample
        images.append(current)
    return images


# A faithful copy of the seed's forward-backward grid (seed repository: src/forward_backward.py and
# src/forward_backward_process.ipynb): for each level, noise the image to that level, then denoise it
# one UNet call per cell, keeping every cell. (The seed pasted each cell into a PIL canvas; here each
# cell is kept as a tensor, which is cheaper, so the seed is not handicapped.)
def seed_grid(b, image, noise, steps, levels):
    import torch

    model, scheduler = b.unet, b.ddim_scheduler()
    scheduler.set_timesteps(steps)
    rows = []
    for i in reversed(range(levels)):
        current = scheduler.add_noise(image, noise, scheduler.timesteps[i])
        row = [current]
        for j, t in enumerate(scheduler.timesteps[i:]):
            with torch.no_grad():
                predicted_noise = model(current, t, class_labels=b.seed_labels).sample
                current = scheduler.step(predicted_noise, t, current).prev_sample
                row.append(current)
        rows.append(row)
    return rows


def course_grid(b, image, noise, steps, levels):
    """The course's grid: all rows in one F.sample call, row r joining at its own start index; the
    trajectory holds every cell. Returns the cells in the seed's order (rows of tensors)."""
    import torch
    from src import functions as F

    starts = torch.arange(levels - 1, -1, -1)  # the seed's row order: least noisy first
    timesteps = F.ddim_timesteps(steps, len(b.alphas_cumprod))
    x = F.forward_jump(image.expand(levels, -1, -1, -1), timesteps[starts], b.alphas_cumprod,
                       noise=noise.expand(levels, -1, -1, -1))
    _, trajectory = course_sample(b, x, steps, start_index=starts, return_trajectory=True)
    xs = trajectory["x_t"]  # (S + 1, levels, C, H, W); row r's j-th cell is xs[starts[r] + j, r]
    return [[xs[int(s) + j, r:r + 1] for j in range(steps - int(s) + 1)] for r, s in enumerate(starts)]


def grid_image(b):
    """The grid's clean image: a held-out MNIST digit for a 28x28 greyscale model, else the astronaut."""
    from src import functions as F

    if (b.size, b.channels) == (28, 1):
        from src.train import load_mnist

        return load_mnist("test")[0][:1]
    return F.load_image("images/astronaut.png", b.size, b.channels)[0]


# --- FLOPs and the floor ---------------------------------------------------------------------------

def count_flops(b, batch):
    """FLOPs of one UNet forward at `batch`: torch's FlopCounterMode, plus attention by hand.

    FlopCounterMode counts convolutions and matrix multiplies; on the CPU it counts scaled-dot-product
    attention as zero, so each diffusers Attention call adds 4 N^2 d per image and head (Q K^T and
    attention x V, N tokens, head size d; softmax and norms are not counted, as elsewhere).
    Returns (counted, attention by hand, total).
    """
    import torch
    from diffusers.models.attention_processor import Attention
    from torch.utils.flop_counter import FlopCounterMode

    attention = [0]

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        tokens = x.shape[2] * x.shape[3] if x.dim() == 4 else x.shape[1]
        attention[0] += 4 * x.shape[0] * tokens * tokens * module.inner_dim
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in b.unet.modules()
               if isinstance(m, Attention)]
    x = b.noise(batch, 0)
    t = torch.full((batch,), 500, dtype=torch.long)
    labels = None if b.null_label is None else torch.full((batch,), b.null_label, dtype=torch.long)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            b.unet(x, t, class_labels=labels)
    finally:
        for h in handles:
            h.remove()
    counted = counter.get_total_flops()
    ops = {str(op) for per_module in counter.get_flop_counts().values() for op in per_module}
    if any("scaled_dot_product" in op for op in ops):  # a torch that counts it already: do not add twice
        attention[0] = 0
    return counted, attention[0], counted + attention[0]


def mm_rate(n, repeats):
    """The machine's float32 matrix-multiply rate (FLOP/s): 2 n^3 / the fastest of the n x n torch.mm repeats.

    The fastest, not the median: the floor is the best the machine can do, and on a shared machine a slow repeat
    measures the neighbours (a median of 240 ms against a fastest of 177 ms once put a sample below its "floor").
    """
    import torch

    a, c = torch.randn(n, n), torch.randn(n, n)
    times, _ = timeit({"mm": lambda: torch.mm(a, c)}, repeats, warmup=1)
    return 2 * n**3 / min(times["mm"]), times


# --- sections --------------------------------------------------------------------------------------

def section_sampler(R, b, p):
    """Issue items 1, 2 and 7: F.sample vs its bare UNet calls vs DDIMPipeline, batch 16 and a pair."""
    pipe = make_pipeline(b)
    for n in (p["batch"], p["pair"]):
        noise = b.noise(n, 0)
        times, out = timeit({
            "course F.sample": lambda: course_images(b, n, p["steps"], seed=0),
            "bare UNet calls": bare_forwards(b, noise, p["steps"]),
            "DDIMPipeline": lambda: pipeline_images(b, pipe, n, p["steps"], seed=0),
        }, p["repeats"], p["warmup"])
        R.timings(f"sampler, batch {n}, {p['steps']} steps", times)
        c, bare, ref = (median(times[k]) for k in ("course F.sample", "bare UNet calls", "DDIMPipeline"))
        R.measured[f"course_{n}"] = c
        R.measured[f"bare_{n}"] = bare
        what = f"{p['steps']}-step DDIM sample of {n}"
        R.ratio_row(1, f"Sampler overhead, {what}: F.sample / its {p['steps']} bare UNet calls", c, bare,
                    paired_ratio(times, "course F.sample", "bare UNet calls"), 1.03)
        R.ratio_row(2, f"{what}: F.sample / diffusers DDIMPipeline", c, ref,
                    paired_ratio(times, "course F.sample", "DDIMPipeline"), 1.0)
        R.equal_row(2, f"{what}: course images = DDIMPipeline images", *max_diff(out["course F.sample"],
                                                                                   out["DDIMPipeline"]))
    R.notes.append("Sampler rows: the course side is noise drawn from a seeded generator + F.sample + mapping to "
                   "[0, 1], the same work DDIMPipeline(output_type=\"pt\") does; the bare side is only the S UNet "
                   "calls (F.unet_forward, as F.sample makes them), on inputs made beforehand. F.unet_forward runs "
                   "a TorchScript trace of the UNet on the CPU (same kernels, bit-identical output); the pipeline "
                   "calls the UNet module itself. The pipeline gets the class-conditional UNet's \"no class\" "
                   "label through a forward pre-hook (it passes none); F.sample uses the same label by default.")
    section_bookkeeping(R, b, p)
    for n, target in ((p["batch"], 2.0), (p["pair"], 1.0)):
        c = R.measured[f"course_{n}"]
        R.row(7, f"{p['steps']}-step DDIM sample of {n}, bundled model (warm)", fmt_time(c), "-", "-",
              f"<= {target:g} s", "yes" if c <= target else "no")



def section_tuning(R, b, p):
    """The CPU settings the issue asks to try, each against the course's default, on the same F.sample:
    the UNet called as a plain module instead of F.unet_forward's trace (the course before the trace),
    channels_last memory format (a copy of the UNet, channels_last input) and one torch thread instead of
    torch's default. A ratio below 1 would mean the setting is faster and should become the default."""
    import copy

    import torch

    cl = copy.deepcopy(b.unet).to(memory_format=torch.channels_last)
    b_cl = Bench(b.name, cl, b.scheduler_config, b.alphas_cumprod)
    threads = torch.get_num_threads()

    def one_thread(noise):
        torch.set_num_threads(1)
        try:
            return course_sample(b, noise, p["steps"])
        finally:
            torch.set_num_threads(threads)

    for n in (p["batch"], p["pair"]):
        noise = b.noise(n, 0)
        fns = {"default": lambda: course_sample(b, noise, p["steps"]),
               "plain UNet calls (no trace)": lambda: course_sample_plain(b, noise, p["steps"]),
               "channels_last": lambda: course_sample(b_cl, noise.to(memory_format=torch.channels_last), p["steps"])}
        if threads > 1:
            fns["1 thread"] = lambda: one_thread(noise)
        times, out = timeit(fns, p["repeats"], p["warmup"])
        R.timings(f"tuning, batch {n}, {p['steps']} steps", times)
        base = median(times["default"])
        for name in fns:
            if name == "default":
                continue
            diff, _ = max_diff(out[name], out["default"])
            R.row("+", f"{p['steps']}-step sample of {n}: {name} / default ({threads} threads, contiguous); "
                  f"images differ by {diff:.1e}", fmt_time(median(times[name])), fmt_time(base),
                  f"{paired_ratio(times, name, 'default'):.2f}x")


def section_bookkeeping(R, b, p):
    """The sampler's own cost per step, without the UNet: F.sample with an epsilon_fn returning zeros vs
    the same loop over diffusers' DDIMScheduler.step. Independent of the model, nearly of the load."""
    import torch
    from src import functions as F

    n, steps = p["batch"], p["steps"]
    x = b.noise(n, 0)
    zero = torch.zeros_like(x)
    scheduler = b.ddim_scheduler()

    def course():
        return F.sample(b.unet, x, b.alphas_cumprod, steps, epsilon_fn=lambda x_t, t, rows: zero[:len(rows)],
                        clip_sample=b.clip_sample, progress=False)

    def diffusers_loop():
        scheduler.set_timesteps(steps)
        current = x
        for t in scheduler.timesteps:
            current = scheduler.step(zero, t, current).prev_sample
        return current

    times, _ = timeit({"F.sample, zero epsilon": course, "DDIMScheduler.step loop": diffusers_loop},
                      4 * p["repeats"], 2)
    R.timings(f"bookkeeping, batch {n}, {steps} steps", times)
    c, d = (median(times[k]) / steps for k in ("F.sample, zero epsilon", "DDIMScheduler.step loop"))
    R.row("+", f"Sampler bookkeeping per step without the UNet (epsilon = 0), batch {n}: F.sample / "
          f"a loop of DDIMScheduler.step", f"{c * 1e6:.0f} us", f"{d * 1e6:.0f} us",
          f"{paired_ratio(times, 'F.sample, zero epsilon', 'DDIMScheduler.step loop'):.2f}x")


def section_seeds(R, b, p, steps, repeats, item_label):
    """Issue item 3: the similar-noise experiment, seed loops vs one F.sample on the stacked pair."""
    import torch
    from src import functions as F

    g = torch.Generator().manual_seed(0)
    noise_1 = b.noise(1, 0)
    size = max(1, b.size // 4)
    noise_2 = F.patch_noise(noise_1, size, b.size // 3, b.size // 3, generator=g)
    pair = torch.cat([noise_1, noise_2])
    big = b.size > 28
    warmup_fns = None
    if big:  # a forward takes seconds: warm up with one forward per batch size, not a whole round
        warmup_fns = [bare_forwards(b, noise_1, 1), bare_forwards(b, pair, 1)]
    times, out = timeit({
        "course F.sample (batch 2)": lambda: course_sample(b, pair, steps),
        "seed loops (2 x batch 1)": lambda: seed_similar_noise(b, noise_1, noise_2, steps),
    }, repeats, p["warmup"], warmup_fns=warmup_fns)
    label = f"similar noise, {item_label}, {steps} steps"
    R.timings(label, times)
    c, s = median(times["course F.sample (batch 2)"]), median(times["seed loops (2 x batch 1)"])
    R.measured[f"similar_{'big' if big else 'bundled'}"] = (c, steps)
    what = f"Similar-noise experiment (2 noises -> 2 images), {item_label}, {steps} steps"
    R.ratio_row(3, f"{what}: seed loops / F.sample", c, s,
                paired_ratio(times, "course F.sample (batch 2)", "seed loops (2 x batch 1)"), 1.5, faster=True)
    R.equal_row(3, f"{what}: course images = seed images", *max_diff(out["course F.sample (batch 2)"],
                                                                       torch.cat(out["seed loops (2 x batch 1)"])))


def section_grid(R, b, p):
    """Issue item 4: the forward-backward grid, seed nested loops vs one F.sample with per-row starts."""
    image = grid_image(b)
    noise = b.noise(1, 1)
    levels = steps = p["grid_levels"]
    times, out = timeit({
        "course F.sample, per-row start_index": lambda: course_grid(b, image, noise, steps, levels),
        "seed nested loops": lambda: seed_grid(b, image, noise, steps, levels),
    }, p["repeats"], p["warmup"])
    R.timings(f"grid, {levels} levels", times)
    c, s = median(times["course F.sample, per-row start_index"]), median(times["seed nested loops"])
    what = f"Forward-backward grid, {levels} levels x {steps} DDIM steps ({levels * (levels + 1) // 2} cells)"
    R.ratio_row(4, f"{what}: seed nested loops / F.sample", c, s,
                paired_ratio(times, "course F.sample, per-row start_index", "seed nested loops"), 3.0, faster=True)
    cells_c = [cell for row in out["course F.sample, per-row start_index"] for cell in row]
    cells_s = [cell for row in out["seed nested loops"] for cell in row]
    R.equal_row(4, f"{what}: every course cell = the seed's cell", *max_diff(cells_c, cells_s))


def section_floor(R, b, p, rate, flops_note):
    """Issue item 6 for a model: measured / (S x FLOPs per forward / mm rate) for the sample it timed."""
    if b.size == 28:  # the bundled model: the sample of 16 timed by the sampler section
        n, steps = p["batch"], p["steps"]
        measured = R.measured.get(f"course_{n}")
        if measured is None:  # the sampler section did not run: time the sample here
            noise = b.noise(n, 0)
            times, _ = timeit({"course F.sample": lambda: course_sample(b, noise, steps)}, p["repeats"], p["warmup"])
            R.timings(f"floor, batch {n}, {steps} steps", times)
            measured = median(times["course F.sample"])
    else:  # the 256-px UNet: the similar-noise pair timed by the big section, per step
        n = 2
        measured, steps = R.measured["similar_big"]
    counted, attention, total = count_flops(b, 1)
    per_forward = total * n
    floor = p["floor_steps"] * per_forward / rate
    measured_50 = measured * p["floor_steps"] / steps
    R.row(6, f"Floor, {p['floor_steps']}-step DDIM sample of {n}, {b.name}"
          + ("" if steps == p["floor_steps"] else f" (measured at {steps} steps, scaled)"),
          fmt_time(measured_50), fmt_time(floor), f"{measured_50 / floor:.1f}x the floor", "- (report)", "-")
    flops_note.append(f"- {b.name}: {counted / 1e9:.3f} GFLOP per image-forward counted by FlopCounterMode + "
                      f"{attention / 1e9:.3f} GFLOP attention by hand = {total / 1e9:.3f} GFLOP; "
                      f"x {n} images x {p['floor_steps']} steps / {rate / 1e9:.1f} GFLOP/s = {fmt_time(floor)}.")


def section_start(R, p, quick):
    """A fresh Python process, as a student's first cell: import, load, first sample, memory, first figure."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child-start", json.dumps(
        {"batch": p["batch"], "pair": p["pair"], "steps": p["steps"], "model": p["model"]})]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the start-up child failed:\n{proc.stderr[-2000:]}")
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    R.raw.append(f"start-up child (one run, a fresh process): {json.dumps(d)}; wall incl. interpreter start {wall:.2f} s")
    n, steps = p["batch"], p["steps"]
    R.row("+", "Cold start: `import torch, diffusers` and the course's modules", fmt_time(d["import_s"]))
    R.row("+", "Load the bundled model (`load_model`)", fmt_time(d["load_s"]))
    R.row("+", f"First {steps}-step sample of {n} in a fresh process (cold: one-time costs included)",
          fmt_time(d["first_sample_s"]))
    R.row("+", f"Then a {steps}-step pair", fmt_time(d["pair_s"]))
    R.row("+", f"First figure: {n} samples drawn with F.show_images and rendered to PNG (incl. matplotlib import)",
          fmt_time(d["figure_s"]))
    R.row("+", "Fresh process to first figure: interpreter + imports + load + sample + figure", fmt_time(wall))
    R.row(7, f"Peak memory of the first {steps}-step sample of {n}: peak RSS during it minus RSS before it "
          f"(process peak during it)", fmt_bytes(d["peak_extra"]), f"process peak {fmt_bytes(d['peak_during'])}")
    how = ("the process's peak resident set size (VmHWM in /proc/self/status, reset just before the sample by "
           "writing 5 to /proc/self/clear_refs) minus its resident set size (VmRSS) just before the sample"
           if d["peak_reset"] else
           "the growth of the process's peak resident set size (ru_maxrss / VmHWM) during the sample, which "
           "undercounts when importing or loading had peaked higher")
    R.notes.append(f"Memory, measured in a fresh process: {how}. tracemalloc cannot see torch's allocations.")


def _memory():
    """(current RSS, peak RSS since the last reset) in bytes: /proc/self/status VmRSS and VmHWM on Linux,
    else (nan, ru_maxrss)."""
    try:
        status = Path("/proc/self/status").read_text()
        kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
               if line.startswith(("VmRSS:", "VmHWM:"))}
        return kib["VmRSS"] * 1024, kib["VmHWM"] * 1024
    except (OSError, KeyError, ValueError):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return float("nan"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _reset_peak():
    """Reset the process's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_start(args):
    """Runs in the fresh process of section_start; prints one JSON line."""
    t0 = time.perf_counter()
    import torch  # noqa: F401
    from diffusers import DDIMScheduler, UNet2DModel  # noqa: F401 - what load_model imports (diffusers is lazy)
    from src import functions as F
    from src.course import load_model  # noqa: F401
    t1 = time.perf_counter()
    b = load_bundled(args["model"])
    t2 = time.perf_counter()
    noise = b.noise(args["batch"], 0)
    reset = _reset_peak()
    rss0, peak0 = _memory()
    x = course_sample(b, noise, args["steps"])
    t3 = time.perf_counter()
    rss1, peak1 = _memory()
    course_sample(b, b.noise(args["pair"], 0), args["steps"])
    t4 = time.perf_counter()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = F.show_images(x, ncols=8, suptitle="samples")
    F.figure_bytes(fig)
    plt.close(fig)
    t5 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_sample_s": t3 - t2, "pair_s": t4 - t3,
                      "figure_s": t5 - t4, "rss_before": rss0, "peak_during": peak1,
                      "peak_extra": peak1 - (rss0 if reset else peak0), "peak_reset": reset}))


def section_notebooks(R, quick):
    """Each notebooks/*.ipynb in a fresh kernel, run cell by cell until the first figure appears."""
    import nbformat
    from nbclient import NotebookClient

    paths = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        R.row("+", "Time to a notebook's first figure", "skipped: no notebooks/*.ipynb yet")
        return
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        shown, error = None, None
        try:
            with client.setup_kernel():
                for i, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    client.execute_cell(cell, i)
                    if any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
                        shown = time.perf_counter() - t0
                        break
        except Exception as e:  # noqa: BLE001 - reported in the table, the other notebooks still run
            error = f"{type(e).__name__}"
        mode = " (COURSE_FAST=1)" if os.environ.get("COURSE_FAST") else ""
        value = fmt_time(shown) if shown is not None else (f"error: {error}" if error else "no figure")
        R.row("+", f"{path.name}: fresh kernel to first figure{mode}", value)


def section_course(R):
    """Issue item 5: the whole course, `python -m src.run_course`, default config, one run."""
    import importlib.util

    if importlib.util.find_spec("src.run_course") is None:
        R.row(5, "Whole course: `python -m src.run_course`", "skipped: src/run_course.py does not exist",
              target="<= 180 s")
        return
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "src.run_course"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=3600)
    wall = time.perf_counter() - t0
    R.raw.append(f"course: one run, {wall:.1f} s, exit status {proc.returncode}; its report: "
                 + " | ".join(line.strip() for line in proc.stdout.strip().splitlines()))
    if proc.returncode != 0:
        R.row(5, "Whole course: `python -m src.run_course`",
              f"failed (exit {proc.returncode}) after {fmt_time(wall)}", target="<= 180 s", met="no")
        failed = [line.strip() for line in proc.stdout.splitlines() if "FAILED" in line]
        R.notes.append("run_course failed: " + ("; ".join(failed) or repr(proc.stderr[-500:])))
        return
    mode = "COURSE_FAST=1 smoke mode" if os.environ.get("COURSE_FAST", "") not in ("", "0") else "default config"
    R.row(5, f"Whole course: `python -m src.run_course` ({mode}, one run)", fmt_time(wall),
          target="<= 180 s", met="yes" if wall <= 180 else "no")


# --- the report ------------------------------------------------------------------------------------

def machine_info():
    import diffusers
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "CPU": cpu,
        "logical cores (os.cpu_count)": os.cpu_count(),
        "torch threads (torch.get_num_threads)": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "Python": platform.python_version(),
        "load average at start (1 min)": f"{load[0]:.2f}" if load else "n/a",
    }


def render(R, info, p, args, elapsed):
    lines = ["# Benchmark results", ""]
    if args.quick:
        lines += ["**QUICK MODE** (`--quick`): tiny sizes to exercise the code paths; these figures mean nothing.", ""]
    cmd = "python bench/run.py" + (" " + " ".join(args.argv) if args.argv else "")
    lines += [f"Command: `{cmd}` ({elapsed:.0f} s in all). Regenerate with the same command.", "",
              "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        lines.append(f"- load average at end (1 min): {load:.2f}")
    lines += ["", "## Method", "",
              f"Every ratio compares two things measured in this run, on this machine, with the same model, batch "
              f"and number of steps. Each measurement: {p['warmup']} untimed warm-up round(s), then the median of "
              f"{p['repeats']} timed repeats ({p['big_repeats']} for the 256-px UNet, warmed up with one forward per "
              f"batch size), the compared callables taken in turns, each once per repeat. A ratio is the median "
              f"of the ratios within a repeat, whose sides ran back to back, so a machine that speeds up or slows "
              f"down between repeats cancels out of it; it can differ from the ratio of the two median times "
              f"shown beside it. Start-up, notebook and whole-course figures are "
              f"single runs in fresh processes. Progress bars are off on every side. A target is met when the "
              f"figure as shown (2 decimals) meets it. Images are compared as max |course - reference| against "
              f"{TOL_ABS:g} + {TOL_REL:g} x max |reference| (pixel values in [-1, 1]).", "",
              "## Results", "",
              "| # | what | course | reference | ratio | target | met? |",
              "|---|---|---|---|---|---|---|"]
    for r in R.rows:
        lines.append(f"| {r['item']} | {r['what']} | {r['course']} | {r['reference']} | {r['ratio']} | "
                     f"{r['target']} | {r['met']} |")
    if R.notes:
        lines += ["", "## Notes", ""] + [n if n.startswith("-") else f"- {n}" for n in R.notes]
    lines += ["", "## Raw timings (seconds)", ""] + [f"- {r}" for r in R.raw]
    return "\n".join(lines) + "\n"


def params(quick):
    return {k: v[1] if quick else v[0] for k, v in DEFAULTS.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (for the tests)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], help="leave these sections out")
    parser.add_argument("--course", action="store_true", help="also time `python -m src.run_course` (item 5)")
    parser.add_argument("--out", help="Markdown file to write (default bench/results.md; --quick: none)")
    parser.add_argument("--model", default=BUNDLED, help="the course's model folder (default models/mnist-ddpm)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5; --quick 1)")
    parser.add_argument("--big-steps", type=int, help="DDIM steps on the 256-px UNet (default 2)")
    parser.add_argument("--_child-start", dest="child_start", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.child_start:
        return child_start(json.loads(args.child_start))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    p = params(args.quick)
    p.update(model=args.model, floor_steps=p["steps"])
    if args.repeats:
        p["repeats"] = args.repeats
    if args.big_steps:
        p["big_steps"] = args.big_steps
    wanted = list(args.only or [s for s in SECTIONS if s != "course" or args.course])
    wanted = [s for s in wanted if s not in args.skip]
    if args.quick and not args.only:
        wanted = [s for s in wanted if s not in ("notebooks", "course")]

    start = time.perf_counter()
    info = machine_info()
    R = Results()
    b = load_bundled(args.model) if {"sampler", "tuning", "seeds", "grid", "floor"} & set(wanted) else None
    rate = None
    flops_note = ["FLOP floor: the UNet's FLOPs per forward x images x steps / the measured matrix-multiply rate."]
    if {"floor", "big"} & set(wanted):
        rate, mm_times = mm_rate(p["mm_size"], p["repeats"])
        R.timings(f"torch.mm {p['mm_size']}x{p['mm_size']} float32", mm_times)
        flops_note.append(f"- torch.mm rate: {rate / 1e9:.1f} GFLOP/s ({p['mm_size']}x{p['mm_size']} float32, "
                          f"{torch.get_num_threads()} threads, its fastest repeat).")
    for section in wanted:
        t0 = time.perf_counter()
        print(f"[bench] {section} ...", file=sys.stderr, flush=True)
        if section == "sampler":
            section_sampler(R, b, p)
        elif section == "tuning":
            section_tuning(R, b, p)
        elif section == "seeds":
            section_seeds(R, b, p, p["steps"], p["repeats"], "bundled model")
        elif section == "grid":
            section_grid(R, b, p)
        elif section == "big":
            big = make_google_256(args.quick)
            section_seeds(R, big, p, p["big_steps"], p["big_repeats"], big.name)
            section_floor(R, big, p, rate, flops_note)
            del big
        elif section == "floor":
            section_floor(R, b, p, rate, flops_note)
        elif section == "start":
            section_start(R, p, args.quick)
        elif section == "notebooks":
            section_notebooks(R, args.quick)
        elif section == "course":
            section_course(R)
        print(f"[bench] {section} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if len(flops_note) > 1:
        R.notes.append("\n".join(flops_note))
    R.rows.sort(key=lambda r: (str(r["item"]) == "+", str(r["item"])))
    text = render(R, info, p, args, time.perf_counter() - start)
    print(text)
    out = args.out or (None if args.quick else str(PROJECT_ROOT / "bench" / "results.md"))
    if out:
        Path(out).write_text(text)
        print(f"[bench] wrote {out}", file=sys.stderr)
    return R


if __name__ == "__main__":
    main()
