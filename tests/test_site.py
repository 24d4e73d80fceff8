"""The offline site and slides (`python -m src.run_course --site`, src/site.py), checked as files and in a browser.

The browser test opens the index, one notebook page and one slide deck in headless Chromium (Debian's `chromium`)
with the network shut: every request Chromium makes to the network goes to a recording proxy on 127.0.0.1 that
answers 403, and the host resolver maps every name to "not found". Chromium is driven over the DevTools protocol
through a pipe (`--remote-debugging-pipe`, standard library only), which lists each request a page makes. It then
asserts that the pages requested nothing but file: and data: URLs (and the proxy saw none of theirs), that every
image on the screen is not blank (pixel spread in a screenshot of it), that MathJax rendered the math (SVG output,
no TeX errors, no $…$ left over), and that no local file was missing and no script failed.
Screenshots go to a temporary folder, or to $COURSE_SCREENSHOTS if set, to look at.
"""

import base64
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from src import run_course
from src import site as SITE
from src import slides as S
from src.run_course import NOTEBOOKS

INSTALL = "install it with: apt-get install -y chromium"
# Chromium's own background calls (component updater, sign-in, network time), made by the browser whatever page it
# shows and even with --disable-background-networking: blocked by the proxy like everything else, and told apart
# from the pages' requests, which the DevTools protocol lists one by one.
BROWSER_SERVICES = ("update.googleapis.com", "accounts.google.com", "clients2.google.com", "clients4.google.com",
                    "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com", "redirector.gvt1.com")


