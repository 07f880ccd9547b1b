"""The course site: ``docs/build.sh`` builds it from the committed notebooks, offline, and every
page holds up in a real browser (headless Chromium, as tests/test_browser.py drives it).

For every page: no console error and no page error; no request leaves 127.0.0.1 (math, theme and
images are all local); math typeset (every ``.math`` element rendered by MathJax, no raw ``$…$``
or ``\\(…\\)`` left in the text); every image loaded; every internal link resolves to a file of
the site and, with a fragment, to an element of that page; no frozen progress bar, widget text
or "failed to load" box. Each notebook page links to Binder, Colab and its source notebook.
Screenshots go to ``test-artifacts/site/``.

Skipped when Chromium, Playwright, the docs tools or the local MathJax are missing — unless
``EQHELPERS_BROWSER_TEST=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
from npm_fake import fake_registry
from test_browser import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARTIFACTS = ROOT / "test-artifacts" / "site"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fetch_mathjax = _load("fetch_mathjax")
stage = _load("stage")


def _missing_tools() -> str | None:
    for mod in ("sphinx", "myst_nb", "sphinx_book_theme"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install -e '.[dev]')"
    return fetch_mathjax.check()


def _required(why: str):
    if os.environ.get("EQHELPERS_BROWSER_TEST") == "1":
        pytest.fail(f"the site test is required but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    why = _missing_tools()
    if why:
        _required(why)
    out = tmp_path_factory.mktemp("site") / "html"
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(DOCS / "build.sh"), str(out)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


# --- the build itself ---------------------------------------------------------------------------

def test_the_site_has_every_notebook_the_landing_page_and_the_solutions(site):
    for name in NOTEBOOKS:
        assert (site / "notebooks" / f"{name}.html").is_file(), name
        assert (site / "notebooks" / "solutions" / f"{name}_solutions.html").is_file(), name
    landing = (site / "index.html").read_text(encoding="utf-8")
    assert "For instructors" in landing and "Who it is for" in landing
    # the course map carries each notebook's measured first-run time
    costs = json.loads((ROOT / "benchmarks" / "results" / "notebooks_cpu.json").read_text())
    for row in costs["rows"]:
        assert f"{row['wall_s']:.0f} s" in landing, row
    # the landing page's source link is its file under docs/, a notebook page's is its notebook
    assert "github.com/eqhelpers/eqhelpers/blob/main/docs/index.md" in landing
    assert "blob/main/index.md" not in landing
    # never a CDN: math comes from the local copy
    assert "cdn.jsdelivr" not in landing and "_static/mathjax/tex-chtml.js" in (
        site / "notebooks" / "02_equivariance_loss.html").read_text(encoding="utf-8")


def test_a_notebook_without_its_executed_outputs_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "notebooks"
    fake.mkdir()
    book = json.loads((ROOT / "notebooks" / "01_group_actions.ipynb").read_text())
    book["metadata"].pop("eqhelpers")
    (fake / "01_group_actions.ipynb").write_text(json.dumps(book))
    with pytest.raises(SystemExit, match="no cpu-budget outputs"):
        stage.check_executed(fake / "01_group_actions.ipynb")
    stage.check_executed(ROOT / "notebooks" / "01_group_actions.ipynb")  # the committed one is


def test_the_course_map_is_the_readmes_table():
    rows = stage.course_rows()
    assert [Path(r["path"]).stem for r in rows] == NOTEBOOKS
    assert all(r["goals"] and r["title"] for r in rows)
    # a goal holding an escaped pipe (|cos|) is read whole, up to the launch column
    assert "principal angles" in rows[4]["goals"] and "Binder" not in rows[4]["goals"]
    table = stage.course_table(rows, {"02_equivariance_loss.ipynb": 88.8})
    line = next(x for x in table.splitlines() if x.startswith("| 02 |"))
    assert "89 s" in line and stage.binder_url("notebooks/02_equivariance_loss.ipynb") in line
    assert stage.colab_url("notebooks/02_equivariance_loss.ipynb") in line


def test_a_build_into_a_directory_of_other_files_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = subprocess.run(["bash", str(DOCS / "build.sh"), str(tmp_path)], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=60)
    assert res.returncode == 2 and "holds other files" in res.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def _fake_mathjax_registry(tmp_path: Path, corrupt: bool = False) -> str:
    return fake_registry(tmp_path, "mathjax", fetch_mathjax.VERSION, {
        "es5/tex-chtml.js": b"/* MathJax */ window.MathJax = {};",
        "es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff": b"w",
        "es5/tex-svg.js": b"not wanted"}, corrupt=corrupt)


def test_mathjax_is_checked_on_fetch_and_on_use(tmp_path):
    dest = tmp_path / "static" / "mathjax"
    with pytest.raises(RuntimeError, match="does not match"):
        fetch_mathjax.fetch(registry=_fake_mathjax_registry(tmp_path, corrupt=True), dest=dest)
    assert not dest.exists() and "no complete MathJax copy" in fetch_mathjax.check(dest)
    fetch_mathjax.fetch(registry=_fake_mathjax_registry(tmp_path), dest=dest)
    assert fetch_mathjax.check(dest) is None
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == [
        "MathJax_Main-Regular.woff", "manifest.json", "tex-chtml.js"]
    # an altered copy is caught before a build uses it, and a failed re-fetch keeps the good copy
    (dest / "tex-chtml.js").write_bytes(b"/* MathJax */ edited")
    assert "altered" in fetch_mathjax.check(dest)
    fetch_mathjax.fetch(registry=_fake_mathjax_registry(tmp_path), dest=dest)
    assert fetch_mathjax.check(dest) is None
    with pytest.raises(RuntimeError):
        fetch_mathjax.fetch(force=True, registry=_fake_mathjax_registry(tmp_path, corrupt=True),
                            dest=dest)
    assert fetch_mathjax.check(dest) is None


# --- every page in a browser ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the test reports what failed; no access log
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(served):
    if not Path(CHROMIUM).exists():
        _required(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _required("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


RAW_MATH = re.compile(r"\$[^$\s][^$]*[^$\s]\$|\$[^$\s]\$|\\\(|\\\[")
# the page's text outside code, rendered math and scripts: where raw TeX would show
TEXT_OUTSIDE_CODE = """() => {
  const root = document.querySelector('.bd-article') || document.body;
  const skip = n => n.closest && n.closest('pre, code, mjx-container, script, style, .highlight');
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  let out = [], n;
  while ((n = walker.nextNode())) { if (!skip(n.parentElement)) out.push(n.textContent); }
  return out.join(' ');
}"""


def _pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def _ids(site: Path, rel: str, cache: dict) -> set[str]:
    if rel not in cache:
        text = (site / rel).read_text(encoding="utf-8")
        cache[rel] = set(re.findall(r'\bid="([^"]+)"', text))
    return cache[rel]


def test_every_page_renders_offline_in_a_browser(site, served, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = _pages(site)
    assert "index.html" in pages and len(pages) >= 2 * len(NOTEBOOKS) + 2
    ids: dict = {}
    problems = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    outside = []
    ctx.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname
              == "127.0.0.1" else (outside.append(route.request.url), route.abort()))
    for rel in pages:
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
        page.on("requestfailed", lambda r, e=errors: e.append(f"failed to load {r.url}"))
        page.goto(urljoin(served, rel), wait_until="load")
        has_math = page.evaluate("() => document.querySelectorAll('.math').length") > 0
        if has_math:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
            page.evaluate("() => MathJax.startup.promise")
            untypeset = page.evaluate(
                "() => [...document.querySelectorAll('.math')]"
                ".filter(m => !m.querySelector('mjx-container') && !m.closest('mjx-container')).length")
            if untypeset:
                problems.append(f"{rel}: {untypeset} math elements not typeset")
        text = page.evaluate(TEXT_OUTSIDE_CODE)
        raw = RAW_MATH.findall(text)
        if raw:
            problems.append(f"{rel}: raw TeX left in the text: {raw[:3]}")
        for bad in ("failed to load", "VBox(children", "HBox(children", "Loading widget"):
            if bad in page.evaluate("() => document.body.innerText"):
                problems.append(f"{rel}: shows {bad!r}")
        if re.search(r"\|\s*0/\d+ \[", text):
            problems.append(f"{rel}: a progress bar frozen at 0")
        broken = page.evaluate("() => [...document.images]"
                               ".filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.src.slice(0, 80))")
        if broken:
            problems.append(f"{rel}: images not loaded: {broken[:3]}")
        links = page.evaluate(
            "() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
        for href in links:
            target = urlparse(urljoin(served + rel, href))
            if target.scheme not in ("http", "https") or target.hostname != "127.0.0.1":
                continue
            path = unquote(target.path).lstrip("/") or "index.html"
            if path.endswith("/"):
                path += "index.html"
            if not (site / path).is_file():
                problems.append(f"{rel}: link {href} leads to no file")
            elif (target.fragment and path.endswith(".html")
                  and target.fragment not in _ids(site, path, ids)):
                problems.append(f"{rel}: link {href} leads to no element #{target.fragment}")
        if rel.startswith("notebooks/0"):
            hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
            nb = "notebooks/" + Path(rel).stem + ".ipynb"
            for need in ("https://mybinder.org/v2/gh/", "https://colab.research.google.com/github/",
                         "https://github.com/eqhelpers/eqhelpers/blob/main/"):
                if not any(h.startswith(need) and nb in h for h in hrefs):
                    problems.append(f"{rel}: no {need}… link to {nb}")
        if errors:
            problems.append(f"{rel}: console errors: {errors[:3]}")
        if rel in ("index.html", "notebooks/02_equivariance_loss.html", "notebooks/06_molecules_3d.html",
                   "notebooks/07_build_learn_or_canonicalize.html"):
            if rel.startswith("notebooks/06"):  # the first 3D view's still image in view
                page.get_by_text("a 3D view (3Dmol.js)").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / (Path(rel).stem + ".png")), full_page=False)
        page.close()
    ctx.close()
    assert not outside, f"requests left 127.0.0.1: {sorted(set(outside))[:5]}"
    assert not problems, "\n".join(problems)


def test_the_3d_views_show_their_still_images(site):
    """Notebook 06's 3D views and explorer are still images on the site, never a script box."""
    html = (site / "notebooks" / "06_molecules_3d.html").read_text(encoding="utf-8")
    assert html.count("3D view (3Dmol.js)") >= 3
    assert len(re.findall(r"<img[^>]+src=\"[^\"]+\.png\"", html)) >= 6
    assert "3dmoljs_load" not in html and "$3Dmol" not in html
