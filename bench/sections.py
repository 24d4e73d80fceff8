"""The sections of the benchmark: each a function that measures one thing and adds its rows to the
results, then, at the bottom, SECTIONS: the table of them, with what each measures and needs.

Every section takes a Run: the results to add to, the sizes (bench/run.py's params), and what several
sections share (the course's model, loaded once; the machine's matrix-multiply rate, for the floors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.models import Bench, count_flops, load_bundled, make_google_256
from bench.samplers import (bare_forwards, course_grid, course_images, course_sample, course_sample_plain,
                            grid_image, make_pipeline, pipeline_images)
from bench.seeds import seed_grid, seed_similar_noise
from bench.timing import (Results, fmt_bytes, fmt_time, max_diff, median, memory, mm_rate, paired_ratio,
                          reset_peak, timeit)

RUN_PY = Path(__file__).resolve().with_name("run.py")


@dataclass
class Run:
    """What the sections of one run share: the results they add to, the sizes, the course's model (None if
    no section wanted it), the torch.mm rate (None if no floor is wanted) and the notes on the floors."""

    R: Results
    p: dict
    quick: bool
    bundled: Bench | None = None
    rate: float | None = None
    flops_note: list = field(default_factory=lambda: [
        "FLOP floor: the UNet's FLOPs per forward x images x steps / the measured matrix-multiply rate."])

    @classmethod
    def prepare(cls, p, names, model, quick):
        """A Run for the sections `names`: the course's model and the torch.mm rate, where they need them."""
        import torch

        run = cls(Results(), p, quick)
        wanted = [SECTIONS[name] for name in names]
        if any(s.bundled for s in wanted):
            run.bundled = load_bundled(model)
        if any(s.floor for s in wanted):
            run.rate, mm_times = mm_rate(p["mm_size"], p["repeats"])
            run.R.timings(f"torch.mm {p['mm_size']}x{p['mm_size']} float32", mm_times)
            run.flops_note.append(f"- torch.mm rate: {run.rate / 1e9:.1f} GFLOP/s ({p['mm_size']}x{p['mm_size']} "
                                  f"float32, {torch.get_num_threads()} threads, its fastest repeat).")
        return run

    def finish(self):
        """The floors' note last, and the rows in the issue's order (its numbered items, then the extras)."""
        if len(self.flops_note) > 1:
            self.R.notes.append("\n".join(self.flops_note))
        self.R.rows.sort(key=lambda r: (str(r["item"]) == "+", str(r["item"])))
        return self.R


# --- the sampler: F.sample vs its UNet calls vs diffusers, and what it costs without the UNet -----

def section_sampler(run):
    """Issue items 1, 2 and 7: F.sample vs its bare UNet calls vs DDIMPipeline, batch 16 and a pair."""
    R, b, p = run.R, run.bundled, run.p
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
    bookkeeping(R, b, p)
    for n, target in ((p["batch"], 2.0), (p["pair"], 1.0)):
        c = R.measured[f"course_{n}"]
        R.row(7, f"{p['steps']}-step DDIM sample of {n}, bundled model (warm)", fmt_time(c), "-", "-",
              f"<= {target:g} s", "yes" if c <= target else "no")


def bookkeeping(R, b, p):
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


# --- tuning: the CPU settings the issue says to try -----------------------------------------------

def section_tuning(run):
    """The CPU settings the issue asks to try, each against the course's default, on the same F.sample:
    the UNet called as a plain module instead of F.unet_forward's trace (the course before the trace),
    channels_last memory format (a copy of the UNet, channels_last input) and one torch thread instead of
    torch's default. A ratio below 1 would mean the setting is faster and should become the default."""
    import copy

    import torch

    R, b, p = run.R, run.bundled, run.p
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


# --- the seeds' experiments: similar noise, the forward-backward grid -----------------------------

def section_seeds(run):
    """Issue item 3 on the bundled model."""
    similar_noise(run, run.bundled, run.p["steps"], run.p["repeats"], "bundled model")


def similar_noise(run, b, steps, repeats, item_label):
    """Issue item 3: the similar-noise experiment, seed loops vs one F.sample on the stacked pair."""
    import torch
    from src import functions as F

    R, p = run.R, run.p
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


def section_grid(run):
    """Issue item 4: the forward-backward grid, seed nested loops vs one F.sample with per-row starts."""
    R, b, p = run.R, run.bundled, run.p
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


# --- the floor: the shortest sample the machine's matrix-multiply rate allows; the 256-px UNet ----

def section_big(run):
    """Issue items 3 and 6 on a random UNet with google/ddpm-celebahq-256's architecture."""
    big = make_google_256(run.quick)
    similar_noise(run, big, run.p["big_steps"], run.p["big_repeats"], big.name)
    floor(run, big)


def section_floor(run):
    """Issue item 6 on the bundled model."""
    floor(run, run.bundled)


