"""Run the whole course headless: every notebook, top to bottom, on the current config.

    python -m src.run_course            # all notebooks -> output/course_N/ (executed .ipynb + .html)
    python -m src.run_course --fast     # smoke mode (COURSE_FAST=1): few steps, seconds per notebook
    python -m src.run_course --inplace  # also store the outputs in notebooks/ (what GitHub shows)
    python -m src.run_course 03 05      # only the notebooks whose names start with these
    python -m src.run_course --site     # no run: the stored outputs as an offline site + slides in output/site/
    python -m src.run_course --site --execute   # run first (as above), then build the site from that run

One line per notebook (its time, and its slowest cell); each notebook's cell times go to
output/course_N/<notebook>.timings.json. Exit status 1 with the failing cell's error if any notebook fails.
Notebooks run two at a time with one CPU thread each: on a 2-core laptop that is faster than one at
a time with two threads (torch's threads spin-wait for each other).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # as in src/functions.py, without importing torch here
NOTEBOOKS = PROJECT_ROOT / "notebooks"
RUN_TIMES = "run_times.json"  # beside the notebooks: seconds per notebook in the last --inplace run


def next_run_folder(base):
    """output/course_1, course_2, ...: a new folder each run, so no earlier run is overwritten."""
    n = 1
    while (base / f"course_{n}").exists():
        n += 1
    folder = base / f"course_{n}"
    folder.mkdir(parents=True)
    return folder


def cell_timings(nb):
    """[{cell, seconds, first line}] for each executed code cell, from nbclient's timestamps."""
    from datetime import datetime

    rows = []
    for i, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
            start, end = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            rows.append({"cell": i, "seconds": round((end - start).total_seconds(), 2),
                         "code": cell.source.splitlines()[0][:80] if cell.source else ""})
    return rows


