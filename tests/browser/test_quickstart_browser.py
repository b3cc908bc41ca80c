"""The shipped quickstart, run whole in a live JupyterLab, and what a newcomer does with its views.

The notebook (markdown included: its badges are images shipped in the repository) runs once, in
its small mode, on one page the tests of this module share; the page is checked for outside
requests and console errors when the module ends. On it the tests check what the issue asked
for: one colour per group in every view (read from the drawn pixels), the matrix's hit-testing
where cells are under 2 px, the timeline driving the linked views, the slider's keys and drag,
exports that describe themselves, widths from 600 px up with a redraw on resize, and the dark
theme. Screenshots go to tests/artifacts/ (quickstart_*.png).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import (
    ARTIFACTS,
    CANVAS_HASH_JS,
    CANVAS_INK_JS,
    REPO,
    TOY_CHECKPOINTS,
    TOY_OPERATIONS,
    TOY_STEPS,
    Lab,
    assert_ran_clean,
    watched_lab,
)

pytestmark = pytest.mark.browser

QUICKSTART = "notebooks/01_quickstart.ipynb"
DIAGRAM = "[data-testid=grokviz-pathway-diagram]"
MATRIX = "[data-testid=grokviz-similarity-matrix]"
TIMELINE = "[data-testid=grokviz-timeline]"

#: Pixels of one exact colour on the canvases under a selector (optionally one canvas testid).
COLOR_PIXELS_JS = """([selector, rgb]) => {
    const root = document.querySelector(selector);
    const canvases = root.tagName === 'CANVAS' ? [root] : [...root.querySelectorAll('canvas')];
    let n = 0;
    for (const canvas of canvases) {
        if (!canvas.width || !canvas.height) continue;
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] === rgb[0] && d[i + 1] === rgb[1] && d[i + 2] === rgb[2] && d[i + 3] === 255) n++;
        }
    }
    return n;
}"""

PIXEL_JS = """([selector, x, y]) => {
    const c = document.querySelector(selector);
    return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);
}"""


def _rgb(hex_: str) -> list[int]:
    return [int(hex_[i : i + 2], 16) for i in (1, 3, 5)]


@pytest.fixture(scope="module")
def qs(lab_server: Any, browser_context: Any) -> Iterator[Lab]:
    """The quickstart, run whole on one page shared by this module's tests."""
    with watched_lab(lab_server, browser_context, "quickstart") as lab:
        lab.open_existing(QUICKSTART)
        lab.run_all(timeout=240)
        for root in (TIMELINE, DIAGRAM, MATRIX):
            lab.page.locator(root).first.wait_for(timeout=60_000)
            lab.page.wait_for_function(
                f"() => document.querySelector('{root}').dataset.renderMs !== undefined",
                timeout=30_000,
            )
        yield lab


