"""Correlations, fits, bootstrap and null bands against independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from grokviz.metrics import bootstrap_mean, correlate, fit_stats, null_band, shuffle_routing


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)  # no ties in these tests


def test_fit_stats_against_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = 0.5 * x + rng.normal(scale=0.4, size=12)
    out = fit_stats(x, y)
    assert out["n"] == 12
    assert out["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert out["spearman_r"] == pytest.approx(np.corrcoef(_ranks(x), _ranks(y))[0, 1], rel=1e-12)
    coef = np.polyfit(x, y, 1)
    resid = y - np.polyval(coef, x)
    assert out["mse"] == pytest.approx(np.mean(resid**2), rel=1e-10)
    assert out["r2"] == pytest.approx(1 - resid @ resid / np.sum((y - y.mean()) ** 2), rel=1e-10)
    # simple regression: R² is the squared Pearson r
    assert out["r2"] == pytest.approx(out["pearson_r"] ** 2, rel=1e-10)


def test_pearson_p_value_against_t_distribution() -> None:
    from scipy.stats import t as student_t

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=9), rng.normal(size=9)
    out = fit_stats(x, y)
    r, n = out["pearson_r"], 9
    t = r * math.sqrt((n - 2) / (1 - r * r))
    assert out["pearson_p"] == pytest.approx(2 * student_t.sf(abs(t), n - 2), rel=1e-8)


def test_fit_stats_degenerate_inputs_are_nan() -> None:
    assert math.isnan(fit_stats([1.0, 2.0], [1.0, 2.0])["pearson_r"])
    assert math.isnan(fit_stats([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])["r2"])
    out = fit_stats([1.0, np.nan, 2.0, 3.0, 4.0], [1.0, 9.0, 2.0, 3.0, 5.0])
    assert out["n"] == 4
    with pytest.raises(ValueError, match="equal length"):
        fit_stats([1.0, 2.0], [1.0])


def _metrics_frame(values: dict[tuple[str, str], list[float]], steps: list[int]) -> pl.DataFrame:
    rows = [
        {"checkpoint": f"ck{s}", "step": s, "group": g, "metric": m, "value": v}
        for (g, m), vals in values.items()
        for s, v in zip(steps, vals, strict=True)
    ]
    return pl.DataFrame(rows).with_columns(ci_low=None, ci_high=None)


def test_correlate_per_group_metric_task_and_from_step() -> None:
    steps = [0, 10, 20, 30, 40, 50]
    dist = [5.0, 6.0, 4.0, 3.5, 2.0, 1.0]
    cons = [0.1, 0.1, 0.2, 0.25, 0.3, 0.5]
    metrics = _metrics_frame({("global", "distance"): dist, ("math", "consistency"): cons}, steps)
    acc_vals = {"math": [0.0, 0.05, 0.1, 0.3, 0.4, 0.6], "code": [0.0, 0.0, 0.1, 0.1, 0.2, 0.15]}
    accuracy = pl.DataFrame(
        [
            {"checkpoint": f"ck{s}", "step": s, "task": t, "accuracy": a}
            for t, vals in acc_vals.items()
            for s, a in zip(steps, vals, strict=True)
        ]
    )
    out = correlate(metrics, accuracy)
    assert out.height == 4
    assert set(out.columns) >= {
        "group",
        "metric",
        "task",
        "pearson_r",
        "spearman_p",
        "mse",
        "r2",
        "n",
    }
    row = out.filter(group="global", metric="distance", task="math").row(0, named=True)
    assert row["pearson_r"] == pytest.approx(np.corrcoef(dist, acc_vals["math"])[0, 1])
    assert row["n"] == 6
    late = correlate(metrics, accuracy, from_step=20)
    row = late.filter(group="global", metric="distance", task="math").row(0, named=True)
    assert row["n"] == 4
    assert row["pearson_r"] == pytest.approx(np.corrcoef(dist[2:], acc_vals["math"][2:])[0, 1])
    assert row["spearman_r"] == pytest.approx(-1.0)


def test_correlate_skips_accuracy_rows_of_an_analyze_frame() -> None:
    steps = [0, 1, 2, 3]
    metrics = _metrics_frame({("global", "distance"): [4.0, 3.0, 2.5, 1.0]}, steps)
    acc = pl.DataFrame(
        {
            "checkpoint": [f"ck{s}" for s in steps],
            "step": steps,
            "task": "m",
            "accuracy": [0.1, 0.2, 0.3, 0.5],
        }
    )
    with_acc = pl.concat(
        [
            metrics,
            acc.select(
                "checkpoint",
                "step",
                pl.col("task").alias("group"),
                pl.lit("accuracy").alias("metric"),
                pl.col("accuracy").alias("value"),
                pl.lit(None, pl.Float64).alias("ci_low"),
                pl.lit(None, pl.Float64).alias("ci_high"),
            ),
        ],
        how="vertical_relaxed",
    )
    assert correlate(with_acc, acc)["metric"].to_list() == ["distance"]


def test_bootstrap_mean_is_seeded_and_covers() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(10.0, 2.0, size=400)
    mean, lo, hi = bootstrap_mean(v, seed=7)
    assert mean == pytest.approx(v.mean())
    assert (lo, hi) == bootstrap_mean(v, seed=7)[1:]
    # the percentile interval of the mean is close to mean ± 1.96 s/√n
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size)
    assert lo == pytest.approx(mean - half, abs=0.25 * half)
    assert hi == pytest.approx(mean + half, abs=0.25 * half)
    assert math.isnan(bootstrap_mean([3.0])[1])
    assert math.isnan(bootstrap_mean([])[0])


def test_shuffle_routing_modes_keep_what_they_promise() -> None:
    w = np.random.default_rng(4).dirichlet(np.ones(5), size=(6, 3))
    by_expert = shuffle_routing(w, mode="experts", seed=0)
    np.testing.assert_allclose(np.sort(by_expert, -1), np.sort(w, -1))
    assert not np.allclose(by_expert, w)
    by_sample = shuffle_routing(w, mode="samples", seed=0)
    for layer in range(3):  # each layer's rows are a permutation of the original rows
        a = sorted(map(tuple, w[:, layer]))
        b = sorted(map(tuple, by_sample[:, layer]))
        np.testing.assert_allclose(a, b)
    assert not np.allclose(by_sample, w)
    with pytest.raises(ValueError, match="mode"):
        shuffle_routing(w, mode="tokens")  # type: ignore[arg-type]


def test_null_band_flags_structure_and_not_noise() -> None:
    rng = np.random.default_rng(5)
    # every sample puts most weight on expert 0: structure that expert shuffling destroys
    w = rng.dirichlet(np.ones(8), size=(40, 2)) * 0.3
    w[:, :, 0] += 0.7
    metric = lambda x: float(x[:, :, 0].mean())  # noqa: E731
    band = null_band(w, metric, n_shuffles=50, seed=1)
    row = band.row(0, named=True)
    assert row["observed"] > row["null_high"]
    assert row["p_value"] == pytest.approx(1 / 51)
    assert band.equals(null_band(w, metric, n_shuffles=50, seed=1))
    iid = rng.dirichlet(np.ones(8), size=(40, 2))
    row = null_band(iid, metric, n_shuffles=50, seed=1).row(0, named=True)
    assert row["null_low"] <= row["observed"] <= row["null_high"]
    assert row["p_value"] > 0.05
