"""Trace a toy run's checkpoints over its samples into a trace store.

:func:`trace_run` traces a run of the modular-arithmetic toy (:mod:`grokviz.toy.train`);
:func:`trace_checkpoints` traces any opened run, and :func:`grokviz.toy.lm.trace_lm` uses it for
a one-pass LM run. Both keep per-token routing for a few samples of each domain and split. The
reports (:mod:`grokviz.toy.report`, :mod:`grokviz.toy.lm_report`) read the store this writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import polars as pl

from grokviz.schema import SAMPLES, conform
from grokviz.toy.train import ToyRun


class TracedRun(Protocol):
    """A run :func:`trace_checkpoints` traces: ``ToyRun`` or ``LMRun``."""

    @property
    def out(self) -> Path: ...
    @property
    def samples(self) -> pl.DataFrame: ...
    @property
    def checkpoints(self) -> list[Path]: ...


def trace_run(
    run: str | Path,
    *,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of a toy run over all its samples into a trace store.

    Parameters
    ----------
    run
        A run folder written by :func:`grokviz.toy.train.train`.
    store
        The trace store folder (default ``<run>/trace``); resumable.
    token_samples
        Per operation and split, this many samples keep their per-token routing.
    batch_size
        Samples per forward pass.
    progress
        Show a progress bar.

    Returns
    -------
    Path
        The store folder.

    Examples
    --------
    >>> trace_run("data/samples/toy")  # doctest: +SKIP
    PosixPath('data/samples/toy/trace')
    """
    return trace_checkpoints(
        ToyRun.load(run),
        store=store,
        token_samples=token_samples,
        batch_size=batch_size,
        max_length=16,
        progress=progress,
    )


def trace_checkpoints(
    run: TracedRun,
    *,
    max_length: int,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of an opened run over its samples (``schema.SAMPLES`` columns).

    The first ``token_samples`` samples of each domain and split keep their per-token routing;
    ``max_length`` is the tokenizer's truncation length, at least the longest sample. The other
    arguments are those of :func:`trace_run`, which calls this for a toy run
    (:func:`grokviz.toy.lm.trace_lm` for a one-pass LM run).

    Examples
    --------
    >>> trace_checkpoints(ToyRun.load("data/samples/toy"), max_length=16)  # doctest: +SKIP
    PosixPath('data/samples/toy/trace')
    """
    from grokviz.trace import trace

    target = Path(store) if store is not None else run.out / "trace"
    samples = conform(run.samples.select(list(SAMPLES)), SAMPLES, name="samples")
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
        max_length=max_length,
        progress=progress,
    )
    return target
