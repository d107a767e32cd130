"""Every chapter, run the way a learner runs it: JupyterLab in a real (headless) browser.

A JupyterLab server starts on a free port of 127.0.0.1 with a token, serving a scratch copy of
the repository (the chapters copied with their outputs cleared, everything else linked), so
nothing the browser does touches the repository's notebooks.  For each chapter the test opens
it, clicks Run > Run All Cells, waits for the kernel to finish, then asserts what a learner
would see:

* no error output (except in cells tagged ``raises-exception``),
* every code cell executed (Run All stops at the first error: a cell left unexecuted says so),
* no output wider than the notebook panel (a learner would have to scroll sideways, or would
  never see the right-hand side of it).

A screenshot of each chapter, its whole height, and the notebook as it ran in the browser are
saved in ``build/screenshots/`` (CI artifacts).  Each wait is bounded, and so is the whole
module, so a hang fails the test instead of stalling CI.  The browser is the ``browser_page``
fixture of tests/conftest.py: the system's Chromium, or a skip saying how to get one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
PlaywrightTimeoutError = playwright_api.TimeoutError

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SCREENSHOTS = ROOT / "build" / "screenshots"   #: a PNG and the notebook as run, per chapter

# Guards against a hang, never measurements: a passing run does not depend on them.
SERVER_START_TIMEOUT = 120     #: seconds for JupyterLab to answer
RUN_ALL_TIMEOUT = 300          #: seconds for one chapter's Run All to finish
UI_TIMEOUT = 60                #: seconds for the page, a menu or a save
BUDGET = 900                   #: seconds for all the chapters: past it, the others fail at once

#: JupyterLab settings for the test: every cell in the DOM (so each can be measured), no
#: autosave, no news or update checks (no request leaves the machine, no pop-up over the page).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                     "checkForUpdates": False},
}

#: JavaScript: the input prompts of the code cells of the notebook on screen ("[3]:", "[*]:" ...).
PROMPTS_JS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'),
    p => p.textContent.trim())"""

#: JavaScript: the outputs wider than their area (which then scrolls sideways) or than the panel.
TOO_WIDE_JS = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
    const right = panel.getBoundingClientRect().right;
    const cells = Array.from(panel.querySelectorAll('.jp-Cell'));
    const wide = [];
    for (const output of panel.querySelectorAll('.jp-OutputArea-output')) {
        const box = output.getBoundingClientRect();
        if (output.scrollWidth > output.clientWidth + 1 || box.right > right + 1) {
            wide.push({cell: cells.indexOf(output.closest('.jp-Cell')),
                       content: output.scrollWidth, area: output.clientWidth,
                       panel: Math.round(panel.clientWidth)});
        }
    }
    return wide;
}"""


def _scratch_copy(target: pathlib.Path) -> None:
    """The repository as JupyterLab sees it in the test: notebooks/ copied with every output
    and execution count cleared (so a cell Run All did not reach shows no stale result), the
    other entries linked (a chapter reads ../captures, imports lablib, ...)."""
    import nbformat

    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in ("notebooks", "build"):
            continue
        (target / entry.name).symlink_to(entry)
    (target / "build").mkdir()
    shutil.copytree(ROOT / "notebooks", target / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.ipynb"))
    for chapter in CHAPTERS:
        nb = nbformat.read(chapter, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, target / "notebooks" / chapter.name)


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 (free port, random token) serving a scratch copy of the
    repository; yields (base URL, token, scratch root, deadline of the whole module on
    time.monotonic()).  Stopped at the end of the module."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "repo"
    _scratch_copy(root)
    settings = home / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    runtime = home / "runtime"
    token = secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipython"))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               "--ServerApp.port=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--KernelManager.transport_encryption=auto",
               # a server left behind by a killed run stops by itself once idle
               "--ServerApp.shutdown_no_activity_timeout=600"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, preexec_fn=_die_with_parent)
    try:
        url = _wait_for_server(server, runtime, token, home / "server.log")
        yield url, token, root, time.monotonic() + BUDGET
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _die_with_parent() -> None:
    """In the server's process, before JupyterLab starts: on Linux, ask for SIGTERM when the
    test process dies (killed by a timeout, say), so no server outlives its test run."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_server(server: subprocess.Popen, runtime: pathlib.Path, token: str,
                     log: pathlib.Path) -> str:
    """The base URL, once the server has written its runtime file and answers its API."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        for info in runtime.glob("jpserver-*.json"):
            with contextlib.suppress(ValueError, OSError):
                url = json.loads(info.read_text())["url"].rstrip("/")
                request = urllib.request.Request(f"{url}/api/status",
                                                 headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=5):
                    return url
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer in {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _api(url: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{url}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def _menu(page, menu: str, item: str) -> None:
    """Click a menu of the menu bar, then one of its items, as a learner would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=item).first.click()


