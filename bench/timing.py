"""Measuring: timing callables in turns, the paired ratio, the machine's matrix-multiply rate, a
process's memory, and the table's rows as the sections collect them.

Nothing here knows about diffusion: the sections (bench/sections.py) time what bench/samplers.py and
bench/seeds.py make, and record it in a Results.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

# Images count as equal when max |course - reference| <= TOL_ABS + TOL_REL * max |reference| (pixel values
# in [-1, 1]; the relative part only matters for random-weight models whose outputs leave that range).
TOL_ABS, TOL_REL = 1e-5, 1e-5


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


def mm_rate(n, repeats):
    """The machine's float32 matrix-multiply rate (FLOP/s): 2 n^3 / the fastest of the n x n torch.mm repeats.

    The fastest, not the median: the floor is the best the machine can do, and on a shared machine a slow repeat
    measures the neighbours (a median of 240 ms against a fastest of 177 ms once put a sample below its "floor").
    """
    import torch

    a, c = torch.randn(n, n), torch.randn(n, n)
    times, _ = timeit({"mm": lambda: torch.mm(a, c)}, repeats, warmup=1)
    return 2 * n**3 / min(times["mm"]), times


# --- memory ----------------------------------------------------------------------------------------

def memory():
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


def reset_peak():
    """Reset the process's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- comparing and formatting ----------------------------------------------------------------------

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


def fmt_time(s):
    if s != s:  # nan
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def fmt_bytes(n):
    return f"{n / 2**20:.0f} MiB"


# --- the results -----------------------------------------------------------------------------------

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
