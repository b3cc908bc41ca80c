"""The shipped quickstart notebook, run top to bottom in a live JupyterLab as after ``make lab``.

A newcomer's first contact with grokviz: every code cell of ``notebooks/01_quickstart.ipynb``,
unchanged and in order, runs in a real kernel (in its small mode, ``GROKVIZ_SMALL=1``, which the
``lab`` fixture's server passes to its kernels) on the shipped sample data, and its three widgets
must actually draw in Chromium, offline.

Only the code cells are run: the markdown cells are left out because the notebook's first one
shows Colab and Binder badges, images on colab.research.google.com and mybinder.org, which the
browser would fetch (and the ``lab`` fixture fails any request that leaves 127.0.0.1).
"""

from __future__ import annotations

from typing import Any

import nbformat
import pytest

from .conftest import CANVAS_INK_JS, REPO, Lab

pytestmark = pytest.mark.browser

QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
DIAGRAM_ROOT = "[data-testid=grokviz-pathway-diagram]"
DIAGRAM_BASE = "[data-testid=pathway-base]"
MATRIX_ROOT = "[data-testid=grokviz-similarity-matrix]"
TIMELINE_ROOT = ".grokviz-timeline"

#: Every code cell of the open notebook: whether it ran (an execution count), its stderr text and
#: its error outputs, read from the cell models (what the user's notebook holds), not the DOM.
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


def _code_cells() -> list[str]:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def _wait_ink(lab: Lab, selector: str, *, timeout_ms: float = 30_000) -> dict[str, Any]:
    """Wait until the canvases under ``selector`` carry some ink; return their ink count."""
    lab.page.locator(selector).first.wait_for(timeout=60_000)
    lab.page.wait_for_function(f"() => ({CANVAS_INK_JS})('{selector}').ink > 0", timeout=timeout_ms)
    ink: dict[str, Any] = lab.page.evaluate(CANVAS_INK_JS, selector)
    return ink


def test_quickstart_runs_clean_and_its_widgets_draw(lab: Lab) -> None:
    sources = _code_cells()
    assert len(sources) >= 5, f"{QUICKSTART} has only {len(sources)} code cells"
    lab.open("01_quickstart.ipynb", sources)
    lab.run_all(timeout=150)  # also fails on any error output, naming it

    # Every code cell ran, in order, and none printed a traceback or an error to stderr.
    cells = lab.page.evaluate(CELL_REPORT_JS, lab.path)
    assert len(cells) == len(sources)
    counts = [cell["count"] for cell in cells]
    assert None not in counts, f"cells that never ran (execution counts {counts})"
    assert counts == sorted(counts), counts
    for i, cell in enumerate(cells):
        assert not cell["errors"], f"code cell {i}: {cell['errors']}"
        assert "Traceback" not in cell["stderr"], f"code cell {i} stderr:\n{cell['stderr']}"
        assert "Error" not in cell["stderr"], f"code cell {i} stderr:\n{cell['stderr']}"
    # It ran in its small mode, as the test suite sets it up.
    assert lab.execute("print(SMALL)").strip() == "True"
    # The last cell echoes the widgets' selections back to Python: nothing clicked yet.
    assert cells[-1]["result"].strip() == "([], [])", cells[-1]["result"]

    # One of each widget, each drawn: ink on its canvases, not an empty frame.
    for root in (DIAGRAM_ROOT, MATRIX_ROOT, TIMELINE_ROOT):
        lab.page.locator(root).first.wait_for(timeout=60_000)
        assert lab.page.locator(root).count() == 1, root
    diagram = _wait_ink(lab, DIAGRAM_BASE)
    assert diagram["canvases"] == 1, diagram
    assert diagram["ink"] > 0.02 * diagram["pixels"], diagram
    matrix = _wait_ink(lab, MATRIX_ROOT)
    assert matrix["ink"] > 0.3 * matrix["pixels"], matrix  # a heatmap fills most of its canvas
    timeline = _wait_ink(lab, TIMELINE_ROOT)  # Vega draws onto a canvas in the timeline
    assert timeline["canvases"] >= 1, timeline
    assert timeline["ink"] > 0.03 * timeline["pixels"], timeline
    # No output area says a widget failed to render (JupyterLab's own message for it).
    assert lab.page.get_by_text("Error displaying widget").count() == 0
    for root, name in (
        (TIMELINE_ROOT, "timeline"),
        (DIAGRAM_ROOT, "diagram"),
        (MATRIX_ROOT, "matrix"),
    ):
        lab.screenshot(lab.page.locator(root), f"quickstart_{name}")
    # The notebook promises pathways "coloured by operation" and a matrix "ordered by
    # operation": the samples it shows must span more than one of the toy's operations.
    legend = lab.page.locator(f"{DIAGRAM_ROOT} [data-testid=group-legend] > span")
    operations = sorted(text.strip() for text in legend.all_text_contents())
    shown = lab.execute(
        "print(*sorted(set(samples.filter(pl.col('sample_id').is_in(train_ids))['domain'])))"
    ).split()
    assert len(shown) >= 2, (
        f"the quickstart's train_ids cover one operation only ({shown}): its diagram and matrix"
        f" show no operation to compare with (diagram legend {operations})"
    )
    assert operations == shown, (operations, shown)
    # The lab fixture then fails the test if any request left 127.0.0.1.