# ---------------------------------------------------------------- the site as files (no browser)

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The real notebooks (their stored outputs) as a site, once for this module."""
    out = tmp_path_factory.mktemp("site") / "site"
    SITE.build(out, log=lambda *a: None)
    return out


def local_targets(text):
    return re.findall(r"<(?:script|link|img)\b[^>]*?\s(?:src|href)=\"(?!data:|https?:|#)([^\"]+)\"", text)


@pytest.mark.slow
def test_every_notebook_has_a_page_and_slides_that_load_nothing_from_the_network(built):
    names = [p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb"))]
    assert names
    for name in names:
        for page in (built / f"{name}.html", built / f"{name}.slides.html"):
            text = page.read_text()
            assert SITE.remote_references(text) == [], page.name
            assert "cdnjs" not in text and "unpkg.com" not in text and "font-awesome" not in text, page.name
            for target in local_targets(text):  # every local file a page loads is in the site
                assert (built / target.split("?")[0]).is_file(), f"{page.name} loads {target}, which is missing"
            assert "assets/mathjax/tex-svg-full.js" in text
    slides = (built / f"{names[0]}.slides.html").read_text()
    assert "assets/reveal.js/dist/reveal.js" in slides and slides.count("<section") > 5
    for css in (built / "assets").rglob("*.css"):  # no @import of Google's fonts, no remote url()
        assert SITE.remote_references(css.read_text()) == [], css


@pytest.mark.slow
def test_the_index_lists_every_notebook_with_what_it_teaches_and_its_run_time(built):
    index = (built / "index.html").read_text()
    assert SITE.remote_references(index) == []
    stored = json.loads((NOTEBOOKS / run_course.RUN_TIMES).read_text())
    rows = re.findall(r"<tr>.*?</tr>", index, re.S)[1:]
    assert len(rows) == len(list(NOTEBOOKS.glob("*.ipynb")))
    for row, (name, seconds) in zip(rows, sorted(stored.items())):
        assert f'href="{name}.html"' in row and f'href="{name}.slides.html"' in row
        assert f"{seconds:.0f} s" in row or f"{seconds / 60:.1f} min" in row
        assert 'class="tagline">' in row and "<li>" in row  # the notebook's one-line summary and its learning goals


def test_vendored_assets_stay_small_and_carry_their_licences():
    files = [p for p in SITE.ASSETS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 3.5 * 2**20
    assert (SITE.ASSETS / "mathjax" / "LICENSE").is_file() and (SITE.ASSETS / "reveal.js" / "LICENSE").is_file()
    assert (SITE.ASSETS / "reveal.js" / "dist" / "theme" / "fonts" / "source-sans-pro" / "LICENSE").is_file()


def test_offline_copy_keeps_the_page_off_the_network():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    badge = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             "(https://colab.research.google.com/github/a/b/blob/main/notebooks/x.ipynb)")
    nb.cells = [nbformat.v4.new_markdown_cell(badge + "\n\n![a photo](https://example.org/p.png)\n# Title"),
                nbformat.v4.new_code_cell("x", outputs=[
                    nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "1"},
                                                            "text/plain": "sampling:  40%|####  | 2/5"}),
                    nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "2"},
                                                            "text/plain": "interactive(children=(IntSlider(…"}),
                    nbformat.v4.new_output("display_data", {"text/html": '<link rel="stylesheet"\nhref="https://maxcdn.'
                                                            'bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">'
                                                            '<div class="animation"><i class="fa fa-play"></i></div>'})])]
    before = json.dumps(nb, sort_keys=True)
    out = SITE.offline_copy(nb)
    assert json.dumps(nb, sort_keys=True) == before  # the argument is left alone
    md = out.cells[0].source
    assert "](assets/colab-badge.svg)" in md and "colab.research.google.com/github/a/b" in md  # the link stays
    assert "![" not in md.split("\n\n", 1)[1] and "[a photo](https://example.org/p.png)" in md
    outputs = out.cells[1].outputs
    assert len(outputs) == 2  # the progress bar is gone
    assert "course-widget-note" in outputs[0].data["text/html"]
    assert "font-awesome" not in outputs[1].data["text/html"] and "fa-play" in outputs[1].data["text/html"]
    assert "widgets" not in out.metadata


def test_remote_references_finds_what_a_browser_would_fetch():
    page = ('<script src="https://cdn.x/a.js"></script><link href="//fonts.y/css" rel="stylesheet">'
            '<img alt="" src="http://z/p.png"><a href="https://github.com/a/b">a link is not fetched</a>'
            '<script src="assets/local.js"></script><style>@import url(https://fonts.googleapis.com/css?f=1);'
            ' body { background: url("https://w/bg.png") }</style>')
    assert SITE.remote_references(page) == ["https://cdn.x/a.js", "//fonts.y/css", "http://z/p.png",
                                            "https://fonts.googleapis.com/css?f=1", "https://w/bg.png"]


def test_a_page_that_would_use_the_network_is_an_error(tmp_path, monkeypatch):
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"),
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
                    "display_data", {"text/html": '<img src="https://example.org/tracker.png">'})])]
    nbformat.write(nb, folder / "a.ipynb")
    with pytest.raises(SITE.SiteError, match="example.org/tracker.png"):
        SITE.build(tmp_path / "site", [folder / "a.ipynb"], log=lambda *a: None)
    assert not (tmp_path / "site").exists()  # nothing half-built is left as the site


def write_notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}\n> A tiny notebook.\n\n**What you will learn**\n- $x^2$")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_run_course_site_builds_from_stored_outputs_without_running(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "a_one.ipynb", "print('forty-' + 'two')")
    (folder / run_course.RUN_TIMES).write_text(json.dumps({"a_one": 12.0}))
    assert run_course.main(["--site"], notebooks=folder, output=tmp_path / "output") == 0
    site = tmp_path / "output" / "site"
    assert (site / "a_one.html").is_file() and (site / "a_one.slides.html").is_file()
    assert "12 s" in (site / "index.html").read_text()
    assert not list((tmp_path / "output").glob("course_*"))  # nothing was run
    assert "forty-two" not in (site / "a_one.html").read_text()  # the stored notebook has no output


def test_run_course_site_execute_runs_first_and_builds_from_that_run(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "a_one.ipynb", "print('forty-' + 'two')")
    assert run_course.main(["--site", "--execute", "--jobs", "1"], notebooks=folder, output=tmp_path / "output") == 0
    page = (tmp_path / "output" / "site" / "a_one.html").read_text()
    assert "forty-two" in page and (tmp_path / "output" / "course_1" / "a_one.ipynb").is_file()
    assert "output/course_1" in (tmp_path / "output" / "site" / "index.html").read_text() or \
        "course_1" in (tmp_path / "output" / "site" / "index.html").read_text()
    with pytest.raises(SystemExit):
        run_course.main(["--execute"], notebooks=folder, output=tmp_path / "output")


# ---------------------------------------------------------------- the site in a browser

def find_chromium():
    """Debian's Chromium ($CHROMIUM overrides); a test that needs it fails, saying how to install it."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    pytest.fail(f"Chromium is not installed: {INSTALL}", pytrace=False)


def test_a_missing_chromium_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL)):
        find_chromium()


class RecordingProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy on 127.0.0.1 that forwards nothing: it records each request (CONNECT host:443 for https)
    and answers 403."""

    daemon_threads = True

    def __init__(self):
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one_request(handler):
                handler.raw_requestline = handler.rfile.readline(65537)
                if handler.raw_requestline and handler.parse_request():
                    self.requests.append(f"{handler.command} {handler.path}")
                    handler.send_error(403, "offline test")
                handler.close_connection = True

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def page_requests(self):
        """What reached the proxy, less Chromium's own service calls."""
        host = lambda r: re.sub(r"^\w+ (?:https?://)?([^/:]+).*$", r"\1", r)
        return [r for r in self.requests if host(r) not in BROWSER_SERVICES]


class Browser:
    """Headless Chromium driven over the DevTools protocol through a pipe (fd 3: commands in, fd 4: replies out,
    each message JSON ending in a NUL byte). bash sets up fds 3 and 4 (dash takes no fd number above 9)."""

    def __init__(self, binary, proxy_port, profile):
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--no-pings", "--disable-domain-reliability",
                 f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{proxy_port}",
                 "--proxy-bypass-list=<-loopback>",  # localhost goes through the proxy too
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--hide-scrollbars", "--remote-debugging-pipe", "about:blank"]
        self.log = Path(profile) / "chromium.log"
        Path(profile).mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w}', binary, *flags],
                                         pass_fds=(cmd_r, out_w), stdout=log, stderr=log)
        os.close(cmd_r)
        os.close(out_w)
        self._next, self._replies, self.events = 0, {}, []
        self._lock, self._arrived = threading.Lock(), threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        while chunk := os.read(self._out_r, 1 << 20):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._arrived:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._arrived.notify_all()

    def send(self, method, params=None, session=None, timeout=60):
        with self._lock:
            self._next += 1
            ident = self._next
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"Chromium exited (status {self.proc.poll()}) before {method}: {tail}") from None
        with self._arrived:
            if not self._arrived.wait_for(lambda: ident in self._replies, timeout):
                raise TimeoutError(f"Chromium did not answer {method} in {timeout} s")
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method, session, after, timeout=60):
        match = lambda: any(e["method"] == method and e.get("sessionId") == session for e in self.events[after:])
        with self._arrived:
            if not self._arrived.wait_for(match, timeout):
                raise TimeoutError(f"no {method} in {timeout} s")

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_w)


class Tab:
    def __init__(self, browser, url, width=1280, height=1000):
        self.browser = browser
        self.target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.start = len(browser.events)
        self.send("Page.navigate", {"url": url})
        browser.wait_event("Page.loadEventFired", self.session, self.start)

    def send(self, method, params=None):
        return self.browser.send(method, params, self.session)

    def close(self):
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def js(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:60]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def events(self, method):
        return [e["params"] for e in self.browser.events[self.start:]
                if e["method"] == method and e.get("sessionId") == self.session]

    def requested(self):
        return [p["request"]["url"] for p in self.events("Network.requestWillBeSent")]

    def problems(self):
        """Failed loads (a missing file), uncaught exceptions, console errors."""
        failed = [f"failed load: {p.get('errorText')}" for p in self.events("Network.loadingFailed")]
        thrown = [f"exception: {p['exceptionDetails'].get('exception', {}).get('description', p['exceptionDetails'])}"
                  for p in self.events("Runtime.exceptionThrown")]
        logged = [f"log: {p['entry']['text']}" for p in self.events("Log.entryAdded") if p["entry"]["level"] == "error"]
        return failed + thrown + logged

    def screenshot(self, path, clip=None):
        params = {"format": "png", "captureBeyondViewport": clip is not None}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        Path(path).write_bytes(data)
        return data


MATH_STATE = """(async () => {
  await MathJax.startup.promise;
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER"]);
  const left = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let p = n.parentElement, hidden = false;
    while (p) { if (skip.has(p.tagName)) { hidden = true; break; } p = p.parentElement; }
    if (!hidden && /\\$\\$|\\$[^$\\s][^$]*\\$|\\\\\\(|\\\\\\[/.test(n.textContent)) left.push(n.textContent.slice(0, 80));
  }
  return {rendered: document.querySelectorAll("mjx-container svg").length, left: left};
})()"""

IMAGES = """Array.from(document.querySelectorAll(SELECTOR)).filter(i => i.offsetParent !== null).map(i => {
  const r = i.getBoundingClientRect();
  return {src: i.src.slice(0, 40), ok: i.complete && i.naturalWidth > 0, x: r.left + window.scrollX,
          y: r.top + window.scrollY, width: r.width, height: r.height};
})"""


def pixel_spread(png):
    from PIL import Image, ImageStat

    return ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).stddev[0]


