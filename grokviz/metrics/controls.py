"""Controls that tell a metric that tracks generalization from one that drifts with training time.

The paper's evidence is a correlation across checkpoints between a metric and test accuracy. When
accuracy rises with training, *any* metric that drifts steadily correlates with it. The controls:

- :func:`partial_correlation`: the correlation of a metric with accuracy holding
  ``log(1 + step)`` fixed (both residualised on it), so a shared trend in time does not count; against a group's
  own accuracy and against every other group's (:func:`cross_partial`);
- :func:`half_step`: when a series has covered half of its change, so each group's metric can be
  timed against its own accuracy's rise (:func:`timing`);
- :func:`correlation_intervals`: bootstrap intervals of Pearson, Spearman and the partial
  correlation over checkpoints (resampling them) and over samples (the metric recomputed on
  resampled samples: ``analyze``'s ``replicates`` column).

:mod:`~grokviz.metrics.baselines` holds the routing baselines (length-matched null, uniform
weights), :mod:`~grokviz.metrics.validate` puts everything into one report. Every function here
works on plain arrays or the ``metrics`` / ``accuracy`` tables, and is checked in the tests
against a separate numpy / scipy computation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from grokviz.errors import InputError

__all__ = [
    "DIRECTIONS",
    "correlation_intervals",
    "cross_partial",
    "half_step",
    "partial_correlation",
    "rise_step",
    "timing",
]

DIRECTIONS: dict[str, int] = {
    "distance": -1,
    "distance_null": -1,
    "distance_ratio": -1,
    "consistency": +1,
    "consistency_uniform": +1,
    "complexity": -1,
    "loss": -1,
    "val_loss": -1,
    "entropy": -1,
}
"""The direction each metric should move as accuracy rises: the paper's signs (distance falls,
consistency rises), the losses fall, routing entropy falls (routing sharpens)."""


# --- vectorized correlations: each row of [B, n] arrays is one series ------------------------


def _center(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where a row is constant."""
    xc, yc = _center(x), _center(y)
    denom = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(-1) / denom
    # a constant row has no correlation; tiny denominators from rounding count as constant
    scale = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    r = np.where(denom > 1e-12 * np.maximum(scale, 1e-300), r, np.nan)
    return np.clip(r, -1.0, 1.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)  # average ranks for ties, as scipy.stats.spearmanr


def _residuals(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``x`` minus its least-squares line on ``z`` (with intercept), row by row."""
    xc, zc = _center(x), _center(z)
    zz = (zc * zc).sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(zz > 0, (xc * zc).sum(-1, keepdims=True) / zz, 0.0)
    return xc - beta * zc


def _partial_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    rx, ry = _residuals(x, z), _residuals(y, z)
    r = _pearson_rows(rx, ry)
    # a series that z explains entirely leaves rounding noise as its residual: no correlation
    size = lambda a, b: np.sqrt((a * a).sum(-1)) <= 1e-9 * np.sqrt((b * b).sum(-1))  # noqa: E731
    return np.where(size(rx, _center(x)) | size(ry, _center(y)), np.nan, r)


def _stats_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson, Spearman and the partial correlation given ``z`` of each row."""
    return {
        "pearson": _pearson_rows(x, y),
        "spearman": _pearson_rows(_ranks(x), _ranks(y)),
        "partial": _partial_rows(x, y, z),
    }


def partial_correlation(
    x: ArrayLike, y: ArrayLike, z: ArrayLike, *, method: str = "pearson"
) -> float:
    """The correlation of ``x`` and ``y`` with ``z`` held fixed.

    Both series are replaced by their residuals from a least-squares line on ``z`` and
    correlated: what ``x`` and ``y`` share beyond what each shares with ``z``. With
    ``z = log(step)`` this asks whether a metric follows accuracy beyond both drifting with
    training time. ``method="spearman"`` does the same on ranks (of ``x``, ``y`` and ``z``).

    Parameters
    ----------
    x, y, z
        Series of equal length, e.g. a metric, accuracy and ``log(step)`` across checkpoints.
    method
        ``"pearson"`` or ``"spearman"``.

    Returns
    -------
    float
        In ``[-1, 1]``; NaN with fewer than 4 points or when a residual is constant.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.log([10, 20, 50, 100, 200, 500])
    >>> drift = 3.0 * t + np.array([0.05, 0.1, -0.1, 0.0, -0.05, 0.02])  # follows time
    >>> accuracy = t + np.array([0.1, -0.2, 0.15, -0.1, 0.05, 0.0])
    >>> round(float(np.corrcoef(drift, accuracy)[0, 1]), 2)  # correlates strongly ...
    0.99
    >>> round(partial_correlation(drift, accuracy, t), 2)    # ... but not beyond time
    -0.75
    """
    xs, ys, zs = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, z))
    if not xs.shape == ys.shape == zs.shape:
        msg = f"x, y and z must have equal length; got {xs.size}, {ys.size}, {zs.size}"
        raise InputError(msg)
    keep = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(zs)
    xs, ys, zs = xs[keep], ys[keep], zs[keep]
    if xs.size < 4:
        return math.nan
    if method == "spearman":
        xs, ys, zs = _ranks(xs), _ranks(ys), _ranks(zs)
    elif method != "pearson":
        msg = f"method must be 'pearson' or 'spearman', got {method!r}"
        raise InputError(msg)
    return float(_partial_rows(xs[None], ys[None], zs[None])[0])


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    # fewer than 20 usable resamples say nothing reliable about a 95 % interval
    if v.size < 20:
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(v, [alpha, 1 - alpha])
    return float(lo), float(hi)


