"""Every notebook runs top to bottom on a fresh kernel (smoke mode), from a working directory other than
notebooks/, and carries the Colab badge and the setup cell."""

import json
import re
from pathlib import Path

import pytest

from src.files import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def repo_of_setup_cell(path):
    setup = next(source(c) for c in cells(path) if c["cell_type"] == "code")
    m = re.search(r'REPO = "https://github\.com/([^"]+)"', setup)
    return m.group(1) if m else None


def test_the_course_has_its_notebooks():
    assert [n[:2] for n in NAMES] == ["01", "02", "03", "04", "05", "06", "07"], NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_badge_points_at_this_notebook_and_setup_cell_comes_first(path):
    first = source(cells(path)[0])
    m = re.search(r"\(https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/[^/]+/(notebooks/[^)]+)\)", first)
    assert m, f"{path.name}: the first cell has no Open-in-Colab badge"
    assert m.group(2) == f"notebooks/{path.name}", "the badge must open this notebook"
    setup = source(next(c for c in cells(path) if c["cell_type"] == "code"))
    assert "google.colab" in setup and "git" in setup and "requirements-colab.txt" in setup and "sys.path" in setup
    assert repo_of_setup_cell(path) == m.group(1), "badge and setup cell must name the same repository"


def test_every_notebook_names_the_same_repository_as_the_readme():
    repos = {repo_of_setup_cell(p) for p in NOTEBOOKS}
    assert len(repos) == 1 and None not in repos
    assert f"github.com/{repos.pop()}" in (PROJECT_ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_functions_stay_short(path):
    for c in cells(path):
        if c["cell_type"] != "code":
            continue
        for m in re.finditer(r"^def \w+.*?(?=^\S|\Z)", source(c), re.M | re.S):
            assert m.group(0).rstrip().count("\n") <= 11, f"{path.name}: a notebook function over ~10 lines belongs in src/"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    """A fresh kernel, cwd = a temporary folder (not notebooks/), figures to a temporary output folder."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from src.kernel import notebook_client

    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "output"))
    nb = nbformat.read(path, as_version=4)
    client = notebook_client(nb, tmp_path)
    try:
        client.execute()
    except CellExecutionError as e:
        lines = [l for l in str(e).splitlines() if l.strip()]
        pytest.fail(f"{path.name} failed: {lines[-1] if lines else e}", pytrace=False)
    saved = list((tmp_path / "output").glob("*"))
    assert saved, f"{path.name} saved no figure or GIF to output/"
