"""The notebooks' setup cell (notebooks/setup_cell.py, which `python -m src.set_home` writes into every notebook)
on its Colab path, offline: Colab is "detected" the way the cell detects it (`google.colab` in sys.modules, from a
stand-in package on PYTHONPATH that the run imports first, as Colab's kernel does), the clone comes from a local
bare repository of this one (COURSE_REPO_URL, a file:// URL, so --depth 1 and --branch work as on GitHub) into a
temporary folder (COURSE_DIR instead of /content/<repo>), and pip runs for real with PIP_NO_INDEX=1: every package
of requirements-colab.txt is already in this environment, so pip resolves the file and finds nothing to fetch
(pip's log, PIP_LOG, shows it ran). Nothing reaches the network.
"""

import json
import os
import subprocess
import sys

import pytest

from src.run_course import PROJECT_ROOT
from src.set_home import SETUP_CELL, read_home

CELL = PROJECT_ROOT / SETUP_CELL
REPORT = """
import json, sys
import src
print("REPORT " + json.dumps({"root": str(ROOT), "path0": sys.path[0], "src": src.__file__}))
"""


@pytest.fixture(scope="module")
def bare_repo(tmp_path_factory):
    """A bare clone of this repository (its committed state: what Colab would clone), with the branch the cell asks for."""
    bare = tmp_path_factory.mktemp("remote") / "diffusion-course.git"
    subprocess.run(["git", "clone", "--bare", "--quiet", str(PROJECT_ROOT), str(bare)], check=True)
    _, branch = read_home()
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", f"refs/heads/{branch}", "HEAD"], check=True)
    return bare


def run_cell(tmp_path, colab, repo_url=None, clone_dir=None, cwd=None, pip_log=None):
    fake = tmp_path / "fake_colab"
    (fake / "google" / "colab").mkdir(parents=True, exist_ok=True)  # google/ stays a namespace package
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
    program = ("import google.colab\n" if colab else "") + CELL.read_text() + REPORT
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_REPO_URL", "COURSE_DIR", "PIP_"))}
    env.update(PYTHONPATH=str(fake), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", GIT_TERMINAL_PROMPT="0")
    if repo_url:
        env["COURSE_REPO_URL"] = repo_url
    if clone_dir:
        env["COURSE_DIR"] = str(clone_dir)
    if pip_log:
        env["PIP_LOG"] = str(pip_log)
    proc = subprocess.run([sys.executable, "-c", program], cwd=cwd or tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    report = next((json.loads(l[7:]) for l in proc.stdout.splitlines() if l.startswith("REPORT ")), None)
    return proc, report


def test_in_colab_the_cell_clones_installs_and_imports_the_course(bare_repo, tmp_path):
    content = tmp_path / "content"  # Colab's working directory
    content.mkdir()
    clone = content / "diffusion-course"
    proc, report = run_cell(tmp_path, colab=True, repo_url=bare_repo.as_uri(), clone_dir=clone, cwd=content,
                            pip_log=tmp_path / "pip.log")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (clone / "config.yaml").is_file() and (clone / "src" / "course.py").is_file()
    shallow = subprocess.run(["git", "-C", str(clone), "rev-parse", "--is-shallow-repository", "--abbrev-ref", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert shallow == ["true", read_home()[1]]  # --depth 1, on the cell's branch
    assert report["root"] == str(clone) and report["path0"] == str(clone)
    assert report["src"].startswith(str(clone)), "src/ must be imported from the clone"
    pip = (tmp_path / "pip.log").read_text()
    assert "requirements-colab.txt" in pip and "Requirement already satisfied: diffusers" in pip
    # the student is told where to change a setting
    assert str(clone / "config.yaml") in proc.stdout and "Run all" in proc.stdout and "slider" in proc.stdout

    # run again (a second notebook, or Run all twice): nothing is cloned or installed again
    proc, report = run_cell(tmp_path, colab=True, repo_url=(tmp_path / "nowhere.git").as_uri(), clone_dir=clone,
                            cwd=content, pip_log=tmp_path / "pip2.log")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert report["root"] == str(clone) and not (tmp_path / "pip2.log").exists()


def test_in_colab_a_failed_clone_stops_the_cell(tmp_path):
    proc, report = run_cell(tmp_path, colab=True, repo_url=(tmp_path / "no-such-repo.git").as_uri(),
                            clone_dir=tmp_path / "content" / "diffusion-course")
    assert proc.returncode != 0 and report is None
    assert "CalledProcessError" in proc.stderr and "git" in proc.stderr


def test_outside_colab_the_cell_finds_the_checkout_and_clones_nothing(tmp_path):
    clone = tmp_path / "content" / "diffusion-course"
    proc, report = run_cell(tmp_path, colab=False, repo_url=(tmp_path / "nowhere.git").as_uri(), clone_dir=clone,
                            cwd=PROJECT_ROOT / "notebooks")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert report["root"] == str(PROJECT_ROOT) and report["src"].startswith(str(PROJECT_ROOT / "src"))
    assert not clone.exists() and "config.yaml" not in proc.stdout  # the Colab hint is for Colab only


def test_the_cell_names_its_home_once_and_clones_that_branch():
    text = CELL.read_text()
    repo, branch = read_home()
    assert text.count("github.com/") == 1 and f'REPO = "https://github.com/{repo}"' in text
    assert '"--branch", BRANCH' in text and f'BRANCH = "{branch}"' in text
    assert "requirements-colab.txt" in text and "sys.path" in text  # what tests/test_notebooks.py asks of the cell