def correlation_intervals(
    x: ArrayLike,
    y: ArrayLike,
    steps: ArrayLike,
    *,
    replicates: ArrayLike | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Bootstrap intervals of Pearson, Spearman and the partial correlation (given log step).

    Over checkpoints: the ``n`` (metric, accuracy, step) points are resampled with replacement
    ``n_boot`` times. Over samples: each row of ``replicates`` is the metric series recomputed
    on one resample of the group's samples (the same resample at every checkpoint, as
    :func:`grokviz.analyze` makes them); accuracy stays as given. Percentile intervals; a
    resample whose series is constant has no correlation and is left out.

    Parameters
    ----------
    x
        The metric across checkpoints, ``[n]``.
    y
        Accuracy at the same checkpoints, ``[n]``.
    steps
        The checkpoints' training steps, ``[n]``; the partial correlation holds
        ``log(1 + step)`` fixed (``log(step)`` where it matters, and defined at step 0).
    replicates
        ``[R, n]`` metric series over resampled samples, or None.
    n_boot
        Resamples of the checkpoints (0: no checkpoint intervals).
    confidence
        Coverage of the intervals.
    seed
        Seed of the checkpoint resamples.

    Returns
    -------
    dict
        ``{stat}_ckpt_low``, ``{stat}_ckpt_high``, ``{stat}_samples_low``,
        ``{stat}_samples_high`` for ``stat`` in ``pearson, spearman, partial``; NaN where not
        computable (no replicates, too few points).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> steps = np.arange(1, 13) * 100
    >>> y = np.linspace(0, 1, 12) ** 2
    >>> x = -y + rng.normal(0, 0.05, 12)
    >>> out = correlation_intervals(x, y, steps, n_boot=500)
    >>> bool(out["spearman_ckpt_low"] <= -0.8), bool(np.isnan(out["spearman_samples_low"]))
    (True, True)
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    st = np.asarray(steps, dtype=np.float64)
    if not xs.shape == ys.shape == st.shape or xs.ndim != 1:
        msg = f"x, y and steps must be 1-d of equal length; got {xs.shape}, {ys.shape}, {st.shape}"
        raise InputError(msg)
    if np.any(st < 0):
        msg = f"steps must be non-negative; got {st.min()}"
        raise InputError(msg)
    z = np.log1p(st)
    keep = np.isfinite(xs) & np.isfinite(ys)
    out = {
        f"{s}_{kind}_{end}": math.nan
        for s in ("pearson", "spearman", "partial")
        for kind in ("ckpt", "samples")
        for end in ("low", "high")
    }
    n = int(keep.sum())
    if n >= 4 and n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        xk, yk, zk = xs[keep][idx], ys[keep][idx], z[keep][idx]
        for name, values in _stats_rows(xk, yk, zk).items():
            out[f"{name}_ckpt_low"], out[f"{name}_ckpt_high"] = _interval(values, confidence)
    if replicates is not None and n >= 4:
        reps = np.asarray(replicates, dtype=np.float64)
        if reps.ndim != 2 or reps.shape[1] != xs.size:
            msg = f"replicates must have shape [R, {xs.size}]; got {reps.shape}"
            raise InputError(msg)
        reps = reps[:, keep]
        good = np.isfinite(reps).all(axis=1)
        reps = reps[good]
        if reps.shape[0]:
            ones = np.ones((reps.shape[0], 1))
            yk, zk = ys[keep] * ones, z[keep] * ones
            for name, values in _stats_rows(reps, yk, zk).items():
                low, high = _interval(values, confidence)
                out[f"{name}_samples_low"], out[f"{name}_samples_high"] = low, high
    return out


