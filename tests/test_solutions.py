"""src/solutions.py: the instructor's solved notebooks replace every exercise stub by the course's own answer."""

import json

import nbformat
import pytest

from src import check
from src.files import PROJECT_ROOT
from src.solutions import solve_cell, solve_notebook

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("0[1-6]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_stub_of_a_notebook_gets_the_courses_answer(path):
    nb = nbformat.read(path, as_version=4)
    stubs = [c.source for c in nb.cells if c.cell_type == "code" and check.STUB_MESSAGE in c.source]
    solved = solve_notebook(nb)
    assert 2 <= len(solved) == len(stubs), f"{path.name}: exercises {solved}, stub cells {len(stubs)}"
    assert not any(check.STUB_MESSAGE in c.source for c in nb.cells if c.cell_type == "code")
    for name in solved:  # what the notebook's check cell will then say
        assert check.check_answer(name, check.EXERCISES[name].reference, quiet=True).ok, name


def test_a_solved_cell_defines_the_students_function():
    name = "forward_jump"
    scope = {}
    exec(solve_cell(check.stub_source(name)), scope)  # noqa: S102 - the course's own code
    assert scope[f"my_{name}"] is check.EXERCISES[name].reference
    assert solve_cell("x = 1\n") == "x = 1\n"
