"""Statistics that validate a metric: correlation with accuracy, linear fits, intervals, null bands.

The paper validates pathway metrics by Pearson and Spearman correlation with test accuracy across
checkpoints, restricted to checkpoints after accuracy begins its sustained rise, and by linear fits
(MSE, R²). grokviz adds bootstrap intervals of group means and a null band from shuffled routing,
so a trend can be told from noise. Everything returns polars frames or plain floats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from grokviz import schema
from grokviz.errors import InputError

__all__ = [
    "bootstrap_mean",
    "correlate",
    "fit_stats",
    "null_band",
    "shuffle_routing",
]

_FIT_COLUMNS = ("pearson_r", "pearson_p", "spearman_r", "spearman_p", "mse", "r2")


def fit_stats(x: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Pearson and Spearman correlation (with p-values) and a least-squares line ``y ~ x``.

    Parameters
    ----------
    x
        The metric across checkpoints.
    y
        Accuracy at the same checkpoints.

    Returns
    -------
    dict
        ``pearson_r, pearson_p, spearman_r, spearman_p, mse, r2, n``: ``mse`` is the mean squared
        residual of the fitted line, ``r2`` its coefficient of determination. Values are NaN with
        fewer than 3 points or when either series is constant (correlation undefined).

    Examples
    --------
    >>> out = fit_stats([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4])
    >>> round(out["pearson_r"], 6), round(out["r2"], 6), out["n"]
    (1.0, 1.0, 4)
    """
    from scipy import stats

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        msg = f"x and y must be 1-d and of equal length, got shapes {xs.shape} and {ys.shape}"
        raise InputError(msg)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    n = int(xs.size)
    out: dict[str, float] = dict.fromkeys(_FIT_COLUMNS, math.nan)
    out["n"] = n
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    pr = stats.pearsonr(xs, ys)
    sr = stats.spearmanr(xs, ys)
    slope, intercept = np.polyfit(xs, ys, 1)
    resid = ys - (slope * xs + intercept)
    ss_res = float(resid @ resid)
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    out.update(
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_r=float(sr.statistic),
        spearman_p=float(sr.pvalue),
        mse=ss_res / n,
        r2=1.0 - ss_res / ss_tot,
    )
    return out


_INTERVAL_COLUMNS = tuple(
    f"{stat}_{kind}_{end}"
    for stat in ("pearson", "spearman", "partial")
    for kind in ("ckpt", "samples")
    for end in ("low", "high")
)


def _partial_p(r: float, n: int) -> float:
    """Two-sided p-value of a partial correlation with one variable held fixed (df = n - 3)."""
    from scipy import stats

    if not math.isfinite(r) or n < 4:
        return math.nan
    if abs(r) >= 1.0:
        return 0.0
    t = r * math.sqrt((n - 3) / (1.0 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 3))