# --- timing -----------------------------------------------------------------------------------


def half_step(
    steps: ArrayLike,
    values: ArrayLike,
    *,
    direction: int = 1,
    min_change: float = 0.0,
    sustained: bool = False,
) -> float | None:
    """The step at which a series has covered half of its change in ``direction``.

    With ``z = direction * values``: the base is the checkpoint where ``z`` is smallest, the
    peak the one where ``z`` is largest after it; the half step is the first step after the base
    where ``z`` reaches ``(z_base + z_peak) / 2``, linearly interpolated between the two
    checkpoints around it. So an accuracy that rises gives its half-rise step, and a distance
    that rises while the model memorizes and then falls (``direction=-1``) its half-way-down
    step from its highest point. A series that only moves against ``direction`` has none.
    With ``sustained=True`` it is the step from which ``z`` stays at or past that level up to
    the peak (the last crossing before it): an early spike that is lost again does not count.
    For a series that moves one way only, both are the same.

    Parameters
    ----------
    steps
        Training steps, ascending.
    values
        The series at those steps; NaN points are skipped.
    direction
        +1 for a rise, -1 for a fall.
    min_change
        Return None when ``z_peak - z_base`` is at most this (a flat series has no half step).
    sustained
        The last crossing of the half level before the peak instead of the first.

    Returns
    -------
    float or None

    Examples
    --------
    >>> half_step([0, 100, 200, 300], [0.0, 0.1, 0.7, 0.9])  # 0.45: 0.35 of the 0.6 to 200
    158.33333333333334
    >>> half_step([0, 100, 200, 300], [5.0, 9.0, 7.0, 3.0], direction=-1)  # from 9 down to 3
    225.0
    >>> spike = [0.0, 0.6, 0.1, 0.2, 1.0]  # half-way at 100 at first, for good only after 300
    >>> [round(half_step([0, 100, 200, 300, 400], spike, sustained=s), 1) for s in (False, True)]
    [83.3, 337.5]
    """
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        msg = f"steps and values must be 1-d of equal length; got {s.shape} and {v.shape}"
        raise InputError(msg)
    if direction not in (1, -1):
        msg = f"direction must be +1 or -1, got {direction!r}"
        raise InputError(msg)
    keep = np.isfinite(v)
    s, z = s[keep], direction * v[keep]
    if z.size < 2:
        return None
    base = int(np.argmin(z))
    peak = base + int(np.argmax(z[base:]))
    change = z[peak] - z[base]
    if not change > min_change:
        return None
    half = z[base] + change / 2
    reached = z[base + 1 : peak + 1] >= half
    if sustained:  # the first checkpoint of the run of reached ones that ends at the peak
        below = np.flatnonzero(~reached)
        k = base + 1 + (int(below[-1]) + 1 if below.size else 0)
    else:
        k = base + 1 + int(np.argmax(reached))
    lo, hi = z[k - 1], z[k]
    frac = (half - lo) / (hi - lo) if hi != lo else 1.0
    return float(s[k - 1] + frac * (s[k] - s[k - 1]))


def rise_step(steps: ArrayLike, accuracy: ArrayLike, *, fraction: float = 0.25) -> int:
    """Where accuracy's sustained rise begins: the paper correlates from there on.

    The last checkpoint, before the maximum, whose accuracy is still below
    ``first + fraction * (max - first)``; the first checkpoint when there is none.

    Examples
    --------
    >>> rise_step([1, 2, 3, 4, 5, 6], [0.02, 0.05, 0.03, 0.3, 0.8, 1.0])
    3
    """
    s = np.asarray(steps)
    acc = np.asarray(accuracy, dtype=np.float64)
    peak = int(np.nanargmax(acc))
    below = np.flatnonzero(acc[: peak + 1] < acc[0] + fraction * (acc[peak] - acc[0]))
    return int(s[below[-1]]) if below.size else int(s[0])


def _direction(metric: str, directions: Mapping[str, int] | None, series: np.ndarray) -> int:
    table = {**DIRECTIONS, **(directions or {})}
    if metric in table:
        return int(np.sign(table[metric]))
    # an unknown metric: judge it by the direction it moved overall
    finite = series[np.isfinite(series)]
    return 1 if finite.size < 2 or finite[-1] >= finite[0] else -1


