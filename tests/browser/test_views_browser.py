"""PathwayDiagram and SimilarityMatrix in a live JupyterLab: they draw, hover, and sync clicks."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_HASH_JS, CANVAS_INK_JS, Lab

pytestmark = pytest.mark.browser

# 40 samples of two domains, 4 MoE layers of 16 experts, 3 checkpoints. Routing weights come
# from a Dirichlet that favours 3 experts per (domain, layer), more strongly at later checkpoints:
# pathways of a domain converge as training goes on, as in the paper.
ROUTING = """
import numpy as np
import polars as pl
from grokviz import schema
from grokviz.widgets import PathwayDiagram, SimilarityMatrix

rng = np.random.default_rng(0)
favourite = rng.integers(0, 16, size=(2, 4, 3))
rows = []
for c, step in enumerate((100, 200, 300)):
    for i in range(40):
        for layer in range(4):
            alpha = np.full(16, 0.2)
            alpha[favourite[i // 20, layer]] += 1.0 + 4.0 * c
            w = rng.dirichlet(alpha).astype("float32").tolist()
            rows.append((f"step{step}", step, f"s{i:02d}", layer, w))
routing = pl.DataFrame(rows, schema=schema.ROUTING, orient="row")
samples = pl.DataFrame({
    "sample_id": [f"s{i:02d}" for i in range(40)],
    "text": "x", "domain": ["math"] * 20 + ["code"] * 20, "split": "train",
})
"""
DIAGRAM = "diagram = PathwayDiagram(routing, samples=samples)\ndiagram"
MATRIX = "matrix = SimilarityMatrix(routing=routing, samples=samples)\nmatrix"
DIAGRAM_ROOT = "[data-testid=grokviz-pathway-diagram]"
MATRIX_ROOT = "[data-testid=grokviz-similarity-matrix]"


def _wait_drawn(lab: Lab, root: str) -> None:
    lab.page.locator(root).first.wait_for(timeout=60_000)
    lab.page.wait_for_function(
        f"() => document.querySelector('{root}').dataset.renderMs !== undefined", timeout=30_000
    )


def test_pathway_diagram_draws_hovers_and_selects(lab: Lab) -> None:
    lab.open("diagram.ipynb", [ROUTING, DIAGRAM])
    lab.run_all()
    _wait_drawn(lab, DIAGRAM_ROOT)
    ink = lab.page.evaluate(CANVAS_INK_JS, "[data-testid=pathway-base]")
    assert ink["canvases"] == 1
    assert ink["ink"] > 0.02 * ink["pixels"], ink
    label = lab.page.locator(f"{DIAGRAM_ROOT} [data-testid=checkpoint-label]")
    assert "step300" in (label.text_content() or "")
    lab.screenshot(lab.page.locator(DIAGRAM_ROOT), "pathway_diagram", readme=True)

    # Hover: sweep the overlay until the pointer is on a pathway and the tooltip names it.
    overlay = lab.page.locator("[data-testid=pathway-overlay]")
    tooltip = lab.page.locator("[data-testid=grokviz-pathway-diagram-tooltip]")
    box = overlay.bounding_box()
    assert box is not None
    before = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-overlay]")
    found = None
    for x in range(50, int(box["width"]) - 20, 25):
        for y in range(30, int(box["height"]) - 20, 7):
            overlay.hover(position={"x": x, "y": y})
            text = tooltip.text_content() or ""
            if tooltip.is_visible() and text.startswith("sample"):
                found = (x, y, text)
                break
        if found:
            break
    assert found is not None, "no tooltip over any pathway"
    x, y, text = found
    sample = re.match(r"sample (s\d\d)", text)
    assert sample is not None, text
    assert lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-overlay]") != before

    # Click: the hovered sample becomes the kernel's selection.
    overlay.click(position={"x": x, "y": y})
    lab.wait_for_kernel("diagram.selected_samples", timeout=20)
    assert lab.execute("print(diagram.selected_samples)").strip() == f"['{sample.group(1)}']"

    # The kernel drives the view: another checkpoint redraws and relabels.
    drawn = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-base]")
    lab.execute("diagram.checkpoint = 'step100'")
    lab.page.wait_for_function(
        f"() => document.querySelector('{DIAGRAM_ROOT} [data-testid=checkpoint-label]')"
        ".textContent.includes('step100')",
        timeout=10_000,
    )
    lab.page.wait_for_function(
        f"() => ({CANVAS_HASH_JS})('[data-testid=pathway-base]') !== {drawn}", timeout=10_000
    )


def test_similarity_matrix_draws_and_a_click_selects_a_pair(lab: Lab) -> None:
    lab.open("matrix.ipynb", [ROUTING, MATRIX])
    lab.run_all()
    _wait_drawn(lab, MATRIX_ROOT)
    root = lab.page.locator(MATRIX_ROOT)
    ink = lab.page.evaluate(CANVAS_INK_JS, MATRIX_ROOT)
    assert ink["ink"] > 0.3 * ink["pixels"], ink  # a heatmap fills most of its canvas
    lab.screenshot(root, "similarity_matrix", readme=True)

    canvas = root.locator("canvas").last
    box = canvas.bounding_box()
    assert box is not None
    canvas.hover(position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
    tooltip = lab.page.locator("[data-testid=grokviz-similarity-matrix-tooltip]")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert re.search(r"\d", tooltip.text_content() or "")

    canvas.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
    lab.wait_for_kernel("len(matrix.selected_pair) == 2", timeout=20)
    # The pair's alignment, computed in the browser, matches the kernel's edit distance.
    pair = lab.page.locator(f"{MATRIX_ROOT} [data-testid=pair-alignment]")
    pair.get_by_text("alignment:").wait_for(timeout=10_000)
    shown = re.search(r"alignment: (\d+)", pair.text_content() or "")
    assert shown is not None
    expected = lab.execute(
        "a, b = matrix.selected_pair\n"
        "ids = list(matrix._ids)\n"
        "print(int(matrix.distances()[ids.index(a), ids.index(b)]))"
    )
    assert int(shown.group(1)) == int(expected)
    assert lab.page.locator("[data-testid=pair-row-a]").count() == 1


LINKED = """
from grokviz.widgets import Timeline

metrics = pl.DataFrame({
    "checkpoint": ["step100", "step200", "step300"], "step": [100, 200, 300],
    "group": "global", "metric": "distance", "value": [20.0, 15.0, 11.0],
    "ci_low": None, "ci_high": None,
})
timeline = Timeline(metrics, width=480).link(diagram)
timeline
"""


def test_a_timeline_click_moves_the_linked_diagram(lab: Lab) -> None:
    lab.open("linked.ipynb", [ROUTING, DIAGRAM, LINKED])
    lab.run_all()
    _wait_drawn(lab, DIAGRAM_ROOT)
    chart = lab.page.locator(".grokviz-timeline canvas").first
    chart.wait_for(timeout=60_000)
    lab.page.wait_for_function(
        f"() => ({CANVAS_INK_JS})('.grokviz-timeline').ink > 2000", timeout=30_000
    )
    # Linking took the diagram's checkpoint (the last) as the Timeline's.
    assert lab.execute("print(timeline.checkpoint)").strip() == "step300"
    drawn = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-base]")
    # Just inside the plot's left edge: the nearest checkpoint is the first, step 100.
    chart.click(position={"x": 75, "y": 50})
    lab.wait_for_kernel("timeline.step == 100", timeout=20)
    assert lab.execute("print(diagram.checkpoint)").strip() == "step100"
    label = f"{DIAGRAM_ROOT} [data-testid=checkpoint-label]"
    lab.page.wait_for_function(
        f"() => document.querySelector('{label}').textContent.trim() === 'step100'",
        timeout=10_000,
    )
    lab.page.wait_for_function(
        f"() => ({CANVAS_HASH_JS})('[data-testid=pathway-base]') !== {drawn}", timeout=10_000
    )
