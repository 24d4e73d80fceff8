"""Training: the course's small MNIST UNet and the loop that trains it (the classifier's is in src/classifier.py).

Command line (run from anywhere; paths are taken from the repository root):

    python -m src.train ddpm --out models/my-mnist                         # the bundled model's recipe
    python -m src.train ddpm --out models/my-mnist --resume                # go on after a stop
    python -m src.train ddpm --recipe ten-minutes --out models/my-10min    # ten minutes on 2 CPU cores
    python -m src.train ddpm --recipe ten-minutes --objective flow --out models/my-flow   # rectified flow (07)
    python -m src.train classifier --out models/digit-classifier           # the grader

A recipe (RECIPES) names every hyperparameter of a run; command-line flags override single ones. The same
`train_diffusion` function runs in notebook 06 (`train_recipe("ten_minutes", ..., stop_after=train_steps)`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf  # not F: in the course, F is src.functions
from tqdm.auto import tqdm

from src import functions as F
from src.files import repo_path
from src.mnist import NUM_CLASSES, load_mnist

# The noise schedule every course model is trained with (DDPM Sec. 4: linear beta 1e-4 -> 0.02, T = 1000),
# written into each model's scheduler_config.json; clip_sample=False because clipping x0-hat breaks guided
# sampling (notebook 05). The one place it is written: training and the saved config both read it here.
TRAINING_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         clip_sample=False)


def training_alphas_cumprod():
    """abar_t of TRAINING_SCHEDULE, (T,) float32 on the CPU."""
    return F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(TRAINING_SCHEDULE))


# --- models --------------------------------------------------------------------------------------

def make_unet(class_conditional=True, sample_size=28, block_out_channels=(16, 24, 48)):
    """The course's small UNet: 1 channel, 28x28, three resolutions (28, 14, 7), attention only in the 7x7 middle.

    Sized for a laptop CPU (about 0.40 M parameters). With class_conditional, labels 0-9 are the
    digits and label 10 is "no class" (the unconditional branch of classifier-free guidance).
    """
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=sample_size, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=tuple(block_out_channels), norm_num_groups=8,
        down_block_types=("DownBlock2D",) * len(block_out_channels),
        up_block_types=("UpBlock2D",) * len(block_out_channels),
        # FiLM-style conditioning (scale and shift from the time + class embedding): the class
        # signal reaches every block more strongly than an added bias does
        resnet_time_scale_shift="scale_shift",
        # labels 0-9 the digits, and one more, the last: "no class" (F.null_label_of reads it from here)
        num_class_embeds=NUM_CLASSES + 1 if class_conditional else None,
    )


# --- the recipes ---------------------------------------------------------------------------------

# Every hyperparameter of a training run, by name (train_recipe and `python -m src.train ddpm --recipe` read them).
# "bundled": the model the course ships (models/mnist-ddpm: 10,000 steps, 96 min on 2 CPU cores; its
#     training.json). "ten_minutes": issue #19's laptop recipe: twice the learning rate after a short warm-up,
#     Min-SNR-5 loss weights (Hang et al. 2023), and the 1,440 steps that 10 minutes held on the shared 2-core
#     machine it was measured on (0.42 s per step, one torch thread: two threads stall each other on a busy
#     machine). Its EMA is the bundled one's: for the first 1,790 steps the warm-up term of train_diffusion's EMA,
#     (1 + step) / (10 + step), is below 0.995, so ema_decay 0.995 or 0.999 give the very same weights. Its EMA
#     weights after 1, 2, 5 and 10 minutes ship in models/mnist-10min/ with their grades.
RECIPES = {
    "bundled": dict(steps=10000, batch_size=64, lr=1.5e-3, warmup=200, ema_decay=0.999, min_snr_gamma=None,
                    label_dropout=0.1, channels=(16, 24, 48)),
    "ten_minutes": dict(steps=1440, batch_size=64, lr=3e-3, warmup=100, ema_decay=0.999, min_snr_gamma=5.0,
                        label_dropout=0.1, channels=(16, 24, 48)),
}


def recipe(name, **overrides):
    """A copy of RECIPES[name] ("ten-minutes" = "ten_minutes"), with `overrides` (None values ignored) applied."""
    key = name.replace("-", "_")
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are {', '.join(RECIPES)}")
    unknown = set(overrides) - set(RECIPES[key])
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not knobs of a recipe ({', '.join(RECIPES[key])})")
    return {**RECIPES[key], **{k: v for k, v in overrides.items() if v is not None}}


def train_recipe(name, images, labels, *, seed=0, stop_after=None, device="cpu", out=None, save_every=250,
                 resume=False, callback=None, progress=True, snapshots=None, objective="ddpm", **overrides):
    """Train a fresh class-conditional UNet with recipe `name`; returns (ema_unet, losses).

    objective: "ddpm" (eps-prediction) or "flow" (rectified flow, src/flow.py: the same UNet on the velocity
    target). The recipe's min_snr_gamma weights the eps-prediction loss only, so a flow run trains on the plain
    velocity loss of rectified flow; every other knob (steps, batch, lr, warm-up, EMA, label dropout) is the
    recipe's.

    The UNet's initial weights come from `seed` (as `python -m src.train` makes them), so the notebook's run and
    the command line's are the same run. stop_after: stop after this many steps (a slice of the recipe: the
    learning-rate schedule is still that of the recipe's `steps`, so the slice is the start of the full run).
    overrides: any recipe knob (steps, batch_size, lr, ...). The rest: see train_diffusion.
    """
    r = recipe(name, **overrides)
    with torch.random.fork_rng(devices=[]):  # the initial weights from `seed`, the caller's random state untouched
        torch.manual_seed(seed)
        unet = make_unet(block_out_channels=r["channels"])
    return train_diffusion(unet, images, labels, steps=r["steps"], batch_size=r["batch_size"], lr=r["lr"],
                           warmup=r["warmup"], label_dropout=r["label_dropout"], ema_decay=r["ema_decay"],
                           min_snr_gamma=None if objective == "flow" else r["min_snr_gamma"], seed=seed,
                           device=device, out=out, save_every=save_every, resume=resume, callback=callback,
                           progress=progress, stop_after=stop_after, snapshots=snapshots, objective=objective)


# --- the training loop ---------------------------------------------------------------------------

def lr_at(step, steps, lr, warmup):
    """Linear warm-up, then cosine decay to 10 % of lr at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def ema_update(ema, model, decay):
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)


