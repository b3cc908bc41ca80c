"""The page ``grokviz report`` writes, opened from a file with no kernel and no network.

Its three views draw, the timeline drives the diagram and the matrix in the page itself, a matrix
click shows the pair's alignment, and the correlation table is there. Any request leaving the
machine or a console error fails the test (the page's own, not a Jupyter one: no server at all).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, REPO, SAMPLE_DATA, TOY_CHECKPOINTS, Watched

pytestmark = pytest.mark.browser

TIMELINE = "[data-testid=grokviz-timeline]"
DIAGRAM = "[data-testid=grokviz-pathway-diagram]"
MATRIX = "[data-testid=grokviz-similarity-matrix]"


def test_the_report_page_works_offline_with_every_view_linked(
    browser_context: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    toy = SAMPLE_DATA / "toy"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grokviz",
            "report",
            str(toy / "trace"),
            "--accuracy",
            str(toy / "accuracy.parquet"),
            "--out",
            str(out),
            "--samples-per-group",
            "6",
            "--n-pairs",
            "300",
            "--top-k",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    watched = Watched(browser_context)
    page = watched.page
    try:
        page.goto(out.as_uri())
        for root in (TIMELINE, DIAGRAM, MATRIX):
            page.locator(root).wait_for(timeout=60_000)
            page.wait_for_function(
                f"() => document.querySelector('{root}').dataset.renderMs !== undefined",
                timeout=60_000,
            )
            assert page.locator(root).get_attribute("data-checkpoint") == TOY_CHECKPOINTS[-1]
        # The timeline moves the other two with no kernel: the links live in the page.
        layout = page.evaluate(
            f"() => JSON.parse(document.querySelector('{TIMELINE}').dataset.layout)"
        )
        (d0, d1), (r0, r1) = layout["x"]["domain"], layout["x"]["range"]
        step = int(TOY_CHECKPOINTS[2].split("-")[1])
        x = r0 + (step - d0) / (d1 - d0) * (r1 - r0)
        page.locator(f"{TIMELINE} [data-testid=timeline-overlay]").click(
            position={"x": x, "y": layout["rows"][0]["top"] + 30}
        )
        for root in (TIMELINE, DIAGRAM, MATRIX):
            page.wait_for_function(
                f"() => document.querySelector('{root}').dataset.checkpoint === '{TOY_CHECKPOINTS[2]}'",
                timeout=15_000,
            )
        # A matrix cell shows its pair's alignment (computed in the page).
        geo = page.evaluate(f"() => JSON.parse(document.querySelector('{MATRIX}').dataset.matrix)")
        page.locator(f"{MATRIX} [data-testid=matrix-overlay]").click(
            position={"x": geo["left"] + geo["side"] * 0.75, "y": geo["top"] + geo["side"] * 0.25}
        )
        page.locator(f"{MATRIX} [data-testid=pair-alignment]").get_by_text("alignment:").wait_for(
            timeout=10_000
        )
        # The slider steps the diagram by one checkpoint, in the page alone.
        page.locator(f"{DIAGRAM} [data-testid=checkpoint-slider]").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"() => document.querySelector('{DIAGRAM}').dataset.checkpoint === '{TOY_CHECKPOINTS[3]}'",
            timeout=15_000,
        )
        table = page.locator("[data-testid=report-correlations]")
        assert table.locator("tbody tr").count() >= 5
        assert "spearman_r" in (table.locator("thead").text_content() or "")
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    finally:
        watched.close("report")
    watched.check()
