"""The widgets in the other front ends: Jupyter Notebook 7 and marimo.

In each, every grokviz view draws and a click in the browser reaches the kernel. Notebook 7 is
served by the session's Jupyter server; marimo runs its own server (``marimo run``) on a notebook
written here. As everywhere in the browser suite, a request leaving 127.0.0.1 or a console error
fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, REPO, SAMPLE_DATA, TOY_CHECKPOINTS, Lab, Watched, _free_port

pytestmark = pytest.mark.browser

DIAGRAM = "[data-testid=grokviz-pathway-diagram]"
MATRIX = "[data-testid=grokviz-similarity-matrix]"
TIMELINE = "[data-testid=grokviz-timeline]"
EXPLORER = "[data-testid=grokviz-explorer]"

# Six training samples per operation of the shipped toy run, and a metrics table made in a second
# (the mean training loss per operation) so that the Timeline has something to draw.
SETUP = """
import polars as pl
import grokviz
from grokviz.data import sample_data_dir
from grokviz.widgets import Explorer, Palette, PathwayDiagram, SimilarityMatrix, Timeline

toy = sample_data_dir() / "toy"
store = grokviz.TraceStore.open(toy / "trace")
samples = store.samples()
ids = samples.filter(pl.col("split") == "train").group_by("domain", maintain_order=True).head(6)["sample_id"].to_list()
palette = Palette.from_samples(samples)
metrics = (
    store.losses().filter(pl.col("sample_id").is_in(ids))
    .join(samples.select("sample_id", "domain"), on="sample_id")
    .group_by("checkpoint", "step", "domain").agg(pl.col("loss").mean().alias("value"))
    .select("checkpoint", "step", group="domain", metric=pl.lit("loss"), value="value",
            ci_low=pl.lit(None, pl.Float64), ci_high=pl.lit(None, pl.Float64))
)
diagram = PathwayDiagram(store, samples=samples, sample_ids=ids, top_k=2, palette=palette)
matrix = SimilarityMatrix(routing=store, samples=samples, sample_ids=ids, top_k=2, palette=palette)
timeline = Timeline(metrics, palette=palette, row_height=90).link(diagram, matrix)
"""


#: Ink (pixels unlike the top-left one) on the canvases under an element; marimo draws widgets in
#: shadow roots, which document.querySelector cannot see, so the element comes from a locator.
INK_JS = """(root) => {
    let ink = 0;
    for (const canvas of root.querySelectorAll('canvas')) {
        if (!canvas.width || !canvas.height) continue;
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) ink++;
        }
    }
    return ink;
}"""


def _drawn(page: Any, root: str) -> None:
    locator = page.locator(root).first
    locator.wait_for(timeout=60_000)
    deadline = time.monotonic() + 60
    while locator.evaluate(INK_JS) <= 500:
        assert time.monotonic() < deadline, f"{root} drew nothing"
        time.sleep(0.3)


def _click_matrix(page: Any) -> None:
    geo = json.loads(page.locator(MATRIX).first.get_attribute("data-matrix") or "{}")
    overlay = page.locator(f"{MATRIX} [data-testid=matrix-overlay]").first
    overlay.click(
        position={"x": geo["left"] + geo["side"] * 0.7, "y": geo["top"] + geo["side"] * 0.2}
    )


def test_notebook_7_draws_the_views_and_a_click_reaches_the_kernel(lab: Lab) -> None:
    lab.server.write_notebook("nb7.ipynb", [SETUP, "timeline", "diagram", "matrix"])
    lab.path = "nb7.ipynb"
    lab.page.goto(f"{lab.server.url}/notebooks/nb7.ipynb")
    lab.page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const panel = app && app.shell.currentWidget;
            const kernel = panel && panel.sessionContext && panel.sessionContext.session
                && panel.sessionContext.session.kernel;
            return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=120_000,
    )
    assert "/notebooks/" in lab.page.url
    # Notebook 7.6's keyboard-shortcut settings plugin throws as the page starts, reading the
    # schema of a federated extension's settings (ipywidgets' jupyterlab-manager) it has not
    # registered yet; it happens with any notebook, before a cell runs and with no grokviz code
    # loaded. Only that error, and only before the cells run, is let through.
    known = "pageerror: Cannot read properties of undefined (reading 'schema')"
    lab.watched.errors[:] = [e for e in lab.watched.errors if e != known]
    lab.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    for root in (TIMELINE, DIAGRAM, MATRIX):
        _drawn(lab.page, root)
    _click_matrix(lab.page)
    lab.wait_for_kernel("len(matrix.selected_pair) == 2", timeout=30)
    lab.page.locator(f"{MATRIX} [data-testid=pair-alignment]").get_by_text("alignment:").wait_for(
        timeout=10_000
    )
    # The Timeline drives the linked views here too.
    lab.page.locator(f"{TIMELINE} [data-testid=timeline-overlay]").click(
        position={"x": 80, "y": 60}
    )
    lab.wait_for_kernel(
        "timeline.checkpoint is not None and diagram.checkpoint == timeline.checkpoint", timeout=30
    )
    lab.page.screenshot(path=str(ARTIFACTS / "notebook7.png"), full_page=True)


MARIMO = """
import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import marimo as mo
{setup}
    return Explorer, ids, mo, diagram, matrix, pl, timeline, samples, toy


@app.cell
def _(mo, timeline):
    timeline_view = mo.ui.anywidget(timeline)
    timeline_view
    return (timeline_view,)