OBJECTIVES = ("ddpm", "denoise", "flow")


def diffusion_loss(unet, x0, labels, alphas_cumprod, generator=None, objective="ddpm", sigma=0.5, label_dropout=0.1,
                   t=None, noise=None, min_snr_gamma=None):
    """One batch's loss.

    objective "ddpm": L_simple, DDPM Eq. 14: || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2,
        t uniform; with labels, each is replaced by the null label with probability label_dropout (CFG).
        min_snr_gamma: Min-SNR weighting (Hang et al. 2023, Eq. 7 for eps-prediction): each image's squared error
        times min(SNR(t), gamma) / SNR(t), so the many nearly clean t (SNR far above gamma) count less. None:
        plain L_simple.
    objective "denoise": a one-step denoiser, || x_0 - D(x_0 + sigma eps) ||^2 (t fixed at 0).
    objective "flow": rectified flow, || v_theta((1 - t) x_0 + t eps, 1000 t) - (eps - x_0) ||^2, t ~ U(0, 1)
        (src/flow.py; t here in [0, 1]), labels dropped as for "ddpm"; min_snr_gamma must be None (it weights
        the eps-prediction loss).
        t, noise: this batch's timesteps and noise; drawn from `generator` when None (the checker of notebook 06
        passes them, so a student's loss can be compared with this one exactly).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}.")
    if objective == "flow":
        from src.flow import flow_loss

        if min_snr_gamma is not None:
            raise ValueError("min_snr_gamma weights the eps-prediction loss (Hang et al. 2023, Eq. 7); the flow "
                             "objective trains on the plain velocity loss: pass min_snr_gamma=None.")
        return flow_loss(unet, x0, labels, generator, label_dropout, t=t, noise=noise)
    B = x0.shape[0]
    noise = F.randn_like(x0, generator) if noise is None else noise
    if labels is not None:
        drop = torch.rand(B, generator=generator) < label_dropout
        labels = torch.where(drop.to(labels.device), torch.full_like(labels, F.null_label_of(unet)), labels)
    if objective == "denoise":
        t = torch.zeros(B, dtype=torch.long, device=x0.device)
        return nnf.mse_loss(unet(x0 + sigma * noise, t, class_labels=labels).sample, x0)
    if t is None:
        t = torch.randint(0, len(alphas_cumprod), (B,), generator=generator).to(x0.device)
    x_t = F.forward_jump(x0, t, alphas_cumprod, noise=noise)
    if min_snr_gamma is None:
        return nnf.mse_loss(unet(x_t, t, class_labels=labels).sample, noise)
    error = (unet(x_t, t, class_labels=labels).sample - noise).pow(2).mean(dim=tuple(range(1, x0.dim())))
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    return (error * snr.clamp(max=min_snr_gamma) / snr).mean()


def optimizer_step(unet, optimizer, loss, max_grad_norm=1.0):
    """One optimizer step on a batch's loss: gradients from zero, their norm clipped to max_grad_norm (one bad
    batch cannot throw the weights far), then the update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), max_grad_norm)
    optimizer.step()


