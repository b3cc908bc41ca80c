"""One report that says whether a metric tracks generalization or only drifts with training time.

:func:`validate` runs every control of :mod:`~grokviz.metrics.controls` and
:mod:`~grokviz.metrics.baselines` on a metrics table (from :func:`grokviz.analyze`) against an
accuracy table, per group, and returns a :class:`Validation`: its tables, a verdict per group and
metric, and the whole as Markdown (shown when displayed in a notebook).

The verdict rules, for a metric with expected direction ``s``
(:data:`~grokviz.metrics.controls.DIRECTIONS`: distance
falls, consistency rises) and a group with its own accuracy:

1. **beyond time**: ``s * partial_r > 0`` with the group's own accuracy, ``log(1 + step)`` held
   fixed, and its bootstrap interval over checkpoints excludes 0;
2. **its own group**: that partial correlation is larger (in direction ``s``) than with any
   other group's accuracy;
3. **on time**: the metric's half-change step is nearer to the group's own half-rise step of
   accuracy than to any other group's.

A group's metric *tracks* its generalization when all three hold (2 and 3 need two or more
groups). A negative-control group (random targets: memorized, never generalized) must not look
like that: it is flagged when its metric changes, in the expected direction, by at least half as
much as the real groups' median change (the same metric, so the same units), or follows the
real groups' mean accuracy beyond time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError
from grokviz.metrics.controls import (
    _direction,
    cross_partial,
    rise_step,
    timing,
)

__all__ = ["REAL_MEAN", "Validation", "validate"]

REAL_MEAN = "real groups (mean)"
"""The task name :func:`validate` gives the mean accuracy of the real (non-control) groups."""

_DRIFT_SHARE = 0.5
"""A control whose metric changes by this share of the real groups' median change is flagged as
drifting."""


@dataclass
class Validation:
    """What :func:`validate` found; display it in a notebook or call :meth:`to_markdown`."""

    correlations: pl.DataFrame
    """Per group and metric: Spearman (all checkpoints and from the group's rise on), the
    partial correlation with log step fixed, the same against the other groups' accuracy, each
    with bootstrap intervals over checkpoints and samples, and the samples behind them."""
    timing: pl.DataFrame
    """Per group and metric: half-change step of the metric, half-rise step of accuracy, lag."""
    cross: pl.DataFrame
    """Partial correlation of every group's metric with every group's accuracy."""
    baselines: pl.DataFrame
    """Per group: distance over its length-matched null; consistency against its uniform-weight
    baseline (their correlations with the group's accuracy)."""
    verdicts: pl.DataFrame
    """Per group and metric: the checks above and ``tracks`` (real groups) / ``flagged``
    (controls)."""
    groups: list[str]
    controls: list[str]
    tasks: dict[str, str]
    rise_steps: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """One sentence per metric: does it track generalization here, and which check fails."""
        out = []
        for metric in self.verdicts["metric"].unique(maintain_order=True).to_list():
            v = self.verdicts.filter(pl.col("metric") == metric)
            real = v.filter(~pl.col("control"))
            tracking = real.filter(pl.col("tracks").fill_null(False))["group"].to_list()
            flagged = v.filter(pl.col("control") & pl.col("flagged").fill_null(False))
            parts = [
                f"**{metric}** tracks its own group's generalization in {len(tracking)} of "
                f"{real.height} groups" + (f" ({', '.join(tracking)})" if tracking else "")
            ]
            failing = []
            for check, words in (
                ("beyond_time", "not beyond time"),
                ("own_group", "not more with its own group's accuracy than another's"),
                ("on_time", "not at its own group's time"),
            ):
                bad = real.filter(pl.col(check) == False)["group"].to_list()  # noqa: E712
                if bad:
                    failing.append(f"{words} in {', '.join(bad)}")
            if failing:
                parts.append("; " + "; ".join(failing))
            for row in flagged.iter_rows(named=True):
                parts.append(
                    f"; the control group {row['group']} drifts too "
                    f"(its change {_f(row['change'], '.3g')} against the real groups' median "
                    f"{_f(row['real_change'], '.3g')})"
                )
            clean = v.filter(pl.col("control") & ~pl.col("flagged").fill_null(True))
            for row in clean.iter_rows(named=True):
                parts.append(f"; the control group {row['group']} does not drift")
            ok = len(tracking) == real.height and real.height > 0 and flagged.height == 0
            verdict = (
                "So it tracks generalization here."
                if ok
                else "So, by these controls, it does not (only) track generalization here."
            )
            out.append("".join(parts) + ". " + verdict)
        return out

    def to_markdown(self) -> str:
        """The report: the summary sentences, then the correlation, timing and baseline tables."""
        corr_cols = [
            "group",
            "metric",
            "n_samples",
            "spearman_all",
            "spearman_all_ckpt",
            "spearman_rise",
            "partial_r",
            "partial_ckpt",
            "partial_samples",
            "partial_others_max",
        ]
        c = self.correlations
        corr = c.with_columns(
            _interval_text(c, "spearman_all_ckpt"),
            _interval_text(c, "partial_ckpt"),
            _interval_text(c, "partial_samples"),
        ).select(corr_cols)
        t = self.timing
        tim = t.with_columns(
            _interval_text(t, "half_change", spec=".0f").alias("half_change_ci"),
            _interval_text(t, "half_rise", spec=".0f").alias("half_rise_ci"),
        ).select(
            "group", "metric", "half_change", "half_change_ci", "half_rise", "half_rise_ci", "lag"
        )
        lines = [
            *(f"- {s}" for s in self.summary()),
            "",
            "Correlations with each group's own accuracy (controls: its rise begins at "
            + ", ".join(f"{g} {s}" for g, s in self.rise_steps.items())
            + "; partial r holds log(1 + step) fixed; intervals are 95 % bootstraps over "
            "checkpoints and over samples):",
            "",
            _md_table(corr),
            "",
            "When the metric has covered half its change, and when accuracy has covered half "
            "its rise (steps; intervals over resampled samples):",
            "",
            _md_table(tim, spec=".0f"),
        ]
        if self.baselines.width > 1:
            lines += [
                "",
                "Baselines: pathway distance over its length-matched permutation null "
                "(first, smallest and last checkpoint), and the Spearman correlation with the "
                "group's accuracy of the distance, its null and their ratio, of consistency and "
                "of its uniform-weight baseline:",
                "",
                _md_table(self.baselines),
            ]
        if self.notes:
            lines += ["", *(f"*{n}*" for n in self.notes)]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _f(value: Any, spec: str = "+.2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _interval_text(frame: pl.DataFrame, prefix: str, *, spec: str = "+.2f") -> pl.Series:
    """``low … high`` of the columns ``{prefix}_low`` and ``{prefix}_high``, as text."""
    pairs = zip(frame[f"{prefix}_low"].to_list(), frame[f"{prefix}_high"].to_list(), strict=True)
    return pl.Series(
        prefix,
        [
            "–"
            if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi))
            else f"{_f(lo, spec)} … {_f(hi, spec)}"
            for lo, hi in pairs
        ],
    )


def _md_table(frame: pl.DataFrame, *, spec: str = "+.2f") -> str:
    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return _f(v, spec)
        return "–" if v is None else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|---" * frame.width + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def _accuracy_replicates(
    sample_accuracy: pl.DataFrame,
    samples: pl.DataFrame,
    tasks: Sequence[str],
    *,
    n: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Per task (domain): ``[n, checkpoints]`` accuracy over resampled test samples."""
    acc = schema.conform(sample_accuracy, schema.SAMPLE_ACCURACY, name="sample accuracy")
    dom = samples.select(pl.col("sample_id").cast(pl.String), pl.col("domain").cast(pl.String))
    acc = acc.join(dom, on="sample_id")
    rng = np.random.default_rng(seed)
    out = {}
    for task in tasks:
        part = acc.filter(pl.col("domain") == task)
        if part.height == 0:
            continue
        wide = part.pivot(on="step", index="sample_id", values="correct").sort("sample_id")
        step_cols = sorted((c for c in wide.columns if c != "sample_id"), key=int)
        correct = wide.select(step_cols).cast(pl.Float64).to_numpy()
        m = correct.shape[0]
        counts = np.zeros((n, m))
        np.add.at(counts, (np.arange(n)[:, None], rng.integers(0, m, size=(n, m))), 1.0)
        with np.errstate(invalid="ignore"):
            out[task] = (counts @ np.nan_to_num(correct)) / counts.sum(axis=1, keepdims=True)
    return out


def validate(
    metrics: pl.DataFrame,
    accuracy: pl.DataFrame,
    *,
    sample_accuracy: pl.DataFrame | None = None,
    samples: pl.DataFrame | None = None,
    groups: Sequence[str] | None = None,
    controls: Sequence[str] | None = None,
    tasks: Mapping[str, str] | None = None,
    metric_names: Sequence[str] = ("distance", "consistency"),
    directions: Mapping[str, int] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    sustained: bool = True,
) -> Validation:
    """Do a metric's series track each group's generalization, or only training time?

    Runs, for every group that has its own accuracy and every negative-control group: the
    correlations of :func:`~grokviz.metrics.correlate` over all checkpoints and from the
    group's rise on, the partial correlation with ``log(1 + step)`` fixed against the group's
    own and every other group's accuracy, the timing of the metric's change against the
    accuracy's rise, the routing baselines (``distance_ratio``, ``consistency_uniform``), and
    the verdict rules of this module's docstring.

    Parameters
    ----------
    metrics
        A metrics table from :func:`grokviz.analyze` (with its ``replicates``, ``n_samples``
        and ``control`` columns for intervals over samples and the control groups).
    accuracy
        ``checkpoint, step, task, accuracy``: one series per group (task = group name).
    sample_accuracy, samples
        Per test sample correctness and the samples table (sample_id, domain): with both, the
        half-rise steps get intervals over resampled test samples.
    groups
        The real groups to check (default: every group of ``metrics`` with an accuracy task of
        its name, except ``global``, memorization groups and controls).
    controls
        The negative-control groups (default: groups whose rows have ``control = True``).
    tasks
        ``{group: task}`` when a group's accuracy task has another name.
    metric_names
        The metrics to validate.
    directions
        Overrides of :data:`~grokviz.metrics.controls.DIRECTIONS`.
    n_boot, confidence, seed
        Checkpoint bootstrap of the correlations (see :func:`~grokviz.metrics.correlate`).
    sustained
        Time each series by the step from which it stays past half its change (the default), not
        by its first crossing (:func:`~grokviz.metrics.controls.timing`).

    Returns
    -------
    Validation

    Examples
    --------
    >>> import grokviz
    >>> metrics = grokviz.analyze(store, groups="domain", replicates=20, n_boot=0, progress=False)
    >>> report = validate(metrics, accuracy, n_boot=200)
    >>> report.verdicts.columns[:4]
    ['group', 'metric', 'control', 'beyond_time']
    >>> print(report.summary()[0][:30])
    **distance** tracks its own gr
    """
    from grokviz.metrics.stats import correlate

    frame = schema.conform(metrics, schema.METRICS, name="metrics").filter(
        pl.col("metric") != "accuracy"
    )
    acc = schema.conform(accuracy, schema.ACCURACY, name="accuracy")
    acc = acc.group_by("task", "step").agg(pl.col("accuracy").mean()).sort("task", "step")
    task_names = set(acc["task"].to_list())
    if controls is None:
        controls = (
            sorted(frame.filter(pl.col("control").fill_null(False))["group"].unique().to_list())
            if "control" in frame.columns
            else []
        )
    controls = list(controls)
    task_of = dict(tasks or {})
    if groups is None:
        groups = sorted(
            g
            for g in frame["group"].unique().to_list()
            if g not in controls
            and g != "global"
            and not g.startswith("Pretrain@")
            and task_of.get(g, g) in task_names
        )
    groups = list(groups)
    if not groups:
        msg = (
            "no group of the metrics table has an accuracy task of its name; pass groups= and "
            f"tasks= (metrics groups: {sorted(frame['group'].unique())}, tasks: {sorted(task_names)})"
        )
        raise EmptyInputError(msg)
    for g in groups:
        task_of.setdefault(g, g)
    real_mean = (
        acc.filter(pl.col("task").is_in([task_of[g] for g in groups]))
        .group_by("step")
        .agg(pl.col("accuracy").mean())
        .with_columns(task=pl.lit(REAL_MEAN))
        .select("task", "step", "accuracy")
    )
    acc = pl.concat([acc, real_mean]).sort("task", "step")
    for c in controls:
        # a control's own accuracy (chance) when it has one, else the real groups' mean
        task_of.setdefault(c, c if c in task_names else REAL_MEAN)
    names = [m for m in metric_names if m in set(frame["metric"].to_list())]
    if not names:
        msg = f"the metrics table has none of {list(metric_names)}; it has {sorted(frame['metric'].unique())}"
        raise EmptyInputError(msg)

    def steps_of(task: str) -> pl.DataFrame:
        return acc.filter(pl.col("task") == task).sort("step")

    rise = {}
    for g in [*groups, *controls]:
        ref = steps_of(task_of[g] if g in groups else REAL_MEAN)
        rise[g] = rise_step(ref["step"].to_numpy(), ref["accuracy"].to_numpy())

    wanted = frame.filter(pl.col("metric").is_in(names))
    acc_table = acc.with_columns(checkpoint=pl.col("step").cast(pl.String))
    everything = correlate(
        wanted.filter(pl.col("group").is_in([*groups, *controls])),
        acc_table,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    rows = []
    cross = cross_partial(
        wanted,
        acc,
        groups=[*groups, *controls],
        tasks=[task_of[g] for g in groups] + [REAL_MEAN],
        metric_names=names,
    )
    for g in [*groups, *controls]:
        from_rise = correlate(
            wanted.filter(pl.col("group") == g),
            acc_table.filter(pl.col("task").is_in([task_of[g], REAL_MEAN])),
            from_step=rise[g],
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        )
        for metric in names:
            own = everything.filter(
                (pl.col("group") == g)
                & (pl.col("metric") == metric)
                & (pl.col("task") == task_of[g])
            )
            if own.height == 0:
                continue
            o = own.row(0, named=True)
            r_rise = from_rise.filter((pl.col("metric") == metric) & (pl.col("task") == task_of[g]))
            others = cross.filter(
                (pl.col("group") == g)
                & (pl.col("metric") == metric)
                & (pl.col("task") != task_of[g])
                & (pl.col("task") != REAL_MEAN)
            )
            to_mean = everything.filter(
                (pl.col("group") == g)
                & (pl.col("metric") == metric)
                & (pl.col("task") == REAL_MEAN)
            )
            m = to_mean.row(0, named=True) if to_mean.height else {}
            series = wanted.filter((pl.col("group") == g) & (pl.col("metric") == metric)).sort(
                "step"
            )
            sign = _direction(metric, directions, series["value"].to_numpy())
            other_r = [
                x for x in others["partial_r"].to_list() if x is not None and math.isfinite(x)
            ]
            rows.append(
                {
                    "group": g,
                    "metric": metric,
                    "task": task_of[g],
                    "control": g in controls,
                    "direction": sign,
                    "n": o["n"],
                    "n_samples": o["n_samples"],
                    "spearman_all": o["spearman_r"],
                    "spearman_all_ckpt_low": o["spearman_ckpt_low"],
                    "spearman_all_ckpt_high": o["spearman_ckpt_high"],
                    "spearman_all_samples_low": o["spearman_samples_low"],
                    "spearman_all_samples_high": o["spearman_samples_high"],
                    "spearman_rise": r_rise["spearman_r"][0] if r_rise.height else None,
                    "n_rise": r_rise["n"][0] if r_rise.height else None,
                    "pearson_all": o["pearson_r"],
                    "partial_r": o["partial_r"],
                    "partial_p": o["partial_p"],
                    "partial_ckpt_low": o["partial_ckpt_low"],
                    "partial_ckpt_high": o["partial_ckpt_high"],
                    "partial_samples_low": o["partial_samples_low"],
                    "partial_samples_high": o["partial_samples_high"],
                    # the other groups' partial correlation most like the expected one
                    "partial_others_max": (sign * max(sign * x for x in other_r))
                    if other_r
                    else None,
                    "partial_others_mean": float(np.mean(other_r)) if other_r else None,
                    # against the real groups' mean accuracy: what a drifting metric follows
                    "partial_real_mean": m.get("partial_r"),
                    "partial_real_mean_ckpt_low": m.get("partial_ckpt_low"),
                    "partial_real_mean_ckpt_high": m.get("partial_ckpt_high"),
                }
            )
    correlations = pl.DataFrame(rows, infer_schema_length=None)

    acc_reps = None
    if sample_accuracy is not None and samples is not None:
        acc_reps = _accuracy_replicates(
            sample_accuracy, samples, [task_of[g] for g in groups], n=200, seed=seed
        )
    times = timing(
        wanted,
        acc,
        tasks={g: task_of[g] for g in [*groups, *controls]},
        metric_names=names,
        directions=directions,
        accuracy_replicates=acc_reps,
        confidence=confidence,
        sustained=sustained,
    )
    verdicts = _verdicts(correlations, times, groups=groups, controls=controls)
    baselines = _baselines(frame, acc, task_of, [*groups, *controls])
    notes = []
    if "replicates" not in frame.columns or frame["replicates"].null_count() == frame.height:
        notes.append(
            "The metrics table has no replicates, so there are no intervals over samples: "
            "compute it with grokviz.analyze(..., replicates=100)."
        )
    return Validation(
        correlations=correlations,
        timing=times,
        cross=cross,
        baselines=baselines,
        verdicts=verdicts,
        groups=groups,
        controls=controls,
        tasks=task_of,
        rise_steps=rise,
        notes=notes,
    )


def _beyond_time(
    sign: int, r: float | None, low: float | None, high: float | None, p: float | None
) -> bool | None:
    """``sign * r > 0`` with its interval on that side of 0 (or, without one, p < 0.05)."""
    if r is None or not math.isfinite(r):
        return None
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        return bool(sign * r > 0 and (low > 0 if sign > 0 else high < 0))
    return bool(sign * r > 0 and p is not None and p < 0.05)


def _verdicts(
    correlations: pl.DataFrame, times: pl.DataFrame, *, groups: list[str], controls: list[str]
) -> pl.DataFrame:
    rises = {
        r["group"]: r["half_rise"]
        for r in times.filter(pl.col("group").is_in(groups)).unique("group").iter_rows(named=True)
        if r["half_rise"] is not None
    }
    rows = []
    for c in correlations.iter_rows(named=True):
        s = c["direction"]
        t = times.filter((pl.col("group") == c["group"]) & (pl.col("metric") == c["metric"]))
        trow = t.row(0, named=True) if t.height else {}
        partial = c["partial_r"]
        beyond = _beyond_time(
            s, partial, c["partial_ckpt_low"], c["partial_ckpt_high"], c["partial_p"]
        )
        follows = _beyond_time(
            s,
            c["partial_real_mean"],
            c["partial_real_mean_ckpt_low"],
            c["partial_real_mean_ckpt_high"],
            None,
        )
        own_group = None
        if c["partial_others_max"] is not None and partial is not None:
            own_group = bool(s * partial > s * c["partial_others_max"])
        on_time = None
        change = trow.get("half_change")
        if not c["control"] and len(rises) >= 2 and c["group"] in rises:
            if change is None:
                on_time = False
            else:
                nearest = min(rises, key=lambda g: abs(rises[g] - change))
                on_time = nearest == c["group"]
        rows.append(
            {
                "group": c["group"],
                "metric": c["metric"],
                "control": c["control"],
                "beyond_time": None if c["control"] else beyond,
                "own_group": None if c["control"] else own_group,
                "on_time": on_time,
                "tracks": None
                if c["control"]
                else bool(beyond) and own_group is not False and on_time is not False,
                "change": trow.get("change"),
                "relative_change": trow.get("relative_change"),
                "follows_real_mean": follows if c["control"] else None,
            }
        )
    out = pl.DataFrame(rows, infer_schema_length=None)
    real_change = {
        m: float(np.nanmedian(p["change"].to_numpy().astype(np.float64)))
        for (m,), p in out.filter(~pl.col("control")).group_by(["metric"])
        if p["change"].drop_nulls().len()
    }
    out = out.with_columns(
        real_change=pl.col("metric").replace_strict(
            real_change, default=None, return_dtype=pl.Float64
        )
    )
    drifts = pl.col("control") & (
        (pl.col("change") >= _DRIFT_SHARE * pl.col("real_change")) & (pl.col("real_change") > 0)
    ).fill_null(False)
    return out.with_columns(
        drifts=pl.when(pl.col("control")).then(drifts).otherwise(None),
        flagged=pl.when(pl.col("control"))
        .then(drifts | pl.col("follows_real_mean").fill_null(False))
        .otherwise(None),
    )


def _baselines(
    frame: pl.DataFrame, acc: pl.DataFrame, task_of: Mapping[str, str], groups: list[str]
) -> pl.DataFrame:
    """Per group: how far distance is from its null, and how consistency compares with its
    uniform baseline, in correlation with the group's accuracy."""
    from scipy.stats import spearmanr

    rows = []
    for g in groups:
        task = acc.filter(pl.col("task") == task_of[g]).select("step", "accuracy")

        def series(metric: str, g: str = g, task: pl.DataFrame = task) -> pl.DataFrame:
            return (
                frame.filter((pl.col("group") == g) & (pl.col("metric") == metric))
                .select("step", "value")
                .join(task, on="step")
                .sort("step")
            )

        def rho(part: pl.DataFrame) -> float | None:
            if part.height < 3 or part["value"].n_unique() < 2 or part["accuracy"].n_unique() < 2:
                return None
            return float(spearmanr(part["value"], part["accuracy"]).statistic)

        ratio = series("distance_ratio")
        row: dict[str, Any] = {"group": g}
        if ratio.height:
            v = ratio["value"].to_numpy()
            row |= {
                "distance_ratio_first": float(v[0]),
                "distance_ratio_min": float(np.nanmin(v)),
                "distance_ratio_last": float(v[-1]),
                "spearman_distance": rho(series("distance")),
                "spearman_distance_null": rho(series("distance_null")),
                "spearman_distance_ratio": rho(ratio),
            }
        cons = series("consistency")
        if cons.height:
            row |= {
                "spearman_consistency": rho(cons),
                "spearman_consistency_uniform": rho(series("consistency_uniform")),
            }
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)
