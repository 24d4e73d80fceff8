"""Point the course at its home on GitHub (a fork, say), everywhere at once.

    python -m src.set_home OWNER/REPO [--branch BRANCH]     # e.g. python -m src.set_home alice/diffusion-course
    python -m src.set_home --show                           # the current home

The home is written in one place, the `REPO = ` and `BRANCH = ` lines of notebooks/setup_cell.py (the setup cell
of every notebook). This command rewrites those two lines and then, from them:
- every notebook's setup cell (its first code cell) becomes notebooks/setup_cell.py, word for word;
- every Open-in-Colab badge, in the notebooks and in README.md, opens OWNER/REPO at BRANCH (a notebook's badge
  opens that notebook);
- every link to the old home (github.com/OLD, …/blob/BRANCH/…, …/tree/BRANCH/…) in README.md and in the notebooks'
  markdown points at the new one.
It writes only the files that change, so a second run changes nothing; it then names any other file that still
mentions the old home.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from pathlib import Path

from src.run_course import PROJECT_ROOT

SETUP_CELL = Path("notebooks") / "setup_cell.py"
README = Path("README.md")
NOTEBOOK_DIR = Path("notebooks")
_REPO_LINE = re.compile(r'^(REPO = ")https://github\.com/([^"/]+/[^"/]+)(")', re.M)
_BRANCH_LINE = re.compile(r'^(BRANCH = ")([^"]+)(")', re.M)
_BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)\"']+/[^/\s)\"']+/blob/[^\s)\"']+?/"
                         r"(?P<path>notebooks/[^)\s\"']+)")  # a branch may hold slashes: the path starts at notebooks/
_OWNER_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")
_SCANNED = ("*.md", "*.py", "*.txt", "*.yaml", "*.yml", "*.toml", "*.cfg", "*.ipynb", "*.json")
_NOT_SCANNED = {".git", ".venv", "output", "node_modules", "__pycache__", ".pytest_cache"}


def _text_files(root):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SCANNED)
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, pattern) for pattern in _SCANNED):
                yield Path(folder) / name


def read_home(root=PROJECT_ROOT):
    """(OWNER/REPO, BRANCH) from notebooks/setup_cell.py."""
    text = (Path(root) / SETUP_CELL).read_text()
    repo, branch = _REPO_LINE.search(text), _BRANCH_LINE.search(text)
    if not repo or not branch:
        raise ValueError(f"{SETUP_CELL} has no 'REPO = \"https://github.com/OWNER/REPO\"' or 'BRANCH = \"…\"' line")
    return repo.group(2), branch.group(2)


def parse_repo(text):
    """OWNER/REPO from 'OWNER/REPO', 'https://github.com/OWNER/REPO' or '…/OWNER/REPO.git'."""
    repo = re.sub(r"^(?:https?://)?(?:www\.)?github\.com/", "", text.strip()).removesuffix("/").removesuffix(".git")
    if not _OWNER_REPO.match(repo):
        raise ValueError(f"{text!r} is not OWNER/REPO (for example alice/diffusion-course)")
    return repo


def rewrite(text, old_repo, new_repo, branch, notebook=None, old_branch=None):
    """The text with the badges and the old home's links pointing at new_repo and branch. `notebook`: the name of
    the notebook the text belongs to, whose badge must open it; `old_branch`: the branch the links name now (it may
    hold slashes; other branches in links are taken to be one path segment)."""
    def badge(m):
        path = f"notebooks/{notebook}" if notebook else m.group("path")
        return f"https://colab.research.google.com/github/{new_repo}/blob/{branch}/{path}"

    text = _BADGE_LINK.sub(badge, text)
    old = re.escape(old_repo)
    ref = (re.escape(old_branch) + "(?![^/\\s)\"'])|" if old_branch else "") + "[^/\\s)\"']+"
    text = re.sub(rf"(github\.com/){old}/(blob|tree)/(?:{ref})", rf"\g<1>{new_repo}/\g<2>/{branch}", text)
    text = re.sub(rf"(raw\.githubusercontent\.com/){old}/(?:{ref})", rf"\g<1>{new_repo}/{branch}", text)
    return re.sub(rf"(github\.com/){old}(?![\w-])", rf"\g<1>{new_repo}", text)


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def rewrite_notebook(nb, name, old_repo, new_repo, branch, setup_source, old_branch=None):
    """In place: the setup cell (the first code cell; one is added before the first code cell if it lacks the
    Colab set-up) becomes `setup_source`; the markdown cells' badges and links are rewritten."""
    import nbformat

    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if code and "google.colab" in _source(nb.cells[code[0]]):
        nb.cells[code[0]].source = setup_source
    else:
        nb.cells.insert(code[0] if code else min(1, len(nb.cells)), nbformat.v4.new_code_cell(setup_source))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite(_source(cell), old_repo, new_repo, branch, notebook=name, old_branch=old_branch)
    return nb


def set_home(repo, branch="main", root=PROJECT_ROOT, log=print):
    """Point everything at github.com/repo, branch `branch`; returns the files it changed (relative to root)."""
    import nbformat

    root, repo = Path(root), parse_repo(repo)
    if not _BRANCH.match(branch) or ".." in branch:
        raise ValueError(f"{branch!r} is not a branch name")
    old_repo, old_branch = read_home(root)
    changed = []

    def write(path, old_text, new_text):
        if new_text != old_text:
            path.write_text(new_text)
            changed.append(path.relative_to(root))

    setup_path = root / SETUP_CELL
    old_setup = setup_path.read_text()
    setup = _BRANCH_LINE.sub(rf"\g<1>{branch}\g<3>", _REPO_LINE.sub(rf"\g<1>https://github.com/{repo}\g<3>", old_setup))
    write(setup_path, old_setup, setup)
    setup_source = setup.rstrip("\n")
    for path in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        old_text = path.read_text()
        nb = rewrite_notebook(nbformat.reads(old_text, as_version=4), path.name, old_repo, repo, branch, setup_source,
                              old_branch)
        write(path, old_text, nbformat.writes(nb) + "\n")  # what nbformat.write puts in a file
    if (root / README).exists():
        old_text = (root / README).read_text()
        write(root / README, old_text, rewrite(old_text, old_repo, repo, branch, old_branch=old_branch))

    if old_repo != repo:  # anything else that names the old home, for a person to look at
        for p in _text_files(root):
            if f"github.com/{old_repo}" in p.read_text(errors="replace"):
                log(f"  still names github.com/{old_repo}: {p.relative_to(root)}")
    log(f"Home: github.com/{repo}, branch {branch} (was {old_repo}, {old_branch}); "
        + (f"{len(changed)} files changed: {', '.join(map(str, changed))}" if changed else "nothing to change"))
    return changed


def main(argv=None, root=PROJECT_ROOT):
    parser = argparse.ArgumentParser(prog="python -m src.set_home",
                                     description="Point the badges, setup cells and README links at OWNER/REPO.")
    parser.add_argument("repo", nargs="?", help="OWNER/REPO on GitHub (or its URL)")
    parser.add_argument("--branch", default="main", help="the branch Colab opens and clones (default main)")
    parser.add_argument("--show", action="store_true", help="print the current home and change nothing")
    args = parser.parse_args(argv)
    if args.show or not args.repo:
        repo, branch = read_home(root)
        print(f"github.com/{repo}, branch {branch}  (from {SETUP_CELL})")
        return 0 if args.show else 2
    try:
        set_home(args.repo, args.branch, root)
    except ValueError as e:
        print(f"Nothing changed: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
