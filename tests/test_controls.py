"""The controls (partial correlation, bootstrap intervals, timing) against separate numpy / scipy
computations, and correlate()'s new columns."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from grokviz.metrics import (
    correlate,
    correlation_intervals,
    cross_partial,
    half_step,
    partial_correlation,
    rise_step,
    timing,
)


def _partial_by_formula(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """The textbook first-order partial correlation from the three pairwise Pearson r."""
    r = np.corrcoef(np.vstack([x, y, z]))
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    return float((rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2)))


def _partial_by_lstsq(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Residuals of ordinary least squares on [1, z] (numpy's lstsq), then Pearson r."""
    design = np.column_stack([np.ones_like(z), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(stats.pearsonr(rx, ry).statistic)


def test_partial_correlation_against_the_formula_and_least_squares() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = np.log1p(np.sort(rng.integers(10, 10_000, size=12)).astype(float))
        x = rng.normal() * z + rng.normal(size=12)
        y = rng.normal() * z + 0.5 * x + rng.normal(size=12)
        got = partial_correlation(x, y, z)
        assert got == pytest.approx(_partial_by_formula(x, y, z), abs=1e-10)
        assert got == pytest.approx(_partial_by_lstsq(x, y, z), abs=1e-10)
        ranked = partial_correlation(x, y, z, method="spearman")
        rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
        assert ranked == pytest.approx(_partial_by_formula(rx, ry, rz), abs=1e-10)


def test_partial_correlation_edge_cases() -> None:
    z = np.log1p([1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isnan(partial_correlation([1, 2, 3], [1, 2, 3], [1, 2, 3]))  # too few points
    assert math.isnan(partial_correlation(2 * z, [0.0, 1.0, 0.0, 1.0, 0.0], z))  # x = f(z)
    assert partial_correlation([1.0, np.nan, 3.0, 2.0, 5.0, 4.0], [1, 9, 3, 2, 5, 4], range(6)) == (
        pytest.approx(1.0)
    )
    with pytest.raises(ValueError, match="equal length"):
        partial_correlation([1, 2], [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="pearson"):
        partial_correlation(z, z, z, method="kendall")


def test_correlation_intervals_against_an_explicit_scipy_loop() -> None:
    rng = np.random.default_rng(1)
    steps = np.array([50, 100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000], dtype=float)
    y = 1 / (1 + np.exp(-(steps - 1500) / 400))
    x = -y + rng.normal(0, 0.1, size=steps.size)
    reps = x[None] + rng.normal(0, 0.05, size=(50, steps.size))
    got = correlation_intervals(x, y, steps, replicates=reps, n_boot=300, seed=7)
    z = np.log1p(steps)
    # the same draws, each resample's correlations computed by scipy one at a time
    idx = np.random.default_rng(7).integers(0, steps.size, size=(300, steps.size))
    boot: dict[str, list[float]] = {"pearson": [], "spearman": [], "partial": []}
    for row in idx:
        xs, ys, zs = x[row], y[row], z[row]
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            continue
        boot["pearson"].append(stats.pearsonr(xs, ys).statistic)
        boot["spearman"].append(stats.spearmanr(xs, ys).statistic)
        if np.ptp(zs) > 0:
            boot["partial"].append(_partial_by_formula(xs, ys, zs))
    for name, values in boot.items():
        lo, hi = np.quantile(values, [0.025, 0.975])
        assert got[f"{name}_ckpt_low"] == pytest.approx(lo, abs=1e-9), name
        assert got[f"{name}_ckpt_high"] == pytest.approx(hi, abs=1e-9), name
    sample_spearman = [stats.spearmanr(r, y).statistic for r in reps]
    lo, hi = np.quantile(sample_spearman, [0.025, 0.975])
    assert (got["spearman_samples_low"], got["spearman_samples_high"]) == pytest.approx((lo, hi))
    sample_partial = [_partial_by_formula(r, y, z) for r in reps]
    lo, hi = np.quantile(sample_partial, [0.025, 0.975])
    assert (got["partial_samples_low"], got["partial_samples_high"]) == pytest.approx((lo, hi))
    none = correlation_intervals(x, y, steps, n_boot=0)
    assert all(math.isnan(v) for v in none.values())


def test_half_step_interpolates_from_the_lowest_point_to_the_highest_after_it() -> None:
    steps = [0, 100, 200, 300, 400]
    # rises 0 -> 1 at the end; the half level 0.5 lies between 0.2 (at 100) and 0.8 (at 200)
    assert half_step(steps, [0.0, 0.2, 0.8, 0.9, 1.0]) == pytest.approx(150.0)
    # a distance that rises while memorizing, then falls: timed from its peak down to its minimum
    assert half_step(steps, [10.0, 14.0, 12.0, 11.0, 8.0], direction=-1) == pytest.approx(
        300 + (11.0 - 11.0) / (11.0 - 8.0) * 100
    )
    assert half_step(steps, [0.5] * 5) is None
    assert half_step(steps, [0.03, 0.04, 0.02, 0.05, 0.03], min_change=0.1) is None
    assert half_step(steps, [np.nan, 0.0, 1.0, np.nan, 1.0]) == pytest.approx(150.0)
    # a fall early on and a smaller one late: timed from the highest point, not the first
    assert half_step(steps, [9.0, 5.0, 12.0, 11.0, 10.0], direction=-1) == pytest.approx(300.0)
    assert half_step(steps, [1.0, 2.0, 3.0, 4.0, 5.0], direction=-1) is None  # never falls
    with pytest.raises(ValueError, match="direction"):
        half_step(steps, [0.0] * 5, direction=2)


@pytest.mark.parametrize("sustained", [False, True])
def test_half_step_against_a_dense_brute_force(sustained: bool) -> None:
    """Against a brute-force search on a fine linear interpolation of the series: the first
    point at or past half the change, or (sustained) the first of the points from which the
    curve stays there up to the peak."""
    rng = np.random.default_rng(2 + sustained)
    for _ in range(40):
        steps = np.sort(rng.choice(np.arange(10, 5000), size=9, replace=False)).astype(float)
        values = np.cumsum(rng.normal(size=9))
        got = half_step(steps, values, sustained=sustained)
        base = int(np.argmin(values))
        peak = base + int(np.argmax(values[base:]))
        if values[peak] == values[base]:
            assert got is None
            continue
        half = (values[peak] + values[base]) / 2
        fine = np.linspace(steps[base], steps[peak], 200_001)
        curve = np.interp(fine, steps, values)
        if sustained:
            expected = fine[np.flatnonzero(curve < half)[-1] + 1]
        else:
            expected = fine[np.argmax(curve >= half)]
        assert got == pytest.approx(expected, abs=(steps[peak] - steps[base]) / 100_000)
    rising = np.sort(rng.normal(size=9))  # one way only: both definitions agree
    grid = np.arange(9) * 100.0
    assert half_step(grid, rising, sustained=True) == pytest.approx(half_step(grid, rising))


def test_timing_goes_by_the_durable_rise_not_an_early_spike() -> None:
    steps = [0, 100, 200, 300, 400, 500]
    acc = pl.DataFrame({"step": steps, "task": "add", "accuracy": [0.0, 0.6, 0.05, 0.1, 0.9, 1.0]})
    m = pl.DataFrame(
        {"step": steps, "group": "add", "metric": "distance", "value": [9.0, 9, 8.8, 8.5, 3, 2]}
    )
    durable = timing(m, acc, tasks={"add": "add"}).row(0, named=True)
    first = timing(m, acc, tasks={"add": "add"}, sustained=False).row(0, named=True)
    assert first["half_rise"] == pytest.approx(100 * 0.5 / 0.6)  # the spike
    assert durable["half_rise"] == pytest.approx(300 + 100 * 0.4 / 0.8)  # from 0.1 to 0.9
    assert durable["half_change"] == first["half_change"]  # a one-way fall: the same either way
    assert abs(durable["lag"]) < abs(first["lag"])


def test_rise_step_is_the_last_checkpoint_below_a_quarter_of_the_rise() -> None:
    assert rise_step([1, 2, 3, 4, 5], [0.1, 0.12, 0.11, 0.6, 0.9]) == 3
    assert rise_step([1, 2, 3], [0.5, 0.8, 0.9]) == 1


def test_timing_and_its_intervals_over_replicates() -> None:
    steps = [100, 200, 300, 400, 500]
    value = [9.0, 9.5, 6.0, 5.0, 4.0]
    reps = [[9.0, 9.4 + 0.1 * k, 6.0 + 0.2 * k, 5.0, 4.0] for k in range(40)]
    metrics = pl.DataFrame(
        {
            "step": steps,
            "group": "g",
            "metric": "distance",
            "value": value,
            "replicates": [[r[j] for r in reps] for j in range(5)],
        }
    )
    acc = pl.DataFrame({"step": steps, "task": "g", "accuracy": [0.0, 0.1, 0.5, 0.9, 1.0]})
    acc_reps = {"g": np.array([[0.0, 0.1, 0.5 + 0.01 * k, 0.9, 1.0] for k in range(-20, 20)])}
    row = timing(metrics, acc, tasks={"g": "g"}, accuracy_replicates=acc_reps).row(0, named=True)
    assert row["half_change"] == pytest.approx(half_step(steps, value, direction=-1))
    assert row["half_rise"] == pytest.approx(half_step(steps, acc["accuracy"].to_list()))
    assert row["lag"] == pytest.approx(row["half_change"] - row["half_rise"])
    draws = [half_step(steps, r, direction=-1) for r in reps]
    assert row["half_change_low"] == pytest.approx(np.quantile(draws, 0.025))
    assert row["half_change_high"] == pytest.approx(np.quantile(draws, 0.975))
    rises = [half_step(steps, r) for r in acc_reps["g"]]
    assert row["half_rise_low"] == pytest.approx(np.quantile(rises, 0.025))
    assert row["change"] == pytest.approx(9.5 - 4.0)
    assert row["relative_change"] == pytest.approx(5.5 / 9.5)


def test_cross_partial_against_the_formula() -> None:
    rng = np.random.default_rng(3)
    steps = [50, 100, 200, 400, 800, 1600, 3200]
    z = np.log1p(steps)
    acc = {t: np.sort(rng.uniform(size=7)) for t in ("a", "b")}
    value = -acc["a"] + rng.normal(0, 0.05, size=7)
    metrics = pl.DataFrame({"step": steps, "group": "a", "metric": "distance", "value": value})
    accuracy = pl.DataFrame(
        {"step": steps * 2, "task": ["a"] * 7 + ["b"] * 7, "accuracy": [*acc["a"], *acc["b"]]}
    )
    out = cross_partial(metrics, accuracy, groups=["a"], tasks=["a", "b"])
    for task in ("a", "b"):
        got = out.filter(task=task)["partial_r"][0]
        assert got == pytest.approx(_partial_by_formula(value, acc[task], z), abs=1e-10)
    late = cross_partial(metrics, accuracy, groups=["a"], tasks=["a"], from_step={"a": 200})
    assert late["n"][0] == 5
    assert late["partial_r"][0] == pytest.approx(
        _partial_by_formula(value[2:], acc["a"][2:], z[2:]), abs=1e-10
    )


def test_correlate_gains_partial_intervals_and_sample_counts() -> None:
    rng = np.random.default_rng(4)
    steps = [50, 100, 250, 500, 1000, 2000, 4000, 8000]
    acc = np.array([0.02, 0.03, 0.1, 0.3, 0.6, 0.8, 0.9, 0.95])
    value = 10 - 5 * acc + rng.normal(0, 0.2, size=8)
    reps = value[None] + rng.normal(0, 0.2, size=(30, 8))
    metrics = pl.DataFrame(
        {
            "checkpoint": [str(s) for s in steps],
            "step": steps,
            "group": "add",
            "metric": "distance",
            "value": value,
            "ci_low": None,
            "ci_high": None,
            "n_samples": [40, 40, 40, 39, 40, 40, 40, 40],
            "replicates": reps.T.tolist(),
        }
    )
    accuracy = pl.DataFrame(
        {"checkpoint": [str(s) for s in steps], "step": steps, "task": "add", "accuracy": acc}
    )
    row = correlate(metrics, accuracy, n_boot=200).row(0, named=True)
    z = np.log1p(steps)
    assert row["partial_r"] == pytest.approx(_partial_by_formula(value, acc, z), abs=1e-10)
    t = row["partial_r"] * math.sqrt((8 - 3) / (1 - row["partial_r"] ** 2))
    assert row["partial_p"] == pytest.approx(2 * stats.t.sf(abs(t), 5))
    assert row["n_samples"] == 39
    expected = correlation_intervals(value, acc, steps, replicates=reps, n_boot=200)
    for name, v in expected.items():
        assert row[name] == pytest.approx(v), name
    assert row["spearman_ckpt_low"] <= row["spearman_r"] <= row["spearman_ckpt_high"]
    # a frame without the extra columns still correlates (no sample intervals, no counts)
    plain = correlate(metrics.drop("n_samples", "replicates"), accuracy, n_boot=50).row(
        0, named=True
    )
    assert plain["n_samples"] is None and plain["spearman_samples_low"] is None
    assert plain["spearman_r"] == pytest.approx(row["spearman_r"])