def _series(frame: pl.DataFrame, steps: Sequence[int]) -> np.ndarray:
    """The ``value`` column of ``frame`` (one row per step) at ``steps``; NaN where missing."""
    at = dict(zip(frame["step"].to_list(), frame["value"].to_list(), strict=True))
    return np.array([np.nan if at.get(s) is None else at[s] for s in steps], dtype=np.float64)


def _replicate_matrix(frame: pl.DataFrame, steps: Sequence[int]) -> np.ndarray | None:
    """``[R, n]`` from a ``replicates`` list column (one row per step), or None."""
    if "replicates" not in frame.columns:
        return None
    at = dict(zip(frame["step"].to_list(), frame["replicates"].to_list(), strict=True))
    rows = [at.get(s) for s in steps]
    sizes = {len(r) for r in rows if r is not None}
    if len(sizes) != 1 or any(r is None for r in rows):
        return None
    return np.array(rows, dtype=np.float64).T


def timing(
    metrics: pl.DataFrame,
    accuracy: pl.DataFrame,
    *,
    tasks: Mapping[str, str],
    metric_names: Sequence[str] = ("distance", "consistency"),
    directions: Mapping[str, int] | None = None,
    accuracy_replicates: Mapping[str, np.ndarray] | None = None,
    min_rise: float = 0.1,
    confidence: float = 0.95,
    sustained: bool = True,
) -> pl.DataFrame:
    """Each group's half-change step of a metric against the half-rise step of its accuracy.

    A metric that tracks a group's generalization changes when that group's accuracy rises; one
    that drifts with training changes at the same time in every group. Half steps come from
    :func:`half_step`, the metric's in its :data:`DIRECTIONS` direction. Intervals: over the
    metric's ``replicates`` (resampled training samples) and, for accuracy, over
    ``accuracy_replicates`` (resampled test samples), percentile bootstrap.

    Parameters
    ----------
    metrics
        A metrics table with ``step, group, metric, value`` (and ``replicates``).
    accuracy
        ``step, task, accuracy``: one series per task.
    tasks
        ``{group: task}``: whose accuracy each group is timed against.
    metric_names
        Metrics to time.
    directions
        Overrides of :data:`DIRECTIONS`.
    accuracy_replicates
        ``{task: [R, n]}`` accuracy series over resampled test samples at the task's steps.
    min_rise
        An accuracy that rises by no more than this has no half-rise step (e.g. a control).
    confidence
        Coverage of the intervals.
    sustained
        Time each series by the step from which it stays past half its change
        (:func:`half_step`'s ``sustained``; the default), not by its first crossing, which an
        early spike that is lost again would set.

    Returns
    -------
    pl.DataFrame
        One row per (group, metric): ``group, metric, task, half_change, half_change_low,
        half_change_high, half_rise, half_rise_low, half_rise_high, lag`` (half change minus
        half rise), ``change`` (the metric's change in its direction, from its base to the
        peak after it, as in :func:`half_step`) and ``relative_change`` (that change over the
        metric's size at its base).

    Examples
    --------
    >>> m = pl.DataFrame({"step": [1, 2, 3, 4], "group": "add", "metric": "distance",
    ...     "value": [9.0, 9.0, 5.0, 4.0]})
    >>> acc = pl.DataFrame({"step": [1, 2, 3, 4], "task": "add", "accuracy": [0.0, 0.1, 0.8, 1.0]})
    >>> [round(v, 3) for v in timing(m, acc, tasks={"add": "add"}).select(
    ...     "half_change", "half_rise").row(0)]
    [2.625, 2.571]
    """
    half = functools.partial(half_step, sustained=sustained)
    rows = []
    for group, task in tasks.items():
        acc = accuracy.filter(pl.col("task") == task).sort("step")
        acc_steps = acc["step"].to_list()
        acc_values = acc["accuracy"].to_numpy().astype(np.float64)
        rise = half(acc_steps, acc_values, min_change=min_rise) if acc.height else None
        rise_lo = rise_hi = math.nan
        reps = (accuracy_replicates or {}).get(task)
        if rise is not None and reps is not None:
            draws = np.array([half(acc_steps, r, min_change=min_rise) or np.nan for r in reps])
            rise_lo, rise_hi = _interval(draws, confidence)
        for metric in metric_names:
            part = metrics.filter((pl.col("group") == group) & (pl.col("metric") == metric))
            if part.height == 0:
                continue
            part = part.sort("step")
            steps = part["step"].to_list()
            series = _series(part, steps)
            sign = _direction(metric, directions, series)
            change_at = half(steps, series, direction=sign)
            z = sign * series[np.isfinite(series)]
            base = int(np.argmin(z))
            peak = base + int(np.argmax(z[base:]))
            change = float(z[peak] - z[base])
            base_size = abs(float(z[base]))
            lo = hi = math.nan
            rep = _replicate_matrix(part, steps)
            if change_at is not None and rep is not None:
                draws = np.array(
                    [half(steps, r, direction=sign) or np.nan for r in rep], dtype=np.float64
                )
                lo, hi = _interval(draws, confidence)
            rows.append(
                {
                    "group": group,
                    "metric": metric,
                    "task": task,
                    "half_change": change_at,
                    "half_change_low": lo,
                    "half_change_high": hi,
                    "half_rise": rise,
                    "half_rise_low": rise_lo,
                    "half_rise_high": rise_hi,
                    "lag": None if change_at is None or rise is None else change_at - rise,
                    "change": change,
                    "relative_change": change / base_size if base_size > 0 else math.nan,
                }
            )
    schema: dict[str, Any] = {"group": pl.String(), "metric": pl.String(), "task": pl.String()}
    schema |= {
        c: pl.Float64()
        for c in (
            "half_change",
            "half_change_low",
            "half_change_high",
            "half_rise",
            "half_rise_low",
            "half_rise_high",
            "lag",
            "change",
            "relative_change",
        )
    }
    return pl.DataFrame(rows, schema=schema)


