"""The Timeline, Python side: what it sends to draw, how a picked step drives linked views.

The synced tables are decoded back with pyarrow and compared with the metrics table they came
from; what the browser draws from them is tested in tests/browser/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import traitlets

from grokviz.errors import EmptyInputError, InputError
from grokviz.widgets import Palette, PathwayDiagram
from grokviz.widgets._serialization import ipc_to_table
from grokviz.widgets.timeline import Timeline

STEPS = [100, 200, 300, 400, 500]
GROUPS = ["global", "Pretrain@100", "Pretrain@200"]


def _label(step: int) -> str:
    return f"step{step}-tokens{step * 4}M"


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


def _decoded(t: Timeline, trait: str) -> pl.DataFrame:
    """A synced table with group and metric indices replaced by their names."""
    frame = pl.from_arrow(ipc_to_table(getattr(t, trait)))
    assert isinstance(frame, pl.DataFrame)
    groups = t._meta["groups"]
    frame = frame.with_columns(pl.col("group").map_elements(lambda g: groups[g], pl.String))
    if "step" in frame.columns:
        frame = frame.with_columns(pl.col("step").cast(pl.Int64))
    if "metric" in frame.columns:
        names = [m["name"] for m in t._meta["metrics"]]
        frame = frame.with_columns(pl.col("metric").map_elements(lambda m: names[m], pl.String))
    return frame


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return Timeline(_metrics(), accuracy=_accuracy(), pairs=_pairs())


def test_one_row_per_metric_with_titles_that_say_which_way_is_better(timeline: Timeline) -> None:
    assert [m["name"] for m in timeline._meta["metrics"]] == ["distance", "consistency"]
    titles = [m["title"] for m in timeline._meta["metrics"]]
    assert titles == [
        "pathway distance (lower = more shared)",
        "pathway consistency (higher = smoother)",
    ]
    assert timeline._meta["steps"] == STEPS
    assert timeline.checkpoints == [_label(s) for s in STEPS]


def test_every_metric_value_is_sent_with_its_band(timeline: Timeline) -> None:
    sent = _decoded(timeline, "_series")
    expected = _metrics()
    joined = expected.join(sent, on=["metric", "group", "step"], suffix="_sent")
    assert joined.height == expected.height == sent.height
    assert (joined["value"] == joined["value_sent"]).all()
    # The distance rows carry their interval; consistency has none (NaN, drawn without a band).
    distance = joined.filter(pl.col("metric") == "distance")
    assert (distance["ci_low"] == distance["ci_low_sent"]).all()
    assert joined.filter(pl.col("metric") == "consistency")["ci_low_sent"].is_nan().all()


def test_accuracy_lines_are_drawn_as_the_group_of_the_same_name() -> None:
    metrics = pl.concat(
        [
            _metrics(),
            _metrics().filter(pl.col("group") == "global").with_columns(group=pl.lit("math")),
        ]
    )
    accuracy = pl.concat([_accuracy(), _accuracy().with_columns(task=pl.lit("all"))])
    t = Timeline(metrics, accuracy=accuracy)
    sent = _decoded(t, "_accuracy")
    assert set(zip(sent["task"], sent["group"], strict=True)) == {
        ("math", "math"),
        ("all", "global"),
    }
    assert sent.filter(pl.col("task") == "math").sort("step")["accuracy"].to_list() == (
        _accuracy()["accuracy"].to_list()
    )
    # One colour per group: an accuracy line and its group's metric line share the palette entry.
    assert t.palette["math"] != t.palette["global"]


def test_no_phantom_groups_in_the_palette_or_legend() -> None:
    # Accuracy over all tasks, but no "global" metric group: "all" is drawn (and listed) as
    # itself, and nothing else appears that is not drawn.
    metrics = _metrics().filter(pl.col("group") != "global")
    t = Timeline(metrics, accuracy=_accuracy().with_columns(task=pl.lit("all")))
    drawn = set(_decoded(t, "_series")["group"]) | set(_decoded(t, "_accuracy")["group"])
    drawn |= set(_decoded(t, "_rules")["group"])
    assert set(t._meta["groups"]) == drawn == {"Pretrain@100", "Pretrain@200", "all"}
    # Accuracy rows carried in the metrics table (analyze(..., accuracy=)) are not a metric row.
    carried = pl.concat(
        [
            _metrics(),
            _accuracy().select(
                "checkpoint",
                "step",
                group="task",
                metric=pl.lit("accuracy"),
                value="accuracy",
                ci_low=pl.lit(None, pl.Float64),
                ci_high=pl.lit(None, pl.Float64),
            ),
        ],
        how="diagonal_relaxed",
    )
    t2 = Timeline(carried)
    assert [m["name"] for m in t2._meta["metrics"]] == ["distance", "consistency"]
    assert set(_decoded(t2, "_accuracy")["task"]) == {"math"}


def test_onset_rules_at_memorization_and_generalization_steps(timeline: Timeline) -> None:
    rules = _decoded(timeline, "_rules")
    drawn = {(g, int(s), int(k)) for g, s, k in rules.iter_rows()}
    assert drawn == {
        ("Pretrain@100", 100, 0),
        ("Pretrain@200", 200, 0),
        ("Test@300", 300, 1),
        ("Test@500", 500, 1),
    }


def test_delay_arrows_run_from_memorization_to_generalization(timeline: Timeline) -> None:
    pairs = _decoded(timeline, "_pairs")
    assert [
        (int(a), int(b)) for a, b in zip(pairs["train_step"], pairs["test_step"], strict=True)
    ] == [
        (100, 300),
        (200, 500),
    ]
    assert pairs["delay"].to_list() == [200.0, 300.0]
    assert pairs["label"].to_list() == ["Pretrain@100 → Test@300", "Pretrain@200 → Test@500"]
    computed = Timeline(
        _metrics(),
        pairs=pl.DataFrame({"group": ["Pretrain@100"], "train_step": [100], "test_step": [400]}),
    )
    assert _decoded(computed, "_pairs")["delay"].to_list() == [300.0]


def test_per_sample_onsets_add_their_rules() -> None:
    onsets = pl.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "onset_step": [100, 100, 400, None],
            "group": ["Pretrain@100", "Pretrain@100", "Test@400", None],
        }
    )
    t = Timeline(_metrics().filter(pl.col("group") == "global"), onsets=onsets)
    drawn = {(g, int(s), int(k)) for g, s, k in _decoded(t, "_rules").iter_rows()}
    assert drawn == {("Pretrain@100", 100, 0), ("Test@400", 400, 1)}


class _LabelView(traitlets.HasTraits):
    checkpoint = traitlets.Unicode(None, allow_none=True)


class _StepView(traitlets.HasTraits):
    checkpoint = traitlets.Int(None, allow_none=True)


def test_a_click_selects_the_checkpoint_and_moves_linked_views() -> None:
    t = Timeline(_metrics(), accuracy=_accuracy())
    by_label, by_step = _LabelView(), _StepView()
    assert t.link(by_label, by_step) is t
    # A click in the browser sets the synced checkpoint trait (as the front end's save_changes).
    t.set_state({"checkpoint": _label(300)})
    assert (t.step, t.checkpoint) == (300, _label(300))
    assert by_label.checkpoint == _label(300)
    assert by_step.checkpoint == 300
    t.step = 100
    assert t.checkpoint == _label(100) and by_label.checkpoint == _label(100)


def test_a_linked_view_drives_the_timeline_back_until_unlinked() -> None:
    t = Timeline(_metrics())
    view = _LabelView()
    t.link(view)
    view.checkpoint = _label(200)
    assert t.step == 200
    t.unlink()
    view.checkpoint = _label(400)
    assert t.step == 200


def test_link_keeps_a_views_existing_choice() -> None:
    view = _LabelView(checkpoint=_label(400))
    t = Timeline(_metrics()).link(view)
    assert (t.step, view.checkpoint) == (400, _label(400))


def _routing(steps: list[int]) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for step in steps:
        for s in range(3):
            for layer in range(2):
                rows.append(
                    (_label(step), step, f"s{s}", layer, rng.dirichlet(np.ones(4)).tolist())
                )
    return pl.DataFrame(
        rows, schema=["checkpoint", "step", "sample_id", "layer", "weights"], orient="row"
    )


def test_linking_widgets_links_them_in_the_kernel_and_in_exports_and_shares_one_palette(
    tmp_path: Path,
) -> None:
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link

    from grokviz.widgets._base import write_html
    from grokviz.widgets._links import BrowserLink

    samples = pl.DataFrame(
        {
            "sample_id": ["s0", "s1", "s2"],
            "domain": ["math", "code", "math"],
            "text": "x",
            "split": "train",
        }
    )
    diagram = PathwayDiagram(_routing(STEPS), samples=samples, top_k=2)
    metrics = pl.concat(
        [
            _metrics(),
            _metrics().filter(pl.col("group") == "global").with_columns(group=pl.lit("math")),
        ]
    )
    t = Timeline(metrics).link(diagram)
    # The kernel link, and the pair to tie in the browser of an exported page, not a live jslink:
    # with both live, changes faster than a round trip crossed and the views kept swapping.
    assert not [item for item in t._grokviz_links if isinstance(item, Link)]
    pairs = [item for item in t._grokviz_links if isinstance(item, BrowserLink)]
    assert [(lk.source, lk.target) for lk in pairs] == [
        ((t, "checkpoint"), (diagram, "checkpoint"))
    ]
    # One palette: the diagram's domains keep the hue they have in the Timeline and vice versa.
    assert t.palette == diagram.palette
    assert t._palette["light"]["math"] == diagram._palette["light"]["math"]
    assert diagram._palette["light"]["code"] != diagram._palette["light"]["math"]
    t.checkpoint = _label(200)
    assert diagram.checkpoint == _label(200)
    # An exported page ties the pair in the browser; the jslink made for it is closed afterwards.
    page = write_html([t, diagram], tmp_path / "linked.html").read_text(encoding="utf-8")
    assert len(re.findall(r'"model_name":\s*"LinkModel"', page)) == 1
    assert not [w for w in _instances.values() if isinstance(w, Link)]


def test_control_groups_are_marked_for_the_front_end() -> None:
    metrics = pl.concat(
        [
            _metrics().filter(pl.col("group") == "global"),
            _metrics().filter(pl.col("group") == "global").with_columns(group=pl.lit("random")),
        ]
    )
    t = Timeline(metrics, palette=Palette(["math"], controls=["random"]))
    assert t._palette["controls"] == ["random"]
    assert t._palette["labels"]["random"] == "random (control)"
    assert t._palette["light"]["random"] == Palette(["math"], controls=["random"])["random"]


def test_many_groups_get_ordered_shades_not_new_hues() -> None:
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
    t = Timeline(metrics)
    colours = [t._palette["light"][g] for g in groups[1:]]
    assert len(set(colours)) == 12  # every group its own colour
    # Ordered: lightness falls with the onset step (one hue, light to dark).
    lightness = [sum(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in colours]
    assert lightness == sorted(lightness, reverse=True)
    assert t._meta["groups"][:2] == ["global", "Pretrain@100"]
    assert t._meta["groups"][-1] == "Pretrain@1200"  # numeric, not text, order


def test_unknown_step_and_view_without_checkpoint_are_refused() -> None:
    t = Timeline(_metrics())
    with pytest.raises(traitlets.TraitError, match="step 150 is not on the Timeline"):
        t.step = 150
    with pytest.raises(traitlets.TraitError, match="is not on the Timeline"):
        t.checkpoint = "nope"
    with pytest.raises(InputError, match="no 'checkpoint' trait"):
        t.link(traitlets.HasTraits())


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(EmptyInputError, match="metrics table is empty"):
        Timeline(_metrics().clear())
    with pytest.raises(ValueError, match=r"metric\(s\) \['entropy'\]"):
        Timeline(_metrics(), show=["entropy"])
    with pytest.raises(ValueError, match="lacks column"):
        Timeline(_metrics().drop("group"))


def test_to_html_is_offline_and_keeps_the_series(tmp_path: Path) -> None:
    t = Timeline(_metrics(), accuracy=_accuracy())
    html = t.to_html(tmp_path / "timeline.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"""(src|href)=["']https?://""", html)
    match = re.search(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S
    )
    assert match is not None
    state = json.loads(match.group(1))["state"]
    ours = [m for m in state.values() if m["state"].get("_view") == "timeline"]
    assert len(ours) == 1
    assert {b["path"][0] for b in ours[0]["buffers"]} >= {"_series", "_accuracy", "_rules"}
