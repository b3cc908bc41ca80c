"""The Explorer in a live JupyterLab: search, select, Trace, and watch the views fill."""

from __future__ import annotations

import pytest

from .conftest import CANVAS_INK_JS, TOY_CHECKPOINTS, TOY_OPERATIONS, TOY_STEPS, TOY_WEIGHTS, Lab

pytestmark = pytest.mark.browser

# The shipped toy run's checkpoint series (14 OLMoE checkpoints of 4 MoE layers x 8 experts) and
# 6 training samples of each of its four operations; its trace store is the reference the
# Explorer's live trace must reproduce.
SERIES = """
import polars as pl
import grokviz
from grokviz.data import sample_data_dir

toy = sample_data_dir() / "toy"
store = grokviz.TraceStore.open(toy / "trace")
samples = (
    store.samples().filter(pl.col("split") == "train")
    .group_by("domain", maintain_order=True).head(6)
)
"""
SHOW = """
from grokviz.widgets import Explorer
explorer = Explorer(str(toy / "checkpoints"), samples, batch_size=1)
explorer
"""
# Largest difference between the Explorer's traced routing at a checkpoint and the shipped store's.
MATCHES_STORE = """
import numpy as np
label = {label!r}
mine = explorer.routing.filter(pl.col("checkpoint") == label).sort("sample_id", "layer")
ref = (
    store.routing().filter(pl.col("checkpoint") == label)
    .filter(pl.col("sample_id").is_in(mine["sample_id"].implode()))
    .sort("sample_id", "layer")
)
assert mine["sample_id"].to_list() == ref["sample_id"].to_list()
print(mine.height, float(np.abs(np.array(mine["weights"].to_list())
                                - np.array(ref["weights"].to_list())).max()))
"""
ROOT = ".grokviz-explorer"

