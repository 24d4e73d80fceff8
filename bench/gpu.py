"""Issue #22's GPU checks in one command, for a session that is lent a GPU (none has been so far):

    python bench/gpu.py --out DIR            # 1 and 2 below, a few minutes on a GPU
    python bench/gpu.py --out DIR --course   # and 3: the whole course on CUDA, twice

1. The bundled model: a 50-step DDIM sample of 16 on the device and on the CPU, from the same CPU generator (the
   course draws all noise on the CPU, so the two should agree to float tolerance); the largest difference, both times.
2. google/ddpm-celebahq-256's real architecture, random weights (tests/standins.py): a 50-step sample of 16 at 256 px
   on the device (its time), and its first image against the same image made on the CPU.
3. With --course: `python -m src.run_course` with `device: cuda`, on the bundled model and on that architecture
   in a hub cache under its real id (HF_HUB_OFFLINE=1), default mode; each notebook's time.

Writes DIR/results_gpu.md (for bench/results.md) and DIR/gpu_sample_256.png. `--device cpu --quick` runs the same
code on a CPU with 2 steps, 2 images, widths / 8 and smoke mode, to check the script itself (tests/test_bench.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def timed(fn, device):
    """fn() and its seconds, with the device's queue drained before and after."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def sample_on(unet, alphas_cumprod, noise, steps, device, labels=None):
    """F.sample on `device` from CPU-drawn noise; the images back on the CPU, and the seconds it took."""
    import torch

    from src import functions as F

    unet = unet.to(device)
    with torch.inference_mode():
        return timed(lambda: F.sample(unet, noise.to(device), alphas_cumprod, steps, class_labels=labels,
                                      progress=False).cpu(), device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="2 steps, 2 images: checks the script, measures nothing")
    parser.add_argument("--course", action="store_true", help="also run the whole course on the device, twice")
    args = parser.parse_args(argv)

    import torch

    from bench.timing import max_diff
    from src import functions as F
    from src.course import load_model
    from standins import LAYOUTS, random_unet, write_hub_cache

    device = torch.device(args.device)
    steps, n, shrink = (2, 2, 8) if args.quick else (50, 16, 1)  # quick: widths / 8, smoke mode
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = [f"# GPU checks (bench/gpu.py{' --quick' if args.quick else ''})", "",
            f"- device: {name}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}", "",
            "| what | device | CPU | max difference, within the bench's image tolerance? |", "|---|---|---|---|"]

    # 1. the bundled model, the whole batch on both sides
    model = load_model("models/mnist-ddpm", device="cpu")
    noise = model.noise(n, torch.Generator().manual_seed(0))
    on_device, t_device = sample_on(model.unet, model.alphas_cumprod, noise, steps, device)
    on_cpu, t_cpu = sample_on(model.unet, model.alphas_cumprod, noise, steps, torch.device("cpu"))
    d, ok = max_diff(on_device, on_cpu)
    rows.append(f"| bundled model, {steps}-step DDIM sample of {n} | {t_device:.2f} s | {t_cpu:.2f} s | "
                f"{d:.1e} ({'yes' if ok else 'no'}) |")

    # 2. the real celebahq architecture: the batch on the device, its first image on the CPU too
    repo_id = "google/ddpm-celebahq-256"
    unet = random_unet(repo_id, shrink=shrink)
    abar = F.alphas_cumprod_from_betas(F.betas_from_scheduler_config(LAYOUTS[repo_id][1]))
    noise = torch.randn(n, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    sample_on(unet, abar, noise[:1], 1, device)  # warm-up: kernels chosen, memory taken
    on_device, t_device = sample_on(unet, abar, noise, steps, device)
    first_cpu, t_cpu = sample_on(unet, abar, noise[:1], steps, torch.device("cpu"))
    d, ok = max_diff(on_device[:1], first_cpu)
    rows.append(f"| {repo_id} architecture{' (widths / 8)' if args.quick else ''}, random weights, {steps}-step DDIM "
                f"sample of {n} at 256 px | {t_device:.2f} s | {t_cpu:.2f} s for its first image | {d:.1e} ({'yes' if ok else 'no'}) |")
    from src import figures

    figures.show_images(on_device[:8], titles=[f"{k}" for k in range(min(8, n))], size=1.6,
                        suptitle=f"{steps} steps, random weights").savefig(args.out / "gpu_sample_256.png")

    # 3. the whole course on the device, bundled and hub stand-in, default mode
    if args.course:
        rows += ["", "| run_course on the device | notebook times |", "|---|---|"]
        with tempfile.TemporaryDirectory() as tmp:
            write_hub_cache(tmp, repo_id, shrink=shrink)
            for label, model_line in [("bundled model", "models/mnist-ddpm"), (repo_id + " stand-in", repo_id)]:
                config = Path(tmp) / "config.yaml"
                config.write_text(f"model: {model_line}\ndevice: {args.device}\n")
                env = {**os.environ, "COURSE_CONFIG": str(config), "HF_HOME": tmp, "HF_HUB_OFFLINE": "1",
                       "COURSE_OUTPUT": str(Path(tmp) / "output")}
                notebooks = [] if model_line.startswith("models/") else ["01", "02", "03", "04", "05", "06"]
                fast = ["--fast"] if args.quick else []
                run = subprocess.run([sys.executable, "-m", "src.run_course", *notebooks, *fast, "--jobs", "1"],
                                     cwd=ROOT, env=env, capture_output=True, text=True)
                lines = [" ".join(line.split()) for line in run.stdout.splitlines() if " s  " in line]
                rows.append(f"| {label} (exit {run.returncode}) | {'; '.join(lines) or run.stderr[-300:]} |")

    text = "\n".join(rows) + "\n"
    (args.out / "results_gpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
