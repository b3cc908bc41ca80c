"""The harness itself, proved on a minimal inline anywidget: it draws, clicks sync to the kernel."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import CANVAS_HASH_JS, CANVAS_INK_JS, Lab, LabServer

pytestmark = pytest.mark.browser

# Four bars whose heights come from the kernel; a click selects the bar under the pointer,
# repaints it and sends the selection back. Nothing of grokviz is involved.
BARS_WIDGET = '''
import anywidget
import traitlets

class Bars(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
        el.setAttribute('data-testid', 'bars');
        const canvas = document.createElement('canvas');
        canvas.width = 200;
        canvas.height = 100;
        el.appendChild(canvas);
        const draw = () => {
            const ctx = canvas.getContext('2d');
            const values = model.get('values');
            const selected = model.get('selected');
            ctx.fillStyle = '#ffffff';
            ctx.fillRect(0, 0, 200, 100);
            const top = Math.max(...values);
            values.forEach((v, i) => {
                ctx.fillStyle = selected.includes(i) ? '#d62728' : '#1f77b4';
                const h = 90 * v / top;
                ctx.fillRect(i * 50 + 5, 100 - h, 40, h);
            });
        };
        canvas.addEventListener('click', (event) => {
            const box = canvas.getBoundingClientRect();
            const i = Math.floor((event.clientX - box.left) / 50);
            model.set('selected', [i]);
            model.save_changes();
        });
        model.on('change:values', draw);
        model.on('change:selected', draw);
        draw();
    }
    export default { render };
    """
    values = traitlets.List([]).tag(sync=True)
    selected = traitlets.List([]).tag(sync=True)

bars = Bars(values=[1, 3, 2, 5])
bars
'''


def test_inline_widget_draws_and_syncs_a_click(lab: Lab) -> None:
    lab.open("harness.ipynb", [BARS_WIDGET])
    lab.run_all()
    canvas = lab.page.locator("[data-testid=bars] canvas")
    canvas.wait_for(timeout=30_000)

    ink = lab.page.evaluate(CANVAS_INK_JS, "[data-testid=bars]")
    assert ink["canvases"] == 1
    # Four bars of heights 18..90 px over 40 px: far more than a stray pixel, less than all.
    assert 0.2 * ink["pixels"] < ink["ink"] < 0.8 * ink["pixels"]

    before = lab.page.evaluate(CANVAS_HASH_JS, "[data-testid=bars]")
    canvas.click(position={"x": 125, "y": 95})  # the third bar
    lab.wait_for_kernel("bars.selected == [2]", timeout=20)
    assert lab.execute("print(bars.selected)").strip() == "[2]"
    lab.page.wait_for_function(
        f"() => ({CANVAS_HASH_JS})('[data-testid=bars]') !== {before}", timeout=10_000
    )

    # And the other way: a change made in the kernel is drawn.
    lab.execute("bars.values = [5, 1, 1, 1]")
    lab.page.wait_for_function(
        f"() => ({CANVAS_INK_JS})('[data-testid=bars]').ink < {ink['ink']}", timeout=10_000
    )
    lab.screenshot(canvas, "harness_bars")


def test_requests_leaving_the_machine_are_caught(lab: Lab) -> None:
    # (Not a Jupyter API page: their Content-Security-Policy would block the fetches first.)
    lab.page.set_content("<p>a page that tries to reach a CDN</p>")
    lab.page.evaluate(
        """async () => {
            for (const url of ['https://cdn.jsdelivr.net/npm/vega@5', 'http://example.com/x.png']) {
                try { await fetch(url, { mode: 'no-cors' }); } catch (e) { /* aborted */ }
            }
        }"""
    )
    assert sorted(lab.outside) == [
        "http://example.com/x.png",
        "https://cdn.jsdelivr.net/npm/vega@5",
    ]
    lab.outside.clear()  # caught as intended: the fixture must not fail this test for them
    lab.watched.errors.clear()  # nor for the console's "failed to load" errors they caused


def test_console_errors_are_caught(lab: Lab) -> None:
    lab.page.set_content("<p>a page that logs an error</p>")
    lab.page.evaluate("() => console.error('something broke')")
    lab.page.evaluate("() => setTimeout(() => { throw new Error('uncaught'); }, 0)")
    lab.page.wait_for_timeout(200)
    assert lab.watched.errors[0] == "error: something broke"
    assert any("uncaught" in e for e in lab.watched.errors[1:])
    lab.watched.errors.clear()


def test_lab_server_fetches_no_news_and_checks_no_updates(lab_server: LabServer) -> None:
    def get(path: str) -> str:
        with urllib.request.urlopen(f"{lab_server.url}{path}", timeout=30) as response:
            return str(response.read().decode())

    assert json.loads(get("/lab/api/news")) == {"news": []}
    assert json.loads(get("/lab/api/update")) == {"notification": None}
    assert '"news": {"disabled": true}' in get("/lab")
    log = lab_server.log.read_text()
    # Had either tried to reach the internet, the offline machine would have logged the failure.
    assert "Failed to get announcements" not in log
    assert "pypi" not in log.lower()
