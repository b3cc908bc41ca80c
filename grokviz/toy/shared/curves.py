"""Reading the curves of a toy run, for both reports: when a curve reaches a level, where test
accuracy's rise begins, and the validation loss of the traced checkpoints.

:mod:`grokviz.toy.arithmetic.report` (the modular-arithmetic toy) and :mod:`grokviz.toy.lm.report` (the
one-pass LM) find memorization, generalization and the start of the rise the same way; the paper
correlates its metrics with test accuracy from that start on.

Examples
--------
>>> steps = np.array([0, 10, 20, 30])
>>> _first(steps, np.array([False, True, False, True])), _first_from(steps, np.array([0, 1, 0, 1]))
(10, 30)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from grokviz.schema import METRICS, conform


def with_global(
    accuracy: pl.DataFrame, real: list[str], counts: dict[str, int] | None = None
) -> pl.DataFrame:
    """A run's test accuracy per task, with ``"global"``: the share of the ``real`` tasks' test
    prompts answered (a control task's left out), in place of the trainer's ``"all"``.

    The metrics' global group holds no control samples (:func:`grokviz.analyze` leaves them
    out), so the accuracy it is correlated with must leave the control's test prompts out too.
    ``counts``: test prompts per task, to weigh each task's accuracy (default: equal weights,
    for tasks with as many prompts each).

    Examples
    --------
    >>> acc = pl.DataFrame({"checkpoint": "c", "step": 5, "task": ["a", "b", "r", "all"],
    ...     "accuracy": [0.2, 0.6, 0.1, 0.3]})
    >>> with_global(acc, ["a", "b"]).filter(task="global")["accuracy"].to_list()
    [0.4]
    >>> with_global(acc, ["a", "b"], {"a": 3, "b": 1}).filter(task="global")["accuracy"].round(2)[0]
    0.3
    """
    tasks = accuracy.filter(pl.col("task") != "all")
    weight = pl.col("task").replace_strict(counts, default=0) if counts else pl.lit(1.0)
    mean = (
        tasks.filter(pl.col("task").is_in(real))
        .with_columns(w=weight.cast(pl.Float64))
        .group_by("checkpoint", "step")
        .agg(((pl.col("accuracy") * pl.col("w")).sum() / pl.col("w").sum()).alias("accuracy"))
        .with_columns(task=pl.lit("global"))
    )
    return pl.concat([tasks, mean.select(tasks.columns)], how="vertical_relaxed").sort(
        "step", "task"
    )


def _first(steps: np.ndarray, ok: np.ndarray) -> int | None:
    """The first step at which ``ok`` holds (None if never)."""
    hits = np.flatnonzero(ok)
    return int(steps[hits[0]]) if hits.size else None


def _first_from(steps: Any, ok: Any) -> int | None:
    """The first step from which ``ok`` holds at every later step too (None if never)."""
    stays = np.flip(np.cumprod(np.flip(ok.astype(bool)))).astype(bool)
    hits = np.flatnonzero(stays)
    return int(steps[hits[0]]) if hits.size else None


def _rise_step(accuracy: pl.DataFrame, task: str | None = None, *, fraction: float = 0.25) -> int:
    """Where test accuracy's sustained rise begins (the paper correlates from there on):
    :func:`grokviz.metrics.rise_step` of the rows of ``task`` (else of all rows: one task's)."""
    from grokviz.metrics import rise_step

    part = (accuracy if task is None else accuracy.filter(pl.col("task") == task)).sort("step")
    return rise_step(part["step"].to_numpy(), part["accuracy"].to_numpy(), fraction=fraction)


def _val_loss(store: Any, samples: pl.DataFrame, *, overall: bool = False) -> pl.DataFrame:
    """Mean traced loss of each domain's validation samples per checkpoint, as metrics rows.

    With ``overall``, also a ``"global"`` row per checkpoint: the mean over all validation
    samples (the LM report's global group; the first toy's report averages the domains instead).
    """
    val = store.losses().join(
        samples.filter(pl.col("split") == "val").select("sample_id", "domain"), on="sample_id"
    )
    loss = pl.col("loss").mean().alias("value")
    frames = [val.group_by("checkpoint", "step", "domain").agg(loss).rename({"domain": "group"})]
    if overall:
        frames.append(
            val.group_by("checkpoint", "step").agg(loss).with_columns(group=pl.lit("global"))
        )
    frame = pl.concat(frames, how="diagonal").with_columns(
        metric=pl.lit("val_loss"), ci_low=None, ci_high=None
    )
    return conform(frame, METRICS, name="metrics").select(list(METRICS))
