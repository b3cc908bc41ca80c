"""The README's screenshots, retaken from the real shipped run at full size (not small mode).

Skipped unless asked for; one command retakes them all, light and dark, after the shipped run
changes::

    GROKVIZ_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_screenshots.py

The quickstart runs whole in JupyterLab in its full mode (100 samples per operation, exact
metrics), in a 1600 px window; each view is captured as drawn there into docs/img/ (the Explorer's
picture comes from tests/browser/test_notebooks_browser.py, which the same variable refreshes).
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from .conftest import ARTIFACTS, DOCS_IMG, assert_ran_clean, update_screenshots, watched_lab

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not update_screenshots(), reason="set GROKVIZ_UPDATE_SCREENSHOTS=1 to retake them"
    ),
]

VIEWS = {
    "timeline": "[data-testid=grokviz-timeline]",
    "pathway_diagram": "[data-testid=grokviz-pathway-diagram]",
    "similarity_matrix": "[data-testid=grokviz-similarity-matrix]",
}


def test_readme_screenshots_from_the_full_quickstart(lab_server: Any, browser_context: Any) -> None:
    with watched_lab(lab_server, browser_context, "screenshots") as lab:
        lab.page.set_viewport_size({"width": 1600, "height": 1400})
        lab.open_existing("notebooks/01_quickstart.ipynb")
        # Full mode: the server runs kernels in the small mode, the notebook reads it from here.
        lab.execute("import os; os.environ['GROKVIZ_SMALL'] = '0'")
        lab.run_all(timeout=1200)
        assert_ran_clean(lab.cells(), "01 (full mode)")
        # The full mode's slice (not the shipped run's size, which may change).
        assert lab.execute("print(SMALL, per_op)").split() == ["False", "100"]
        lab.page.evaluate(
            "() => window.jupyterapp.commands.execute('application:toggle-left-area')"
        )
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for theme, suffix in (("JupyterLab Light", ""), ("JupyterLab Dark", "_dark")):
            lab.page.evaluate(
                f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})"
            )
            light = "true" if not suffix else "false"
            lab.page.wait_for_function(
                f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000
            )
            lab.page.wait_for_timeout(1500)
            for name, root in VIEWS.items():
                locator = lab.page.locator(root)
                locator.scroll_into_view_if_needed()
                path = ARTIFACTS / f"{name}{suffix}.png"
                locator.screenshot(path=str(path))
                shutil.copy(path, DOCS_IMG / f"{name}{suffix}.png")
        lab.page.evaluate(
            "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})"
        )
