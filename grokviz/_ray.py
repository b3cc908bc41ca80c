"""Ray, when a user asks for it: the import that names the extra, and one way to reach a cluster.

Both Ray engines, tracing (:mod:`grokviz.tracing._ray`) and analysis (:mod:`grokviz.metrics._ray`),
reach their cluster through :func:`connect`:

- a process already connected (the user called ``ray.init``, or a test did) is used as it is and
  left connected;
- an ``address`` (``"auto"``, ``"10.0.0.1:6379"``, ``"ray://head:10001"``) connects to that
  cluster for the call and disconnects after it, leaving the cluster running;
- without one, Ray looks for ``RAY_ADDRESS`` or a cluster that ``ray start`` started on this
  machine; failing both, a local cluster is started for the call and stopped after it. grokviz
  starts it small (no dashboard, a small object store: the engines pass file paths and small
  dicts, never arrays) and without Ray's usage reports unless ``RAY_USAGE_STATS_ENABLED`` says
  otherwise.

Examples
--------
>>> describe_resources({"CPU": 16.0, "GPU": 4.0}, nodes=2)
'2 node(s), 16 CPU(s), 4 GPU(s)'
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from grokviz.errors import ClusterError, DeviceError, InputError, MissingDependencyError

logger = logging.getLogger("grokviz.ray")

# Bytes of object store for a local cluster grokviz starts itself: results are small dicts, so
# Ray's default (30 % of memory, shared memory it reserves) would only take memory from the model.
_LOCAL_OBJECT_STORE = 128 * 2**20


def import_ray() -> ModuleType:
    """``ray``, or a :class:`~grokviz.errors.MissingDependencyError` naming the extra."""
    try:
        import ray
    except ImportError as exc:
        msg = (
            'tracing or analyzing on a Ray cluster needs Ray: pip install "grokviz[ray]" '
            f"(on the driver and on every node of the cluster); it could not be imported: {exc}"
        )
        raise MissingDependencyError(msg) from exc
    return ray


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[ModuleType]:
    """Be connected to a Ray cluster for the block (see the module docstring); yield ``ray``."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, configure_logging=False)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                include_dashboard=False,
                object_store_memory=_LOCAL_OBJECT_STORE,
                configure_logging=False,
            )
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, even bare Exception
        text = " ".join(str(exc).split())
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        msg = (
            f"could not connect to {where}: {text}. Start one with `ray start --head` (see "
            "README, Tracing on a cluster) and pass its address (--ray HOST:6379, or --ray auto "
            "on one of its nodes)"
        )
        raise ClusterError(msg) from exc
    try:
        yield ray
    finally:
        ray.shutdown()  # disconnects; stops the cluster only when this call started it


def resources(ray: ModuleType) -> tuple[dict[str, float], int]:
    """The cluster's total resources and its number of live nodes."""
    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return total, nodes


def describe_resources(total: Mapping[str, Any], *, nodes: int) -> str:
    """``total`` resources of ``nodes`` nodes in words, for progress messages."""
    gpus = float(total.get("GPU", 0))
    cpus = float(total.get("CPU", 0))
    return f"{nodes} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s)"


@dataclass(frozen=True)
class WorkerSpec:
    """How many Ray workers to start, what each reserves, and the torch device each uses."""

    count: int
    cpus: float
    gpus: float
    device: str

    @property
    def threads(self) -> int:
        """torch threads per worker: its CPUs (at least one)."""
        return max(1, int(self.cpus))


