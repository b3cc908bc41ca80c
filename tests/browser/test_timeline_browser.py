"""The Timeline in a live JupyterLab: offline Vega draws it, a click picks a checkpoint."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_HASH_JS, CANVAS_INK_JS, Lab

pytestmark = pytest.mark.browser

# Five checkpoints, three groups, distance falling and consistency rising as accuracy rises,
# two paired groups: enough for every layer of the chart.
SETUP = """
import polars as pl
from grokviz.widgets.timeline import Timeline

steps = [100, 200, 300, 400, 500]
rows = []
for g, group in enumerate(["global", "Pretrain@100", "Pretrain@200"]):
    for i, step in enumerate(steps):
        d = 600.0 - 20 * i - 5 * g
        rows.append((f"step{step}", step, group, "distance", d, d - 4, d + 4))
        rows.append((f"step{step}", step, group, "consistency", 0.5 + 0.05 * i + 0.01 * g, None, None))
metrics = pl.DataFrame(
    rows, schema=["checkpoint", "step", "group", "metric", "value", "ci_low", "ci_high"],
    orient="row",
)
accuracy = pl.DataFrame({"checkpoint": [f"step{s}" for s in steps], "step": steps,
                         "task": "math", "accuracy": [0.1, 0.2, 0.4, 0.6, 0.7]})
pairs = pl.DataFrame({"train_group": ["Pretrain@100", "Pretrain@200"],
                      "test_group": ["Test@300", "Test@500"],
                      "train_step": [100, 200], "test_step": [300, 500]})
"""
SHOW = "timeline = Timeline(metrics, accuracy=accuracy, pairs=pairs, width=480)\ntimeline"
ROOT = ".grokviz-timeline"


def test_timeline_draws_offline_and_a_click_sets_the_checkpoint(lab: Lab) -> None:
    lab.open("timeline.ipynb", [SETUP, SHOW])
    lab.run_all()
    canvas = lab.page.locator(f"{ROOT} canvas").first
    canvas.wait_for(timeout=60_000)
    lab.page.wait_for_function(f"() => ({CANVAS_INK_JS})('{ROOT}').ink > 5000", timeout=30_000)
    ink = lab.page.evaluate(CANVAS_INK_JS, ROOT)
    assert ink["canvases"] == 1
    assert ink["ink"] > 0.03 * ink["pixels"]
    lab.screenshot(lab.page.locator(ROOT), "timeline", readme=True)

    before = lab.page.evaluate(CANVAS_HASH_JS, ROOT)
    box = canvas.bounding_box()
    assert box is not None
    # The middle of the first row: the nearest point is at the middle step, 300.
    canvas.click(position={"x": box["width"] / 2, "y": 60})
    lab.wait_for_kernel("timeline.step is not None", timeout=20)
    step = int(lab.execute("print(timeline.step)"))
    assert step == 300
    assert lab.execute("print(timeline.checkpoint)").strip() == "step300"
    # The kernel's answer comes back: caption text and the current-checkpoint rule.
    lab.page.locator(ROOT).get_by_text("step300 (step 300)").wait_for(timeout=10_000)
    lab.page.wait_for_function(f"() => ({CANVAS_HASH_JS})('{ROOT}') !== {before}", timeout=10_000)

    # Setting the checkpoint in Python moves the rule in the browser too.
    drawn = lab.page.evaluate(CANVAS_HASH_JS, ROOT)
    lab.execute("timeline.checkpoint = 'step500'")
    lab.page.locator(ROOT).get_by_text("step500 (step 500)").wait_for(timeout=10_000)
    lab.page.wait_for_function(f"() => ({CANVAS_HASH_JS})('{ROOT}') !== {drawn}", timeout=10_000)


def test_timeline_tooltip_on_hover(lab: Lab) -> None:
    lab.open("timeline_hover.ipynb", [SETUP, SHOW])
    lab.run_all()
    canvas = lab.page.locator(f"{ROOT} canvas").first
    canvas.wait_for(timeout=60_000)
    lab.page.wait_for_function(f"() => ({CANVAS_INK_JS})('{ROOT}').ink > 5000", timeout=30_000)
    box = canvas.bounding_box()
    assert box is not None
    tooltip = lab.page.locator("#vg-tooltip-element")
    # Sweep the first row until the pointer lands on a point and Vega shows its tooltip.
    for y in range(20, 110, 3):
        for x in range(40, int(box["width"]) - 40, 6):
            canvas.hover(position={"x": x, "y": y})
            text = tooltip.text_content() or "" if tooltip.count() else ""
            if "value" in text and tooltip.is_visible():
                # A point's tooltip: its group, checkpoint, step and value.
                assert "group" in text and "step" in text
                assert re.search(r"step\s*[1-5]00", text), text
                return
    pytest.fail("no tooltip appeared over the distance row")