def train_diffusion(unet, images, labels=None, *, steps, batch_size=64, lr=1.5e-3, warmup=200,
                    label_dropout=0.1, objective="ddpm", sigma=0.5, ema_decay=0.999, seed=0,
                    device="cpu", out=None, save_every=250, resume=False, callback=None,
                    progress=True, min_snr_gamma=None, stop_after=None, snapshots=None):
    """Train `unet` for `steps` AdamW steps; returns (ema_unet, losses). The defaults are RECIPES["bundled"]'s.

    out: a folder for the EMA weights (diffusers layout), the loss log `loss.csv` and a
    `checkpoint.pt` with the optimizer state for --resume. callback(step, ema) runs every
    save_every steps (notebook 06 draws samples there).
    min_snr_gamma: the loss's Min-SNR weighting (see diffusion_loss); None: plain L_simple.
    stop_after: stop once this many steps are done (the learning-rate schedule is still that of `steps`;
        resume later with the same `steps` to go on).
    snapshots: {name: step}: at each step, also save the EMA weights to out/name (diffusers layout, float16:
        half the size, and what is graded is what loads).
    """
    import copy

    unet = unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    # fused: one kernel for all parameters, about 10 ms less per step of a small model on a CPU
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0, fused=True)
    alphas_cumprod = training_alphas_cumprod().to(device)
    generator = torch.Generator().manual_seed(seed)
    losses, start, elapsed, runs = [], 0, 0.0, []
    out = repo_path(out) if out is not None else None
    if resume and out is not None and (out / "checkpoint.pt").exists():
        ckpt = torch.load(out / "checkpoint.pt", map_location=device, weights_only=False)
        unet.load_state_dict(ckpt["model"]); ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"]); generator.set_state(ckpt["generator"])
        start, losses, elapsed = ckpt["step"], ckpt["losses"], ckpt.get("elapsed", 0.0)
        runs = ckpt.get("runs", [])
    runs.append({"from_step": start, "until_step": start, "seconds": 0.0})  # this run, in the log
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None
    end = steps if stop_after is None else min(steps, stop_after)
    keep = {step: name for name, step in (snapshots or {}).items()}
    bar = tqdm(range(start, end), initial=start, total=end, disable=not progress, desc="training")
    t0 = time.perf_counter() - elapsed
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        idx = torch.randint(0, len(images), (batch_size,), generator=generator).to(device)
        loss = diffusion_loss(unet, images[idx], None if labels is None else labels[idx],
                              alphas_cumprod, generator, objective, sigma, label_dropout, min_snr_gamma=min_snr_gamma)
        optimizer_step(unet, opt, loss)
        # EMA warm-up: average over ~step steps early on, over ~1/(1-ema_decay) steps later
        ema_update(ema, unet, min(ema_decay, (1 + step) / (10 + step)))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        done = step + 1
        if out is not None and done in keep:
            _save_snapshot(out / keep[done], ema, done, time.perf_counter() - t0, objective)
        if done % save_every == 0 or done == end:
            if out is not None:
                runs[-1].update(until_step=done, seconds=round(time.perf_counter() - t0 - elapsed, 1),
                                load_average=_load_average())
                _save_run(out, unet, ema, opt, generator, done, losses, time.perf_counter() - t0, runs, objective)
            if callback is not None:
                callback(done, ema)
    return ema, losses


