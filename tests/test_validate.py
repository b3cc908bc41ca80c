"""validate(): a metric that drifts with step is flagged; one that tracks each group is not.

Synthetic metrics tables with a known story: three groups whose test accuracy rises at clearly
different times and a control group whose accuracy stays at chance. In the first story the
metric of every group (control included) follows log(step) alone, so it correlates strongly
with every rising accuracy; in the second, each group's metric follows its own accuracy and the
control's stays flat.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from grokviz.metrics import validate
from grokviz.metrics.validate import REAL_MEAN

STEPS = [50, 100, 250, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4750, 5500]
RISE = {"mul": 800, "div": 2000, "add": 3600}


def _accuracy() -> pl.DataFrame:
    steps = np.array(STEPS, dtype=float)
    rows = []
    for task, t in RISE.items():
        acc = 0.03 + 0.95 / (1 + np.exp(-(steps - t) / 250))
        rows += [
            {"checkpoint": f"s{s}", "step": s, "task": task, "accuracy": a}
            for s, a in zip(STEPS, acc, strict=True)
        ]
    flat = 0.03 + 0.01 * np.sin(np.arange(len(STEPS)))
    rows += [
        {"checkpoint": f"s{s}", "step": s, "task": "random", "accuracy": a}
        for s, a in zip(STEPS, flat, strict=True)
    ]
    return pl.DataFrame(rows)


def _metrics(series: dict[str, np.ndarray], *, seed: int = 0, noise: float = 0.15) -> pl.DataFrame:
    """Metric rows with 60 replicates each: the series plus per-resample noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, values in series.items():
        reps = values[None] + rng.normal(0, noise / 2, size=(60, len(STEPS)))
        for j, s in enumerate(STEPS):
            rows.append(
                {
                    "checkpoint": f"s{s}",
                    "step": s,
                    "group": group,
                    "metric": "distance",
                    "value": float(values[j]),
                    "ci_low": None,
                    "ci_high": None,
                    "n_samples": 50,
                    "control": group == "random",
                    "replicates": reps[:, j].tolist(),
                }
            )
    return pl.DataFrame(rows)


def _acc_of(task: str) -> np.ndarray:
    return _accuracy().filter(task=task).sort("step")["accuracy"].to_numpy()


def test_a_metric_that_drifts_with_step_is_flagged_by_the_controls() -> None:
    rng = np.random.default_rng(1)
    z = np.log(STEPS)
    drift = {g: 30 - 2.0 * z + rng.normal(0, 0.15, size=len(STEPS)) for g in [*RISE, "random"]}
    metrics = _metrics(drift)
    accuracy = _accuracy()
    # the paper's evidence: a strong negative Spearman with every group's accuracy ...
    for g in RISE:
        assert stats.spearmanr(drift[g], _acc_of(g)).statistic < -0.8
    report = validate(metrics, accuracy, n_boot=500)
    assert report.groups == list(sorted(RISE)) and report.controls == ["random"]
    v = report.verdicts
    # ... but no group tracks its own generalization by the controls
    assert not v.filter(~pl.col("control"))["tracks"].any(), v
    # the half-change steps are all the same drift, so at most one group is "on time"
    assert v.filter(~pl.col("control"))["on_time"].sum() <= 1
    timing = report.timing.filter(pl.col("group") != "random")
    assert np.ptp(timing["half_change"].to_numpy()) < 0.5 * np.ptp(timing["half_rise"].to_numpy())
    # and the control, which never generalizes, moves just like the others: flagged
    control = v.filter(group="random").row(0, named=True)
    assert control["drifts"] and control["flagged"]
    text = report.to_markdown()
    assert "does not (only) track generalization" in text
    assert "the control group random drifts too" in text