@app.cell
def _(diagram, mo):
    diagram_view = mo.ui.anywidget(diagram)
    diagram_view
    return (diagram_view,)


@app.cell
def _(matrix, mo):
    matrix_view = mo.ui.anywidget(matrix)
    matrix_view
    return (matrix_view,)


@app.cell
def _(matrix_view, mo, timeline_view):
    mo.md(f"picked: {{matrix_view.value['selected_pair']}} at {{timeline_view.value['checkpoint']}}")
    return


@app.cell
def _(Explorer, ids, mo, pl, samples, toy):
    explorer = Explorer(str(toy / "checkpoints"), samples.filter(pl.col("sample_id").is_in(ids)), batch_size=2)
    explorer_view = mo.ui.anywidget(explorer)
    explorer_view
    return (explorer_view,)


@app.cell
def _(explorer_view, mo):
    mo.md(f"searching: '{{explorer_view.value['search']}}'")
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``marimo run`` of a notebook showing every grokviz widget; yields its URL."""
    pytest.importorskip("marimo")
    folder = tmp_path_factory.mktemp("marimo")
    setup = "\n".join(f"    {line}" if line else "" for line in SETUP.strip().splitlines())
    path = folder / "views.py"
    path.write_text(MARIMO.format(setup=setup))
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "GROKVIZ_DATA": str(SAMPLE_DATA),
        "MARIMO_CONFIG_DIR": str(folder / "config"),  # the user's marimo settings stay out
        "HOME": str(folder),
    }
    log = folder / "marimo.log"
    command = [
        sys.executable,
        "-m",
        "marimo",
        "run",
        str(path),
        "--headless",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-token",
        "--no-sandbox",
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"marimo did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "marimo.log").write_text(log.read_text())


def test_marimo_draws_every_widget_and_clicks_reach_the_kernel(
    marimo_app: str, browser_context: Any
) -> None:
    watched = Watched(browser_context)
    page = watched.page
    try:
        page.goto(marimo_app)
        # The harness blocks service workers (Playwright could not route their requests), and
        # marimo logs that it could not register its own: that one error is the harness's.
        page.wait_for_timeout(500)
        watched.errors[:] = [e for e in watched.errors if "registering service worker" not in e]
        for root in (TIMELINE, DIAGRAM, MATRIX):
            _drawn(page, root)
        # No "Jupyter widgets are not supported" placeholder: every view is an anywidget.
        assert page.get_by_text("not supported").count() == 0
        # A click in the matrix becomes the widget's value in Python: the cell that reads it reruns.
        _click_matrix(page)
        page.get_by_text("picked: ['").wait_for(timeout=30_000)
        # The Timeline drives the linked diagram in the kernel and so in the browser.
        diagram = page.locator(DIAGRAM).first
        before = diagram.get_attribute("data-checkpoint")
        page.locator(f"{TIMELINE} [data-testid=timeline-overlay]").first.click(
            position={"x": 80, "y": 60}
        )
        chosen = ""
        deadline = time.monotonic() + 30
        while not chosen or chosen == before or diagram.get_attribute("data-checkpoint") != chosen:
            assert time.monotonic() < deadline, (before, chosen)
            chosen = page.locator(TIMELINE).first.get_attribute("data-checkpoint") or ""
            time.sleep(0.3)
        # The cell reading the Timeline's value reran with the checkpoint picked.
        page.get_by_text(re.compile(rf"^picked: .* at {chosen}$")).wait_for(timeout=30_000)
        # The Explorer draws its controls, and typing in its search reaches the kernel.
        page.locator(f"{EXPLORER} .explorer-table option").first.wait_for(timeout=30_000)
        page.locator(f"{EXPLORER} .explorer-search input").fill("mul")
        page.get_by_text("searching: 'mul'").wait_for(timeout=30_000)
        options = page.locator(f"{EXPLORER} .explorer-table option").all_text_contents()
        assert options and all("mul" in o for o in options), options
        # Trace two samples: the background trace streams them into the Explorer's own views.
        page.locator(f"{EXPLORER} .explorer-table select").select_option(index=[0, 1])
        page.locator(f"{EXPLORER} button.explorer-trace").click()
        page.locator(f"{EXPLORER} .grokviz-status").get_by_text("traced 2 samples").wait_for(
            timeout=90_000
        )
        for view, title in (
            (DIAGRAM, f"Pathways at {TOY_CHECKPOINTS[-1]}"),
            (MATRIX, f"Pathway distances at {TOY_CHECKPOINTS[-1]}"),
        ):
            page.locator(f"{EXPLORER} {view} [data-testid=view-title]").get_by_text(title).wait_for(
                timeout=30_000
            )
            _drawn(page, f"{EXPLORER} {view}")
        page.screenshot(path=str(ARTIFACTS / "marimo.png"), full_page=True)
    finally:
        watched.close("marimo")
    watched.check()


def test_the_marimo_notebook_is_valid(tmp_path: Path) -> None:
    """The notebook above is one marimo accepts (marimo check), so its failures are the widgets'."""
    pytest.importorskip("marimo")
    setup = "\n".join(f"    {line}" if line else "" for line in SETUP.strip().splitlines())
    path = tmp_path / "views.py"
    path.write_text(MARIMO.format(setup=setup))
    done = subprocess.run(
        [sys.executable, "-m", "marimo", "check", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
