"""The course as a static site and as slides, for a room without internet.

    python -m src.run_course --site             # output/site/ from the outputs stored in notebooks/ (seconds)
    python -m src.run_course --site --execute   # run every notebook first (output/course_N/), then build from those
    python -m src.site [--out DIR] [--no-slides]

output/site/index.html lists the notebooks (what each teaches, its run time); each notebook becomes
NAME.html (its figures, animations and math) and NAME.slides.html (reveal.js slides). Everything the pages load
is in output/site/assets/, copied from src/site_assets/ (MathJax 3's single-file SVG build, which needs no fonts;
reveal.js 5's dist/ with one theme and its fonts): the site works from file:// with the network off. A page
that would still load anything from the network is an error (`remote_references`), not a silent CDN fallback.

What is not the same as in JupyterLab: a widget (a slider) needs a kernel, so the page shows a note where it was
(its default figure is in the output above it); progress bars are left out.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

from src import slides as S
from src.run_course import NOTEBOOKS, PROJECT_ROOT, RUN_TIMES

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "site_assets"
TEMPLATES = HERE / "site_templates"
SITE = PROJECT_ROOT / "output" / "site"
ASSETS_URL = "assets"  # pages sit beside assets/: every URL in them is relative, so file:// works
MATHJAX_URL = f"{ASSETS_URL}/mathjax/tex-svg-full.js"
REVEAL_URL = f"{ASSETS_URL}/reveal.js"
REVEAL_THEME = "white"  # the only theme in src/site_assets (its fonts are there too; some themes import Google's)

WIDGET_NOTE = ('<div class="course-widget-note">Interactive widget: run the notebook (JupyterLab or Colab) to use '
               'its sliders; the figure above shows the settings from config.yaml.</div>')
_BADGE_IMAGE = re.compile(r"https://colab\.research\.google\.com/assets/colab-badge\.svg")
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
_MD_REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\(((?:https?:)?//[^)\s]+)\)")
_HTML_REMOTE_TAG = re.compile(r"<(link|script)\b[^>]*\b(?:href|src)\s*=\s*[\"']?(?:https?:)?//[^>]*>(?:\s*</script>)?", re.I)
_REMOTE_TAG = re.compile(r"<(script|link|img|iframe|source|video|audio|embed|object|input)\b[^>]*?\s"
                         r"(src|href|data|poster)\s*=\s*[\"']?\s*((?:https?:)?//[^\"'\s>]+)", re.I)
_REMOTE_CSS = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])\s*((?:https?:)?//[^\"')\s]+)", re.I)


class SiteError(RuntimeError):
    pass


def remote_references(text):
    """Every URL that a browser would fetch from the network when it opens this HTML (or CSS): src/href of
    script, link, img and the like, CSS url() and @import. Links (<a href>) are not fetched and not listed."""
    return [m.group(3) for m in _REMOTE_TAG.finditer(text)] + _REMOTE_CSS.findall(text)


def _text(value):
    return "".join(value) if isinstance(value, list) else value


def offline_copy(nb, assets=ASSETS_URL):
    """A copy of the notebook that a page can show offline: the Colab badge image from assets/, other remote
    markdown images as links, remote <link>/<script> tags dropped from HTML outputs (matplotlib's animation
    player asks for Font Awesome: course.css draws its buttons instead), widgets replaced by a note, progress
    bars left out, and no stored widget state (it would only be read by a widget manager from a CDN)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            source = _BADGE_IMAGE.sub(f"{assets}/colab-badge.svg", _text(cell.source))
            cell.source = _MD_REMOTE_IMAGE.sub(lambda m: f"[{m.group(1) or 'image'}]({m.group(2)})", source)
        outputs = []
        for output in cell.get("outputs", []):
            if S.is_progress_bar(output):
                continue
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                output = copy.deepcopy(output)
                output["data"] = {"text/html": WIDGET_NOTE, "text/plain": "(interactive widget)"}
            elif "text/html" in data:
                output["data"]["text/html"] = _HTML_REMOTE_TAG.sub("", _text(data["text/html"]))
            outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return nb


def summary(nb):
    """(title, tagline, what-you-learn markdown, Colab link) from the notebook's first markdown cell."""
    first = next((_text(c.source) for c in nb.cells if c.cell_type == "markdown"), "")
    title = next((l.lstrip("#").strip() for l in first.splitlines() if l.startswith("# ")), None)
    tagline = " ".join(l[1:].strip() for l in first.splitlines() if l.startswith(">"))
    learn = first.split("**What you will learn**", 1)[1].strip() if "**What you will learn**" in first else ""
    colab = _COLAB_LINK.search(first)
    return title, tagline, learn, colab.group(0) if colab else None


