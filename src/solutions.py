"""The solved notebooks, for an instructor: every exercise stub replaced by the course's own answer, then executed.

    python -m src.solutions            # -> output/solved/NAME.ipynb, each exercise answered "right"
    python -m src.solutions 02 05      # only the notebooks whose names start with these

The answer is the course's own function (what check.solution() prints), so there is one source of truth and no
copied solution to drift from it. The committed notebooks keep their stubs.
"""

from __future__ import annotations

import argparse
import re
import sys

from src.files import repo_path

STUB = re.compile(r"^def my_(\w+)\(", re.M)


def solve_cell(source):
    """A stub cell's source replaced by the course's answer; other cells are returned unchanged."""
    from src.check import EXERCISES, STUB_MESSAGE

    m = STUB.search(source)
    if not m or STUB_MESSAGE not in source or m.group(1) not in EXERCISES:
        return source
    name = m.group(1)
    return (f"# the course's own answer: check.solution({name!r}) shows its source\n"
            f"from src import check\nmy_{name} = check.EXERCISES[{name!r}].reference\n")


def solve_notebook(nb):
    """The notebook (an nbformat object) with every stub solved, in place; returns the exercises solved."""
    solved = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            new = solve_cell(cell.source)
            if new != cell.source:
                solved.append(STUB.search(cell.source).group(1))
                cell.source = new
    return solved


def main(argv=None):
    import nbformat

    from src.run_course import execute

    parser = argparse.ArgumentParser(prog="python -m src.solutions", description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="only notebooks whose names start with these (e.g. 01 05)")
    args = parser.parse_args(argv)
    out = repo_path("output", "solved")
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in sorted(repo_path("notebooks").glob("0*.ipynb")):
        if args.only and not path.name.startswith(tuple(args.only)):
            continue
        nb = nbformat.read(path, as_version=4)
        solved = solve_notebook(nb)
        copy = out / path.name
        nbformat.write(nb, copy)
        ok, message = execute(copy, out)
        failed += not ok
        print(f"  {path.stem:<28} {len(solved)} exercises solved: {', '.join(solved) or '-'}  "
              f"{'ok' if ok else 'FAILED: ' + message}", flush=True)
    print(f"solved notebooks in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
