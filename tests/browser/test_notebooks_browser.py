"""Notebooks 02, 03 and 04, run whole in a live JupyterLab in their small mode, offline.

Notebook 04 is run by the Explorer test below, which then uses its Explorer as a reader would.

Each notebook, markdown included, runs top to bottom on its own page: no cell may raise or print a
warning it did not ask for (the epsilon-fallback warnings excepted until analysis summarises its
choices), every grokviz view and chart must draw, and, as for every browser test, no request may
leave 127.0.0.1 and the browser console must stay free of errors. The quickstart (01) has its own
module, test_quickstart_browser.py.
"""

from __future__ import annotations

import pytest

from .conftest import CANVAS_INK_JS, Lab, assert_ran_clean

pytestmark = pytest.mark.browser

DRAWN = {
    # notebook: (selector, expected count) of what must draw
    "notebooks/02_grokking_101.ipynb": [
        ("[data-testid=grokviz-pathway-diagram]", 1),
        (".vega-embed", 1),
    ],
    "notebooks/03_reproducing_the_paper.ipynb": [("[data-testid=grokviz-timeline]", 1)],
}


@pytest.mark.parametrize("path", sorted(DRAWN), ids=lambda p: p.split("/")[-1])
def test_notebook_runs_clean_offline_and_draws(lab: Lab, path: str) -> None:
    lab.open_existing(path, timeout=120)
    lab.run_all(timeout=420)
    assert_ran_clean(lab.cells(), path)
    for selector, count in DRAWN[path]:
        lab.page.locator(selector).first.wait_for(timeout=60_000)
        assert lab.page.locator(selector).count() == count, selector
        lab.page.wait_for_function(
            f"() => ({CANVAS_INK_JS})('{selector}').ink > 0"
            f" || [...document.querySelectorAll('{selector} svg *')].length > 20",
            timeout=60_000,
        )
    badges = lab.page.evaluate(
        "() => [...document.querySelectorAll('.jp-RenderedMarkdown img')].map((i) => i.naturalWidth)"
    )
    assert len(badges) == 2 and all(w > 0 for w in badges), badges
    assert lab.page.get_by_text("Error displaying widget").count() == 0
    assert lab.page.get_by_text("Error loading script").count() == 0
    name = path.split("/")[-1].removesuffix(".ipynb")
    for selector, _ in DRAWN[path]:
        lab.screenshot(
            lab.page.locator(selector).first, f"{name}_{selector.strip('[].').split('=')[-1]}"
        )


