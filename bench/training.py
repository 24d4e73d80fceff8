"""How long a training step of each recipe takes here, and what a GPU would take (issue #19). Standalone:

    python bench/training.py                   # 40 timed steps per recipe, torch's default threads
    python bench/training.py --threads 2 --steps 60 --out bench/training.json

For each recipe of src/train.py (RECIPES): the median seconds per step (after 5 untimed steps; the step is
train_diffusion's own loop body, timed through its callback), the steps that fit in 10 minutes at that pace,
the FLOPs of one step (torch's FlopCounterMode, forward + backward, attention added by hand) and the tensor
operations it dispatches, and from those an estimate for a T4 (src/anatomy.py: gpu_seconds). The load average
at the start and the end is printed beside: on a shared machine the seconds mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from src import anatomy  # noqa: E402
from src.mnist import load_mnist  # noqa: E402
from src.train import RECIPES, make_unet, train_recipe  # noqa: E402

WARMUP_STEPS = 5


def seconds_per_step(name, images, labels, steps):
    """Median wall-clock seconds of one step of recipe `name` over `steps` steps (after WARMUP_STEPS)."""
    stamps = []
    train_recipe(name, images, labels, stop_after=WARMUP_STEPS + steps, save_every=1, progress=False,
                 callback=lambda step, ema: stamps.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(stamps[WARMUP_STEPS - 1:], stamps[WARMUP_STEPS:])]
    return statistics.median(gaps), gaps


def measure(name, images, labels, steps):
    r = RECIPES[name]
    load_start = os.getloadavg()
    median, gaps = seconds_per_step(name, images, labels, steps)
    unet = make_unet(block_out_channels=r["channels"])
    counted, attention, flops = anatomy.training_step_flops(unet, r["batch_size"])
    ops = anatomy.training_step_ops(unet, r["batch_size"])
    compute, launch, estimate = anatomy.gpu_seconds(flops, ops, r["steps"])
    return dict(recipe=name, steps=r["steps"], batch_size=r["batch_size"], channels=list(r["channels"]),
                threads=torch.get_num_threads(), s_per_step=round(median, 4),
                s_per_step_quartiles=[round(q, 4) for q in statistics.quantiles(gaps, n=4)],
                steps_in_10_min=int(600 / median), cpu_minutes_for_recipe=round(r["steps"] * median / 60, 1),
                gflop_per_step=round(flops / 1e9, 2), attention_gflop_by_hand=round(attention / 1e9, 3),
                ops_per_step=ops, t4_compute_s=round(compute), t4_launch_s=round(launch), t4_estimate_s=round(estimate),
                load_average=[round(x, 2) for x in load_start] + [round(x, 2) for x in os.getloadavg()])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per recipe")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images, labels = load_mnist("train")
    rows = [measure(name, images, labels, args.steps) for name in args.recipes]
    for row in rows:
        print(f"{row['recipe']:>12}: {row['s_per_step']:.3f} s/step (quartiles {row['s_per_step_quartiles']}) on "
              f"{row['threads']} threads -> {row['steps_in_10_min']} steps in 10 min; {row['steps']} steps take "
              f"{row['cpu_minutes_for_recipe']} min here; {row['gflop_per_step']} GFLOP and {row['ops_per_step']} "
              f"ops per step -> T4 estimate {row['t4_estimate_s']} s (compute {row['t4_compute_s']} s at 25 % of "
              f"8.1 TFLOP/s, launches {row['t4_launch_s']} s at 10 us each); load {row['load_average']}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
