"""PathwayDiagram and SimilarityMatrix in a live JupyterLab: they draw, hover, and sync clicks."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_HASH_JS, CANVAS_INK_JS, TOY_CHECKPOINTS, TOY_OPERATIONS, TOY_STEPS, Lab

pytestmark = pytest.mark.browser

# The shipped toy run (data/samples/toy): 12 training samples of each of its four operations,
# their routing through 4 MoE layers of 8 experts at all its checkpoints,
# loaded from its trace store as a user's notebook would.
ROUTING = """
import polars as pl
import grokviz
from grokviz.data import sample_data_dir
from grokviz.widgets import PathwayDiagram, SimilarityMatrix

toy = sample_data_dir() / "toy"
store = grokviz.TraceStore.open(toy / "trace")
samples = (
    store.samples().filter(pl.col("split") == "train")
    .group_by("domain", maintain_order=True).head(12)
)
routing = (
    store.routing(lazy=True)
    .filter(pl.col("sample_id").is_in(samples["sample_id"].implode()))
    .collect()
)
"""
OPERATIONS = tuple(sorted(TOY_OPERATIONS))
#: A shipped sample id ("add-3-5": operation, then operands) and, in a tooltip, its group.
SAMPLE_ID = rf"({'|'.join(TOY_OPERATIONS)})-\d+-\d+"
# Pathways of the 2 experts the toy model routes each token to (its top_k), coloured by operation.
DIAGRAM = "diagram = PathwayDiagram(routing, samples=samples, top_k=2)\ndiagram"
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
    # The last checkpoint is shown first, and the legend colours the four operations.
    label = lab.page.locator(f"{DIAGRAM_ROOT} [data-testid=checkpoint-label]")
    assert (label.text_content() or "").strip() == TOY_CHECKPOINTS[-1]
    legend = lab.page.locator(f"{DIAGRAM_ROOT} [data-testid=group-legend] > span")
    assert sorted(t.strip() for t in legend.all_text_contents()) == sorted(OPERATIONS)
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
    # "sample add-3-5 (add)": a shipped sample, in its own operation's group.
    sample = re.match(rf"sample ({SAMPLE_ID}) \((\w+)\)", text)
    assert sample is not None, text
    assert sample.group(3) == sample.group(2), text
    shown = lab.execute("print(sorted(samples['sample_id']))")
    assert f"'{sample.group(1)}'" in shown
    assert lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-overlay]") != before

    # Click: the hovered sample becomes the kernel's selection.
    overlay.click(position={"x": x, "y": y})
    lab.wait_for_kernel("diagram.selected_samples", timeout=20)
    assert lab.execute("print(diagram.selected_samples)").strip() == f"['{sample.group(1)}']"

    # The kernel drives the view: another checkpoint redraws and relabels.
    drawn = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-base]")
    lab.execute("diagram.checkpoint = 'step-000050'")
    lab.page.wait_for_function(
        f"() => document.querySelector('{DIAGRAM_ROOT} [data-testid=checkpoint-label]')"
        ".textContent.trim() === 'step-000050'",
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
    # "add-0-4 × sub-0-1", the pair's operations, and the distance the kernel computed.
    tip = tooltip.text_content() or ""
    cell = re.search(rf"({SAMPLE_ID}) × ({SAMPLE_ID}).*distance (\d+)", tip)
    assert cell is not None, tip
    kernel = lab.execute(
        f"ids = list(matrix._ids)\n"
        f"print(int(matrix.distances()[ids.index('{cell.group(1)}'), ids.index('{cell.group(3)}')]))"
    )
    assert int(cell.group(5)) == int(kernel)

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


# The Timeline of the same store's metrics (analyze on all of its memorized training samples).
LINKED = """
from grokviz.metrics import analyze
from grokviz.widgets import Timeline

metrics = analyze(store, groups="global", n_pairs=500, n_boot=0, progress=False)
timeline = Timeline(metrics, show=["distance"], width=480).link(diagram)
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
    assert lab.execute("print(timeline.checkpoint)").strip() == TOY_CHECKPOINTS[-1]
    drawn = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=pathway-base]")
    # Just inside the plot's left edge, on a step axis running to the last step: an early one.
    chart.click(position={"x": 75, "y": 50})
    early = f"timeline.step is not None and timeline.step < {TOY_STEPS[-1] // 4}"
    lab.wait_for_kernel(early, timeout=20)
    step = int(lab.execute("print(timeline.step)"))
    label = f"step-{step:06d}"
    assert lab.execute("print(diagram.checkpoint)").strip() == label
    shown = f"{DIAGRAM_ROOT} [data-testid=checkpoint-label]"
    lab.page.wait_for_function(
        f"() => document.querySelector('{shown}').textContent.trim() === '{label}'",
        timeout=10_000,
    )
    lab.page.wait_for_function(
        f"() => ({CANVAS_HASH_JS})('[data-testid=pathway-base]') !== {drawn}", timeout=10_000
    )