def correlate(
    metrics: pl.DataFrame,
    accuracy: pl.DataFrame,
    *,
    from_step: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Correlate every metric series with every accuracy series across checkpoints, with controls.

    Series are matched on ``step``; ``accuracy`` rows of the metrics frame itself (as
    :func:`~grokviz.metrics.analyze` adds them) are ignored. Following the paper, pass
    ``from_step`` (the step at which accuracy begins its sustained rise) to use only checkpoints
    from there on.

    Beside the paper's Pearson and Spearman correlations, every row carries the controls of
    :mod:`~grokviz.metrics.controls`: the partial correlation holding ``log(1 + step)`` fixed
    (a metric and an accuracy that both merely drift with training time have none), and
    percentile bootstrap intervals of all three correlations over checkpoints (resampling the
    checkpoints, ``n_boot`` times) and over samples (from the metrics frame's ``replicates``
    column: each resample of the group's samples gives one metric series; NaN when the frame
    has none). Rows with ``task`` other than the group's own compare a group's metric with
    another group's accuracy: a metric that tracks its own group follows them less.

    Parameters
    ----------
    metrics
        A metrics table (:data:`grokviz.schema.METRICS`), e.g. from :func:`analyze`.
    accuracy
        An accuracy table (:data:`grokviz.schema.ACCURACY`): ``checkpoint, step, task, accuracy``.
    from_step
        Keep only checkpoints with ``step >= from_step``.
    n_boot
        Resamples of the checkpoints for the ``*_ckpt_*`` intervals (0: none).
    confidence
        Coverage of the intervals.
    seed
        Seed of the checkpoint resamples.

    Returns
    -------
    pl.DataFrame
        One row per ``(group, metric, task)``: ``pearson_r, pearson_p, spearman_r, spearman_p,
        mse, r2, n`` (see :func:`fit_stats`; fits of accuracy on the metric), ``n_samples``
        (the fewest samples behind the metric at any of the checkpoints; null when the frame
        does not say), ``partial_r, partial_p`` and the intervals ``{pearson, spearman,
        partial}_{ckpt, samples}_{low, high}``.

    Examples
    --------
    >>> import polars as pl
    >>> m = pl.DataFrame({"checkpoint": list("abcd"), "step": [1, 2, 3, 4], "group": "global",
    ...     "metric": "distance", "value": [9.0, 7.0, 6.0, 2.0], "ci_low": None, "ci_high": None})
    >>> acc = pl.DataFrame({"checkpoint": list("abcd"), "step": [1, 2, 3, 4], "task": "math",
    ...     "accuracy": [0.1, 0.2, 0.4, 0.5]})
    >>> out = correlate(m, acc)
    >>> out["spearman_r"].to_list(), round(out["partial_r"][0], 2)
    ([-1.0], -0.23)
    """
    from grokviz.metrics.controls import correlation_intervals, partial_correlation

    metrics = schema.conform(metrics, schema.METRICS, name="metrics")
    # analyze(..., accuracy=) carries accuracy rows in the metrics frame; not a metric to test
    metrics = metrics.filter(pl.col("metric") != "accuracy")
    accuracy = schema.conform(accuracy, schema.ACCURACY, name="accuracy")
    if from_step is not None:
        metrics = metrics.filter(pl.col("step") >= from_step)
        accuracy = accuracy.filter(pl.col("step") >= from_step)
    acc = accuracy.group_by("task", "step").agg(pl.col("accuracy").mean())
    keep = ["group", "metric", "step", "value"]
    keep += [c for c in ("n_samples", "replicates") if c in metrics.columns]
    joined = metrics.select(keep).join(acc, on="step", how="inner")
    rows = []
    for (group, metric, task), part in joined.group_by(
        ["group", "metric", "task"], maintain_order=True
    ):
        part = part.sort("step")
        x = part["value"].to_numpy().astype(np.float64)
        y = part["accuracy"].to_numpy().astype(np.float64)
        steps = part["step"].to_numpy().astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats_ = fit_stats(x, y)
        partial = partial_correlation(x, y, np.log1p(steps))
        reps = _replicates(part)
        intervals = correlation_intervals(
            x, y, steps, replicates=reps, n_boot=n_boot, confidence=confidence, seed=seed
        )
        n_samples = part["n_samples"].min() if "n_samples" in part.columns else None
        rows.append(
            {
                "group": group,
                "metric": metric,
                "task": task,
                **stats_,
                "n_samples": n_samples,
                "partial_r": partial,
                "partial_p": _partial_p(partial, int(stats_["n"])),
                **intervals,
            }
        )
    out_schema: dict[str, pl.DataType] = {
        "group": pl.String(),
        "metric": pl.String(),
        "task": pl.String(),
        **{c: pl.Float64() for c in _FIT_COLUMNS},
        "n": pl.Int64(),
        "n_samples": pl.Int64(),
        "partial_r": pl.Float64(),
        "partial_p": pl.Float64(),
        **{c: pl.Float64() for c in _INTERVAL_COLUMNS},
    }
    out = pl.DataFrame(rows, schema=out_schema)
    # NaN (undefined) reads better as a missing value in a table a person reads
    return out.fill_nan(None).sort("group", "metric", "task")


def _replicates(part: pl.DataFrame) -> np.ndarray | None:
    """``[R, n]`` replicate series of one (group, metric) in step order, or None."""
    if "replicates" not in part.columns or part["replicates"].null_count():
        return None
    lists = part["replicates"].to_list()
    if len({len(r) for r in lists}) != 1 or not lists[0]:
        return None
    return np.array(lists, dtype=np.float64).T


def bootstrap_mean(
    values: ArrayLike,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile bootstrap confidence interval (resampling values).

    Parameters
    ----------
    values
        One value per sample, e.g. each sample's consistency.
    confidence
        Coverage of the interval.
    n_boot
        Bootstrap resamples.
    seed
        Seed of the resampling; equal seeds give equal intervals.

    Returns
    -------
    tuple
        ``(mean, ci_low, ci_high)``; the interval is ``(nan, nan)`` with fewer than 2 values.

    Examples
    --------
    >>> mean, lo, hi = bootstrap_mean([1.0, 2.0, 3.0, 4.0], seed=0)
    >>> mean, lo <= mean <= hi
    (2.5, True)
    """
    if not 0 < confidence < 1:
        msg = f"confidence must be between 0 and 1, got {confidence}"
        raise InputError(msg)
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    rng = np.random.default_rng(seed)
    # resample in blocks so 1000 resamples of 100k values never hold 10^8 indices at once
    block = max(1, (1 << 22) // v.size)
    boots = np.concatenate(
        [
            v[rng.integers(0, v.size, size=(min(block, n_boot - i), v.size))].mean(axis=1)
            for i in range(0, n_boot, block)
        ]
    )
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def shuffle_routing(
    weights: np.ndarray,
    *,
    mode: Literal["experts", "samples"] = "experts",
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """A shuffled copy of routing weights ``[N, L, K]``, to build a null distribution.

    Parameters
    ----------
    weights
        Per-sample routing weights.
    mode
        ``"experts"``: permute the expert ids independently for every (sample, layer), keeping
        each weight vector's values (so its entropy) but not which experts carry them.
        ``"samples"``: for every layer, shuffle which sample each weight vector belongs to,
        keeping every layer's set of routings but breaking each sample's path across layers.
    seed
        Seed or numpy Generator.

    Returns
    -------
    np.ndarray, the same shape as ``weights``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 2))
    >>> s = shuffle_routing(w, seed=1)
    >>> np.allclose(np.sort(s, axis=-1), np.sort(w, axis=-1))
    True
    """
    w = np.asarray(weights)
    if w.ndim != 3:
        msg = f"weights must have shape [samples, layers, experts], got {w.shape}"
        raise InputError(msg)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n, layers, k = w.shape
    if mode == "experts":
        perm = np.argsort(rng.random((n, layers, k)), axis=-1)
        return np.take_along_axis(w, perm, axis=-1)
    if mode == "samples":
        perm = np.argsort(rng.random((n, layers)), axis=0)
        return np.take_along_axis(w, perm[:, :, None], axis=0)
    msg = f"mode must be 'experts' or 'samples', got {mode!r}"
    raise InputError(msg)


def null_band(
    weights: np.ndarray,
    metric: Callable[[np.ndarray], float],
    *,
    mode: Literal["experts", "samples"] = "experts",
    n_shuffles: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Where a metric would lie if routing carried no structure: a percentile band from shuffles.

    ``metric`` is recomputed on ``n_shuffles`` copies of ``weights`` shuffled by
    :func:`shuffle_routing`. For example, a group's mean pathway distance well below its null
    band means samples share pathways more than chance.

    Parameters
    ----------
    weights
        Per-sample routing weights ``[N, L, K]`` of one checkpoint.
    metric
        Maps weights ``[N, L, K]`` to one number, e.g. mean pairwise pathway distance.
    mode
        How to shuffle (see :func:`shuffle_routing`).
    n_shuffles
        Shuffled copies.
    confidence
        Coverage of the band.
    seed
        Seed; equal seeds give equal bands.

    Returns
    -------
    pl.DataFrame
        One row: ``observed, null_mean, null_low, null_high, p_value, n_shuffles``, where
        ``p_value`` is the two-sided permutation p-value ``(1 + #{|null - null_mean| >=
        |observed - null_mean|}) / (1 + n_shuffles)``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).dirichlet(np.ones(4), size=(5, 2))
    >>> band = null_band(w, lambda x: float(x[:, :, 0].mean()), n_shuffles=20)
    >>> band.columns
    ['observed', 'null_mean', 'null_low', 'null_high', 'p_value', 'n_shuffles']
    """
    if n_shuffles < 1:
        msg = f"n_shuffles must be at least 1, got {n_shuffles}"
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    observed = float(metric(np.asarray(weights)))
    null = np.array(
        [float(metric(shuffle_routing(weights, mode=mode, seed=rng))) for _ in range(n_shuffles)]
    )
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(null, [alpha, 1 - alpha])
    centre = float(null.mean())
    extreme = int(np.sum(np.abs(null - centre) >= abs(observed - centre)))
    return pl.DataFrame(
        {
            "observed": [observed],
            "null_mean": [centre],
            "null_low": [float(lo)],
            "null_high": [float(hi)],
            "p_value": [(1 + extreme) / (1 + n_shuffles)],
            "n_shuffles": [n_shuffles],
        }
    )