# The Explorer of notebook 04, used as a reader of the notebook would: search, select, Trace.
ROOT = "[data-testid=grokviz-explorer]"
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('[data-testid=grokviz-explorer] .explorer-progress .progress-bar');
    window.__widths = [bar.style.width];
    new MutationObserver(() => window.__widths.push(bar.style.width))
        .observe(bar, { attributes: true, attributeFilter: ['style'] });
}"""
# Largest difference between the Explorer's traced routing of s0 and the notebook's trace store's.
MATCHES_STORE = """
import numpy as np
label = {label!r}
mine = explorer.routing.filter(pl.col("checkpoint") == label, pl.col("sample_id") == "s0").sort("layer")
ref = store.routing().filter(pl.col("checkpoint") == label, pl.col("sample_id") == "s0").sort("layer")
print(mine.height, float(np.abs(np.array(mine["weights"].to_list()) - np.array(ref["weights"].to_list())).max()))
"""


def _pick(lab: Lab, needle: str, indices: list[int]) -> list[str]:
    """Type ``needle`` in the search box and select those rows of what it leaves."""
    lab.page.locator(f"{ROOT} .explorer-search input").fill(needle)
    options = f"{ROOT} .explorer-table option"
    lab.page.wait_for_function(
        f"() => [...document.querySelectorAll('{options}')].length > 0 && "
        f"[...document.querySelectorAll('{options}')].every((o) => o.textContent.toLowerCase().includes('{needle}'))",
        timeout=10_000,
    )
    texts = lab.page.locator(options).all_text_contents()
    lab.page.locator(f"{ROOT} .explorer-table select").select_option(index=indices)
    return [texts[i].split("·")[0].strip() for i in indices]


def test_the_explorer_of_notebook_04_traces_what_a_reader_selects(lab: Lab) -> None:
    lab.open_existing("notebooks/04_your_own_model.ipynb", timeout=120)
    lab.run_all(timeout=300)
    assert_ran_clean(lab.cells(), "04")
    # Its last cell's diagram draws, and the Explorer lists the notebook's eight samples.
    last = "[data-testid=grokviz-pathway-diagram]"
    lab.page.locator(last).first.wait_for(timeout=60_000)
    lab.page.wait_for_function(f"() => ({CANVAS_INK_JS})('{last}').ink > 0", timeout=60_000)
    assert lab.page.locator(f"{ROOT} .explorer-table option").count() == 8
    badges = lab.page.evaluate(
        "() => [...document.querySelectorAll('.jp-RenderedMarkdown img')].map((i) => i.naturalWidth)"
    )
    assert len(badges) == 2 and all(w > 0 for w in badges), badges
    lab.execute("explorer.batch_size = 1")
    menu = lab.page.locator(f"{ROOT} .explorer-checkpoint select")
    assert menu.locator("option").all_text_contents() == ["step-000100", "step-000200"]
    assert menu.input_value() == "step-000200"
    # Two searches: the second adds to the selection instead of replacing it.
    chosen = _pick(lab, "math", [0, 1])
    chosen += _pick(lab, "prose", [0])
    lab.wait_for_kernel("len(explorer.selected_samples) == 3", timeout=20)
    assert sorted(eval(lab.execute("print(sorted(explorer.selected_samples))"))) == sorted(chosen)
    assert "s0" in chosen  # the sample the notebook's own trace store holds
    lab.page.evaluate(WATCH_PROGRESS)
    lab.page.locator(f"{ROOT} button.explorer-trace").click()
    lab.wait_for_kernel(
        "not explorer.running and explorer.current_routing()['sample_id'].n_unique() == 3",
        timeout=120,
    )
    lab.page.wait_for_function("() => window.__widths.at(-1) === '100%'", timeout=10_000)
    widths = lab.page.evaluate("() => window.__widths")
    assert any(w not in ("0%", "100%", "") for w in widths), widths  # batch by batch
    assert lab.execute("print(explorer.messages)").strip() == "[]"
    rows, diff = lab.execute(MATCHES_STORE.format(label="step-000200")).split()
    assert int(rows) > 0 and float(diff) < 1e-5
    # The views stream in as the Explorer's children, drawn in place.
    for view in ("grokviz-pathway-diagram", "grokviz-similarity-matrix"):
        selector = f"{ROOT} [data-testid={view}]"
        lab.page.locator(selector).wait_for(timeout=30_000)
        lab.page.wait_for_function(f"() => ({CANVAS_INK_JS})('{selector}').ink > 0", timeout=30_000)
    legend = lab.page.locator(
        f"{ROOT} [data-testid=grokviz-pathway-diagram] [data-testid=group-legend]"
    )
    assert {"math", "prose"} <= set((legend.text_content() or "").split()) | {
        t.strip() for t in legend.locator("[data-group]").all_text_contents()
    }
    lab.screenshot(lab.page.locator(ROOT), "explorer", readme=True)
    # An error shows in red and leaves the traced views in place.
    lab.page.locator(f"{ROOT} .explorer-source input").fill("no/such/folder")
    lab.page.locator(f"{ROOT} .explorer-source input").press("Enter")
    error = lab.page.locator(f"{ROOT} .explorer-errors pre")
    error.wait_for(timeout=20_000)
    assert "no/such/folder" in (error.text_content() or "")
    assert error.evaluate("e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
    assert lab.page.locator(f"{ROOT} [data-testid=grokviz-pathway-diagram]").count() == 1