def floor(run, b):
    """Issue item 6 for a model: measured / (S x FLOPs per forward / mm rate) for the sample it timed."""
    R, p, rate = run.R, run.p, run.rate
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
    floor_s = p["floor_steps"] * per_forward / rate
    measured_50 = measured * p["floor_steps"] / steps
    R.row(6, f"Floor, {p['floor_steps']}-step DDIM sample of {n}, {b.name}"
          + ("" if steps == p["floor_steps"] else f" (measured at {steps} steps, scaled)"),
          fmt_time(measured_50), fmt_time(floor_s), f"{measured_50 / floor_s:.1f}x the floor", "- (report)", "-")
    run.flops_note.append(f"- {b.name}: {counted / 1e9:.3f} GFLOP per image-forward counted by FlopCounterMode + "
                          f"{attention / 1e9:.3f} GFLOP attention by hand = {total / 1e9:.3f} GFLOP; "
                          f"x {n} images x {p['floor_steps']} steps / {rate / 1e9:.1f} GFLOP/s = {fmt_time(floor_s)}.")


# --- fresh processes: a student's first cell, each notebook, the whole course ---------------------

def section_start(run):
    """A fresh Python process, as a student's first cell: import, load, first sample, memory, first figure."""
    from src.files import repo_path

    R, p = run.R, run.p
    cmd = [sys.executable, str(RUN_PY), "--_child-start", json.dumps(
        {"batch": p["batch"], "pair": p["pair"], "steps": p["steps"], "model": p["model"]})]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo_path(), capture_output=True, text=True, timeout=900)
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
    R.row("+", f"First figure: {n} samples drawn with figures.show_images and rendered to PNG (incl. matplotlib import)",
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


def child_start(args):
    """Runs in the fresh process of section_start (`run.py --_child-start`); prints one JSON line."""
    t0 = time.perf_counter()
    import torch  # noqa: F401
    from diffusers import DDIMScheduler, UNet2DModel  # noqa: F401 - what load_model imports (diffusers is lazy)
    from src import figures, files
    from src.course import load_model  # noqa: F401
    t1 = time.perf_counter()
    b = load_bundled(args["model"])
    t2 = time.perf_counter()
    noise = b.noise(args["batch"], 0)
    reset = reset_peak()
    rss0, peak0 = memory()
    x = course_sample(b, noise, args["steps"])
    t3 = time.perf_counter()
    rss1, peak1 = memory()
    course_sample(b, b.noise(args["pair"], 0), args["steps"])
    t4 = time.perf_counter()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = figures.show_images(x, ncols=8, suptitle="samples")
    files.figure_bytes(fig)
    plt.close(fig)
    t5 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_sample_s": t3 - t2, "pair_s": t4 - t3,
                      "figure_s": t5 - t4, "rss_before": rss0, "peak_during": peak1,
                      "peak_extra": peak1 - (rss0 if reset else peak0), "peak_reset": reset}))


def section_notebooks(run):
    """Each notebooks/*.ipynb in a fresh kernel, run cell by cell until the first figure appears."""
    import nbformat
    from src.files import repo_path
    from src.kernel import notebook_client

    R = run.R
    paths = sorted(repo_path("notebooks").glob("*.ipynb"))
    if not paths:
        R.row("+", "Time to a notebook's first figure", "skipped: no notebooks/*.ipynb yet")
        return
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = notebook_client(nb, path.parent)
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


def section_course(run):
    """Issue item 5: the whole course, `python -m src.run_course`, default config, one run."""
    import importlib.util

    from src.files import repo_path

    R = run.R
    if importlib.util.find_spec("src.run_course") is None:
        R.row(5, "Whole course: `python -m src.run_course`", "skipped: src/run_course.py does not exist",
              target="<= 180 s")
        return
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "src.run_course"], cwd=repo_path(), capture_output=True,
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


def section_checkers(run):
    """Issue #18: each exercise's checker on the course's own answer and on each of its listed mistakes, warm
    (the first check of a process also imports and builds its inputs: timed apart)."""
    import contextlib
    import io

    from src import check

    R = run.R
    quiet = contextlib.redirect_stdout(io.StringIO())
    t0 = time.perf_counter()
    with quiet:
        check.check_answer(next(iter(check.EXERCISES)), check.EXERCISES[next(iter(check.EXERCISES))].reference,
                           quiet=True)
    R.raw.append(f"checkers: the first check in this process took {fmt_time(time.perf_counter() - t0)}")
    slowest = (0.0, "")
    for name, ex in check.EXERCISES.items():
        answers = [("right", ex.reference)] + [(m.name, m.fn) for m in ex.mistakes]
        fns = {label: (lambda fn=fn, name=name: check.check_answer(name, fn, quiet=True)) for label, fn in answers}
        with quiet:
            times, _ = timeit(fns, run.p["repeats"])
        worst = max(median(ts) for ts in times.values())
        slowest = max(slowest, (worst, name))
        R.row("#18", f"check.{name}: the right answer / its slowest of {len(ex.mistakes)} mistakes",
              f"{fmt_time(median(times['right']))} / {fmt_time(worst)}", target="< 1 s", met="yes" if worst < 1 else "no")
        R.timings(f"check.{name}", times)
    R.notes.append(f"Checkers: the slowest check of any answer is check.{slowest[1]}, {fmt_time(slowest[0])} "
                   f"(median of {run.p['repeats']}).")


