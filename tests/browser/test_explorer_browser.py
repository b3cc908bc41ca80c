"""The Explorer in a live JupyterLab: search, select, Trace, and watch the views fill."""

from __future__ import annotations

import pytest

from .conftest import CANVAS_INK_JS, Lab

pytestmark = pytest.mark.browser

# Two tiny OLMoE checkpoints (2 MoE layers of 8 experts) saved like a training run, next to
# the notebook, and a dozen samples of two domains.
SERIES = """
from pathlib import Path
import polars as pl
from grokviz.testing import char_tokenizer, tiny_moe

for seed, step in enumerate((100, 200)):
    folder = Path("run") / f"step-{step:06d}"
    if not folder.exists():
        tiny_moe("olmoe", seed=seed).save_pretrained(folder)
        char_tokenizer().save_pretrained(folder)
texts = [f"{a}+{b}={a + b}" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 9), (2, 2)]]
texts += ["def f(x): return x", "print('hi')", "for i in range(3): pass",
          "x = [1, 2]", "import os", "while True: break"]
samples = pl.DataFrame({
    "sample_id": [f"math-{i}" for i in range(6)] + [f"code-{i}" for i in range(6)],
    "text": texts, "domain": ["math"] * 6 + ["code"] * 6, "split": "train",
})
"""
SHOW = """
from grokviz.widgets import Explorer
explorer = Explorer("run", samples, batch_size=1)
explorer
"""
ROOT = ".grokviz-explorer"

# Record every width the progress bar takes, to see the trace arrive batch by batch.
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('.grokviz-explorer .explorer-progress .progress-bar');
    window.__widths = [bar.style.width];
    new MutationObserver(() => window.__widths.push(bar.style.width))
        .observe(bar, { attributes: true, attributeFilter: ['style'] });
}"""


def test_explorer_traces_selected_samples_into_the_views(lab: Lab) -> None:
    lab.open("explorer.ipynb", [SERIES, SHOW])
    lab.run_all(timeout=180)
    root = lab.page.locator(ROOT)
    root.wait_for(timeout=60_000)
    assert "step-000200" in (root.locator(".explorer-checkpoint select").input_value() or "")

    lab.page.locator(f"{ROOT} .explorer-search input").fill("math")
    options = root.locator(".explorer-table select option")
    lab.page.wait_for_function(
        f"() => document.querySelectorAll('{ROOT} .explorer-table select option').length === 6",
        timeout=10_000,
    )
    assert all(t.startswith("math-") for t in options.all_text_contents())
    root.locator(".explorer-table select").select_option(index=[0, 2, 3, 5])
    lab.wait_for_kernel("len(explorer.selected_samples) == 4", timeout=20)
    chosen = sorted(eval(lab.execute("print(sorted(explorer.selected_samples))")))
    assert chosen == ["math-0", "math-2", "math-3", "math-5"]

    lab.page.evaluate(WATCH_PROGRESS)
    root.locator("button.explorer-trace").click()
    lab.wait_for_kernel("not explorer.running and explorer.progress.value == 4", timeout=120)
    lab.page.wait_for_function("() => window.__widths.at(-1) === '100%'", timeout=10_000)
    widths = lab.page.evaluate("() => window.__widths")
    # Four batches of one sample: the bar passed through intermediate widths on its way.
    assert any(w not in ("0%", "100%", "") for w in widths), widths
    assert lab.execute("print(explorer.messages)").strip() == "[]"
    traced = eval(lab.execute("print(sorted(explorer.routing['sample_id'].unique()))"))
    assert traced == chosen

    diagram = f"{ROOT} [data-testid=grokviz-pathway-diagram]"
    lab.page.locator(diagram).wait_for(timeout=30_000)
    lab.page.wait_for_function(
        f"() => document.querySelector('{diagram}').dataset.renderMs !== undefined",
        timeout=30_000,
    )
    ink = lab.page.evaluate(CANVAS_INK_JS, f"{diagram} [data-testid=pathway-base]")
    assert ink["ink"] > 0.01 * ink["pixels"], ink
    matrix = f"{ROOT} [data-testid=grokviz-similarity-matrix]"
    lab.page.locator(matrix).wait_for(timeout=30_000)
    assert lab.page.evaluate(CANVAS_INK_JS, matrix)["ink"] > 0
    lab.screenshot(root, "explorer", readme=True)

    # An error shows in red and leaves the traced views in place.
    lab.page.locator(f"{ROOT} .explorer-source input").fill("no/such/folder")
    lab.page.locator(f"{ROOT} .explorer-source input").press("Enter")
    error = root.locator(".explorer-errors pre")
    error.wait_for(timeout=20_000)
    assert "no/such/folder" in (error.text_content() or "")
    color = error.evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(198, 40, 40)"
    assert lab.page.locator(diagram).count() == 1
