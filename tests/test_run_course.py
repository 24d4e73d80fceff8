"""The run-the-course command (`python -m src.run_course`) on two tiny notebooks: one that works, one that fails.

The real notebooks are executed by test_notebooks.py; here the command itself is checked: a line per notebook,
the failing cell's error, a non-zero exit, executed notebooks + HTML + cell times in a new folder per run.
"""

import json

import nbformat
import pytest

from src import run_course


def write_notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture
def two_notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "a_works.ipynb", "x = 20", "print(x + 22)")
    write_notebook(folder / "b_fails.ipynb", "y = 1", "y / 0", "print('never reached')")
    return folder


@pytest.mark.slow
def test_one_line_per_notebook_and_a_failing_exit(two_notebooks, tmp_path, capsys):
    output = tmp_path / "output"
    code = run_course.main(["--jobs", "2"], notebooks=two_notebooks, output=output)
    printed = capsys.readouterr().out
    assert code == 1
    lines = {line.split()[0]: line for line in printed.splitlines() if line.startswith("  ")}
    assert set(lines) == {"a_works", "b_fails"}
    assert " ok" in lines["a_works"] and "slowest cell" in lines["a_works"]
    assert "FAILED" in lines["b_fails"] and "ZeroDivisionError" in lines["b_fails"]
    assert "1/2 notebooks ran" in printed

    run = output / "course_1"
    executed = nbformat.read(run / "a_works.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "42"
    assert all("execution" not in c.metadata for c in executed.cells)  # no timestamps in what is stored
    assert "42" in (run / "a_works.html").read_text()
    failed = nbformat.read(run / "b_fails.ipynb", as_version=4)  # kept, with the error, for reading
    assert failed.cells[1].outputs[0]["ename"] == "ZeroDivisionError" and not failed.cells[2].outputs
    timings = json.loads((run / "a_works.timings.json").read_text())
    assert [t["cell"] for t in timings] == [0, 1] and all(t["seconds"] >= 0 for t in timings)

    # a second run goes to a new folder: nothing from the first is overwritten
    before = (run / "a_works.html").read_bytes()
    assert run_course.main(["a_"], notebooks=two_notebooks, output=output) == 0
    assert (output / "course_2" / "a_works.ipynb").exists() and not (output / "course_2" / "b_fails.ipynb").exists()
    assert (run / "a_works.html").read_bytes() == before


def test_no_match_is_an_error(two_notebooks, tmp_path, capsys):
    assert run_course.main(["zz"], notebooks=two_notebooks, output=tmp_path / "output") == 2
    assert "No notebooks matched" in capsys.readouterr().err
    assert not (tmp_path / "output").exists()


def test_longest_first_uses_the_newest_run(tmp_path):
    paths = [tmp_path / f"{n}.ipynb" for n in ("01", "02", "03", "04")]
    for run, times in (("course_1", {"01": 50, "02": 10, "03": 30}), ("course_2", {"01": 5})):
        (tmp_path / run).mkdir()
        for name, seconds in times.items():
            (tmp_path / run / f"{name}.timings.json").write_text(json.dumps([{"cell": 1, "seconds": seconds}]))
    (tmp_path / "course_2" / "02.timings.json").write_text("not json")  # a broken file is skipped
    order = [p.stem for p in run_course.longest_first(paths, tmp_path)]
    assert order == ["04", "03", "02", "01"]  # 04 unknown: first; 01 took 5 s in the newest run


def test_a_fresh_checkout_orders_by_the_stored_times(tmp_path):
    paths = [tmp_path / f"{n}.ipynb" for n in ("01", "02", "03")]
    (tmp_path / run_course.RUN_TIMES).write_text(json.dumps({"01": 9.0, "02": 30.0, "03": 20.0}))
    assert [p.stem for p in run_course.longest_first(paths, tmp_path / "no_output_yet")] == ["02", "03", "01"]


@pytest.mark.slow
def test_inplace_stores_the_outputs_and_the_times(two_notebooks, tmp_path):
    (two_notebooks / "b_fails.ipynb").unlink()
    assert run_course.main(["--inplace"], notebooks=two_notebooks, output=tmp_path / "output") == 0
    stored = nbformat.read(two_notebooks / "a_works.ipynb", as_version=4)
    assert stored.cells[1].outputs[0]["text"].strip() == "42"
    times = json.loads((two_notebooks / run_course.RUN_TIMES).read_text())
    assert set(times) == {"a_works"} and times["a_works"] >= 0