def _load_average():
    """The machine's 1-, 5- and 15-minute load averages (a shared machine trains slower), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # Windows
        return None


def _save_scheduler(folder, objective="ddpm"):
    """The scheduler config that says how to sample the model: a flow model gets FlowMatchEulerDiscreteScheduler's
    (timesteps = t * 1000, as src/flow.py trains; src.models.load_model reads it as a flow model), the others the
    DDPM training schedule."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    if objective == "flow":
        FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0).save_pretrained(folder)
    else:
        DDPMScheduler(**TRAINING_SCHEDULE).save_pretrained(folder)


def _save_snapshot(folder, ema, step, elapsed, objective="ddpm"):
    """The EMA weights at this step in diffusers layout, stored as float16 (they load as float32), the schedule,
    and a training.json with the step, the seconds since the run began and the load average."""
    import copy

    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(ema).half().save_pretrained(folder)
    _save_scheduler(folder, objective)
    (folder / "training.json").write_text(json.dumps(
        {"steps": step, "seconds": round(elapsed, 1), "load_average": _load_average()}, indent=1))


def _save_run(out, unet, ema, opt, generator, step, losses, elapsed, runs, objective="ddpm"):
    """EMA weights in diffusers layout (what ships), the loss log, and a resumable checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(out)
    _save_scheduler(out, objective)
    with open(out / "loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows((i + 1, f"{l:.5f}") for i, l in enumerate(losses))
    # runs: one entry per (resumed) run; a larger --steps on resume stretches the LR schedule from there on
    log = {"steps": step, "seconds": round(elapsed, 1), "runs": runs}
    if objective != "ddpm":
        log["objective"] = objective
    (out / "training.json").write_text(json.dumps(log, indent=1))
    tmp = out / "checkpoint.pt.tmp"
    torch.save({"model": unet.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "generator": generator.get_state(), "step": step, "losses": losses, "elapsed": elapsed,
                "runs": runs}, tmp)
    tmp.replace(out / "checkpoint.pt")


def check_out_folder(out, resume, overwrite, steps=None):
    """One sentence if training into `out` would lose work or cannot do what was asked; None if fine."""
    out = repo_path(out)
    checkpoint = out / "checkpoint.pt"
    if resume:
        if not checkpoint.exists():
            return (f"--resume needs {checkpoint}, which does not exist (the optimizer state is not in git: "
                    "a fresh checkout cannot resume)")
        done = json.loads((out / "training.json").read_text())["steps"]  # written with every checkpoint
        if steps is not None and steps <= done:
            return f"--steps {steps} is not more than the {done} steps the checkpoint has done; ask for more"
        return None
    if out.is_dir() and any(out.glob("*.safetensors")) and not overwrite:
        return (f"{out} already holds a trained model; pass --out with a new folder, --resume to continue it, "
                "or --overwrite to replace it")
    return None


def channel_list(text):
    """--channels: comma-separated widths, each a positive multiple of 8 (the UNet's GroupNorm uses 8 groups)."""
    try:
        channels = [int(c) for c in text.split(",")]
    except ValueError:
        channels = []
    if not channels or any(c <= 0 or c % 8 for c in channels):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive multiples of 8 "
                                         "(e.g. 16,24,48)")
    return channels