def plan_workers(
    *,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    device: Any,
    total: Mapping[str, float],
    units: int,
) -> WorkerSpec:
    """Check the worker options against the cluster's ``total`` resources, before any work.

    A worker sees only the GPUs Ray gives it (``gpus_per_worker``; a fraction shares one GPU
    between workers), always numbered from ``cuda:0``, so a device is checked against what each
    worker will see rather than against this machine, which may have no GPU at all. ``workers``
    defaults to as many as the cluster holds at once, and never more than the ``units`` of work.

    Raises
    ------
    InputError
        An option is out of range, or asks for a device that contradicts the GPUs reserved.
    DeviceError
        A GPU device is asked for without GPUs per worker, or the cluster has fewer GPUs than
        one worker needs.

    Examples
    --------
    >>> plan_workers(workers=None, cpus_per_worker=1, gpus_per_worker=1, device=None,
    ...              total={"CPU": 32, "GPU": 4}, units=100)
    WorkerSpec(count=4, cpus=1.0, gpus=1.0, device='cuda')
    >>> plan_workers(workers=None, cpus_per_worker=2, gpus_per_worker=0, device=None,
    ...              total={"CPU": 8}, units=3)
    WorkerSpec(count=3, cpus=2.0, gpus=0.0, device='cpu')
    """
    import torch

    if workers is not None and workers < 1:
        msg = f"workers must be at least 1, got {workers}"
        raise InputError(msg)
    if not cpus_per_worker > 0:
        msg = f"cpus_per_worker must be more than 0, got {cpus_per_worker}"
        raise InputError(msg)
    if gpus_per_worker < 0:
        msg = f"gpus_per_worker must be 0 or more, got {gpus_per_worker}"
        raise InputError(msg)
    if gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker):
        msg = f"gpus_per_worker above 1 must be a whole number of GPUs, got {gpus_per_worker}"
        raise InputError(msg)
    name = device if device is not None else ("cuda" if gpus_per_worker else "cpu")
    try:
        parsed = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        msg = f"unknown device {name!r}: {exc}; use e.g. 'cpu' or 'cuda'"
        raise InputError(msg) from exc
    if parsed.type == "cuda":
        if not gpus_per_worker:
            msg = (
                f"device {str(name)!r} was asked for, but a Ray worker sees a GPU only when it is "
                "given one: pass gpus_per_worker=1 (--gpus-per-worker 1), or a fraction such as "
                "0.5 to share a GPU between two workers"
            )
            raise DeviceError(msg)
        seen = max(1, int(gpus_per_worker))
        if parsed.index is not None and parsed.index >= seen:
            msg = (
                f"device {str(name)!r} was asked for, but each Ray worker sees only its own "
                f"{seen} GPU(s), numbered from cuda:0; pass device 'cuda'"
            )
            raise InputError(msg)
    elif gpus_per_worker:
        msg = (
            f"gpus_per_worker={gpus_per_worker:g} reserves GPUs that device {str(name)!r} never "
            "uses; pass device 'cuda', or gpus_per_worker=0"
        )
        raise InputError(msg)
    have_gpus, have_cpus = float(total.get("GPU", 0)), float(total.get("CPU", 0))
    if gpus_per_worker and have_gpus < gpus_per_worker:
        msg = (
            f"the Ray cluster has {have_gpus:g} GPU(s) in all, fewer than the "
            f"{gpus_per_worker:g} each worker needs; start GPU nodes (`ray start` on them), or "
            "trace on the CPU (gpus_per_worker=0)"
        )
        raise DeviceError(msg)
    if have_cpus < cpus_per_worker:
        msg = (
            f"the Ray cluster has {have_cpus:g} CPU(s) in all, fewer than the "
            f"{cpus_per_worker:g} each worker needs; pass a smaller cpus_per_worker"
        )
        raise InputError(msg)
    fits = (
        int(have_gpus // gpus_per_worker) if gpus_per_worker else int(have_cpus // cpus_per_worker)
    )
    count = workers if workers is not None else max(1, fits)
    if count > fits:
        logger.info(
            "%d workers asked for, but the cluster holds %d at once now; the others start when "
            "nodes join (an autoscaler may add them)",
            count,
            fits,
        )
    return WorkerSpec(
        count=max(1, min(count, units)),
        cpus=float(cpus_per_worker),
        gpus=float(gpus_per_worker),
        device=str(parsed) if parsed.index is not None else parsed.type,
    )