def test_quickstart_runs_clean_offline_and_every_view_draws(qs: Lab) -> None:
    cells = qs.cells()
    sources = [
        c.source
        for c in nbformat.read(REPO / QUICKSTART, as_version=4).cells
        if c.cell_type == "code"
    ]
    assert [c["source"] for c in cells] == sources  # the notebook as shipped, every code cell
    assert_ran_clean(cells, QUICKSTART)
    assert qs.execute("print(SMALL)").strip() == "True"
    # The badges are the repository's own images, loaded from the server, and they link out.
    badges = qs.page.evaluate(
        """() => [...document.querySelectorAll('.jp-RenderedMarkdown img')].map((i) => ({
            src: i.src, ok: i.complete && i.naturalWidth > 0,
            href: i.closest('a') ? i.closest('a').href : '' }))"""
    )
    assert len(badges) == 2, badges
    for badge in badges:
        assert badge["ok"] and "/docs/img/badges/" in badge["src"], badge
        assert re.match(r"https://(colab\.research\.google\.com|mybinder\.org)/", badge["href"])
    for root in (TIMELINE, DIAGRAM, MATRIX):
        assert qs.page.locator(root).count() == 1, root
        ink = qs.page.evaluate(CANVAS_INK_JS, root)
        assert ink["ink"] > 0.05 * ink["pixels"], (root, ink)
    assert qs.page.get_by_text("Error displaying widget").count() == 0
    # Each view says what it shows: the checkpoint and the one pathway definition of the notebook.
    for root in (DIAGRAM, MATRIX):
        title = qs.page.locator(f"{root} [data-testid=view-title]").text_content() or ""
        assert TOY_CHECKPOINTS[-1] in title, title
        subtitle = qs.page.locator(f"{root} [data-testid=view-subtitle]").text_content() or ""
        assert "top-2 experts per layer" in subtitle, subtitle
    assert "edit distance" in (
        qs.page.locator(f"{MATRIX} [data-testid=view-subtitle]").text_content() or ""
    )
    # The share cell wrote its page.
    assert "quickstart.html" in qs.execute("print(out)")
    for root, name in ((TIMELINE, "timeline"), (DIAGRAM, "diagram"), (MATRIX, "matrix")):
        qs.screenshot(qs.page.locator(root), f"quickstart_{name}")


def test_one_colour_per_group_in_the_diagram_the_matrix_and_the_timeline(qs: Lab) -> None:
    # Linked views share one palette: the notebook's, extended by the timeline's "global".
    assert (
        qs.execute("print(timeline.palette == diagram.palette == matrix.palette)").strip() == "True"
    )
    palette = json.loads(qs.execute("import json; print(json.dumps(timeline.palette.to_json()))"))
    assert (
        qs.execute("print(all(timeline.palette[g] == palette[g] for g in palette.groups))").strip()
        == "True"
    )
    operations = json.loads(qs.execute("print(json.dumps(sorted(samples['domain'].unique())))"))
    # Every view lists the operations in the palette's order, with its colours.
    for root in (TIMELINE, DIAGRAM, MATRIX):
        entries = qs.page.evaluate(
            f"""() => [...document.querySelectorAll('{root} [data-testid=group-legend] [data-group]')]
                .map((e) => [e.dataset.group, getComputedStyle(e.firstChild).getPropertyValue('--swatch').trim()])"""
        )
        shown = [g for g, _ in entries if g in operations]
        assert shown == [g for g in palette["groups"] if g in operations], (root, entries)
        for group, colour in entries:
            assert colour.upper() == palette["light"][group].upper(), (root, group, colour)
    for group in operations:
        rgb = _rgb(palette["light"][group])
        # The timeline's line and the matrix's group band are drawn in the colour, opaque.
        assert (
            qs.page.evaluate(COLOR_PIXELS_JS, [f"{TIMELINE} [data-testid=timeline-base]", rgb]) > 30
        ), group
        assert (
            qs.page.evaluate(COLOR_PIXELS_JS, [f"{MATRIX} [data-testid=matrix-base]", rgb]) > 60
        ), group
        # The diagram: hovering the group's legend entry draws its routes, full strength.
        qs.page.locator(f"{DIAGRAM} [data-testid=group-legend] [data-group='{group}']").hover()
        qs.page.wait_for_function(
            f"() => ({COLOR_PIXELS_JS})(['{DIAGRAM} [data-testid=pathway-overlay]', {rgb}]) > 30",
            timeout=10_000,
        )
        others = [g for g in operations if g != group]
        for other in others:  # and only that group's: no other group's colour on the overlay
            assert (
                qs.page.evaluate(
                    COLOR_PIXELS_JS,
                    [f"{DIAGRAM} [data-testid=pathway-overlay]", _rgb(palette["light"][other])],
                )
                == 0
            ), (group, other)
    qs.page.mouse.move(1, 1)


#: The 256-entry viridis table of js/src/color.ts (nine stops, linear in between).
VIRIDIS = [
    "#440154",
    "#472d7b",
    "#3b528b",
    "#2c728e",
    "#21918c",
    "#28ae80",
    "#5ec962",
    "#addc30",
    "#fde725",
]


