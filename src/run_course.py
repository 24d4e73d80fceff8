"""Run the whole course headless: every notebook, top to bottom, on the current config.

    python -m src.run_course            # all notebooks -> output/course_N/ (executed .ipynb + .html)
    python -m src.run_course --fast     # smoke mode (COURSE_FAST=1): few steps, seconds per notebook
    python -m src.run_course --inplace  # also store the outputs in notebooks/ (what GitHub shows)
    python -m src.run_course 03 05      # only the notebooks whose names start with these

One line per notebook; exit status 1 with the failing cell's error if any notebook fails.
Notebooks run two at a time with one CPU thread each: on a 2-core laptop that is faster than one at
a time with two threads (torch's threads spin-wait for each other).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from src.functions import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def next_run_folder(base):
    """output/course_1, course_2, ...: a new folder each run, so no earlier run is overwritten."""
    n = 1
    while (base / f"course_{n}").exists():
        n += 1
    folder = base / f"course_{n}"
    folder.mkdir(parents=True)
    return folder


def execute(path, out_dir, inplace=False, timeout=900):
    """Execute one notebook (in a fresh kernel, cwd = notebooks/), write .ipynb and .html; returns (ok, message)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    ok, message = True, ""
    try:
        client.execute()
    except CellExecutionError as e:
        ok = False
        lines = [l for l in str(e).strip().splitlines() if l.strip()]
        message = lines[-1] if lines else repr(e)
    for cell in nb.cells:  # no timestamps: a rerun changes only what the code changes
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, out_dir / path.name)
    (out_dir / path.with_suffix(".html").name).write_text(HTMLExporter().from_notebook_node(nb)[0])
    if inplace and ok:
        nbformat.write(nb, path)
    return ok, message


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m src.run_course", description="Run every notebook headless.")
    parser.add_argument("only", nargs="*", help="run only notebooks whose names start with these (e.g. 01 05)")
    parser.add_argument("--fast", action="store_true", help="smoke mode: COURSE_FAST=1")
    parser.add_argument("--inplace", action="store_true", help="also save the outputs into notebooks/")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="notebooks run at once")
    parser.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:  # worker: one notebook in its own process
        ok, message = execute(Path(args._one[0]), Path(args._one[1]), args.inplace)
        print(json.dumps({"ok": ok, "message": message}))
        return 0 if ok else 1

    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not args.only or p.name.startswith(tuple(args.only)))
    if not paths:
        print("No notebooks matched.", file=sys.stderr)
        return 2
    out_dir = next_run_folder(PROJECT_ROOT / "output")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.fast:
        env["COURSE_FAST"] = "1"
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    print(f"Running {len(paths)} notebooks ({'smoke mode' if args.fast else 'config.yaml'}) -> {out_dir.relative_to(PROJECT_ROOT)}/",
          flush=True)

    def run(path):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "src.run_course", "--_one", str(path), str(out_dir)] + (["--inplace"] if args.inplace else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"ok": False, "message": (proc.stderr.strip().splitlines() or ["the worker crashed"])[-1]}
        status = "ok" if result["ok"] else f"FAILED: {result['message']}"
        print(f"  {path.stem:<28} {time.perf_counter() - t0:6.1f} s  {status}", flush=True)
        return result["ok"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, paths))
    failed = results.count(False)
    print(f"{len(paths) - failed}/{len(paths)} notebooks ran in {time.perf_counter() - t0:.0f} s; "
          f"executed notebooks and HTML in {out_dir.relative_to(PROJECT_ROOT)}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
