"""Slide metadata for the notebooks: one rule, so that every notebook presents the same way.

    python -m src.slides                 # write the slide metadata into notebooks/*.ipynb (only where it changes)
    python -m src.slides --check         # exit 1 if any notebook's metadata differs from the rule
    python -m src.slides notebooks/03_similar_noise.ipynb   # only these files

The rule (`with_slides(nb)`, a pure function: it returns a new notebook and leaves its argument alone):

- a markdown cell whose heading is H1 or H2 (`#`, `##`) starts a slide; H3 (`###`) starts a subslide;
- the setup cell (the first code cell, the one that clones the course in Colab) is skipped: run it before presenting;
- a code cell longer than `long_code` lines (12) is a fragment (it appears on the next key press), or is skipped
  with `long="skip"`;
- one figure per (sub)slide: a cell that would put a second figure on a slide, or text below one, starts a
  subslide (a figure is an image, an HTML output such as an animation, or a widget; progress bars are not);
- everything else continues the slide it is on ("-").

Slides are `metadata.slideshow.slide_type` on each cell, which both jupyterlab-rise (live, in JupyterLab) and
nbconvert's slides exporter (`python -m src.run_course --site`) read. The notebook also gets `metadata.rise`
with `scroll: true`, so a tall slide scrolls in RISE instead of being cut off.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

LONG_CODE = 12  # lines: longer code cells are fragments (or skipped)
RISE_SETTINGS = {"scroll": True}
_HEADING = re.compile(r"^(#{1,6})\s+\S")
_ONLY_IMAGES = re.compile(r"^\s*(\[?!\[[^\]]*\]\([^)]*\)(\]\([^)]*\))?\s*)+$")  # a badge or image-only line
_PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's text fallback: "sampling:  40%|████  | 20/50"


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def heading_level(cell):
    """The level of the markdown cell's heading (1 for `#`), if the cell starts with one; badges and images
    above the heading are passed over. None for other cells."""
    if cell["cell_type"] != "markdown":
        return None
    for line in _source(cell).splitlines():
        if not line.strip() or _ONLY_IMAGES.match(line):
            continue
        m = _HEADING.match(line)
        return len(m.group(1)) if m else None
    return None


def is_progress_bar(output):
    """A tqdm bar (a widget whose text fallback is "…%|…"): output noise, not a figure."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return "application/vnd.jupyter.widget-view+json" in data and bool(_PROGRESS_BAR.search(text))


def makes_figure(cell):
    """Does this code cell show an image, an HTML output (an animation, a table) or a widget?"""
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if is_progress_bar(output):
            continue
        if any(k.startswith("image/") for k in data) or "text/html" in data or \
                "application/vnd.jupyter.widget-view+json" in data:
            return True
    return False


def is_setup_cell(cell):
    return cell["cell_type"] == "code" and "google.colab" in _source(cell)


def slide_types(nb, long_code=LONG_CODE, long="fragment"):
    """The slide type of every cell under the rule (see the module's docstring), as a list."""
    if long not in ("fragment", "skip"):
        raise ValueError(f"long={long!r}: long code cells are either 'fragment' or 'skip'")
    types, figure_on_slide, seen_code = [], False, False
    for cell in nb["cells"]:
        level = heading_level(cell)
        kind = "-"
        if level is not None and level <= 2:
            kind, figure_on_slide = "slide", False
        elif level == 3:
            kind, figure_on_slide = "subslide", False
        elif cell["cell_type"] == "markdown":
            if figure_on_slide:
                kind, figure_on_slide = "subslide", False
        elif cell["cell_type"] == "code":
            first_code, seen_code = not seen_code, True
            figure = makes_figure(cell)
            if first_code and is_setup_cell(cell):
                kind = "skip"
            elif figure and figure_on_slide:
                kind = "subslide"
            elif len(_source(cell).splitlines()) > long_code:
                kind = long
            if figure and kind != "skip":
                figure_on_slide = True
        types.append(kind)
    if types and types[0] == "-":
        types[0] = "slide"  # a deck starts with a slide
    return types


def with_slides(nb, long_code=LONG_CODE, long="fragment"):
    """A copy of the notebook with `metadata.slideshow.slide_type` set on every cell by the rule, and
    `metadata.rise` for jupyterlab-rise. The argument is not modified."""
    nb = copy.deepcopy(nb)
    for cell, kind in zip(nb["cells"], slide_types(nb, long_code, long)):
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
    nb.setdefault("metadata", {})["rise"] = {**nb["metadata"].get("rise", {}), **RISE_SETTINGS}
    return nb


def has_slides(nb):
    """Does any cell carry slide metadata already (from this rule or set by hand)?"""
    return any("slide_type" in c.get("metadata", {}).get("slideshow", {}) for c in nb["cells"])


def main(argv=None):
    import nbformat

    from src.run_course import NOTEBOOKS

    parser = argparse.ArgumentParser(prog="python -m src.slides", description="Write slide metadata into notebooks.")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs from the rule")
    parser.add_argument("--long-code", type=int, default=LONG_CODE, help="code cells with more lines than this …")
    parser.add_argument("--long", choices=("fragment", "skip"), default="fragment", help="… become fragments or are skipped")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    differ = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        new = with_slides(nb, args.long_code, args.long)
        if new == nb:
            continue
        differ.append(path)
        if not args.check:
            nbformat.write(new, path)
        counts = {k: slide_types(nb, args.long_code, args.long).count(k) for k in ("slide", "subslide", "fragment", "skip")}
        print(f"  {path.name}: {'differs' if args.check else 'written'} "
              f"({', '.join(f'{v} {k}s' for k, v in counts.items())})")
    print(f"{len(differ)} of {len(paths)} notebooks {'differ from the rule' if args.check else 'changed'}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