# Record every width the progress bar takes, to see the trace arrive batch by batch.
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('.grokviz-explorer .explorer-progress .progress-bar');
    window.__widths = [bar.style.width];
    new MutationObserver(() => window.__widths.push(bar.style.width))
        .observe(bar, { attributes: true, attributeFilter: ['style'] });
}"""


def _search_and_pick(lab: Lab, needle: str, count: int, indices: list[int]) -> list[str]:
    """Type ``needle`` in the search box, expect ``count`` rows, select rows ``indices``."""
    root = lab.page.locator(ROOT)
    lab.page.locator(f"{ROOT} .explorer-search input").fill(needle)
    options = f"{ROOT} .explorer-table select option"
    lab.page.wait_for_function(
        f"() => [...document.querySelectorAll('{options}')]"
        f".every((o) => o.textContent.startsWith('{needle}-'))"
        f" && document.querySelectorAll('{options}').length === {count}",
        timeout=10_000,
    )
    texts = root.locator(".explorer-table select option").all_text_contents()
    root.locator(".explorer-table select").select_option(index=indices)
    return [texts[i].split("·")[0].strip() for i in indices]  # "id · domain · text"


def _trace(lab: Lab, n: int) -> None:
    """Press Trace and wait until ``n`` samples streamed in, one batch at a time."""
    lab.page.evaluate(WATCH_PROGRESS)
    lab.page.locator(f"{ROOT} button.explorer-trace").click()
    # Done when the chosen checkpoint holds n traced samples (the bar may still be full from an
    # earlier trace) and the thread ended.
    done = (
        "not explorer.running and explorer.progress.value == {n}"
        " and explorer.current_routing()['sample_id'].n_unique() == {n}"
    )
    lab.wait_for_kernel(done.format(n=n), timeout=120)
    lab.page.wait_for_function("() => window.__widths.at(-1) === '100%'", timeout=10_000)
    widths = lab.page.evaluate("() => window.__widths")
    # Batches of one sample: the bar passed through intermediate widths on its way.
    assert any(w not in ("0%", "100%", "") for w in widths), widths
    assert lab.execute("print(explorer.messages)").strip() == "[]"


def test_explorer_traces_selected_samples_into_the_views(lab: Lab) -> None:
    lab.open("explorer.ipynb", [SERIES, SHOW])
    lab.run_all(timeout=180)
    root = lab.page.locator(ROOT)
    root.wait_for(timeout=60_000)
    menu = root.locator(".explorer-checkpoint select")
    # The series' checkpoints (those shipped with weights) are listed, the last one chosen.
    assert menu.locator("option").count() == len(TOY_WEIGHTS)
    assert TOY_CHECKPOINTS[-1] in (menu.input_value() or "")

    # Two searches: the second adds to the selection instead of replacing it.
    other = next(op for op in TOY_OPERATIONS if op != "div")
    chosen = _search_and_pick(lab, other, 6, [0, 2, 3, 5])
    chosen += _search_and_pick(lab, "div", 6, [1, 4])
    lab.wait_for_kernel("len(explorer.selected_samples) == 6", timeout=20)
    selected = sorted(eval(lab.execute("print(sorted(explorer.selected_samples))")))
    assert selected == sorted(chosen)

    _trace(lab, 6)
    traced = eval(lab.execute("print(sorted(explorer.routing['sample_id'].unique()))"))
    assert traced == selected
    # The live trace reproduces the shipped trace store: 6 samples x 4 layers, same weights.
    rows, diff = lab.execute(MATCHES_STORE.format(label=TOY_CHECKPOINTS[-1])).split()
    assert int(rows) == 24
    assert float(diff) < 1e-5

    diagram = f"{ROOT} [data-testid=grokviz-pathway-diagram]"
    lab.page.locator(diagram).wait_for(timeout=30_000)
    lab.page.wait_for_function(
        f"() => document.querySelector('{diagram}').dataset.renderMs !== undefined",
        timeout=30_000,
    )
    ink = lab.page.evaluate(CANVAS_INK_JS, f"{diagram} [data-testid=pathway-base]")
    assert ink["ink"] > 0.01 * ink["pixels"], ink
    # The views were built for the first one-sample batch and updated in place for the other
    # five: the drawn legend names both operations, and the kernel kept the same widgets.
    legend = f"{diagram} [data-testid=group-legend]"
    lab.page.wait_for_function(
        f"() => ['div', '{other}'].every(g => "
        f"(document.querySelector('{legend}')?.textContent ?? '').includes(g))",
        timeout=30_000,
    )
    assert lab.execute("print(len(explorer.views))").strip() == "2"
    matrix = f"{ROOT} [data-testid=grokviz-similarity-matrix]"
    lab.page.locator(matrix).wait_for(timeout=30_000)
    assert lab.page.evaluate(CANVAS_INK_JS, matrix)["ink"] > 0
    lab.screenshot(root, "explorer", readme=True)

    # An early checkpoint, chosen in the menu, traces the same samples through that model.
    menu.select_option(label=TOY_CHECKPOINTS[0])
    lab.wait_for_kernel(f"explorer.checkpoint == '{TOY_CHECKPOINTS[0]}'", timeout=20)
    _trace(lab, 6)
    rows, diff = lab.execute(MATCHES_STORE.format(label=TOY_CHECKPOINTS[0])).split()
    assert int(rows) == 24
    assert float(diff) < 1e-5
    steps = eval(lab.execute("print(sorted(explorer.routing['step'].unique()))"))
    assert steps == [TOY_STEPS[0], TOY_STEPS[-1]]

    # An error shows in red and leaves the traced views in place.
    lab.page.locator(f"{ROOT} .explorer-source input").fill("no/such/folder")
    lab.page.locator(f"{ROOT} .explorer-source input").press("Enter")
    error = root.locator(".explorer-errors pre")
    error.wait_for(timeout=20_000)
    assert "no/such/folder" in (error.text_content() or "")
    color = error.evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(198, 40, 40)"
    assert lab.page.locator(diagram).count() == 1
