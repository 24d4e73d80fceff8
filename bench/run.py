"""How fast the course runs: side by side with the seeds' loops, diffusers' pipeline and the machine's floor.

    python bench/run.py                   # everything but the whole-course run (~5-10 min on 2 cores)
    python bench/run.py --course          # also time `python -m src.run_course`
    python bench/run.py --only sampler grid   # some sections
    python bench/run.py --quick           # seconds: tiny sizes, for the test (figures meaningless)

Prints a Markdown table and writes it, with the machine's description and every raw timing, to
bench/results.md (--out elsewhere). Every figure comes from this one run on this one machine: the same
model, batch and number of steps on both sides of a ratio, a warm-up first, then the median of several
repeats, taken in turns (A, B, A, B, ...) so that a slow patch of time hurts both sides alike.

The sections, what each measures and the issue's items it answers: SECTIONS in bench/sections.py.
How a measurement is taken: bench/timing.py; the models: bench/models.py; the ways to sample:
bench/samplers.py (the course, diffusers) and bench/seeds.py (the seeds' loops); the page: bench/report.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.models import BUNDLED  # noqa: E402 - after the repository root is on the path
from bench.report import machine_info, render  # noqa: E402
from bench.sections import SECTIONS, Run, child_start  # noqa: E402

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


def params(quick):
    return {k: v[1] if quick else v[0] for k, v in DEFAULTS.items()}


def parse_args(argv):
    names = list(SECTIONS)
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (for the tests)")
    parser.add_argument("--only", nargs="+", choices=names, help="run only these sections")
    parser.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these sections out")
    parser.add_argument("--course", action="store_true", help="also time `python -m src.run_course` (item 5)")
    parser.add_argument("--out", help="Markdown file to write (default bench/results.md; --quick: none)")
    parser.add_argument("--model", default=BUNDLED, help="the course's model folder (default models/mnist-ddpm)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5; --quick 1)")
    parser.add_argument("--big-steps", type=int, help="DDIM steps on the 256-px UNet (default 2)")
    parser.add_argument("--_child-start", dest="child_start", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def wanted_sections(args):
    """The names of the sections to run: --only's as given, else the table's default ones in its order
    (the whole course too with --course; --quick leaves out the fresh kernels and the course), less --skip's."""
    if args.only:
        return [name for name in args.only if name not in args.skip]
    return [name for name, s in SECTIONS.items() if (s.by_default or args.course) and name not in args.skip
            and (s.in_quick or not args.quick)]


def main(argv=None):
    args = parse_args(argv)
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
    wanted = wanted_sections(args)

    start = time.perf_counter()
    info = machine_info()
    run = Run.prepare(p, wanted, args.model, args.quick)
    for name in wanted:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        SECTIONS[name].measure(run)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    R = run.finish()
    text = render(R, info, p, args, time.perf_counter() - start)
    print(text)
    out = args.out or (None if args.quick else str(PROJECT_ROOT / "bench" / "results.md"))
    if out:
        Path(out).write_text(text)
        print(f"[bench] wrote {out}", file=sys.stderr)
    return R


if __name__ == "__main__":
    main()
