"""The published book: it builds offline from the committed notebooks, and every page loads in headless
Chromium with its figures and its results files, no setup code, no dead widget, no machine path, no JavaScript
error and no request leaving the machine; the front page states the verdicts of the results files."""
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import verdict
from helpers.study import build_book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc["parts"]:
        pages += [c["file"] for c in part["chapters"]]
    return pages


def notebook_pngs(page):
    nb = ROOT / "book" / f"{page}.ipynb"
    if not nb.exists():
        return 0
    cells = json.loads(nb.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    try:
        build_book(path_output=out)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"jupyter-book build failed:\n{e.stdout[-3000:]}\n{e.stderr[-3000:]}")
    return out / "_build" / "html"


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client), one page at a time."""

    def __init__(self, profile_dir):
        import websocket
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile_dir}", "about:blank"],
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        port = None
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127.0.0.1:(\d+)/", line)
            port = m and m.group(1)
        assert port, "Chromium did not start"
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        self.ws = websocket.create_connection(url, timeout=60)
        self.next_id, self.events = 0, []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps(dict(id=self.next_id, method=method, params=params)))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                return msg.get("result", {})
            self.events.append(msg)

    def visit(self, url, settle=3.0):
        """Load ``url``; return (events during the load, a few DOM facts)."""
        self.events = []
        self.call("Page.navigate", url=url)
        deadline = time.time() + 60
        loaded = False
        while time.time() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.time()))
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == "Page.loadEventFired":
                loaded = True
                break
        assert loaded, f"{url} did not finish loading"
        end = time.time() + settle  # let widgets and MathJax render
        while time.time() < end:
            self.ws.settimeout(max(0.05, end - time.time()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except Exception:
                break
        self.ws.settimeout(60)
        facts = self.call("Runtime.evaluate", returnByValue=True, expression="""({
            images: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
            broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
            widgets: document.querySelectorAll('.jupyter-widgets, .widget-slider, .widget-dropdown').length,
            setup: document.body.textContent.includes('params.check('),
            downloads: Array.from(document.querySelectorAll('a.download')).map(a => a.getAttribute('href')),
            text: document.body.innerText,
            title: document.title})""")["result"]["value"]
        return self.events, facts

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", returnByValue=True, expression=expression)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self):
        self.ws.close()
        self.proc.kill()
        self.proc.wait()


@pytest.mark.skipif(CHROMIUM is None and not __import__("os").environ.get("CI"),
                    reason="Chromium is not installed (apt-get install chromium); CI installs it")
def test_every_page_loads_offline_with_figures_and_no_errors(built_book, tmp_path):
    pages = toc_pages()
    browser = Browser(tmp_path / "chromium-profile")
    texts = {}
    try:
        for page in pages:
            html = built_book / f"{page}.html"
            assert html.exists(), f"{page} was not built"
            events, facts = browser.visit(html.as_uri())
            errors = [
                e["params"]["exceptionDetails"]
                .get("exception", {})
                .get("description", e["params"]["exceptionDetails"]["text"])
                for e in events
                if e.get("method") == "Runtime.exceptionThrown"
            ]
            errors += [e["params"]["entry"]["text"] for e in events
                       if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
            external = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
                        and not e["params"]["request"]["url"].startswith(("file:", "data:", "blob:", "about:"))]
            assert not errors, f"{page}: JavaScript errors {errors}"
            assert not external, f"{page}: requests leave the machine: {external}"
            assert not facts["broken"], f"{page}: images that did not load: {facts['broken']}"
            assert facts["images"] >= notebook_pngs(page), (
                f"{page}: {facts['images']} images shown, notebook has {notebook_pngs(page)}"
            )
            # A static page has no kernel: a widget on it would be a control that does nothing.
            assert facts["widgets"] == 0, f"{page}: {facts['widgets']} widgets on a static page"
            assert not facts["setup"], f"{page}: setup code (parameter checks) is shown"
            if (ROOT / "book" / f"{page}.ipynb").exists():
                results = ROOT / "book" / Path(page).parent / "results"
                assert facts["downloads"], f"{page}: links no results files"
                assert all((results / Path(h).name).exists() for h in facts["downloads"]), facts["downloads"]
                for href in facts["downloads"]:  # Sphinx copied each file into the site
                    assert (html.parent / href).resolve().exists(), f"{page}: {href} is not in the built site"
            if page.endswith("answers"):
                texts[page] = facts["text"]
                browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                             mobile=False)
                layout = browser.evaluate("""Array.from(document.querySelectorAll('main table')).map(t => ({
                    fits: t.getBoundingClientRect().width <= t.closest('main').getBoundingClientRect().width + 1,
                    first: t.querySelector('th') ? t.querySelector('th').textContent.trim() : ''}))""")
                browser.call("Emulation.clearDeviceMetricsOverride")
                assert layout and all(t["fits"] for t in layout), f"{page}: a table wider than the page: {layout}"
                assert all(t["first"] for t in layout), f"{page}: a table with an index column"
            if page == toc_pages()[0]:
                texts["landing"] = facts["text"]
                atlas_links = browser.evaluate(
                    "Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))"
                    ".filter(h => h && h.includes('05_atlas'))")
                assert atlas_links, "the landing page does not link the feature atlas"
    finally:
        browser.close()
    from helpers.answers import WHERE_SHORT
    landing = texts.pop("landing").replace("\u2019", "'")  # the rendered page curls apostrophes
    for page, text in texts.items():  # the front page and the landing page state the verdicts of the results files
        results = ROOT / "book" / Path(page).parent / "results"
        am = json.loads((results / "am_summary.json").read_text())
        assert f"Prediction 1: {am['prediction1']}." in text
        assert f"Prediction 1 (recurring patterns in activation maximization): {am['prediction1']} (" in landing
        minus = {ord("-"): "\u2212"}  # the rendered page may set a minus sign for the hyphen
        assert f"directly: δ {am['primary']['direct_delta']:.2f}".translate(minus) in landing.translate(minus)
        for conclusions in results.glob("conclusions_*.json"):
            c = json.loads(conclusions.read_text())
            assert f"{', '.join(dict.fromkeys(c['modules'].values()))}): {c['prediction2']}." in text, conclusions.name
            # the frozen primary's layer leads ("primary (VGG → MLP at ...): verdict"), the others follow as secondaries
            lead = "): " if c["layer"] == verdict.PRIMARIES["prediction2"]["layer"] else ", "
            assert f"at {WHERE_SHORT[c['layer']]}{lead}{c['prediction2']}" in landing, conclusions.name


@pytest.mark.skipif(CHROMIUM is None and not __import__("os").environ.get("CI"),
                    reason="Chromium is not installed (apt-get install chromium); CI installs it")
def test_the_atlas_changes_its_images_and_numbers_when_the_reader_picks_another_feature(built_book, tmp_path):
    pages = [p for p in toc_pages() if Path(p).name.startswith("05_atlas")]
    assert pages, "the book has no atlas page"
    browser = Browser(tmp_path / "chromium-profile")
    read = """(() => { const a = document.querySelector('.atlas');
        const tile = c => a.querySelector('.card.' + c + ' .tile div.img');
        return {numbers: a.querySelector('.card.main .numbers').textContent,
                partner: a.querySelector('.card.partner .numbers').textContent,
                image: tile('main') && (tile('main').style.backgroundImage.length + ' ' +
                                        tile('main').style.backgroundPosition),
                captions: Array.from(a.querySelectorAll('.card.main .tile')).map(t => t.textContent).join(','),
                options: a.querySelector('select.atlas-feature').options.length}; })()"""

    def pick(selector, index):
        return browser.evaluate(f"""(() => {{ const s = document.querySelector('.atlas {selector}');
            s.selectedIndex = {index}; s.dispatchEvent(new Event('change')); return s.value; }})()""")
    try:
        for page in pages:
            events, _ = browser.visit((built_book / f"{page}.html").as_uri())
            assert not [e for e in events if e.get("method") == "Runtime.exceptionThrown"], page
            first = browser.evaluate(read)
            assert first["options"] > 1 and "feature" in first["numbers"] and first["image"], (page, first)
            assert "Best partner" in first["partner"], (page, first)
            pick("select.atlas-feature", first["options"] - 1)
            last = browser.evaluate(read)
            assert last["numbers"] != first["numbers"] and last["image"] != first["image"], (page, first, last)
            pick("select.atlas-family", 1)
            other = browser.evaluate(read)
            assert other["numbers"].split(" feature")[0] != first["numbers"].split(" feature")[0], (page, other)
    finally:
        browser.close()


def test_the_book_shows_no_machine_paths():
    """No output or visible source of any page names a folder of the machine that ran the study."""
    from helpers.study import machine_paths
    notebooks = [ROOT / "book" / f"{page}.ipynb" for page in toc_pages()]
    found = {nb.name: machine_paths(nb) for nb in notebooks if nb.exists()}
    assert found and not any(found.values()), {k: v for k, v in found.items() if v}


def test_every_figure_has_a_caption():
    """Each shown figure is followed by a caption cell ("*Figure*: ..." or "*Table*: ...") saying what to compare."""
    missing = []
    for page in toc_pages():
        nb = ROOT / "book" / f"{page}.ipynb"
        if not nb.exists():
            continue
        cells = json.loads(nb.read_text())["cells"]
        for i, cell in enumerate(cells):
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] != "code" or "remove-cell" in tags or not any(
                    "image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
                continue
            following = next((c for c in cells[i + 1:] if c["cell_type"] == "markdown" or c.get("outputs")), None)
            text = "".join(following["source"]).lstrip() if following and following["cell_type"] == "markdown" else ""
            if not text.startswith(("*Figure", "*Table")):
                missing.append(f"{page} cell {i}")
    assert not missing, f"figures without a caption: {missing}"


COMPARATIVES = re.compile(r"\b(closer|further from|higher than|lower than|larger than|smaller than|more similar|"
                          r"less similar)\b", re.IGNORECASE)
BACKED = re.compile(r"\[[^\]]*\d[^\]]*,[^\]]*\d[^\]]*\]|within (the )?seeds?'? spread|interval", re.IGNORECASE)


def stated_sentences(page):
    """The sentences a page states in its generated text (markdown outputs of its cells)."""
    nb = ROOT / "book" / f"{page}.ipynb"
    if not nb.exists():
        return []
    text = " ".join("".join(o.get("data", {}).get("text/markdown", "")) for c in json.loads(nb.read_text())["cells"]
                    for o in c.get("outputs", []))
    return [s for s in re.split(r"(?<=[.;:])\s+|\n", text) if s.strip()]


def test_every_comparison_the_book_states_in_words_has_its_interval():
    """A sentence of the generated text that compares ("closer", "higher than", ...) carries a 95% interval (a
    bracketed pair of numbers) or says the difference is within the seeds' spread: a word claims no more than its
    interval."""
    bare = [f"{page}: {s.strip()[:160]}" for page in toc_pages() for s in stated_sentences(page)
            if COMPARATIVES.search(s) and not BACKED.search(s)]
    assert not bare, "comparisons without an interval:\n" + "\n".join(bare)