def check_images(tab, selector, shots, prefix, limit=8):
    """Each visible image (up to `limit`) decoded and, in a screenshot of its place on the page, not blank."""
    images = tab.js(IMAGES.replace("SELECTOR", json.dumps(selector)))
    assert images, f"{prefix}: no image on the screen"
    for k, image in enumerate(images[:limit]):
        assert image["ok"], f"{prefix}: image {k} ({image['src']}…) did not load"
        clip = {key: image[key] for key in ("x", "y", "width", "height")}
        spread = pixel_spread(tab.screenshot(shots / f"{prefix}_image{k}.png", clip))
        assert spread > 8, f"{prefix}: image {k} looks blank on screen (pixel spread {spread:.1f})"
    return len(images)


def check_math(tab, prefix):
    """MathJax ran and typeset the math (SVG), and no $…$ or \\( is left in the text. TeX errors: see tex_errors."""
    state = tab.js(MATH_STATE)
    assert state["rendered"] > 0, f"{prefix}: MathJax rendered no math"
    assert not state["left"], f"{prefix}: math left as text: {state['left'][:3]}"
    return state["rendered"]


TEX_ERRORS = """(async () => { await MathJax.startup.promise;
  return Array.from(document.querySelectorAll("mjx-container")).filter(c => c.querySelector("[data-mjx-error]"))
    .map(c => c.querySelector("[data-mjx-error]").getAttribute("data-mjx-error") + " in: " +
              (c.parentElement.textContent || "").replace(/\\s+/g, " ").slice(0, 70)); })()"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for this module's browser tests, behind the recording proxy."""
    binary = find_chromium()
    proxy = RecordingProxy()
    browser = Browser(binary, proxy.server_address[1], tmp_path_factory.mktemp("profile"))
    yield browser, proxy
    browser.close()
    proxy.shutdown()


