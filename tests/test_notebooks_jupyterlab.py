"""The explorers where readers use them: a real JupyterLab server on localhost, the AM notebook opened in headless
Chromium, every cell run as from the menu, then the explorer's unit slider moved with the keyboard like a user; the
drawing must change to the new unit. (Runs after test_notebooks.py, whose smoke models it reuses.)"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import papermill
import pytest
from test_book import CHROMIUM, Browser

from helpers import study

NOTEBOOK = "01_activation_maximization.ipynb"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_env):
    """A JupyterLab server over a folder holding the AM notebook with the smoke parameters and its explorer on."""
    from helpers.train import train_or_load
    for family in ("cnn", "mlp"):
        train_or_load(family, "smoke", seed=0, verbose=False)  # cached when test_notebooks.py trained them
    root = tmp_path_factory.mktemp("lab")
    parameters = {"profile": "smoke", "explorer": True}
    papermill.execute_notebook(str(study.NOTEBOOKS / NOTEBOOK), str(root / NOTEBOOK), parameters=parameters,
                               prepare_only=True, cwd=str(study.NOTEBOOKS))
    port = free_port()
    log = open(root / "lab.log", "w")
    env = dict(os.environ, PYTHONPATH=str(study.ROOT))  # the kernel imports helpers like a reader's does
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--allow-root",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            assert server.poll() is None, (root / "lab.log").read_text()[-3000:]
            time.sleep(0.5)
    else:
        pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
    yield url, root
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def evaluate(browser, expression):
    """A JavaScript expression's value in the page (promises awaited)."""
    reply = browser.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
    assert "exceptionDetails" not in reply, reply["exceptionDetails"]
    return reply["result"].get("value")


def wait_for(browser, expression, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = evaluate(browser, expression)
        if value:
            return value
        time.sleep(0.5)
    state = evaluate(browser, f"""{PANEL} ? {PANEL}.content.widgets.filter(c => c.model.type == 'code')
        .map((c, i) => [i, c.model.executionCount, c.node.innerText.slice(-300)]) : 'no notebook panel'""")
    classes = evaluate(browser, "Array.from(new Set(Array.from(document.querySelectorAll('[class*=widget]'))"
                                ".map(e => e.className.toString()))).slice(0, 40)")
    pytest.fail(f"timed out after {seconds} s waiting for {what}; code cells (index, count, end of text):\n"
                + "\n".join(map(str, state if isinstance(state, list) else [state])) + f"\nwidget classes: {classes}")


# The notebook's panel in JupyterLab's main area.
PANEL = "Array.from(jupyterapp.shell.widgets('main')).find(w => w.sessionContext)"
# The explorer's drawing: the image inside the ipywidgets "interactive" box (the only one on the page).
EXPLORER_IMAGE = "document.querySelector('.widget-interact .widget-output img')"
UNIT_HANDLE = """Array.from(document.querySelectorAll('.widget-interact .widget-slider'))
    .find(s => s.querySelector('.widget-label').textContent.trim() == 'unit').querySelector('.noUi-handle')"""
UNIT_READOUT = """Array.from(document.querySelectorAll('.widget-interact .widget-slider'))
    .find(s => s.querySelector('.widget-label').textContent.trim() == 'unit').querySelector('.widget-readout')"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs it)")
def test_am_explorer_redraws_when_a_user_moves_the_unit_slider(lab, tmp_path):
    url, root = lab
    browser = Browser(tmp_path / "chromium")
    try:
        # A headless page never has the focus, and JupyterLab's "current" notebook follows the focus.
        browser.call("Emulation.setFocusEmulationEnabled", enabled=True)
        browser.visit(f"{url}/lab/tree/{NOTEBOOK}", settle=1.0)
        wait_for(browser, f"!!({PANEL} && {PANEL}.sessionContext.session && {PANEL}.sessionContext.session.kernel)",
                 120, "the notebook and its kernel")
        evaluate(browser, f"{PANEL}.sessionContext.ready.then(() => jupyterapp.shell.activateById({PANEL}.id))"
                          ".then(() => true)")
        evaluate(browser, "jupyterapp.commands.execute('notebook:run-all-cells').then(() => true)")
        # Run all returns once the cells are queued; the notebook is done when every code cell has a count.
        wait_for(browser, f"""(() => {{ const cells = {PANEL}.content.widgets.filter(c => c.model.type == 'code');
            return {PANEL}.sessionContext.session.kernel.status == 'idle' &&
                   (cells.every(c => c.model.executionCount !== null) ||
                    cells.some(c => c.node.innerText.includes('Traceback'))); }})()""",
                 600, "every cell to run")
        errors = evaluate(browser, f"{PANEL}.content.widgets.map(c => c.node.innerText)"
                                   ".filter(t => t.includes('Traceback')).map(t => t.slice(-1500))")
        assert not errors, "\n".join(errors)
        before = wait_for(browser, f"{EXPLORER_IMAGE} && {EXPLORER_IMAGE}.src", 60, "the explorer's first drawing")
        assert evaluate(browser, f"{UNIT_READOUT}.textContent.trim()") == "0"

        # Like a user: click the slider's handle, then press the right arrow key once.
        box = evaluate(browser, f"(() => {{ const r = {UNIT_HANDLE}.getBoundingClientRect(); "
                                "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        evaluate(browser, f"{UNIT_HANDLE}.scrollIntoView({{block: 'center'}}); true")
        box = evaluate(browser, f"(() => {{ const r = {UNIT_HANDLE}.getBoundingClientRect(); "
                                "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        for kind in ("keyDown", "keyUp"):
            browser.call("Input.dispatchKeyEvent", type=kind, key="ArrowRight", code="ArrowRight",
                         windowsVirtualKeyCode=39, nativeVirtualKeyCode=39)
        assert wait_for(browser, f"{UNIT_READOUT}.textContent.trim() == '1'", 10, "the slider to read 1")
        after = wait_for(browser, f"{EXPLORER_IMAGE} && {EXPLORER_IMAGE}.src != {json.dumps(before)} && "
                                  f"{EXPLORER_IMAGE}.src", 120, "the explorer to redraw unit 1")
        assert after != before
        # and the kernel really optimized unit 1: the drawing's status line is cleared and no error was printed
        assert evaluate(browser, f"{PANEL}.sessionContext.session.kernel.status") == "idle"
        assert not evaluate(browser, "Array.from(document.querySelectorAll('.widget-interact "
                                     ".widget-output')).some(e => e.textContent.includes('Error'))")
    finally:
        browser.close()