def stored_times(folder=NOTEBOOKS):
    try:
        return {k: float(v) for k, v in json.loads((Path(folder) / RUN_TIMES).read_text()).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


class _NoAltTextWarnings(logging.Filter):
    """nbconvert warns about every figure without alt text (all matplotlib outputs): not the site's business."""

    def filter(self, record):
        return "Alternative text is missing" not in record.getMessage()


def _exporters():
    from nbconvert import HTMLExporter, SlidesExporter

    common = dict(extra_template_basedirs=[str(TEMPLATES)], mathjax_url=MATHJAX_URL)
    page = HTMLExporter(template_name="course_page", **common)
    deck = SlidesExporter(template_name="course_slides", reveal_url_prefix=REVEAL_URL, reveal_theme=REVEAL_THEME,
                          reveal_transition="none", reveal_number="c/t", **common)
    for exporter in (page, deck):
        if not any(isinstance(f, _NoAltTextWarnings) for f in exporter.log.filters):
            exporter.log.addFilter(_NoAltTextWarnings())
    return page, deck


def _seconds(s):
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def index_page(rows, total, built_from):
    from nbconvert.filters.markdown import markdown2html

    body = []
    for r in rows:
        learn = markdown2html(r["learn"]) if r["learn"] else ""
        links = [f'<a href="{r["page"]}">Read</a>']
        if r["slides"]:
            links.append(f'<a href="{r["slides"]}">Slides</a>')
        if r["colab"]:
            links.append(f'<a href="{html.escape(r["colab"])}">Open in Colab</a>')
        body.append(f"""<tr>
  <td><a href="{r["page"]}"><strong>{html.escape(r["title"])}</strong></a></td>
  <td><p class="tagline">{html.escape(r["tagline"])}</p>{learn}</td>
  <td class="time">{_seconds(r["seconds"])}</td>
  <td class="links">{"".join(links)}</td>
</tr>""")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Diffusion models, hands on</title>
<link rel="stylesheet" href="{ASSETS_URL}/course.css">
<script src="{ASSETS_URL}/mathjax-config.js"></script>
<script src="{MATHJAX_URL}" defer></script>
</head>
<body class="course-index">
<main>
<h1>Diffusion models, hands on: DDPM and DDIM in six notebooks</h1>
<p class="lead">Every notebook as a page (its figures, animations and math) and as slides. The run time is one
notebook top to bottom on the CPU ({_seconds(total)} for the whole course, one notebook at a time).</p>
<table>
<thead><tr><th>notebook</th><th>what you learn</th><th>run time</th><th></th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<footer>Built from {html.escape(built_from)}. Works offline: everything it loads is in assets/.
MathJax (Apache 2.0) and reveal.js (MIT) are bundled with their licences.</footer>
</main>
</body>
</html>
"""


def build(out=None, notebooks=None, sources=None, times=None, slides=True, built_from=None, log=print):
    """Write the site to `out` (default output/site/, replaced as a whole). `notebooks`: the course's notebook
    files (default notebooks/*.ipynb); `sources`: {stem: path} of executed copies to read instead (a run of
    run_course); `times`: {stem: seconds} of that run (the others: notebooks/run_times.json, the last full run
    stored with the notebooks); `built_from` says which in the index. Returns the index page's path."""
    import nbformat

    out = SITE if out is None else Path(out)
    notebooks = sorted(Path(NOTEBOOKS).glob("*.ipynb")) if notebooks is None else [Path(p) for p in notebooks]
    if not notebooks:
        raise SiteError("no notebooks to build a site from")
    sources = sources or {}
    times = {**stored_times(notebooks[0].parent), **(times or {})}
    built_from = built_from or "the outputs stored in notebooks/; run times from the last full run (notebooks/run_times.json)"
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ASSETS, tmp / ASSETS_URL)
    page_exporter, deck_exporter = _exporters()
    rows, problems = [], []
    for path in notebooks:
        nb = nbformat.read(sources.get(path.stem, path), as_version=4)
        title, tagline, learn, colab = summary(nb)
        title = title or path.stem
        page, deck = f"{path.stem}.html", f"{path.stem}.slides.html" if slides else None
        resources = {"metadata": {"name": title, "path": str(path.parent)},
                     "course": {"assets": ASSETS_URL, "slides": deck, "colab": colab}}
        written = [(page, page_exporter.from_notebook_node(offline_copy(nb), resources=copy.deepcopy(resources))[0])]
        if slides:
            deck_nb = nb if S.has_slides(nb) else S.with_slides(nb)  # the rule of src/slides.py if not stored yet
            written.append((deck, deck_exporter.from_notebook_node(offline_copy(deck_nb),
                                                                   resources=copy.deepcopy(resources))[0]))
        for name, text in written:
            problems += [f"{name}: {url}" for url in remote_references(text)]
            (tmp / name).write_text(text, encoding="utf-8")
        rows.append({"title": title, "tagline": tagline, "learn": learn, "colab": colab, "page": page,
                     "slides": deck, "seconds": times.get(path.stem)})
    known = [r["seconds"] for r in rows if r["seconds"] is not None]
    index = index_page(rows, sum(known) if known else None, built_from)
    problems += [f"index.html: {url}" for url in remote_references(index)]
    (tmp / "index.html").write_text(index, encoding="utf-8")
    if problems:
        raise SiteError("pages would load from the network: " + "; ".join(problems))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    shown = out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out
    log(f"Site: {len(rows)} notebooks{' and their slides' if slides else ''} in {shown}/ ({size:.1f} MB, "
        f"{time.perf_counter() - t0:.1f} s); open {shown / 'index.html'}")
    return out / "index.html"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m src.site", description="Build the course's offline site and slides.")
    parser.add_argument("--out", type=Path, default=SITE, help="where (default output/site; replaced as a whole)")
    parser.add_argument("--no-slides", action="store_true", help="pages only")
    args = parser.parse_args(argv)
    try:
        build(args.out, slides=not args.no_slides)
    except SiteError as e:
        print(f"Site not built: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