def snapshot_list(text):
    """--snapshots: NAME=STEP items, comma-separated (e.g. 1min=144,2min=288), each step a positive integer."""
    try:
        pairs = dict(item.split("=") for item in text.split(","))
        pairs = {name.strip(): int(step) for name, step in pairs.items()}
    except ValueError:
        pairs = {}
    if not pairs or any(step <= 0 or not name or "/" in name for name, step in pairs.items()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of NAME=STEP items (e.g. 1min=144,2min=288)")
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m src.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("ddpm", help="train the class-conditional MNIST DDPM")
    d.add_argument("--recipe", default="bundled", choices=[n.replace("_", "-") for n in RECIPES],
                   help="the hyperparameters (RECIPES in src/train.py); the flags below override single ones")
    d.add_argument("--steps", type=int, help="total optimizer steps (with --resume: including done); default: the "
                                             "recipe's")
    d.add_argument("--batch-size", type=int, help="default: the recipe's")
    d.add_argument("--lr", type=float, help="peak learning rate; default: the recipe's")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--snapshots", type=snapshot_list, default=None,
                   help="NAME=STEP,...: also save the EMA weights at these steps to OUT/NAME (e.g. 1min=144)")
    d.add_argument("--out", default="models/mnist-ddpm")
    d.add_argument("--save-every", type=int, default=250)
    d.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    d.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda if there is one")
    d.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    d.add_argument("--objective", default="ddpm", choices=("ddpm", "flow"),
                   help="ddpm: eps-prediction (DDPM Eq. 14); flow: the rectified-flow velocity (src/flow.py), with "
                        "the recipe's knobs but the plain velocity loss (no Min-SNR weights)")
    d.add_argument("--channels", type=channel_list, default=None,
                   help="the UNet's block_out_channels, one per resolution, e.g. 16,24,48; default: the recipe's "
                        "(with --resume: read from OUT)")
    c = sub.add_parser("classifier", help="train the digit classifier that grades samples")
    c.add_argument("--out", default="models/digit-classifier")
    c.add_argument("--epochs", type=int, default=12)
    c.add_argument("--overwrite", action="store_true", help="replace a classifier already in OUT")
    args = parser.parse_args(argv)
    if args.what == "ddpm":
        args.recipe_values = recipe(args.recipe, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                    channels=args.channels)
        args.steps = args.recipe_values["steps"]
    problem = check_out_folder(args.out, getattr(args, "resume", False), args.overwrite, getattr(args, "steps", None))
    if problem:
        parser.error(problem)
    if args.what == "classifier":
        from src.classifier import train_classifier

        print(f"held-out accuracy: {train_classifier(args.out, args.epochs):.4f}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    images, labels = load_mnist("train")
    t0 = time.perf_counter()
    r = args.recipe_values
    if args.resume:  # the checkpoint's architecture, whatever --channels says
        r["channels"] = json.loads((repo_path(args.out) / "config.json").read_text())["block_out_channels"]
        trained_as = json.loads((repo_path(args.out) / "training.json").read_text()).get("objective", "ddpm")
        if trained_as != args.objective:
            parser.error(f"{args.out} was trained with --objective {trained_as}; resume it with the same objective")
    train_recipe(args.recipe, images, labels, seed=args.seed, device=device, out=args.out,
                 save_every=args.save_every, resume=args.resume, snapshots=args.snapshots, objective=args.objective,
                 **r)
    print(f"done: {args.steps} steps in {time.perf_counter() - t0:.0f} s this run; weights in {args.out}")


if __name__ == "__main__":
    main()
