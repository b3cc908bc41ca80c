"""Trace a toy run's checkpoints over its samples into a trace store.

:func:`trace_run` traces a run folder of either kind: the modular-arithmetic toy
(:mod:`grokviz.toy.train`) or a one-pass LM run (:mod:`grokviz.toy.lm`), opened by
:func:`open_run` from ``run.json``'s kind; :func:`trace_checkpoints` traces an opened run. Both
keep per-token routing for a few samples of each domain and split. The
reports (:mod:`grokviz.toy.report`, :mod:`grokviz.toy.lm_report`) read the store this writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import polars as pl

from grokviz.schema import SAMPLES, conform
from grokviz.toy._loop import Run, run_kind


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


def open_run(folder: str | Path) -> Run:
    """Open the run folder ``folder`` with the loader of its kind (``ToyRun`` or ``LMRun``).

    Examples
    --------
    >>> open_run("data/samples/toy").kind  # doctest: +SKIP
    'toy'
    """
    from grokviz.toy.lm import LMRun
    from grokviz.toy.train import ToyRun

    kind = run_kind(folder)
    loaders: dict[str, type[Run]] = {ToyRun.kind: ToyRun, LMRun.kind: LMRun}
    if kind not in loaders:
        msg = f"{folder} holds a run of unknown kind {kind!r}; grokviz.toy opens {sorted(loaders)}"
        raise ValueError(msg)
    return loaders[kind].load(folder)


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
        A run folder written by :func:`grokviz.toy.train.train` or
        :func:`grokviz.toy.lm.train_lm`.
    store
        The trace store folder (default ``<run>/trace``); resumable.
    token_samples
        Per domain (operation) and split, this many samples keep their per-token routing.
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
        open_run(run),
        store=store,
        token_samples=token_samples,
        batch_size=batch_size,
        progress=progress,
    )


def trace_checkpoints(
    run: TracedRun,
    *,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of an opened run over its samples (``schema.SAMPLES`` columns).

    The first ``token_samples`` samples of each domain and split keep their per-token routing;
    the tokenizer truncates at ``run.max_length``, the run's longest sample. The other arguments
    are those of :func:`trace_run`, which opens a run folder and calls this.

    Examples
    --------
    >>> trace_checkpoints(open_run("data/samples/toy"))  # doctest: +SKIP
    PosixPath('data/samples/toy/trace')
    """
    from grokviz.tracing import trace

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
        max_length=run.max_length,
        progress=progress,
    )
    return target
