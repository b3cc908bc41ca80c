"""Repairing a trace store: recompute exactly what :meth:`TraceStore.verify` found wrong.

The store records, for every checkpoint, where its weights came from (a folder, or a hub
repository at a commit) and their hash, and the parameters it was traced with, so every missing,
damaged, foreign or misplaced part can be traced again from the same weights, and only those.
Sample-set files are the one thing a checkpoint cannot give back: they are restored from the
samples table the user passes, when it reproduces them exactly.

Examples
--------
>>> import shutil, tempfile
>>> from pathlib import Path
>>> copy = Path(tempfile.mkdtemp()) / "trace"
>>> _ = shutil.copytree("data/samples/toy/trace", copy)
>>> first = TraceStore.open(copy).checkpoints()["checkpoint"][0]
>>> (copy / first / "routers.parquet").unlink()
>>> print(TraceStore.open(copy).verify())  # doctest: +ELLIPSIS
missing: .../routers.parquet (listed in the manifest but not there)
>>> repair(copy, progress=False).verify().ok
True
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from grokviz.errors import StoreDamagedError, StoreMismatchError, TraceStoreError
from grokviz.store import TraceStore, VerifyReport, check_samples
from grokviz.store._format import CLAIMS_DIR, LOCK_FILE
from grokviz.store._lock import Claim, describe, store_lock
from grokviz.store._writer import _restore_sample_sets
from grokviz.tracing._checkpoints import Checkpoint


def recorded_checkpoint(entry: dict[str, Any]) -> Checkpoint:
    """The :class:`Checkpoint` a store entry was traced from (hub checkpoints pinned to their
    recorded commit)."""
    return Checkpoint(
        entry["source"],
        revision=entry.get("revision"),
        step=entry.get("step"),
        tokens=entry.get("tokens"),
        label=entry["label"],
        sha=entry.get("sha") if entry.get("revision") else None,
    )


def _live_claims(store: TraceStore) -> list[str]:
    folder = store.path / CLAIMS_DIR
    if not folder.is_dir():
        return []
    live = []
    for path in sorted(folder.iterdir()):
        claim = Claim.acquire(folder, path.name)
        if claim is None:
            live.append(f"{path.name} ({describe(Claim.holder(folder, path.name))})")
        else:
            claim.release()  # a dead process's claim: free, and gone now
    return live


def repair(
    store: str | os.PathLike[str] | TraceStore,
    *,
    samples: Any = None,
    device: Any = None,
    batch_size: int = 16,
    progress: bool = True,
    **load_kwargs: Any,
) -> TraceStore:
    """Recompute every missing, damaged, foreign, misplaced or untraced part of ``store``.

    Parameters
    ----------
    store
        The store, or its folder.
    samples
        The samples table the store was traced with; needed only when a sample-set file is
        damaged (it is restored from these rows, which must reproduce it exactly).
    device, batch_size, **load_kwargs
        As in :func:`grokviz.trace`; the tracing parameters (``max_length``, ``select``,
        ``dtype``) are the store's own.

    Returns
    -------
    TraceStore
        The repaired store; its :meth:`~TraceStore.verify` is ``ok``.

    Raises
    ------
    TraceStoreError
        Another process is writing the store (repair when it has finished).
    StoreDamagedError
        A sample-set file is damaged and ``samples`` is missing or does not reproduce it.
    StoreMismatchError
        A checkpoint's weights are no longer those the store was traced from.
    """
    from grokviz.tracing._run import trace

    opened = store if isinstance(store, TraceStore) else TraceStore.open(store)
    live = _live_claims(opened)
    if live:
        msg = (
            f"trace store {str(opened.path)!r} is being written by other processes "
            f"({', '.join(live[:3])}); repair it when they have finished"
        )
        raise TraceStoreError(msg)
    report = opened.verify()
    if any(p.unit == "samples" for p in report.problems):
        if samples is None:
            msg = (
                f"the samples of trace store {str(opened.path)!r} are damaged: "
                f"{next(str(p) for p in report.problems if p.unit == 'samples')}"
            )
            raise StoreDamagedError(msg)
        with store_lock(opened.path / LOCK_FILE):
            _restore_sample_sets(opened.refresh(), check_samples(samples))
    _remove_leftovers(report)
    units = report.units()
    if units:
        entries = opened.refresh().manifest["checkpoints"]
        checkpoints = [recorded_checkpoint(entries[label]) for label in units]
        for checkpoint in checkpoints:
            _check_weights(opened, checkpoint)
        params = opened.params
        trace(
            checkpoints,
            opened.samples(),
            opened.path,
            select=params["select"],
            max_length=params["max_length"],
            dtype=params["dtype"],
            device=device,
            batch_size=batch_size,
            progress=progress,
            **load_kwargs,
        )
    return opened.refresh()


def _check_weights(store: TraceStore, checkpoint: Checkpoint) -> None:
    recorded = store.manifest["checkpoints"][checkpoint.label].get("sha")
    try:
        now = checkpoint.identity()["sha"]
    except FileNotFoundError as exc:
        msg = (
            f"cannot repair checkpoint {checkpoint.label!r} of {str(store.path)!r}: its weights "
            f"were traced from {checkpoint.source!r}, which is gone ({exc}); put them back there"
        )
        raise StoreMismatchError(msg) from exc
    if recorded and now != recorded:
        msg = (
            f"cannot repair checkpoint {checkpoint.label!r} of {str(store.path)!r}: the weights "
            f"at {checkpoint.source!r} changed since it was traced (hash {str(now)[:12]} vs "
            f"{recorded[:12]}); restore them, or trace into a new store"
        )
        raise StoreMismatchError(msg)


def _remove_leftovers(report: VerifyReport) -> None:
    for problem in report.problems:
        if problem.kind == "leftover":
            with contextlib.suppress(FileNotFoundError):
                problem.path.unlink()
