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
