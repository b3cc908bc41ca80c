"""The live view: a Timeline and a PathwayDiagram made once and updated in place as a monitor
observes (the widgets' synced traits change, the widgets stay the same objects), and the frame
the Timeline draws from the live metrics. The view of a store another process writes is tested
with ``grokviz watch`` in tests/test_watch.py."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from grokviz.errors import InputError
from grokviz.monitor import LiveView, Monitor, OnlineCriterion
from grokviz.monitor._live_view import timeline_frame
from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples


def _monitor(folder: Path) -> Monitor:
    return Monitor(
        tiny_samples(8, domains=("a", "b")),
        folder,
        tokenizer=char_tokenizer(),
        every=1,
        criterion=OnlineCriterion(eps=5.0, window=2),
        on_error="raise",
    )


def test_the_timeline_and_diagram_grow_in_place_as_the_monitor_observes(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path / "run")
    view = LiveView(monitor, diagram=True, diagram_options={"top_k": 2})
    assert view.timeline is None and view.diagram is None and view.views() == []

    monitor.observe(tiny_moe(seed=0), 0)
    timeline, diagram = view.timeline, view.diagram
    assert timeline is not None and diagram is not None
    assert timeline.steps == [0] and list(timeline.checkpoints) == ["step-000000"]
    assert list(diagram.checkpoints) == ["step-000000"]
    series, meta = timeline._series, dict(timeline._meta)
    assert [m["name"] for m in meta["metrics"]] == ["distance", "consistency", "loss", "memorized"]
    assert set(meta["groups"]) == {"global", "a", "b"}
    timeline.checkpoint = "step-000000"  # the user picks a step; it stays picked

    changed: list[str] = []
    timeline.observe(lambda change: changed.append(change["name"]), names=["_series", "_meta"])
    for step in (1, 2):
        monitor.observe(tiny_moe(seed=step), step)
    assert view.timeline is timeline and view.diagram is diagram  # updated, not replaced
    assert timeline.steps == [0, 1, 2] and timeline._meta["steps"] == [0, 1, 2]
    assert timeline._series != series and "_series" in changed
    assert timeline.checkpoint == "step-000000"
    # the diagram's checkpoint list grew; it was at the newest checkpoint, so it moved on
    assert list(diagram.checkpoints) == ["step-000000", "step-000001", "step-000002"]
    assert diagram.checkpoint == "step-000002"
    diagram.checkpoint = "step-000001"  # the user looks back: the diagram stays there
    monitor.observe(tiny_moe(seed=3), 3)
    assert diagram.checkpoint == "step-000001" and len(diagram.checkpoints) == 4

    # the values drawn are the monitor's own
    drawn = timeline_frame(monitor.metrics, monitor.memorization, sample_set="probe")
    want = monitor.metrics.filter(pl.col("group") == "probe", pl.col("metric") == "distance")
    got = drawn.filter(pl.col("group") == "global", pl.col("metric") == "distance")
    assert got["value"].to_list() == want.sort("step")["value"].to_list()

    view.stop()  # stops listening: a new observation leaves the views alone
    before = timeline._series
    monitor.observe(tiny_moe(seed=4), 4)
    assert timeline._series == before and timeline.steps == [0, 1, 2, 3]


def test_a_view_of_a_store_reads_what_is_there_and_refreshes(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path / "run")
    for step in (0, 5):
        monitor.observe(tiny_moe(seed=step), step)
    view = LiveView(
        tmp_path / "run",
        sample_set="memorized",
        show=["memorized", "distance"],
        criterion=OnlineCriterion(eps=5.0, window=2),
    )
    assert view.timeline is not None and view.timeline.steps == [0, 5]
    assert [m["name"] for m in view.timeline._meta["metrics"]] == ["memorized", "distance"]
    assert view.refresh() == 0
    monitor.observe(tiny_moe(seed=9), 9)  # as another writer would
    assert view.refresh() == 1 and view.timeline.steps == [0, 5, 9]
    assert "3 observations" in repr(view)
    with pytest.raises(InputError, match="criterion= is for a view of a store folder"):
        LiveView(monitor, criterion=OnlineCriterion(eps=1.0))


def test_timeline_frame_adds_the_memorized_fraction_and_checks_the_set() -> None:
    metrics = pl.DataFrame(
        {
            "checkpoint": "s1",
            "step": 1,
            "group": ["probe", "probe:a", "memorized", "Pretrain@1"],
            "metric": "distance",
            "value": [3.0, 2.0, 1.0, 0.5],
            "ci_low": None,
            "ci_high": None,
        }
    )
    memorization = pl.DataFrame(
        {
            "checkpoint": "s1",
            "step": 1,
            "sample_id": ["x", "y", "z", "c"],
            "domain": ["a", "a", "b", "random"],
            "memorized": [True, False, True, True],
            "control": [False, False, False, True],
        }
    )
    frame = timeline_frame(metrics, memorization, sample_set="memorized")
    assert frame.filter(pl.col("metric") == "distance")["group"].to_list() == ["global"]
    fraction = dict(frame.filter(pl.col("metric") == "memorized").select("group", "value").rows())
    assert fraction == {"a": 0.5, "b": 1.0, "global": 2 / 3}  # controls are not counted
    assert all(math.isfinite(v) for v in frame["value"])
    with pytest.raises(InputError, match="sample_set must be one of"):
        timeline_frame(metrics, memorization, sample_set="test")


def test_timeline_update_keeps_the_widget_as_it_was_when_a_table_is_refused() -> None:
    from grokviz.errors import EmptyInputError
    from grokviz.widgets import Timeline

    m = pl.DataFrame(
        {
            "checkpoint": ["s1", "s2"],
            "step": [1, 2],
            "group": "global",
            "metric": "distance",
            "value": [5.0, 4.0],
            "ci_low": None,
            "ci_high": None,
        }
    )
    timeline = Timeline(m)
    timeline.checkpoint = "s2"
    series, meta = timeline._series, dict(timeline._meta)
    with pytest.raises(EmptyInputError):
        timeline.update(m.clear())
    with pytest.raises(InputError, match="not in the metrics table"):
        timeline.update(m, show=["consistency"])
    assert timeline._series == series and timeline._meta == meta
    assert timeline.steps == [1, 2] and timeline.checkpoint == "s2"
    timeline.update(m.filter(pl.col("step") == 1))  # s2 is gone: unselected
    assert timeline.steps == [1] and timeline.checkpoint is None and timeline._series != series
