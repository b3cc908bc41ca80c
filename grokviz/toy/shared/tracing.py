"""Trace an opened toy run's checkpoints over its samples into a trace store.

:func:`trace_checkpoints` traces any run that says where it lives, what its samples and
checkpoints are and how long its longest sample is: both toys' runs do. It keeps per-token
routing for a few samples of each domain and split. Opening a run folder of either kind is
:func:`grokviz.toy.runs.open_run`'s job, so this module knows neither toy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import polars as pl

from grokviz.schema import SAMPLES, conform


class TracedRun(Protocol):
    """A run :func:`trace_checkpoints` traces: ``ToyRun`` or ``LMRun``."""

    @property
    def out(self) -> Path: ...
    @property
    def samples(self) -> pl.DataFrame: ...
    @property
    def checkpoints(self) -> list[Path]: ...
    @property
    def max_length(self) -> int: ...


def trace_checkpoints(
    run: TracedRun,
    *,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of an opened run over its samples (``schema.SAMPLES`` columns).

    Parameters
    ----------
    run
        An opened run (:func:`grokviz.toy.runs.open_run`).
    store
        The trace store folder (default ``<run>/trace``); resumable.
    token_samples
        Per domain and split, the first this many samples keep their per-token routing.
    batch_size
        Samples per forward pass.
    progress
        Show a progress bar.

    The tokenizer truncates at ``run.max_length``, the run's longest sample.

    Returns
    -------
    Path
        The store folder.
    """
    from grokviz.tracing import trace

    target = Path(store) if store is not None else run.out / "trace"
    # the control flag travels with the samples, so that analyze() keeps control samples out of
    # the global group and validate() finds the control groups in the store alone
    extra = ["control"] if "control" in run.samples.columns else []
    samples = conform(run.samples.select([*SAMPLES, *extra]), SAMPLES, name="samples")
    select = (
        samples.group_by("domain", "split", maintain_order=True)
        .head(token_samples)["sample_id"]
        .to_list()
    )
    trace(
        [str(c) for c in run.checkpoints],
        samples,
        target,
        select=select,
        batch_size=batch_size,
        max_length=run.max_length,
        progress=progress,
    )
    return target
