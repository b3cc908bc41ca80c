"""The Timeline in a live JupyterLab: offline Vega draws it, a click picks a checkpoint."""

from __future__ import annotations

import re

import pytest

from .conftest import CANVAS_HASH_JS, CANVAS_INK_JS, TOY_CHECKPOINTS, TOY_STEPS, Lab

pytestmark = pytest.mark.browser

# The shipped toy run's metrics, as a user computes them: analyze() on its trace store (memorized
# training samples, global / per-operation / memorization groups; sampled pairs and a short
# bootstrap keep it to seconds), and its test accuracy per operation on the second axis.
SETUP = """
import polars as pl
import grokviz
from grokviz.data import sample_data_dir
from grokviz.metrics import analyze
from grokviz.widgets.timeline import Timeline

toy = sample_data_dir() / "toy"
store = grokviz.TraceStore.open(toy / "trace")
accuracy = pl.read_parquet(toy / "accuracy.parquet").filter(pl.col("task") != "all")
metrics = analyze(store, n_pairs=2000, n_boot=200, progress=False)
"""
SHOW = """
timeline = Timeline(
    metrics, accuracy=accuracy, show=["distance", "consistency", "loss"], width=560
)
timeline
"""
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
    # The middle of the first row, on a step axis from 0 to the last step: a checkpoint mid-run
    # (the nearest point in x and y, so not always the one nearest in x alone).
    canvas.click(position={"x": box["width"] / 2, "y": 60})
    lab.wait_for_kernel("timeline.step is not None", timeout=20)
    step = int(lab.execute("print(timeline.step)"))
    assert step in TOY_STEPS
    assert 0.2 * TOY_STEPS[-1] <= step <= 0.8 * TOY_STEPS[-1], step
    label = f"step-{step:06d}"
    assert lab.execute("print(timeline.checkpoint)").strip() == label
    # The kernel's answer comes back: caption text and the current-checkpoint rule.
    lab.page.locator(ROOT).get_by_text(f"{label} (step {step})").wait_for(timeout=10_000)
    lab.page.wait_for_function(f"() => ({CANVAS_HASH_JS})('{ROOT}') !== {before}", timeout=10_000)

    # Setting the checkpoint in Python moves the rule in the browser too.
    drawn = lab.page.evaluate(CANVAS_HASH_JS, ROOT)
    lab.execute(f"timeline.checkpoint = '{TOY_CHECKPOINTS[0]}'")
    first = f"{TOY_CHECKPOINTS[0]} (step {TOY_STEPS[0]})"
    lab.page.locator(ROOT).get_by_text(first).wait_for(timeout=10_000)
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
                # A point's tooltip: its step and value are a distance row of the metrics.
                point = re.search(r"step\s*([\d,]+)\s*value\s*([-+.\de]+)", text)
                assert point is not None, text
                step, value = int(point.group(1).replace(",", "")), float(point.group(2))
                assert step in TOY_STEPS, text
                found = lab.execute(
                    f"print(sorted(set(metrics.filter((pl.col('step') == {step})"
                    f" & ((pl.col('value') - {value}).abs() <= 5e-4 * abs({value})))['metric'])))"
                )
                assert "'distance'" in found, (text, found)
                # Its group and checkpoint (not "undefined"): the row of the metrics table at
                # that step with that value, under that group.
                assert "undefined" not in text, text
                shown = re.search(r"group\s*(.+?)\s*checkpoint\s*(step-\d{6})\s*step", text)
                assert shown is not None, text
                group, label = shown.group(1), shown.group(2)
                assert label == f"step-{step:06d}", text
                groups = lab.execute(
                    f"print(sorted(set(metrics.filter((pl.col('step') == {step})"
                    f" & (pl.col('checkpoint') == '{label}') & (pl.col('metric') == 'distance')"
                    f" & ((pl.col('value') - {value}).abs() <= 5e-4 * abs({value})))['group'])))"
                )
                assert repr(group) in groups, (text, groups)
                return
    pytest.fail("no tooltip appeared over the distance row")
