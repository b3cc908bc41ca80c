"""Analysis on a Ray cluster: :func:`grokviz.analyze`'s per-checkpoint work as one Ray task each.

``analyze(store, engine="ray")`` decides on the driver everything that spans checkpoints (which
samples are memorized, the groups, the losses), then hands each checkpoint to a task: it opens
the store itself (so only a path, the groups and that checkpoint's losses travel, never routing
arrays), reads the checkpoint's routing and router weights, and returns its metrics rows. The
task runs :func:`grokviz.metrics.analyze._checkpoint_rows`, the very function the local loop
runs, with one torch thread per CPU it holds; so the rows are the same as a local analysis
with as many threads.

With ``device="cuda"`` each task holds one GPU of the cluster (checked against the cluster's
resources before any task starts). Tasks depend only on their arguments, so Ray retries one
whose worker died (``max_retries``) without changing the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.errors import GrokvizError, InputError

logger = logging.getLogger("grokviz.metrics")

_RETRIES = 3  # times Ray reruns a checkpoint's task whose worker died
_POLL_S = 0.5  # how often the driver looks up from ray.wait (so Ctrl-C is prompt)


def _checkpoint_task(
    work: Callable[..., tuple[list[dict], str | None, list[Any]]],
    store: str,
    label: str,
    step: int,
    loss_of: dict[str, float | None],
    skip: set[str],
    device: str,
    threads: int,
) -> tuple[list[dict], str | None, list[Any]]:
    """One checkpoint's rows, computed where Ray placed this task."""
    import torch

    from grokviz.store import TraceStore
    from grokviz.tracing import resolve_device

    torch.set_num_threads(threads)
    src = TraceStore.open(store)
    return work(src, label, step, loss_of=loss_of, skip=skip, device=resolve_device(device))


def map_checkpoints(
    work: Callable[..., tuple[list[dict], str | None, list[Any]]],
    src: Any,
    ckpts: pl.DataFrame,
    losses: pl.DataFrame,
    nonfinite: Mapping[str, set[str]],
    *,
    address: str | None,
    device: Any,
    progress: bool,
) -> Iterator[tuple[list[dict], str | None, list[Any]]]:
    """``work`` for every checkpoint of ``ckpts``, as Ray tasks; yields results as they finish.

    Raises
    ------
    InputError
        ``src`` is not a trace store on disk (frames in this process cannot reach the workers).
    DeviceError
        ``device`` asks for GPUs the cluster does not have.
    """
    from tqdm.auto import tqdm

    from grokviz._ray import connect, plan_workers, resources
    from grokviz.metrics.analyze import _losses_of
    from grokviz.store import TraceStore

    if not isinstance(src, TraceStore):
        msg = (
            "analyze(engine='ray') reads a trace store on disk from every worker; it got "
            f"{type(src).__name__}, which lives in this process only. Pass the store's folder "
            "(on a filesystem every node mounts), or use engine='local'"
        )
        raise InputError(msg)
    store = str(Path(src.path).expanduser().resolve())
    name = None if device is None else str(device)
    gpus = 1.0 if name is not None and name.startswith("cuda") else 0.0
    with connect(address) as ray:
        total, _ = resources(ray)
        spec = plan_workers(
            workers=None,
            cpus_per_worker=1,
            gpus_per_worker=gpus,
            device=name,
            total=total,
            units=max(1, ckpts.height),
        )
        task = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_retries=_RETRIES)(
            _checkpoint_task
        )
        work_ref = ray.put(work)  # the groups once, not once per checkpoint
        pending = {}
        for label, step in ckpts.select("checkpoint", "step").iter_rows():
            ref = task.remote(
                work_ref,
                store,
                label,
                int(step),
                _losses_of(losses, label),
                set(nonfinite.get(label, set())),
                spec.device,
                spec.threads,
            )
            pending[ref] = label
        bar = tqdm(total=len(pending), disable=not progress, desc="ckpt on Ray", unit="ckpt")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    label = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, GrokvizError):
                            raise cause from None
                        raise
                    bar.update(1)
                    bar.set_postfix_str(label, refresh=False)
                    yield result
        finally:
            for ref in pending:  # interrupted or failed: stop what is still queued or running
                ray.cancel(ref, force=True)
            bar.close()