@pytest.mark.slow
def test_the_site_opens_offline_in_chromium(built, chromium, tmp_path):
    browser, proxy = chromium
    shots = Path(os.environ.get("COURSE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page_name = sorted(NOTEBOOKS.glob("*.ipynb"))[0].stem
    report = {}

    # the index: the table, its links, its math
    index = Tab(browser, (built / "index.html").as_uri(), 1280, 900)
    report["index math"] = check_math(index, "index")
    index.screenshot(shots / "index.png")
    links = index.js("Array.from(document.querySelectorAll('td a')).map(a => a.getAttribute('href'))")
    assert f"{page_name}.html" in links and f"{page_name}.slides.html" in links

    # one notebook page: math at the top, every figure not blank
    page = Tab(browser, (built / f"{page_name}.html").as_uri(), 1280, 1000)
    report["page math"] = check_math(page, "page")
    page.screenshot(shots / "page.png")
    report["page images"] = check_images(page, ".jp-OutputArea-output img", shots, "page")
    first = page.js(IMAGES.replace("SELECTOR", json.dumps(".jp-OutputArea-output img")))[0]
    page.js(f"window.scrollTo(0, {max(0, first['y'] - 200)})")
    page.screenshot(shots / "page_first_figure.png")

    # one slide deck: reveal.js started, the title slide, then the first slide with a figure
    deck = Tab(browser, (built / f"{page_name}.slides.html").as_uri(), 1280, 800)
    ready = deck.js("new Promise(r => { let n = 0; const t = () => Reveal.isReady() || n++ > 200 ? "
                    "r(Reveal.isReady()) : setTimeout(t, 50); t(); })")
    assert ready, f"reveal.js did not start: {deck.problems()}"
    report["deck math"] = check_math(deck, "slides")
    report["slides"] = deck.js("Reveal.getTotalSlides()")
    assert report["slides"] > 5
    deck.screenshot(shots / "slides_title.png")
    h, v = deck.js("""(() => { const s = Array.from(document.querySelectorAll('.reveal .slides section'))
        .find(s => !s.querySelector('section') && s.querySelector('.jp-OutputArea-output img'));
        const i = Reveal.getIndices(s); return [i.h, i.v]; })()""")
    deck.js(f"Reveal.slide({h}, {v or 0}); new Promise(r => setTimeout(r, 300))")
    deck.screenshot(shots / "slides_figure.png")
    report["deck images"] = check_images(deck, ".reveal .slides section.present .jp-OutputArea-output img",
                                         shots, "slides", limit=3)

    for name, tab in (("index", index), ("page", page), ("slides", deck)):
        remote = [u for u in tab.requested() if not u.startswith(("file:", "data:", "about:", "blob:"))]
        assert not remote, f"{name} asked the network for {remote}"
        assert tab.problems() == [], f"{name}: {tab.problems()}"
        assert any(u.endswith("tex-svg-full.js") for u in tab.requested()), f"{name} did not load MathJax"
        tab.close()
    time.sleep(0.5)  # let any late request reach the proxy
    assert proxy.page_requests() == [], f"requests left for the network: {proxy.page_requests()}"
    print(f"\nbrowser check: {report}; blocked Chromium service calls: {len(proxy.requests)}; screenshots in {shots}")


@pytest.mark.slow
def test_the_browser_check_sees_a_request_that_tries_to_leave(chromium, tmp_path):
    """The control: a page with a remote image and a remote script; both are listed and both reach the proxy."""
    browser, proxy = chromium
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.org/leak.png">'
                    '<script src="https://cdn.example.com/leak.js"></script></body></html>')
    tab = Tab(browser, page.as_uri())
    time.sleep(0.5)
    assert {"http://example.org/leak.png", "https://cdn.example.com/leak.js"} <= set(tab.requested())
    assert any("example.org/leak.png" in r for r in proxy.requests)
    assert any(r.startswith("CONNECT cdn.example.com:443") for r in proxy.requests)
    tab.close()
    proxy.requests[:] = [r for r in proxy.requests if "example." not in r]


@pytest.mark.slow
def test_no_tex_errors_on_any_notebook_page(built, chromium):
    """MathJax's TeX errors (shown in red in place of a formula) on every page. A bare `_` inside \\text{…}
    (for example a backticked `F.forward_step` in a formula) is one: write \\_ or take it out of the formula."""
    browser, _ = chromium
    errors = []
    for page in sorted(p for p in built.glob("*.html") if not p.name.endswith(".slides.html")):
        tab = Tab(browser, page.as_uri())
        errors += [f"{page.name}: {e}" for e in tab.js(TEX_ERRORS)]
        tab.close()
    assert not errors, "TeX errors: " + "; ".join(errors)


# ---------------------------------------------------------------- the slide rule

def test_the_slide_rule():
    md = nbformat.v4.new_markdown_cell
    figure = lambda src: nbformat.v4.new_code_cell(src, outputs=[nbformat.v4.new_output("display_data", {"image/png": "iVBO"})])
    bar = nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "1"},
                                                  "text/plain": "sampling:   0%|          | 0/50"})
    nb = nbformat.v4.new_notebook()
    nb.cells = [md("[![Open In Colab](https://x/badge.svg)](https://y)\n\n# Title\n> what it is"),
                nbformat.v4.new_code_cell("# Setup\nif 'google.colab' in sys.modules:\n    pass"),
                nbformat.v4.new_code_cell("import torch"),
                md("## Section one\ntext"),
                nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(S.LONG_CODE + 1))),
                figure("plot()"),
                nbformat.v4.new_code_cell("run()", outputs=[bar]),  # a progress bar is not a figure
                figure("plot_again()"),  # a second figure: a new subslide
                md("What the figure says."),  # text below a figure: a new subslide
                nbformat.v4.new_code_cell("y = 1"),
                md("### A detail"),
                md("## Section two")]
    before = json.dumps(nb, sort_keys=True)
    assert S.slide_types(nb) == ["slide", "skip", "-", "slide", "fragment", "-", "-", "subslide", "subslide", "-",
                                 "subslide", "slide"]
    assert S.slide_types(nb, long="skip")[4] == "skip"
    out = S.with_slides(nb)
    assert json.dumps(nb, sort_keys=True) == before and not S.has_slides(nb)  # pure: the argument is unchanged
    assert S.has_slides(out) and out.cells[3].metadata.slideshow == {"slide_type": "slide"}
    assert out.metadata.rise["scroll"] is True
    assert S.with_slides(out) == out  # applying it twice changes nothing


def test_the_slide_command_writes_only_what_changes(tmp_path, capsys):
    path = tmp_path / "a.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A"), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    assert S.main(["--check", str(path)]) == 1 and not S.has_slides(nbformat.read(path, as_version=4))
    assert S.main([str(path)]) == 0
    written = path.read_bytes()
    assert S.has_slides(nbformat.read(path, as_version=4))
    assert S.main(["--check", str(path)]) == 0 and S.main([str(path)]) == 0 and path.read_bytes() == written


def test_every_real_notebook_makes_a_deck_under_the_rule():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        types = S.slide_types(nbformat.read(path, as_version=4))
        assert types[0] == "slide" and types.count("slide") >= 4, path.name
        assert types.count("skip") == 1, f"{path.name}: only the setup cell is skipped"