def notebook_seconds(timings_file):
    """A notebook's total cell time from its .timings.json (written by execute); None if unreadable."""
    try:
        return round(sum(r["seconds"] for r in json.loads(Path(timings_file).read_text())), 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def longest_first(paths, base):
    """Order notebooks by their time in the newest earlier run, longest first (unknown ones first of all):
    with two at a time, starting the long ones early keeps both cores busy to the end. A fresh checkout has
    no runs yet; then the times stored with the notebooks by the last --inplace run (run_times.json) count."""
    runs = sorted((p for p in base.glob("course_*") if p.name[7:].isdigit()), key=lambda p: int(p.name[7:]))
    seconds = {}
    stored = Path(paths[0]).parent / RUN_TIMES if paths else None
    if stored is not None and stored.exists():
        try:
            seconds.update({k: float(v) for k, v in json.loads(stored.read_text()).items()})
        except (ValueError, AttributeError, TypeError):
            pass
    for run in runs:  # newer runs overwrite older ones
        for f in run.glob("*.timings.json"):
            if (total := notebook_seconds(f)) is not None:
                seconds[f.name[:-len(".timings.json")]] = total
    return sorted(paths, key=lambda p: -seconds.get(p.stem, float("inf")))


def execute(path, out_dir, inplace=False, timeout=900):
    """Execute one notebook (in a fresh kernel, cwd = notebooks/) and write the .ipynb; returns (ok, message)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from src.kernel import notebook_client

    nb = nbformat.read(path, as_version=4)
    client = notebook_client(nb, path.parent, timeout=timeout, shutdown_kernel="immediate")
    ok, message = True, ""
    try:
        client.execute()
    except CellExecutionError as e:
        ok = False
        lines = [l for l in str(e).strip().splitlines() if l.strip()]
        message = lines[-1] if lines else repr(e)
    timings = cell_timings(nb)
    (out_dir / path.with_suffix(".timings.json").name).write_text(json.dumps(timings, indent=1))
    for cell in nb.cells:  # no timestamps: a rerun changes only what the code changes
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, out_dir / path.name)
    if inplace and ok:
        nbformat.write(nb, path)
    return ok, message


_html_lock = threading.Lock()
_html_exporter = []


def write_html(executed):
    """The executed notebook as HTML beside it. In the parent process, with one exporter for all notebooks:
    loading nbconvert and its templates once instead of once per notebook saves about 1.5 s of CPU each."""
    import nbformat

    with _html_lock:
        if not _html_exporter:
            from nbconvert import HTMLExporter

            _html_exporter.append(HTMLExporter())
        html = _html_exporter[0].from_notebook_node(nbformat.read(executed, as_version=4))[0]
    executed.with_suffix(".html").write_text(html)


def main(argv=None, notebooks=NOTEBOOKS, output=None):
    """The command line; notebooks and output (default: notebooks/ and output/) are folders for the tests."""
    output = PROJECT_ROOT / "output" if output is None else Path(output)
    parser = argparse.ArgumentParser(prog="python -m src.run_course", description="Run every notebook headless.")
    parser.add_argument("only", nargs="*", help="run only notebooks whose names start with these (e.g. 01 05)")
    parser.add_argument("--fast", action="store_true", help="smoke mode: COURSE_FAST=1")
    parser.add_argument("--inplace", action="store_true", help="also save the outputs into notebooks/")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="notebooks run at once")
    parser.add_argument("--site", action="store_true",
                        help="build the offline site and slides in output/site/ (src/site.py) from the stored outputs")
    parser.add_argument("--execute", action="store_true", help="with --site: run the notebooks first, build from that run")
    parser.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute and not args.site:
        parser.error("--execute goes with --site (a plain run already executes every notebook)")
    if args.site and not args.execute:
        return build_site(notebooks, output)
    if args._one:  # worker: one notebook in its own process
        ok, message = execute(Path(args._one[0]), Path(args._one[1]), args.inplace)
        print(json.dumps({"ok": ok, "message": message}))
        return 0 if ok else 1

    paths = sorted(p for p in Path(notebooks).glob("*.ipynb") if not args.only or p.name.startswith(tuple(args.only)))
    if not paths:
        print("No notebooks matched.", file=sys.stderr)
        return 2
    paths = longest_first(paths, output)
    out_dir = next_run_folder(output)
    shown = out_dir.relative_to(PROJECT_ROOT) if out_dir.is_relative_to(PROJECT_ROOT) else out_dir
    # the figures a run saves go beside its notebooks, in a folder of its own: no name is taken yet, so no
    # "grid_15.png" counters reach the committed outputs
    env = dict(os.environ, PYTHONUNBUFFERED="1", COURSE_OUTPUT=str(out_dir))
    if args.fast:
        env["COURSE_FAST"] = "1"
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    print(f"Running {len(paths)} notebooks ({'smoke mode' if args.fast else 'config.yaml'}) -> {shown}/",
          flush=True)

    def run(path):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "src.run_course", "--_one", str(path), str(out_dir)] + (["--inplace"] if args.inplace else [])
        claims_file = out_dir / f"{path.stem}.claims.jsonl"  # src/claims.py appends each claim's result here
        claims_file.unlink(missing_ok=True)
        proc = subprocess.run(cmd, env=dict(env, COURSE_CLAIMS=str(claims_file)), capture_output=True, text=True,
                              cwd=PROJECT_ROOT)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"ok": False, "message": (proc.stderr.strip().splitlines() or ["the worker crashed"])[-1]}
        if (out_dir / path.name).exists():
            write_html(out_dir / path.name)
        status = "ok" if result["ok"] else f"FAILED: {result['message']}"
        timings = out_dir / path.with_suffix(".timings.json").name
        if result["ok"] and timings.exists():
            slowest = max(json.loads(timings.read_text()), key=lambda r: r["seconds"], default=None)
            if slowest:
                status += f"  (slowest cell [{slowest['cell']}]: {slowest['seconds']:.1f} s)"
        print(f"  {path.stem:<28} {time.perf_counter() - t0:6.1f} s  {status}", flush=True)
        return result["ok"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, paths))
    failed = results.count(False)
    if args.inplace:  # the order a fresh checkout will use (longest_first)
        times = {p.stem: notebook_seconds(out_dir / p.with_suffix(".timings.json").name) for p in paths}
        times = {k: v for k, v in times.items() if v is not None}
        stored = Path(notebooks) / RUN_TIMES
        old = json.loads(stored.read_text()) if stored.exists() else {}
        stored.write_text(json.dumps(dict(sorted({**old, **times}.items())), indent=1) + "\n")
    print(f"{len(paths) - failed}/{len(paths)} notebooks ran in {time.perf_counter() - t0:.0f} s; "
          f"executed notebooks and HTML in {shown}/")
    claims_failed = report_claims(paths, out_dir, args.fast)
    if args.site:
        ran = {p.stem: out_dir / p.name for p, ok in zip(paths, results) if ok}
        times = {stem: notebook_seconds(out_dir / f"{stem}.timings.json") for stem in ran}
        code = build_site(notebooks, output, sources=ran, times={k: v for k, v in times.items() if v is not None},
                          built_from=f"the run in {shown}/ and its run times" + (" (smoke mode)" if args.fast else ""))
        return 1 if failed or claims_failed else code
    return 1 if failed or claims_failed else 0


def report_claims(paths, out_dir, fast):
    """Print the claims that did not hold; True when that must fail the run: full mode on the course's own config.

    With other settings (another seed, model or knob) a claim that does not hold is what the student asked to
    see, so it is reported and the run still succeeds; in smoke mode claims are not checked at all.
    """
    from src.claims import failed as failed_claims

    bad = [(p.stem, c) for p in paths for c in failed_claims(out_dir / f"{p.stem}.claims.jsonl") if not c["smoke"]]
    if fast or not bad:
        return False
    own = own_config()
    print(f"{len(bad)} claim(s) of the text did not hold " + ("on the course's own config:" if own else
          "with these settings (the text describes the course's own config.yaml):"))
    for stem, c in bad:
        print(f"  {stem}: {c['statement']} ({c['measured']})")
    return own


def own_config():
    """True when the notebooks ran on the course's own settings: no COURSE_CONFIG, every key at its default."""
    from src.config import load_config, non_default_keys

    return not os.environ.get("COURSE_CONFIG") and not non_default_keys(load_config())


def build_site(notebooks, output, **kw):
    """The offline site (src/site.py) in output/site/; 0, or 1 with the reason if a page would use the network."""
    from src import site

    try:
        site.build(Path(output) / "site", sorted(Path(notebooks).glob("*.ipynb")), **kw)
    except site.SiteError as e:
        print(f"Site not built: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