def test_a_metric_that_tracks_each_group_passes_and_the_control_stays_clean() -> None:
    rng = np.random.default_rng(2)
    series = {g: 20 - 8 * _acc_of(g) + rng.normal(0, 0.1, size=len(STEPS)) for g in RISE}
    series["random"] = 20 + rng.normal(0, 0.1, size=len(STEPS))
    report = validate(_metrics(series, noise=0.1), _accuracy(), n_boot=500)
    v = report.verdicts
    real = v.filter(~pl.col("control"))
    assert real["tracks"].all(), real
    assert real["beyond_time"].all() and real["own_group"].all() and real["on_time"].all()
    control = v.filter(group="random").row(0, named=True)
    assert not control["flagged"], control
    timing = report.timing.filter(pl.col("group") != "random").sort("group")
    for row in timing.iter_rows(named=True):
        assert abs(row["lag"]) < 250, row  # the metric changes when its own accuracy rises
        assert row["half_change_low"] <= row["half_change"] <= row["half_change_high"]
    assert "tracks its own group's generalization in 3 of 3 groups" in report.summary()[0]
    assert "So it tracks generalization here." in report.summary()[0]


def test_validate_numbers_are_those_of_the_pieces() -> None:
    from grokviz.metrics import correlate, cross_partial, partial_correlation, rise_step

    rng = np.random.default_rng(3)
    series = {g: 20 - 8 * _acc_of(g) + rng.normal(0, 0.3, size=len(STEPS)) for g in RISE}
    series["random"] = 20 - 0.5 * np.log(STEPS) + rng.normal(0, 0.3, size=len(STEPS))
    metrics, accuracy = _metrics(series), _accuracy()
    report = validate(metrics, accuracy, n_boot=300)
    row = report.correlations.filter(group="div").row(0, named=True)
    assert row["partial_r"] == pytest.approx(
        partial_correlation(series["div"], _acc_of("div"), np.log1p(STEPS)), abs=1e-12
    )
    assert row["spearman_all"] == pytest.approx(
        stats.spearmanr(series["div"], _acc_of("div")).statistic
    )
    start = rise_step(STEPS, _acc_of("div"))
    assert report.rise_steps["div"] == start
    keep = np.array(STEPS) >= start
    assert row["spearman_rise"] == pytest.approx(
        stats.spearmanr(series["div"][keep], _acc_of("div")[keep]).statistic
    )
    others = [
        partial_correlation(series["div"], _acc_of(t), np.log1p(STEPS)) for t in ("add", "mul")
    ]
    assert row["partial_others_max"] == pytest.approx(min(others))  # distance: most negative
    direct = correlate(metrics.filter(group="div"), accuracy, n_boot=300).filter(task="div")
    assert row["partial_ckpt_low"] == pytest.approx(direct["partial_ckpt_low"][0])
    assert row["n_samples"] == 50
    # the control is compared with its own (chance) accuracy and the real groups' mean
    control = report.correlations.filter(group="random").row(0, named=True)
    assert control["task"] == "random"
    mean = cross_partial(
        metrics.filter(group="random"),
        report_accuracy(accuracy),
        groups=["random"],
        tasks=[REAL_MEAN],
    )
    assert report.cross.filter(group="random", task=REAL_MEAN)["partial_r"][0] == pytest.approx(
        mean["partial_r"][0]
    )


def report_accuracy(accuracy: pl.DataFrame) -> pl.DataFrame:
    real = accuracy.filter(pl.col("task").is_in(list(RISE)))
    mean = real.group_by("step").agg(pl.col("accuracy").mean()).with_columns(task=pl.lit(REAL_MEAN))
    return pl.concat(
        [accuracy.select("step", "task", "accuracy"), mean.select("step", "task", "accuracy")]
    )


def test_validate_without_replicates_says_so_and_bad_input_is_explained() -> None:
    rng = np.random.default_rng(4)
    series = {g: 20 - 8 * _acc_of(g) + rng.normal(0, 0.1, size=len(STEPS)) for g in RISE}
    metrics = _metrics(series).drop("replicates")
    report = validate(metrics, _accuracy(), n_boot=100)
    assert any("no replicates" in n for n in report.notes)
    assert report.correlations["partial_samples_low"].null_count() == report.correlations.height
    with pytest.raises(Exception, match="no group of the metrics table"):
        validate(metrics, _accuracy().with_columns(task=pl.lit("other")))