def section_hub(run):
    """Issue #22: notebooks 01-06 planned for a random UNet of google/ddpm-celebahq-256's real architecture:
    one UNet call timed here, then each notebook's own cost(plan) from its planning cell, run in a fresh
    kernel up to that cell, in default and smoke mode."""
    import nbformat

    from src.files import repo_path
    from src.kernel import notebook_client

    import tempfile

    from src import budget

    R = run.R
    per_image = budget.seconds_per_image(make_google_256(run.quick).unet)
    R.row("#22", "one UNet call, google/ddpm-celebahq-256 architecture, random weights, batch 1 (first call, "
                 "in this process)", fmt_time(per_image))

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sys.path.insert(0, str(repo_path("tests")))
        from standins import write_hub_cache

        write_hub_cache(home, "google/ddpm-celebahq-256", shrink=1)
        config = home / "config.yaml"
        config.write_text("model: google/ddpm-celebahq-256\n")
        env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "COURSE_CONFIG": str(config)}
        for path in sorted(repo_path("notebooks").glob("0[1-6]*.ipynb")):
            for fast in ("", "1"):
                nb = nbformat.read(path, as_version=4)
                at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "budget.fit(" in c.source), None)
                if at is None:
                    R.row("#22", f"{path.stem}: plans no UNet calls", "-")
                    break
                nb.cells = nb.cells[:at + 1] + [nbformat.v4.new_code_cell(
                    "print('PLAN', cost(plan), budget.seconds_per_image(model.unet), plan)")]
                old = {k: os.environ.get(k) for k in (*env, "COURSE_FAST")}
                os.environ.update(env, COURSE_FAST=fast)
                try:
                    notebook_client(nb, path.parent, timeout=900).execute()
                finally:
                    for k, v in old.items():
                        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
                text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
                calls, seconds, plan = text.split("PLAN ", 1)[1].split(" ", 2)
                calls, seconds = int(calls), float(seconds)  # the notebook's own timing of one call (a cold one)
                mode = "smoke mode" if fast else "default mode"
                R.row("#22", f"{path.stem}, {mode}: planned UNet image calls x the notebook's own timing of one",
                      f"{calls:,} x {fmt_time(seconds)} = {fmt_time(calls * seconds)}",
                      target="<= 2 min" if fast else "<= 10 min",
                      met="yes" if calls * seconds <= (120 if fast else 600) else "no")
                R.raw.append(f"{path.stem} {mode}: {plan.strip()}")


# --- the table of sections -------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One section: its function, the issue's items it answers, what it measures, and what it needs."""

    measure: Callable[[Run], None]
    items: str
    about: str
    bundled: bool = False     # uses the course's model (loaded once, before the sections)
    floor: bool = False       # uses the torch.mm rate (measured once, before the sections)
    by_default: bool = True   # False: only with --course or --only
    in_quick: bool = True     # False: left out of --quick unless named with --only


# In the order they run; --only and --skip take these names.
SECTIONS = {
    "sampler": Section(section_sampler, "1, 2, 7", "F.sample vs its bare UNet calls vs diffusers.DDIMPipeline; "
                       "sample of 16 and a pair", bundled=True),
    "tuning": Section(section_tuning, "+", "what the issue says to try: channels_last and torch's thread count, "
                      "on F.sample", bundled=True),
    "seeds": Section(section_seeds, "3", "the similar-noise experiment: the seed notebook's two batch-1 loops vs "
                     "one F.sample", bundled=True),
    "grid": Section(section_grid, "4", "the forward-backward grid: the seed's nested loops vs F.sample with "
                    "per-row starts", bundled=True),
    "big": Section(section_big, "3, 6", "the similar-noise experiment and the floor on a random "
                   "google/ddpm-*-256 UNet", floor=True),
    "floor": Section(section_floor, "6", "FLOPs per forward / measured torch.mm rate = the shortest possible "
                     "50-step sample", bundled=True, floor=True),
    "start": Section(section_start, "7+", "a fresh process: import, model load, first sample, peak memory, "
                     "first figure"),
    "notebooks": Section(section_notebooks, "+", "a fresh kernel per notebook: time until its first figure "
                         "appears", in_quick=False),
    "checkers": Section(section_checkers, "#18", "each exercise's checker on the right answer and on each listed "
                        "mistake"),
    "hub": Section(section_hub, "#22", "notebooks 01-06 planned on google/ddpm-celebahq-256's real architecture "
                   "(random weights): one call timed, each notebook's planned calls", by_default=False, in_quick=False),
    "course": Section(section_course, "5", "`python -m src.run_course`, the whole course (only with --course)",
                      by_default=False, in_quick=False),
}
