"""The reports' evidence helpers against separate scipy / numpy computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from grokviz.toy.shared.evidence import critical_r, drift_simulation, routing_shape, trend_to_noise

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "samples" / "toy"


@pytest.mark.parametrize(("n", "fixed"), [(5, 0), (5, 1), (10, 1), (14, 0)])
def test_critical_r_is_where_the_t_test_crosses_alpha(n: int, fixed: int) -> None:
    r = critical_r(n, held_fixed=fixed)
    df = n - 2 - fixed
    t = r * np.sqrt(df / (1 - r * r))
    assert 2 * stats.t.sf(t, df) == pytest.approx(0.05, abs=1e-9)
    if fixed == 0:  # without a held variable it is scipy's Pearson test
        x = np.arange(n, dtype=float)
        rng = np.random.default_rng(n)
        # a y whose correlation with x is exactly r: orthogonal noise mixed in
        noise = rng.normal(size=n)
        noise -= noise.mean()
        noise -= (noise @ (x - x.mean())) / ((x - x.mean()) @ (x - x.mean())) * (x - x.mean())
        xs = (x - x.mean()) / np.linalg.norm(x - x.mean())
        y = r * xs + np.sqrt(1 - r * r) * noise / np.linalg.norm(noise)
        assert stats.pearsonr(x, y).pvalue == pytest.approx(0.05, abs=1e-9)


def test_drift_simulation_against_a_plain_loop() -> None:
    out = drift_simulation(n_checkpoints=6, trend_to_noise=3.0, n_draws=400, seed=3)
    rng = np.random.default_rng(3)
    steps = np.geomspace(1, 100, 6)
    z = np.log1p(steps)
    trend = -(z - z.min()) / (z.max() - z.min())
    acc = np.sort(rng.uniform(size=(400, 6)), axis=1)
    metric = trend[None] + rng.normal(0, 1 / 3.0, size=(400, 6))
    rho = [stats.spearmanr(m, a).statistic for m, a in zip(metric, acc, strict=True)]
    assert out["share_spearman_le_-0.9"] == pytest.approx(np.mean(np.array(rho) <= -0.9))
    assert out["median_spearman"] == pytest.approx(np.median(rho))


def test_trend_to_noise_of_a_line_with_known_scatter() -> None:
    steps = np.geomspace(10, 10_000, 40)
    z = np.log1p(steps)
    resid = np.tile([0.1, -0.1], 20)
    value = 2.0 * z + resid
    slope, _ = np.polyfit(z, value, 1)
    fit_resid = value - np.polyval(np.polyfit(z, value, 1), z)
    expected = abs(slope) * (z.max() - z.min()) / fit_resid.std(ddof=2)
    assert trend_to_noise(steps, value) == pytest.approx(expected)


@pytest.mark.skipif(not (SHIPPED / "trace").is_dir(), reason="no shipped trace")
def test_routing_shape_of_the_shipped_trace_by_hand() -> None:
    from scipy.stats import entropy

    from grokviz.store import TraceStore

    store = TraceStore.open(SHIPPED / "trace")
    label, step = store.checkpoints().select("checkpoint", "step").row(-1)
    shape = routing_shape(store, checkpoints=[label])
    ids = store.samples().filter(pl.col("split") == "train")["sample_id"].to_list()
    w, _ = store.routing_array(label, sample_ids=ids)
    w = np.asarray(w, dtype=np.float64)
    row = shape.filter(step=step).row(0, named=True)
    # scipy renormalises each distribution; the float32 weights sum to 1 within ~1e-7
    assert row["entropy"] == pytest.approx(np.mean(entropy(w, axis=-1)), rel=1e-6)
    assert row["largest_weight"] == pytest.approx(w.max(axis=-1).mean())
    lengths = [
        next(k + 1 for k, c in enumerate(np.cumsum(np.sort(v)[::-1])) if c > 0.7)
        for v in w.reshape(-1, w.shape[-1])
    ]
    assert row["pathway_length"] == pytest.approx(np.mean(lengths))
    assert row["pathway_share"] == pytest.approx(np.mean(lengths) / w.shape[-1])
