"""The Timeline: what its chart draws, how a picked step drives linked views, offline mode."""

from __future__ import annotations

import re
import socket
from typing import Any

import polars as pl
import pytest
import traitlets

alt = pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from grokviz.errors import EmptyInputError  # noqa: E402
from grokviz.widgets.timeline import Timeline  # noqa: E402

STEPS = [100, 200, 300, 400, 500]
GROUPS = ["global", "Pretrain@100", "Pretrain@200"]


def _label(step: int) -> str:
    return f"step{step}-tokens{step * 4}M"


def _metrics() -> pl.DataFrame:
    rows: list[tuple[Any, ...]] = []
    for g, group in enumerate(GROUPS):
        for i, step in enumerate(STEPS):
            distance = 600.0 - 20 * i - 5 * g
            rows.append(
                (_label(step), step, group, "distance", distance, distance - 3, distance + 3)
            )
            rows.append((_label(step), step, group, "consistency", 0.5 + 0.05 * i, None, None))
    return pl.DataFrame(rows, schema=list(_columns()), orient="row")


def _columns() -> dict[str, Any]:
    return {
        "checkpoint": pl.String,
        "step": pl.Int64,
        "group": pl.String,
        "metric": pl.String,
        "value": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
    }


def _accuracy() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "checkpoint": [_label(s) for s in STEPS],
            "step": STEPS,
            "task": "math",
            "accuracy": [0.1, 0.2, 0.4, 0.6, 0.7],
        }
    )


def _pairs() -> pl.DataFrame:
    # Shaped like grokviz.metrics.pairing.pair_groups(...).pairs.
    return pl.DataFrame(
        {
            "domain": ["math", "math"],
            "train_group": ["Pretrain@100", "Pretrain@200"],
            "test_group": ["Test@300", "Test@500"],
            "train_step": [100, 200],
            "test_step": [300, 500],
            "delay": [200, 300],
            "similarity": [0.4, 0.3],
        }
    )


def _layers(spec: dict[str, Any], data: Any = None) -> list[dict[str, Any]]:
    """Every unit (non-composite) view of a Vega-Lite spec, depth first, with inherited data."""
    data = spec.get("data", data)
    out = []
    for key in ("vconcat", "hconcat", "concat", "layer"):
        for child in spec.get(key, []):
            out.extend(_layers(child, data))
    if "mark" in spec:
        out.append({**spec, "data": data})
    return out


def _mark(layer: dict[str, Any]) -> str:
    mark = layer["mark"]
    return str(mark["type"] if isinstance(mark, dict) else mark)


def _rows(spec: dict[str, Any], layer: dict[str, Any]) -> list[dict[str, Any]]:
    data = layer["data"]
    return list(spec["datasets"][data["name"]]) if "name" in data else list(data["values"])


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return Timeline(_metrics(), accuracy=_accuracy(), pairs=_pairs())


