"""What a student sees on GitHub, from the committed notebooks alone (GitHub shows PNG and GIF outputs, never
JavaScript players or widgets): every animation and every widget has a static image beside it, and the outputs
carry no progress-bar debris and no run counters in saved file names."""

import json
import re

import pytest

from src.files import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def outputs(cell):
    return cell.get("outputs", []) if cell["cell_type"] == "code" else []


def text_of(output):
    data = output.get("data", {})
    return "".join(output.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))


def kinds(cell):
    """'live' for a widget or a JavaScript player, 'image' for a PNG or GIF output."""
    found = set()
    for o in outputs(cell):
        data = o.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data or "<script" in "".join(data.get("text/html", "")):
            found.add("live")
        if "image/png" in data or "image/gif" in data:
            found.add("image")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_animation_and_widget_has_a_static_image_beside_it(path):
    cells = json.loads(path.read_text())["cells"]
    blank = []
    for i, cell in enumerate(cells):
        if "live" not in kinds(cell) or "image" in kinds(cell):
            continue
        near = cells[max(0, i - 1):i + 2]  # the cell before (its default figure) or a GIF in the markdown beside it
        if not any("image" in kinds(c) or (c["cell_type"] == "markdown" and ".gif" in "".join(c["source"]))
                   for c in near):
            blank.append(i)
    assert not blank, f"{path.name}: cells {blank} show a widget or player with no image beside it (blank on GitHub)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_carry_no_progress_bars_and_no_run_counters(path):
    cells = json.loads(path.read_text())["cells"]
    bars = [i for i, c in enumerate(cells) for o in outputs(c) if re.search(r"\d+%\|", text_of(o))]
    counters = [m.group(0) for c in cells for o in outputs(c)
                for m in re.finditer(r"\b\w+_\d+\.(?:png|gif)\b", text_of(o))]
    assert not bars, f"{path.name}: cells {bars} keep a progress bar's text in the committed output"
    assert not counters, f"{path.name}: saved names with run counters {counters}: run the course from a clean output"