def _run_all(page, chapter: pathlib.Path, code_cells: int, timeout: float) -> None:
    """Run > Run All Cells, then wait until a cell has run and none is queued or running."""
    page.wait_for_function(f"() => ({PROMPTS_JS})().length === {code_cells}",
                           timeout=UI_TIMEOUT * 1000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=UI_TIMEOUT * 1000)
    # Right after the page loads, the item may not take yet (the kernel connection is still
    # being set up): click again until a cell is queued, a bounded number of times.
    for attempt in range(1, 4):
        _menu(page, "Run", "Run All Cells")
        try:
            page.wait_for_function(f"() => ({PROMPTS_JS})().some(p => /[0-9*]/.test(p))",
                                   timeout=UI_TIMEOUT * 1000 / 3, polling=250)
            break
        except PlaywrightTimeoutError:
            print(f"{chapter.name}: Run All Cells did not start (attempt {attempt})")
    else:
        pytest.fail(f"{chapter.name}: Run > Run All Cells started no cell")
    page.wait_for_function(f"""() => {{
        const prompts = ({PROMPTS_JS})();
        return prompts.some(p => /\\d/.test(p)) && !prompts.some(p => p.includes('*'));
    }}""", timeout=timeout * 1000, polling=500)


def _save(page, saved: pathlib.Path) -> dict:
    """File > Save Notebook; the notebook as saved (every output, every execution count)."""
    before = saved.stat().st_mtime_ns
    _menu(page, "File", "Save Notebook")
    deadline = time.monotonic() + UI_TIMEOUT
    while saved.stat().st_mtime_ns == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    while True:  # the server may still be writing the file: read until it parses
        try:
            return json.loads(saved.read_text())
        except json.JSONDecodeError:
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(200)


def _screenshot(page, chapter: pathlib.Path) -> pathlib.Path:
    """The whole chapter in one picture: the window made as tall as the notebook's content
    (up to a height Chromium renders in one piece), scrolled to the top, then captured."""
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    extra = page.evaluate(f"""() => {{
        const outer = document.querySelector('{scroller}');
        return outer.scrollHeight - outer.clientHeight;
    }}""")
    size = dict(page.viewport_size)
    page.set_viewport_size({"width": size["width"], "height": min(size["height"] + extra, 16000)})
    page.evaluate(f"() => document.querySelector('{scroller}').scrollTo(0, 0)")
    page.wait_for_timeout(500)  # let the layout follow the new size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{chapter.stem}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def _traceback(error: dict, lines: int = 12) -> str:
    """The end of an error output's traceback, without its terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_in_jupyterlab(jupyterlab, browser_page, chapter):
    url, token, root, deadline = jupyterlab
    left = deadline - time.monotonic()
    if left < UI_TIMEOUT:
        pytest.fail(f"the browser tests' budget of {BUDGET} s is spent; {chapter.name} not run")
    page = browser_page
    code_cells = sum(cell["cell_type"] == "code"
                     for cell in json.loads(chapter.read_text())["cells"])
    page.goto(f"{url}/lab/tree/notebooks/{chapter.name}?reset&token={token}",
              timeout=UI_TIMEOUT * 1000)
    try:
        try:
            _run_all(page, chapter, code_cells, timeout=min(RUN_ALL_TIMEOUT, left))
        except Exception:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{chapter.stem}-failed.png"))
            print(f"{chapter.name}: prompts {page.evaluate(PROMPTS_JS)}")
            raise
        too_wide = page.evaluate(TOO_WIDE_JS)
        saved = _save(page, root / "notebooks" / chapter.name)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / chapter.name).write_text(json.dumps(saved, indent=1))
        print(f"{chapter.name}: screenshot {_screenshot(page, chapter).relative_to(ROOT)}")
    finally:
        for kernel in _api(url, token, "/api/kernels"):
            _api(url, token, f"/api/kernels/{kernel['id']}", method="DELETE")

    errors, not_run = [], []
    for index, cell in enumerate(saved["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None:
            not_run.append(index)
        if "raises-exception" not in cell.get("metadata", {}).get("tags", []):
            errors += [f"cell {index}:\n" + _traceback(output)
                       for output in cell["outputs"] if output["output_type"] == "error"]
    assert not errors, (f"{chapter.name}: error output in JupyterLab (the notebook as run: "
                        f"build/screenshots/{chapter.name}):\n" + "\n".join(errors))
    assert not not_run, f"{chapter.name}: Run All did not execute the code cells {not_run}"
    assert not too_wide, (f"{chapter.name}: outputs wider than the notebook panel "
                          f"(cell index, content width, area width, panel width in px): {too_wide}")
