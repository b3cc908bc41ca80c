"""Either toy's run folder, opened, traced and reported by its kind.

A run folder's ``run.json`` says which toy wrote it (``"arithmetic"`` or ``"lm"``).
:func:`open_run` opens it with that toy's loader, :func:`trace_run` traces its checkpoints into a
trace store and :func:`write_run_report` writes that toy's Markdown report. This is the one
module that knows both toys; the toys themselves only know :mod:`grokviz.toy.shared`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grokviz.errors import InputError
from grokviz.toy.shared.loop import Run, run_kind

DEFAULT_REPORTS: dict[str, Path] = {
    "arithmetic": Path("docs/toy_results.md"),
    "lm": Path("docs/toy_lm.md"),
}
"""Where each kind's report goes when no path is given."""


def _loaders() -> dict[str, type[Run]]:
    from grokviz.toy.arithmetic.train import ToyRun
    from grokviz.toy.lm.train import LMRun

    return {ToyRun.kind: ToyRun, LMRun.kind: LMRun}


def open_run(folder: str | Path) -> Run:
    """Open the run folder ``folder`` with the loader of its kind (``ToyRun`` or ``LMRun``).

    Examples
    --------
    >>> open_run("data/samples/toy").kind
    'arithmetic'
    """
    kind = run_kind(folder)
    loaders = _loaders()
    if kind not in loaders:
        msg = f"{folder} holds a run of unknown kind {kind!r}; grokviz.toy opens {sorted(loaders)}"
        raise InputError(msg)
    return loaders[kind].load(folder)


def trace_run(
    run: str | Path,
    *,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of a run folder of either kind over all its samples.

    Parameters
    ----------
    run
        A run folder written by either toy's trainer.
    store
        The trace store folder (default ``<run>/trace``); resumable.
    token_samples
        Per domain and split, this many samples keep their per-token routing.
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
    >>> trace_run("runs/toy")  # doctest: +SKIP
    PosixPath('runs/toy/trace')
    """
    from grokviz.toy.shared.tracing import trace_checkpoints

    return trace_checkpoints(
        open_run(run),
        store=store,
        token_samples=token_samples,
        batch_size=batch_size,
        progress=progress,
    )


def write_run_report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    store: str | Path | None = None,
    **options: Any,
) -> Path:
    """Analyze a traced run folder of either kind and write its Markdown report.

    ``out`` defaults to :data:`DEFAULT_REPORTS` of the run's kind; ``options`` go to that
    toy's report (e.g. ``memorization="answer"``).

    Examples
    --------
    >>> write_run_report("runs/toy")  # doctest: +SKIP
    PosixPath('docs/toy_results.md')
    """
    kind = run_kind(run)
    path = Path(out) if out is not None else DEFAULT_REPORTS[kind]
    if kind == "lm":
        from grokviz.toy.lm.report import write_lm_report

        return write_lm_report(run, path, store=store, **options)
    from grokviz.toy.arithmetic.report import write_report

    return write_report(run, store=store, out=path, **options)