def _viridis(index: int, size: int = 256) -> list[int]:
    stops = [_rgb(s) for s in VIRIDIS]
    t = index / (size - 1) * (len(stops) - 1)
    j = min(len(stops) - 2, int(t))
    f = t - j
    return [round(stops[j][c] * (1 - f) + stops[j + 1][c] * f) for c in range(3)]


def test_matrix_clicks_hit_the_cell_drawn_under_the_pointer_below_two_pixels(qs: Lab) -> None:
    ids = json.loads(qs.execute("import json; print(json.dumps(matrix.sample_ids))"))
    # Cells of 1.6 px: under 2 px, yet over one device pixel, so every pair is drawn (no means).
    side = round(1.6 * len(ids))
    qs.execute(f"matrix.size = {side}")
    qs.page.wait_for_function(
        f"() => JSON.parse(document.querySelector('{MATRIX}').dataset.matrix).side === {side}",
        timeout=10_000,
    )
    geo = json.loads(qs.page.evaluate(f"() => document.querySelector('{MATRIX}').dataset.matrix"))
    n, device, dpr = len(ids), geo["device"], geo["dpr"]
    assert device / dpr / n < 2, geo  # the cells really are under 2 px
    lo, hi = json.loads(qs.execute("print(json.dumps(matrix._range))"))
    overlay = qs.page.locator(f"{MATRIX} [data-testid=matrix-overlay]")
    for i, j in [(0, 1), (1, 0), (n - 1, n - 2), (17, 42), (30, 31), (31, 30)]:
        # A cell's first device pixel (cells of under 2 px have one or two), pointer in its middle.
        dy = -(-i * device // n)
        dx = -(-j * device // n)
        x = geo["left"] + (dx + 0.5) / dpr
        y = geo["top"] + (dy + 0.5) / dpr
        overlay.hover(position={"x": x, "y": y})
        tip = qs.page.locator(
            f"{MATRIX} [data-testid=grokviz-similarity-matrix-tooltip]"
        ).inner_text()
        assert tip.startswith(f"{ids[i]} × {ids[j]}"), (i, j, tip)
        overlay.click(position={"x": x, "y": y})
        qs.wait_for_kernel(f"matrix.selected_pair == {[ids[i], ids[j]]!r}", timeout=20)
        # What is drawn there is that pair's distance, in the fixed colour range.
        distance = float(
            qs.execute(
                f"print(matrix.distances()[matrix._ids.index({ids[i]!r}), matrix._ids.index({ids[j]!r})])"
            )
        )
        index = min(255, max(0, int((distance - lo) * 256 // (hi - lo))))
        px = qs.page.evaluate(
            PIXEL_JS,
            [
                f"{MATRIX} [data-testid=matrix-base]",
                round(geo["left"] * dpr) + dx,
                round(geo["top"] * dpr) + dy,
            ],
        )
        assert px[:3] == _viridis(index), (i, j, distance, px)
    # The pair's pathways, aligned by the browser, give the kernel's distance; the key says
    # what each kind of edit looks like.
    pair = qs.page.locator(f"{MATRIX} [data-testid=pair-alignment]")
    shown = re.search(r"alignment: (\d+)", pair.text_content() or "")
    assert shown is not None
    a, b = json.loads(qs.execute("print(json.dumps(matrix.selected_pair))"))
    expected = qs.execute(
        f"print(int(matrix.distances()[matrix._ids.index('{a}'), matrix._ids.index('{b}')]))"
    )
    assert int(shown.group(1)) == int(expected)
    key = qs.page.locator(f"{MATRIX} [data-testid=alignment-key]").text_content() or ""
    for word in ("substitution", "insertion", "deletion"):
        assert word in key
    qs.execute("matrix.size = None")


def test_a_timeline_click_moves_the_linked_diagram_and_matrix(qs: Lab) -> None:
    canvas = qs.page.locator(f"{TIMELINE} [data-testid=timeline-overlay]")
    layout = json.loads(
        qs.page.evaluate(f"() => document.querySelector('{TIMELINE}').dataset.layout")
    )
    (d0, d1), (r0, r1) = layout["x"]["domain"], layout["x"]["range"]
    target = TOY_STEPS[3]
    x = r0 + (target - d0) / (d1 - d0) * (r1 - r0)
    row = layout["rows"][0]
    before = qs.page.evaluate(CANVAS_HASH_JS, f"{DIAGRAM} [data-testid=pathway-base]")
    canvas.click(position={"x": x, "y": row["top"] + row["height"] / 2})
    label = TOY_CHECKPOINTS[3]
    qs.wait_for_kernel(f"timeline.step == {target}", timeout=20)
    assert qs.execute("print(diagram.checkpoint, matrix.checkpoint)").split() == [label, label]
    for root in (DIAGRAM, MATRIX, TIMELINE):
        qs.page.wait_for_function(
            f"() => document.querySelector('{root}').dataset.checkpoint === '{label}'",
            timeout=10_000,
        )
    assert qs.page.evaluate(CANVAS_HASH_JS, f"{DIAGRAM} [data-testid=pathway-base]") != before
    title = qs.page.locator(f"{TIMELINE} [data-testid=view-subtitle]").text_content() or ""
    assert f"{label} (step {target})" in title


def test_hovering_an_expert_highlights_its_samples_and_a_click_selects_them(qs: Lab) -> None:
    layout = json.loads(
        qs.page.evaluate(f"() => document.querySelector('{DIAGRAM}').dataset.layout")
    )
    panel = layout[-1]  # the current checkpoint's panel
    shown = panel["checkpoint"]
    # An expert the samples use at layer 1 of the shown checkpoint, per the kernel.
    expert = int(
        qs.execute(
            "from collections import Counter\n"
            f"print(Counter(e for s in diagram.sample_ids for e in diagram.pathway(s, {shown!r})[1]).most_common(1)[0][0])"
        )
    )
    overlay = qs.page.locator(f"{DIAGRAM} [data-testid=pathway-overlay]")
    x = panel["x0"] + panel["xStep"]
    y = panel["y0"] + expert * panel["yStep"]
    before = qs.page.evaluate(CANVAS_HASH_JS, f"{DIAGRAM} [data-testid=pathway-overlay]")
    overlay.hover(position={"x": x, "y": y})
    tip = qs.page.locator(f"{DIAGRAM} [data-testid=grokviz-pathway-diagram-tooltip]").inner_text()
    assert f"layer 1 · expert {expert} at {shown}" in tip, tip
    assert qs.page.evaluate(CANVAS_HASH_JS, f"{DIAGRAM} [data-testid=pathway-overlay]") != before
    # The rest is dimmed while the expert's routes are highlighted.
    assert (
        qs.page.evaluate(
            f"() => document.querySelector('{DIAGRAM} [data-testid=pathway-base]').style.opacity"
        )
        == "0.22"
    )
    overlay.click(position={"x": x, "y": y})
    want = qs.execute(
        f"print(sorted(s for s in diagram.sample_ids if {expert} in diagram.pathway(s, {shown!r})[1]))"
    )
    qs.wait_for_kernel(f"sorted(diagram.selected_samples) == {want.strip()}", timeout=20)
    count = re.search(r"^(\d+) samples", tip, re.M)
    assert count is not None and int(count.group(1)) == len(eval(want)), tip
    qs.execute("diagram.selected_samples = []")
    qs.page.mouse.move(1, 1)


def test_the_slider_steps_one_checkpoint_per_key_and_keeps_still_while_dragged(qs: Lab) -> None:
    qs.execute(f"timeline.checkpoint = {TOY_CHECKPOINTS[-1]!r}")
    track = qs.page.locator(f"{DIAGRAM} [data-testid=checkpoint-slider]")
    label = qs.page.locator(f"{DIAGRAM} [data-testid=checkpoint-label]")
    qs.page.wait_for_function(
        f"() => document.querySelector('{DIAGRAM} [data-testid=checkpoint-label]').textContent === '{TOY_CHECKPOINTS[-1]}'",
        timeout=10_000,
    )
    track.focus()
    qs.page.keyboard.press("ArrowLeft")
    qs.wait_for_kernel(f"diagram.checkpoint == {TOY_CHECKPOINTS[-2]!r}", timeout=20)
    assert qs.execute("print(timeline.checkpoint)").strip() == TOY_CHECKPOINTS[-2]  # linked
    qs.page.keyboard.press("ArrowLeft")
    qs.wait_for_kernel(f"diagram.checkpoint == {TOY_CHECKPOINTS[-3]!r}", timeout=20)
    qs.page.keyboard.press("ArrowRight")
    qs.wait_for_kernel(f"diagram.checkpoint == {TOY_CHECKPOINTS[-2]!r}", timeout=20)
    # Keys pressed faster than the view glides between checkpoints each count: they step from
    # the checkpoint the view is heading to, not from where the thumb is on its way there.
    for _ in range(3):
        qs.page.keyboard.press("ArrowLeft")
    qs.wait_for_kernel(f"diagram.checkpoint == {TOY_CHECKPOINTS[-5]!r}", timeout=20)
    assert track.get_attribute("aria-valuenow") == str(len(TOY_CHECKPOINTS) - 5)
    qs.page.keyboard.press("End")
    qs.wait_for_kernel(f"diagram.checkpoint == {TOY_CHECKPOINTS[-1]!r}", timeout=20)
    # Drag from the right end to the left: the track and the label keep their size, and the
    # position follows the pointer leftwards, then snaps to a checkpoint the kernel is told of.
    box = track.bounding_box()
    assert box is not None
    sizes, values = set(), []
    y = box["y"] + box["height"] / 2
    qs.page.mouse.move(box["x"] + box["width"] - 2, y)
    qs.page.mouse.down()
    for k in range(1, 9):
        qs.page.mouse.move(box["x"] + box["width"] * (1 - k / 10), y, steps=2)
        now = track.bounding_box()
        assert now is not None
        sizes.add((round(now["width"], 1), round(label.bounding_box()["width"], 1)))  # type: ignore[index]
        values.append(int(track.get_attribute("aria-valuenow") or -1))
    qs.page.mouse.up()
    assert len(sizes) == 1, sizes  # nothing moved while dragging
    assert values == sorted(values, reverse=True) and values[0] > values[-1], values
    final = TOY_CHECKPOINTS[int(track.get_attribute("aria-valuenow") or 0)]
    qs.wait_for_kernel(
        f"diagram.checkpoint == {final!r} and timeline.checkpoint == {final!r}", timeout=20
    )


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_png_and_svg_exports_carry_title_legend_checkpoint_and_colour_bar(
    qs: Lab, tmp_path: Path
) -> None:
    shown = qs.execute("print(diagram.checkpoint)").strip()
    for root, kind in (
        (DIAGRAM, "png"),
        (DIAGRAM, "svg"),
        (MATRIX, "svg"),
        (TIMELINE, "svg"),
        (TIMELINE, "png"),
    ):
        with qs.page.expect_download() as info:
            qs.page.locator(f"{root} [data-testid=export-{kind}]").click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        canvas = qs.page.locator(f"{root} canvas").first.bounding_box()
        assert canvas is not None
        if kind == "png":
            width, height = _png_size(path.read_bytes())
            # At twice the size, taller than the drawing: a header with title and legend above it.
            assert width >= 2 * canvas["width"] - 2, (root, width, canvas)
            assert height >= 2 * canvas["height"] + 60, (root, height, canvas)
            continue
        svg = path.read_text(encoding="utf-8")
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        for word in TOY_OPERATIONS:  # a negative-control group is labelled as one
            assert f">{word}</text>" in svg or f">{word} (control)</text>" in svg, (root, word)
        if root == DIAGRAM:
            assert "Pathways at" in svg and shown in svg and "top-2 experts per layer" in svg
        if root == MATRIX:
            assert "edit distance" in svg and "lower = more shared" in svg and "(shared)" in svg
            assert f"Pathway distances at {shown}" in svg
        if root == TIMELINE:
            assert "test accuracy" in svg and f"checkpoint: {shown}" in svg
    (ARTIFACTS / "exports").mkdir(parents=True, exist_ok=True)
    for file in tmp_path.iterdir():
        (ARTIFACTS / "exports" / file.name).write_bytes(file.read_bytes())


def _widths(qs: Lab) -> dict[str, tuple[float, float]]:
    """Each view's drawing width and the width its output area gives it."""
    return {
        root: tuple(
            qs.page.evaluate(
                f"""() => {{
                    const r = document.querySelector('{root}');
                    const c = r.querySelector('canvas');
                    const out = r.closest('.jp-OutputArea-output') || r.parentElement;
                    return [c.getBoundingClientRect().width, out.getBoundingClientRect().width];
                }}"""
            )
        )
        for root in (TIMELINE, DIAGRAM, MATRIX)
    }


def test_every_view_fits_the_notebook_width_and_redraws_on_resize(qs: Lab) -> None:
    def draws() -> int:
        return int(
            qs.page.evaluate(
                f"() => Number(document.querySelector('{DIAGRAM}').dataset.drawCount || 0)"
            )
        )

    def check(case: str) -> None:
        qs.page.wait_for_timeout(700)
        for root, (canvas, room) in _widths(qs).items():
            assert canvas <= room + 1, (case, root, canvas, room)  # never wider: no layer lost
            if root != MATRIX:  # the matrix stays square, at most 560 px wide
                assert canvas >= 0.85 * room, (case, root, canvas, room)
        for root in (TIMELINE, DIAGRAM, MATRIX):
            name = root.split("-")[-1].rstrip("]")
            qs.page.locator(root).screenshot(path=str(ARTIFACTS / f"quickstart_{name}_{case}.png"))

    before = draws()
    # A 1100 px window with JupyterLab's file browser open, as in the issue.
    qs.page.set_viewport_size({"width": 1100, "height": 1200})
    qs.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    check("1100")
    assert draws() > before  # the diagram redrew for the new width
    # Output areas 600 px wide: the narrowest the views are made for.
    qs.page.set_viewport_size({"width": 1600, "height": 1200})
    qs.page.evaluate(
        """() => { for (const o of document.querySelectorAll('.jp-OutputArea-output'))
                     o.style.maxWidth = '600px'; }"""
    )
    check("600")
    qs.page.evaluate(
        """() => { for (const o of document.querySelectorAll('.jp-OutputArea-output'))
                     o.style.maxWidth = ''; }"""
    )
    qs.page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    check("1600")


def test_the_views_follow_jupyterlab_into_the_dark_theme(qs: Lab) -> None:
    def background(root: str) -> list[int]:
        canvas = f"{root} canvas"
        return list(qs.page.evaluate(PIXEL_JS, [canvas, 2, 2]))[:3]

    for root in (TIMELINE, DIAGRAM, MATRIX):
        assert sum(background(root)) > 600, root  # light
    qs.page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    qs.page.wait_for_function(
        "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000
    )
    qs.page.wait_for_timeout(800)
    try:
        for root in (TIMELINE, DIAGRAM, MATRIX):
            assert sum(background(root)) < 150, root  # dark, like the notebook around it
            qs.page.locator(root).screenshot(
                path=str(ARTIFACTS / f"quickstart_{root.split('-')[-1].rstrip(']')}_dark.png")
            )
    finally:
        qs.page.evaluate(
            "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})"
        )
        qs.page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000
        )