def cross_partial(
    metrics: pl.DataFrame,
    accuracy: pl.DataFrame,
    *,
    groups: Sequence[str],
    tasks: Sequence[str],
    metric_names: Sequence[str] = ("distance", "consistency"),
    from_step: Mapping[str, int] | None = None,
) -> pl.DataFrame:
    """The partial correlation (given log(1 + step)) of every group's metric with every task's
    accuracy.

    A metric that tracks a group's generalization follows that group's own accuracy beyond what
    time explains, and follows other groups' accuracy less; one that drifts follows every
    group's accuracy alike.

    Parameters
    ----------
    metrics
        ``step, group, metric, value``.
    accuracy
        ``step, task, accuracy``.
    groups, tasks
        The groups whose metric, and the tasks whose accuracy, enter the table.
    metric_names
        Metrics to correlate.
    from_step
        ``{group: step}``: use only checkpoints from that step on for that group.

    Returns
    -------
    pl.DataFrame
        ``group, metric, task, partial_r, n``.

    Examples
    --------
    >>> m = pl.DataFrame({"step": [1, 2, 4, 8, 16], "group": "g", "metric": "distance",
    ...     "value": [5.0, 4.0, 4.5, 2.0, 1.0]})
    >>> acc = pl.DataFrame({"step": [1, 2, 4, 8, 16] * 2, "task": ["g"] * 5 + ["h"] * 5,
    ...     "accuracy": [0.0, 0.2, 0.1, 0.7, 0.9, 0.1, 0.2, 0.3, 0.4, 0.5]})
    >>> cross_partial(m, acc, groups=["g"], tasks=["g", "h"])["partial_r"].round(2).to_list()
    [-0.99, 0.44]
    """
    acc = accuracy.group_by("task", "step").agg(pl.col("accuracy").mean())
    rows = []
    for group in groups:
        start = (from_step or {}).get(group)
        for metric in metric_names:
            part = metrics.filter((pl.col("group") == group) & (pl.col("metric") == metric))
            if part.height == 0:
                continue
            if start is not None:
                part = part.filter(pl.col("step") >= start)
            for task in tasks:
                joined = part.select("step", "value").join(
                    acc.filter(pl.col("task") == task), on="step"
                )
                joined = joined.sort("step")
                r = partial_correlation(
                    joined["value"].to_numpy(),
                    joined["accuracy"].to_numpy(),
                    np.log1p(joined["step"].to_numpy().astype(np.float64)),
                )
                rows.append((group, metric, task, r, joined.height))
    return pl.DataFrame(
        rows,
        schema={
            "group": pl.String(),
            "metric": pl.String(),
            "task": pl.String(),
            "partial_r": pl.Float64(),
            "n": pl.Int64(),
        },
        orient="row",
    )
