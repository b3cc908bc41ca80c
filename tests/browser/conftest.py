"""A live JupyterLab server and headless Debian Chromium for real-browser widget tests.

One Jupyter server (JupyterLab, and Notebook 7 on the same server) and one browser are started per
test session (on 2 shared cores each start costs seconds). Every page records its requests and its
console: anything not addressed to 127.0.0.1/localhost is aborted, and a request that left, a
console error or an uncaught page error fails the test (or, for a page a whole module shares, the
module's last test), naming what happened.

The server's root mirrors the repository's layout for what the notebooks use (``notebooks/`` and
the badge images in ``docs/img/badges/``), so the shipped notebooks run whole, markdown included.

The browser is the system's ``/usr/bin/chromium`` (``make test`` installs it); Playwright's own
downloaded browsers are never used. Without it every browser test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("GROKVIZ_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS_IMG = REPO / "docs" / "img"
#: The shipped sample data (a toy run: trace store, accuracy, checkpoints) the notebooks load.
SAMPLE_DATA = REPO / "data" / "samples"
#: The shipped toy run's record (data/samples/toy/run.json): the tests read its checkpoints and
#: operations from it rather than repeating them.
TOY_RUN: dict[str, Any] = json.loads((SAMPLE_DATA / "toy" / "run.json").read_text())
TOY_CHECKPOINTS: tuple[str, ...] = tuple(TOY_RUN["checkpoints"])
TOY_STEPS: tuple[int, ...] = tuple(int(c.split("-")[1]) for c in TOY_CHECKPOINTS)
TOY_OPERATIONS: tuple[str, ...] = tuple(TOY_RUN["config"]["operations"])
#: The checkpoints whose weights are shipped (the trace has all of TOY_CHECKPOINTS; the weights of
#: a few of them keep the sample data small).
TOY_WEIGHTS: tuple[str, ...] = tuple(
    sorted(p.name for p in (SAMPLE_DATA / "toy" / "checkpoints").glob("step-*[0-9]"))
)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: Settings that keep the chrome quiet and offline; ``--host-resolver-rules`` is a second net under
#: the request router: even a request that slipped past it could not resolve a public host.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
#: JupyterLab user settings that stop the front end from fetching news or checking for updates,
#: and render every notebook cell (windowing would leave off-screen widgets undrawn).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def update_screenshots() -> bool:
    """Whether this run should refresh the README's screenshots in ``docs/img``."""
    return os.environ.get("GROKVIZ_UPDATE_SCREENSHOTS", "") not in ("", "0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"JupyterLab exited with code {proc.returncode}:\n{log.read_text()[-4000:]}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    msg = f"JupyterLab did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}"
    raise RuntimeError(msg)


class LabServer:
    """A running JupyterLab: where it serves from and how to reach it."""

    def __init__(self, root: Path, port: int, log: Path) -> None:
        self.root = root
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """Write a notebook of code ``cells`` into the server's root; return its path."""
        notebook = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell-{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        path = self.root / name
        path.write_text(json.dumps(notebook))
        return path

    def shutdown_sessions(self) -> None:
        """End every notebook session and its kernel (REST API), so tests do not pile kernels up."""
        with urllib.request.urlopen(f"{self.url}/api/sessions", timeout=10) as response:
            sessions = json.loads(response.read())
        for session in sessions:
            request = urllib.request.Request(
                f"{self.url}/api/sessions/{session['id']}", method="DELETE"
            )
            with contextlib.suppress(urllib.error.URLError):
                urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """Start JupyterLab once per session in a temporary root; stop it at the end."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (make chromium)")
    base = tmp_path_factory.mktemp("lab")
    root, settings, config = base / "root", base / "settings", base / "config"
    for folder in (root, settings, config):
        folder.mkdir()
    # What the shipped notebooks reach by relative path: themselves and their badge images.
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "docs" / "img" / "badges", root / "docs" / "img" / "badges")
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = _free_port()
    env = {
        **os.environ,
        # Own config and runtime folders: the user's configuration never leaks into the test.
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "0",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "GROKVIZ_SMALL": "1",
        # The kernels run in a temporary root: point grokviz.data.sample_data_dir() at the
        # checkout's shipped data so notebooks load it as a user's would.
        "GROKVIZ_DATA": str(SAMPLE_DATA),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        # Notebook 7 (the `notebook` package) serves /notebooks/... from the same server.
        "--JupyterNotebookApp.expose_app_in_browser=True",
        # No news feed, no update check, no PyPI extension manager: the server stays offline.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = base / "jupyterlab.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status", proc, log, timeout=120)
        yield LabServer(root, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="session")
def browser_context(
    lab_server: LabServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Headless Debian Chromium with a fresh profile, shared by every test of the session."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1200},
            service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()


#: Finds the notebook panel of ``path`` among the open documents (not ``currentWidget``: a
#: dialog or another tab may hold the focus).
_PANEL = (
    "const panel = [...window.jupyterapp.shell.widgets('main')]"
    ".find((w) => w.context && w.context.path === path);"
)


class Lab:
    """One notebook open in JupyterLab, driven through ``window.jupyterapp``."""

    def __init__(self, page: Any, server: LabServer, watched: Any, workspace: str) -> None:
        self.page = page
        self.server = server
        self.watched = watched
        self.outside: list[str] = watched.outside
        self.workspace = workspace
        self.path = ""

    def open(self, name: str, cells: list[str], *, timeout: float = 90) -> None:
        """Write a notebook of ``cells``, open it and wait until its kernel is idle.

        Each test has its own JupyterLab workspace, so no tab of an earlier test is restored.
        """
        self.server.write_notebook(name, cells)
        self.open_existing(name, timeout=timeout)

    def open_existing(self, path: str, *, timeout: float = 90) -> None:
        """Open a notebook already in the server's root (e.g. a shipped one), wait for its kernel."""
        name = path
        self.path = path
        self.page.goto(f"{self.server.url}/lab/workspaces/{self.workspace}/tree/{path}")
        self.page.wait_for_function(
            f"""(path) => {{
                if (!window.jupyterapp) return false;
                {_PANEL}
                const kernel = panel && panel.sessionContext.session
                    && panel.sessionContext.session.kernel;
                return !!kernel && kernel.connectionStatus === 'connected'
                    && kernel.status === 'idle';
            }}""",
            arg=name,
            timeout=timeout * 1000,
        )

    def run_all(self, *, timeout: float = 120) -> None:
        """Run every cell and wait for the kernel to finish; fail on an error output."""
        self.page.evaluate(
            f"""(path) => {{
                {_PANEL}
                window.jupyterapp.shell.activateById(panel.id);
                // Resolves once every cell ran.
                return window.jupyterapp.commands.execute('notebook:run-all-cells');
            }}""",
            self.path,
        )
        self.wait_idle(timeout=timeout)
        errors = self.page.evaluate(
            f"""(path) => {{
                {_PANEL}
                const found = [];
                for (const cell of panel.content.widgets) {{
                    const outputs = cell.model.outputs;
                    if (!outputs) continue;
                    for (let i = 0; i < outputs.length; i++) {{
                        const out = outputs.get(i).toJSON();
                        if (out.output_type === 'error') found.push(out.ename + ': ' + out.evalue);
                    }}
                }}
                return found;
            }}""",
            self.path,
        )
        assert not errors, f"notebook cells raised: {errors}"

    def cells(self) -> list[dict[str, Any]]:
        """Every code cell of the open notebook, read from the cell models: its execution count,
        stderr text, error outputs and plain-text result."""
        return list(self.page.evaluate(CELL_REPORT_JS, self.path))

    def wait_idle(self, *, timeout: float = 120) -> None:
        """Wait until every queued cell ran (no cell shows ``[*]``) and the kernel is idle."""
        self.page.wait_for_function(
            f"""(path) => {{
                {_PANEL}
                const kernel = panel.sessionContext.session.kernel;
                const pending = panel.content.widgets.some(
                    (c) => c.model.type === 'code' && c.promptNode
                        && c.promptNode.textContent.includes('*'));
                return kernel.status === 'idle' && !pending;
            }}""",
            arg=self.path,
            timeout=timeout * 1000,
        )

    def execute(self, code: str, *, timeout: float = 60) -> str:
        """Run ``code`` in the notebook's kernel (outside any cell); return what it printed."""
        result = self.page.evaluate(
            f"""async ([path, code]) => {{
                {_PANEL}
                const kernel = panel.sessionContext.session.kernel;
                const future = kernel.requestExecute({{ code, store_history: false }});
                let text = '';
                let error = null;
                future.onIOPub = (msg) => {{
                    const type = msg.header.msg_type;
                    if (type === 'stream') text += msg.content.text;
                    else if (type === 'error') error = msg.content.ename + ': ' + msg.content.evalue;
                    else if (type === 'execute_result') text += msg.content.data['text/plain'];
                }};
                await future.done;
                return {{ text, error }};
            }}""",
            [self.path, code],
        )
        assert result["error"] is None, f"kernel raised {result['error']} running:\n{code}"
        return str(result["text"])

    def wait_for_kernel(self, condition: str, *, timeout: float = 60) -> None:
        """Poll the kernel until the Python expression ``condition`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            if self.execute(f"print(bool({condition}))").strip() == "True":
                return
            if time.monotonic() > deadline:
                msg = f"kernel condition {condition!r} still false after {timeout:.0f} s"
                raise AssertionError(msg)
            time.sleep(0.3)

    def screenshot(self, locator: Any, name: str, *, readme: bool = False) -> Path:
        """Save ``locator``'s screenshot in tests/artifacts (and docs/img when refreshing)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        locator.screenshot(path=str(path))
        if readme and update_screenshots():
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_IMG / f"{name}.png")
        return path


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome", "devtools", "file"):
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


class Watched:
    """A browser page whose outside requests and console errors are recorded."""

    def __init__(self, context: Any) -> None:
        self.outside: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        page = context.new_page()

        def route(route: Any) -> None:
            url = route.request.url
            if _is_local(url):
                route.continue_()
            else:
                self.outside.append(url)
                route.abort()

        def on_console(message: Any) -> None:
            line = f"{message.type}: {message.text}"
            self.console.append(line)
            if message.type == "error":
                self.errors.append(line)

        def on_error(error: Any) -> None:
            self.console.append(f"pageerror: {error}")
            self.errors.append(f"pageerror: {error}")

        page.route("**/*", route)
        page.on("websocket", lambda ws: None if _is_local(ws.url) else self.outside.append(ws.url))
        page.on("console", on_console)
        page.on("pageerror", on_error)
        self.page = page

    def close(self, name: str) -> None:
        """Save the page's console and a screenshot under tests/artifacts, then close it."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(self.console))
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(ARTIFACTS / f"{name}.page.png"), full_page=True)
        self.page.close()

    def check(self) -> None:
        """Fail with every request that left 127.0.0.1 and every console or page error."""
        problems = []
        if self.outside:
            problems.append("requests left 127.0.0.1:\n  " + "\n  ".join(self.outside))
        if self.errors:
            problems.append("browser console errors:\n  " + "\n  ".join(self.errors))
        assert not problems, "\n".join(problems)


@contextlib.contextmanager
def watched_lab(server: LabServer, context: Any, name: str) -> Iterator[Lab]:
    """A fresh page on the live JupyterLab, checked when the block ends."""
    watched = Watched(context)
    try:
        yield Lab(watched.page, server, watched, re.sub(r"[^A-Za-z0-9]+", "-", name)[:60])
    finally:
        watched.close(name.replace("/", "_"))
        server.shutdown_sessions()
    watched.check()


@pytest.fixture
def lab(
    lab_server: LabServer, browser_context: Any, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """A fresh page on the live JupyterLab; fails the test if a request left 127.0.0.1 or the
    browser logged an error."""
    with watched_lab(lab_server, browser_context, request.node.name) as lab:
        yield lab


#: A cell's stderr may hold blank lines only: any warning a newcomer did not ask for fails the
#: notebook tests (issue 16, item 8).
ALLOWED_STDERR = re.compile(r"^\s*$")


def unexpected_stderr(text: str) -> list[str]:
    """The lines of a cell's stderr that are not one of the allowed warnings (see above)."""
    return [line for line in text.splitlines() if not ALLOWED_STDERR.match(line)]


CELL_REPORT_JS = """(path) => {
    const panel = [...window.jupyterapp.shell.widgets('main')]
        .find((w) => w.context && w.context.path === path);
    const cells = [];
    for (const cell of panel.content.widgets) {
        if (cell.model.type !== 'code') continue;
        const outputs = [];
        for (let i = 0; i < cell.model.outputs.length; i++) {
            outputs.push(cell.model.outputs.get(i).toJSON());
        }
        cells.push({
            count: cell.model.executionCount,
            source: cell.model.sharedModel.getSource(),
            stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr')
                .map((o) => [].concat(o.text).join('')).join(''),
            errors: outputs.filter((o) => o.output_type === 'error')
                .map((o) => o.ename + ': ' + o.evalue),
            result: outputs.filter((o) => o.output_type === 'execute_result')
                .map((o) => [].concat(o.data['text/plain'] || '').join('')).join(''),
        });
    }
    return cells;
}"""


def assert_ran_clean(cells: list[dict[str, Any]], name: str) -> None:
    """Every code cell ran, in order, with no error and nothing on stderr it did not ask for."""
    counts = [cell["count"] for cell in cells]
    assert None not in counts, f"{name}: cells that never ran (execution counts {counts})"
    assert counts == sorted(counts), f"{name}: cells ran out of order: {counts}"
    for i, cell in enumerate(cells):
        assert not cell["errors"], f"{name} code cell {i}: {cell['errors']}"
        extra = unexpected_stderr(cell["stderr"])
        assert not extra, f"{name} code cell {i} printed to stderr:\n" + "\n".join(extra)


CANVAS_INK_JS = """(selector) => {
    // Count pixels that differ from the canvas's top-left (background) pixel, over all canvases
    // under the element matched by selector.
    const root = document.querySelector(selector);
    if (!root) return { canvases: 0, ink: 0, pixels: 0 };
    const canvases = root.tagName === 'CANVAS' ? [root] : [...root.querySelectorAll('canvas')];
    let ink = 0, pixels = 0;
    for (const canvas of canvases) {
        if (!canvas.width || !canvas.height) continue;
        const ctx = canvas.getContext('2d');
        const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        const [r0, g0, b0, a0] = [data[0], data[1], data[2], data[3]];
        for (let i = 0; i < data.length; i += 4) {
            if (data[i] !== r0 || data[i + 1] !== g0 || data[i + 2] !== b0 || data[i + 3] !== a0) ink++;
        }
        pixels += canvas.width * canvas.height;
    }
    return { canvases: canvases.length, ink, pixels };
}"""

CANVAS_HASH_JS = """(selector) => {
    // A cheap fingerprint of every canvas's pixels under selector, to detect redraws.
    const root = document.querySelector(selector);
    const canvases = root.tagName === 'CANVAS' ? [root] : [...root.querySelectorAll('canvas')];
    let h = 0;
    for (const canvas of canvases) {
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) | 0;
    }
    return h;
}"""
