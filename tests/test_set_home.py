"""`python -m src.set_home OWNER/REPO [--branch BRANCH]` on a copy of the repository (never the real files): every
badge, every setup cell and the README's links move to the fork, the same way everywhere; a second run changes
nothing; going back home gives the original README and notebooks, with the canonical setup cell."""

import json
import re
import shutil

import nbformat
import pytest

from src import set_home as H
from src.run_course import PROJECT_ROOT

BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/([^/]+)/(notebooks/[^)\s]+)")


@pytest.fixture
def copy(tmp_path):
    """README.md and notebooks/ (the notebooks and setup_cell.py) of this repository, in a temporary folder."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "README.md", root / "README.md")
    for path in [*(PROJECT_ROOT / "notebooks").glob("*.ipynb"), PROJECT_ROOT / H.SETUP_CELL]:
        shutil.copy(path, root / "notebooks" / path.name)
    return root


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def first_code(path):
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def test_a_fork_in_one_command_and_a_second_run_changes_nothing(copy, capsys):
    home, _ = H.read_home(copy)
    notebooks = sorted((copy / "notebooks").glob("*.ipynb"))
    assert H.main(["alice/my-course", "--branch", "dev"], root=copy) == 0
    setup = (copy / H.SETUP_CELL).read_text()
    assert 'REPO = "https://github.com/alice/my-course"' in setup and 'BRANCH = "dev"' in setup
    assert H.read_home(copy) == ("alice/my-course", "dev")

    for path in notebooks:
        text = path.read_text()
        assert home not in text, f"{path.name} still names {home}"
        assert first_code(path) == setup.rstrip("\n"), f"{path.name}: the setup cell is not notebooks/setup_cell.py"
        first = nbformat.read(path, as_version=4).cells[0].source
        assert BADGE.findall(first) == [("alice/my-course", "dev", f"notebooks/{path.name}")]
    readme = (copy / "README.md").read_text()
    assert home not in readme
    badges = BADGE.findall(readme)
    assert len(badges) == len(notebooks) and {(r, b) for r, b, _ in badges} == {("alice/my-course", "dev")}
    assert {p for _, _, p in badges} == {f"notebooks/{p.name}" for p in notebooks}
    assert "https://github.com/alice/my-course" in readme

    # what tests/test_notebooks.py reads: the setup cell's REPO and the badge name the same repository
    m = re.search(r'REPO = "https://github\.com/([^"]+)"', first_code(notebooks[0]))
    assert m.group(1) == "alice/my-course"

    before = snapshot(copy)
    capsys.readouterr()
    assert H.set_home("alice/my-course", "dev", root=copy) == []
    assert snapshot(copy) == before
    assert "nothing to change" in capsys.readouterr().out


def test_going_back_home_restores_the_readme_and_the_notebooks(copy):
    home, branch = H.read_home(copy)
    original = snapshot(copy)
    H.set_home("https://github.com/bob/other.git", "feature/x", root=copy)
    H.set_home(home, branch, root=copy)
    assert (copy / "README.md").read_bytes() == original["README.md"]
    canonical = (copy / H.SETUP_CELL).read_text().rstrip("\n")
    assert (copy / H.SETUP_CELL).read_bytes() == original[str(H.SETUP_CELL)]
    for path in sorted((copy / "notebooks").glob("*.ipynb")):
        now = nbformat.read(path, as_version=4)
        was = nbformat.reads(original[str(path.relative_to(copy))].decode(), as_version=4)
        setup = next(i for i, c in enumerate(was.cells) if c.cell_type == "code")
        was.cells[setup].source = canonical  # the only difference allowed: the canonical setup cell
        assert now == was, path.name


def test_only_the_old_homes_links_move():
    text = ("[diffusers](https://github.com/huggingface/diffusers/blob/main/x.py) "
            "[home](https://github.com/a/course) [file](https://github.com/a/course/blob/main/src/f.py) "
            "[similar name](https://github.com/a/course-extra) [raw](https://raw.githubusercontent.com/a/course/main/x) "
            "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            "(https://colab.research.google.com/github/zz/yy/blob/old/notebooks/01_x.ipynb)")
    out = H.rewrite(text, "a/course", "b/fork", "dev")
    assert "github.com/huggingface/diffusers/blob/main/x.py" in out and "github.com/a/course-extra" in out
    assert "(https://github.com/b/fork)" in out and "github.com/b/fork/blob/dev/src/f.py" in out
    assert "raw.githubusercontent.com/b/fork/dev/x" in out
    assert "colab.research.google.com/github/b/fork/blob/dev/notebooks/01_x.ipynb" in out
    assert "colab.research.google.com/assets/colab-badge.svg" in out  # the badge's image is not a link to rewrite
    assert H.rewrite(out, "b/fork", "b/fork", "dev") == out
    slashed = H.rewrite("https://github.com/a/course/tree/feature/x/src and /blob/feature/xy/f", "a/course", "a/course",
                        "main", old_branch="feature/x")  # a branch with a slash, as the old home names it
    assert slashed == "https://github.com/a/course/tree/main/src and /blob/feature/xy/f"


def test_a_notebook_badge_opens_that_notebook_even_if_it_named_another():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                              "(https://colab.research.google.com/github/a/b/blob/main/notebooks/02_y.ipynb)"),
                nbformat.v4.new_code_cell("import x")]
    H.rewrite_notebook(nb, "03_z.ipynb", "a/b", "a/b", "main", "# Setup\nimport google.colab")
    assert "notebooks/03_z.ipynb" in nb.cells[0].source and "02_y" not in nb.cells[0].source
    assert [c.source for c in nb.cells[1:]] == ["# Setup\nimport google.colab", "import x"]  # a setup cell is added


@pytest.mark.parametrize("bad", ["alice", "alice/", "a b/c", "alice/repo/extra", "a_b/c"])
def test_a_bad_repository_changes_nothing(copy, bad, capsys):
    before = snapshot(copy)
    assert H.main([bad], root=copy) == 2
    assert "Nothing changed" in capsys.readouterr().err and snapshot(copy) == before


def test_a_bad_branch_changes_nothing(copy):
    before = snapshot(copy)
    with pytest.raises(ValueError, match="branch"):
        H.set_home("alice/x", 'dev"; rm', root=copy)
    assert snapshot(copy) == before


def test_the_repository_names_one_home_everywhere(copy):
    """The real tree, checked on its copy: set_home with the current home changes nothing. Fails when a notebook's
    setup cell, a badge or a README link drifted from notebooks/setup_cell.py: run `python -m src.set_home` with
    the home that `python -m src.set_home --show` prints."""
    home, branch = H.read_home(copy)
    changed = H.set_home(home, branch, root=copy, log=lambda *a: None)
    assert changed == [], f"differ from {H.SETUP_CELL}: {[str(p) for p in changed]}; run: python -m src.set_home {home}"