def test_one_row_per_metric_plus_the_delay_strip(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    assert len(spec["vconcat"]) == 3  # distance, consistency, delays
    titles = [
        layer["encoding"]["y"]["title"]
        for layer in _layers(spec)
        if _mark(layer) == "line" and layer["encoding"]["y"]["field"] == "value"
    ]
    assert titles == ["pathway distance", "pathway consistency"]


def test_lines_carry_every_group_and_the_metric_values(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    lines = [
        layer
        for layer in _layers(spec)
        if _mark(layer) == "line" and layer["encoding"]["y"]["field"] == "value"
    ]
    distance = pl.DataFrame(_rows(spec, lines[0]))
    assert sorted(distance["group"].unique()) == sorted(GROUPS)
    expected = _metrics().filter(pl.col("metric") == "distance")
    joined = expected.join(distance, on=["group", "step"], suffix="_drawn")
    assert joined.height == len(GROUPS) * len(STEPS)
    assert (joined["value"] == joined["value_drawn"]).all()
    assert lines[0]["encoding"]["color"]["field"] == "group"


def test_confidence_band_only_where_the_table_has_one(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    areas = [layer for layer in _layers(spec) if _mark(layer) == "area"]
    assert len(areas) == 1  # distance has intervals, consistency has none
    band = _rows(spec, areas[0])
    assert {r["metric"] for r in band} == {"distance"}
    assert all(r["ci_low"] < r["value"] < r["ci_high"] for r in band)


def test_accuracy_on_a_second_axis_in_every_metric_row(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    acc = [
        layer
        for layer in _layers(spec)
        if layer.get("encoding", {}).get("y", {}).get("field") == "accuracy"
    ]
    assert len(acc) == 2
    assert acc[0]["encoding"]["y"]["axis"]["orient"] == "right"
    assert [r["accuracy"] for r in _rows(spec, acc[0])] == _accuracy()["accuracy"].to_list()
    for row in spec["vconcat"][:2]:
        assert row["resolve"]["scale"]["y"] == "independent"


def test_onset_rules_at_memorization_and_generalization_steps(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    rules = [
        layer
        for layer in _layers(spec)
        if _mark(layer) == "rule" and "strokeDash" in layer.get("encoding", {})
    ]
    assert len(rules) == 2  # one rule layer per metric row
    drawn = {(r["group"], r["step"], r["kind"]) for r in _rows(spec, rules[0])}
    assert drawn == {
        ("Pretrain@100", 100, "memorization"),
        ("Pretrain@200", 200, "memorization"),
        ("Test@300", 300, "generalization"),
        ("Test@500", 500, "generalization"),
    }


def test_delay_arrows_run_from_memorization_to_generalization(timeline: Timeline) -> None:
    spec = timeline.chart.spec
    strip = _layers(spec["vconcat"][2])
    shafts = [layer for layer in strip if _mark(layer) == "rule"]
    heads = [layer for layer in strip if _mark(layer) == "point"]
    labels = [layer for layer in strip if _mark(layer) == "text"]
    assert shafts[0]["encoding"]["x"]["field"] == "train_step"
    assert shafts[0]["encoding"]["x2"]["field"] == "test_step"
    assert heads[0]["mark"]["shape"] == "triangle-right"
    arrows = _rows(spec, shafts[0])
    assert [(a["train_step"], a["test_step"]) for a in arrows] == [(100, 300), (200, 500)]
    assert [a["delay"] for a in _rows(spec, labels[0])] == [
        t - s for s, t in zip(_pairs()["train_step"], _pairs()["test_step"], strict=True)
    ]


def test_spec_renders_offline_with_the_drawn_text() -> None:
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(Timeline(_metrics(), pairs=_pairs()).chart.spec)
    for text in ("pathway distance", "pathway consistency", "grokking delay", "+200", "+300"):
        assert text in svg, text


def test_delay_computed_when_pairs_lack_it() -> None:
    pairs = pl.DataFrame({"group": ["Pretrain@100"], "train_step": [100], "test_step": [400]})
    t = Timeline(_metrics(), pairs=pairs)
    labels = [layer for layer in _layers(t.chart.spec["vconcat"][-1]) if _mark(layer) == "text"]
    assert [r["delay"] for r in _rows(t.chart.spec, labels[0])] == [300]


def _click(t: Timeline, step: int) -> None:
    """What the front end sends when the user clicks the point at ``step``."""
    t.chart._vl_selections = {
        "pick": {"value": {"vlPoint": {"or": [{"step": step}]}}, "store": [{"values": [step]}]}
    }


class _LabelView(traitlets.HasTraits):
    checkpoint = traitlets.Unicode(None, allow_none=True)


class _StepView(traitlets.HasTraits):
    checkpoint = traitlets.Int(None, allow_none=True)


def test_a_click_selects_the_checkpoint_and_moves_linked_views() -> None:
    t = Timeline(_metrics(), accuracy=_accuracy())
    by_label, by_step = _LabelView(), _StepView()
    assert t.link(by_label, by_step) is t
    _click(t, 300)
    assert (t.step, t.checkpoint) == (300, _label(300))
    assert by_label.checkpoint == _label(300)
    assert by_step.checkpoint == 300
    # The current-checkpoint rule follows through the synced param.
    assert t.chart._params["current_step"] == 300
    assert "step 300" in t.children[0].value


def test_a_linked_view_drives_the_timeline_back() -> None:
    t = Timeline(_metrics())
    view = _LabelView()
    t.link(view)
    view.checkpoint = _label(200)
    assert t.step == 200
    assert t.chart._params["current_step"] == 200
    t.unlink()
    view.checkpoint = _label(400)
    assert t.step == 200


def test_link_keeps_a_views_existing_choice() -> None:
    view = _LabelView(checkpoint=_label(400))
    t = Timeline(_metrics()).link(view)
    assert (t.step, view.checkpoint) == (400, _label(400))


def test_unknown_step_and_view_without_checkpoint_are_refused() -> None:
    t = Timeline(_metrics())
    with pytest.raises(traitlets.TraitError, match="step 150 is not on the Timeline"):
        t.step = 150
    with pytest.raises(TypeError, match="no 'checkpoint' trait"):
        t.link(traitlets.HasTraits())


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(EmptyInputError, match="metrics table is empty"):
        Timeline(_metrics().clear())
    with pytest.raises(ValueError, match=r"metric\(s\) \['entropy'\]"):
        Timeline(_metrics(), show=["entropy"])
    with pytest.raises(ValueError, match="lacks column"):
        Timeline(_metrics().drop("group"))


def test_offline_mode_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    alt.JupyterChart.enable_offline(False)
    online = alt.JupyterChart._esm
    assert re.search(r"https?://", online)  # the default loads Vega from a CDN

    def refuse(*args: Any, **kwargs: Any) -> None:
        msg = f"network access attempted: {args}"
        raise AssertionError(msg)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    t = Timeline(_metrics())
    esm = t.chart._esm
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?://""", esm)
    assert "cdn.jsdelivr" not in esm
    assert len(esm) > 100_000  # Vega itself is inside


def test_per_sample_onsets_add_their_rules() -> None:
    # Shaped like memorization_onsets / generalization_onsets output: one row per sample.
    onsets = pl.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "onset_step": [100, 100, 400, None],
            "group": ["Pretrain@100", "Pretrain@100", "Test@400", None],
        }
    )
    metrics = _metrics().filter(pl.col("group") == "global")
    spec = Timeline(metrics, onsets=onsets).chart.spec
    rules = [
        layer
        for layer in _layers(spec)
        if _mark(layer) == "rule" and "strokeDash" in layer.get("encoding", {})
    ]
    drawn = {(r["group"], r["step"], r["kind"]) for r in _rows(spec, rules[0])}
    assert drawn == {("Pretrain@100", 100, "memorization"), ("Test@400", 400, "generalization")}


# The metrics and accuracy of a run with operations as domains: accuracy per task, "all" overall.
DOMAINS = ["add", "sub"]


def _domain_metrics() -> pl.DataFrame:
    rows = [
        (_label(step), step, group, "distance", 500.0 - 10 * i - 7 * g, None, None)
        for g, group in enumerate(["global", *DOMAINS, "Pretrain@200"])
        for i, step in enumerate(STEPS)
    ]
    return pl.DataFrame(rows, schema=list(_columns()), orient="row")


def _domain_accuracy(tasks: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (_label(step), step, task, 0.1 * i + 0.05 * t)
            for t, task in enumerate(tasks)
            for i, step in enumerate(STEPS)
        ],
        schema=["checkpoint", "step", "task", "accuracy"],
        orient="row",
    )


def _accuracy_layer(spec: dict[str, Any]) -> dict[str, Any]:
    return next(
        layer
        for layer in _layers(spec)
        if layer.get("encoding", {}).get("y", {}).get("field") == "accuracy"
    )


def _metric_line(spec: dict[str, Any]) -> dict[str, Any]:
    return next(
        layer
        for layer in _layers(spec)
        if _mark(layer) == "line" and layer["encoding"]["y"]["field"] == "value"
    )


def test_accuracy_lines_are_coloured_by_group_on_the_metric_lines_scale() -> None:
    spec = Timeline(_domain_metrics(), accuracy=_domain_accuracy([*DOMAINS, "all"])).chart.spec
    acc, line = _accuracy_layer(spec), _metric_line(spec)
    assert "color" not in acc["mark"]  # no fixed grey
    assert acc["encoding"]["color"]["field"] == line["encoding"]["color"]["field"] == "group"
    assert acc["encoding"]["color"]["scale"] == line["encoding"]["color"]["scale"]
    assert spec["resolve"]["scale"]["color"] == "shared"
    # Each task's line is its domain's group; "all" is the global group.
    drawn = {(r["task"], r["group"]) for r in _rows(spec, acc)}
    assert drawn == {("add", "add"), ("sub", "sub"), ("all", "global")}
    # Told apart from the metric lines by its dash, which has a legend entry.
    assert acc["encoding"]["strokeDash"]["field"] == "line"
    dash = acc["encoding"]["strokeDash"]["scale"]
    assert dash["range"][dash["domain"].index("test accuracy")] not in ([], [1, 0])
    assert "strokeDash" not in line["encoding"]


def test_accuracy_lines_are_drawn_in_their_groups_colour() -> None:
    t = Timeline(_domain_metrics(), accuracy=_domain_accuracy([*DOMAINS, "all"]))
    metric_stroke: dict[str, str] = {}
    accuracy_style: dict[str, tuple[str, Any]] = {}
    for item in _scene_items(_scene(t.chart.spec), "line"):
        if "test accuracy:" in item["description"]:
            accuracy_style[_described(item, "task")] = (item["stroke"], item.get("strokeDash"))
        else:
            metric_stroke[_described(item, "group")] = item["stroke"]
            assert not item.get("strokeDash"), item
    assert set(accuracy_style) == {*DOMAINS, "all"}
    for task, (stroke, dash) in accuracy_style.items():
        assert stroke == metric_stroke["global" if task == "all" else task], task
        assert dash, task
    assert len({stroke for stroke, _ in accuracy_style.values()}) == 3


def test_accuracy_task_without_a_metric_group_gets_its_own_colour() -> None:
    # No "global" group: "all" stays "all"; a task no metric group has is added to the legend.
    metrics = _domain_metrics().filter(pl.col("group") != "global")
    spec = Timeline(metrics, accuracy=_domain_accuracy(["add", "all", "mul"])).chart.spec
    acc = _accuracy_layer(spec)
    assert {(r["task"], r["group"]) for r in _rows(spec, acc)} == {
        ("add", "add"),
        ("all", "all"),
        ("mul", "mul"),
    }
    assert acc["encoding"]["color"]["scale"]["domain"] == sorted(
        ["Pretrain@200", "add", "sub", "all", "mul"]
    )


def _scene(spec: dict[str, Any]) -> dict[str, Any]:
    """The Vega scenegraph of ``spec``, compiled by the Vega-Lite the offline widget bundles."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    return dict(vlc.vegalite_to_scenegraph(spec, vl_version=vl_version_for_vl_convert()))


def _described(item: dict[str, Any], key: str) -> str:
    """The value of ``key`` in a scenegraph item's ARIA description (``"key: value; ..."``)."""
    found = re.search(rf"(?:^|; ){key}: ([^;]+)", item["description"])
    assert found is not None, (key, item)
    return found.group(1)


def _scene_items(node: Any, marktype: str) -> list[dict[str, Any]]:
    """The first item of every series of ``marktype`` marks in a Vega scenegraph."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("marktype") == marktype and node.get("items"):
            out.append(node["items"][0])
        for value in node.values():
            out.extend(_scene_items(value, marktype))
    elif isinstance(node, list):
        for value in node:
            out.extend(_scene_items(value, marktype))
    return out


def _voronoi_tooltips(spec: dict[str, Any]) -> list[dict[str, str]]:
    """What Vega's tooltip shows on every nearest-point (voronoi) cell of the chart.

    The compiled Vega spec's tooltip expression of each voronoi layer is evaluated by Vega itself
    (in vl-convert) on every cell, by copying it into the cell's ARIA description, which the
    scenegraph keeps.
    """
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    fields = ("group", "checkpoint", "step", "value")
    vega = vlc.vegalite_to_vega(spec, vl_version=vl_version_for_vl_convert())

    def marks(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for mark in node.get("marks", []) for m in (mark, *marks(mark))]

    voronoi = [mark for mark in marks(vega) if mark.get("name", "").endswith("_voronoi")]
    assert voronoi, "no nearest-point layer in the chart"
    for mark in voronoi:
        tip = mark["encode"]["update"]["tooltip"]["signal"]
        text = " + '|' + ".join(f"({tip})['{field}']" for field in fields)
        mark["aria"] = True
        mark["encode"]["update"]["description"] = {"signal": text}
    scene = vlc.vega_to_scenegraph(vega)
    cells: list[dict[str, str]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("name", "")).endswith("_voronoi"):
                cells.extend(
                    dict(zip(fields, i["description"].split("|"), strict=True))
                    for i in node["items"]
                )
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(scene)
    return cells


def test_nearest_point_tooltip_names_the_points_group_and_checkpoint() -> None:
    metrics = _metrics()
    cells = _voronoi_tooltips(Timeline(metrics).chart.spec)
    assert len(cells) == metrics.height  # one cell per point, in both rows
    shown = pl.DataFrame(cells).with_columns(
        pl.col("step").cast(pl.Int64), pl.col("value").cast(pl.Float64)
    )
    assert "undefined" not in set(shown["group"]) | set(shown["checkpoint"])
    joined = shown.join(metrics, on=["group", "checkpoint", "step"], how="inner")
    # Each cell's tooltip is one real point: its group, checkpoint, step and (rounded) value.
    close = (joined["value"] - joined["value_right"]).abs() <= 5e-4 * joined["value_right"].abs()
    assert joined.filter(close).height == metrics.height


def test_every_group_has_its_own_colour_past_ten_groups() -> None:
    groups = ["global", *[f"Pretrain@{100 * k}" for k in range(1, 13)]]
    metrics = pl.DataFrame(
        [
            (_label(s), s, g, "distance", float(s + k), None, None)
            for k, g in enumerate(groups)
            for s in STEPS
        ],
        schema=list(_columns()),
        orient="row",
    )
    scene = _scene(Timeline(metrics).chart.spec)
    strokes = {_described(item, "group"): item["stroke"] for item in _scene_items(scene, "line")}
    assert set(strokes) == set(groups)
    assert len(set(strokes.values())) == len(groups)
