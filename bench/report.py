"""The report: the machine's description, then the Markdown page with the method, the table, the notes
and every raw timing."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from bench.timing import TOL_ABS, TOL_REL


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
    """The Markdown page: the command, the machine, the method, the table, the notes, the raw timings."""
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
