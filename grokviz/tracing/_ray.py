"""Tracing on a Ray cluster: the units of a local trace, traced by workers on many machines.

``grokviz.trace(..., engine="ray")`` does what a local trace does, with the work spread out:

- the driver (the process that calls it) runs every check a local trace runs before it writes
  anything: the arguments, each checkpoint's identity, that the series agrees on its MoE shape
  (from the configs alone), and the device and worker options against the cluster's resources;
- it opens the store, lists the units still missing (each checkpoint's router table and its
  shards of samples), and hands them to a fixed set of :class:`TraceWorker` actors;
- each worker loads a checkpoint once and traces every unit of it that it is given: it claims
  the unit in the store (:meth:`grokviz.store.StoreWriter.claim`), computes it with the local
  tracer's own code and writes its parts through the store's writer, atomically, itself; only
  a small summary travels back to the driver;
- a worker that dies (killed, out of memory, its node lost) loses only the unit in flight: its
  claim dies with its process, the driver puts the unit back at the front of the queue, another
  worker traces it, and a new worker takes the dead one's place when there is work for it. A
  unit that kills ``_MAX_ATTEMPTS`` workers in a row stops the trace (:class:`WorkerLostError`).

Why a small scheduler of our own over actors, and not Ray Data's ``map_batches`` or
``ray.util.ActorPool``: loading a checkpoint can take minutes, so a worker should keep the units
of the checkpoint it has loaded (:class:`UnitQueue` gives them to it first, and spreads the
other workers over other checkpoints); a dead actor must be noticed and its unit retried
elsewhere (``ActorPool`` keeps handing work to a dead actor); and a unit another process holds
(a second trace of the same store) must come back as "held", to be waited for like a local trace
does, not retried. The store's claims, not Ray, keep every unit traced once.

The store must live on a filesystem that the driver and every worker mount at the same path
(NFS, Lustre, a shared disk); see README, "Tracing on a cluster".
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grokviz.errors import GrokvizError, InputError, NotAStoreError, WorkerLostError
from grokviz.store import StoreWriter, TraceStore, check_samples
from grokviz.tracing._checkpoints import Checkpoint
from grokviz.tracing._prepare import check_select, check_trace_args, is_checkpoint_like

logger = logging.getLogger("grokviz.tracing")

Unit = tuple[str, int | str]  # (checkpoint label, shard index or "routers")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/")  # a scheme: s3://, gs://; not C:/ on Windows
_MAX_ATTEMPTS = 3  # workers a unit may take down before the trace stops
_POLL_S = 0.5  # how often the driver looks up from ray.wait (so Ctrl-C is prompt)
_WAITING_NOTE_S = 60.0  # after this long with no worker placed, say so


class UnitQueue:
    """The units left to trace, handed out so that each worker loads few checkpoints.

    A worker is given the next unit of the checkpoint it traced last while there is one; then a
    unit of the checkpoint fewest workers are on (ties in series order). A unit put back (its
    worker died) is the first its checkpoint hands out.

    Examples
    --------
    >>> queue = UnitQueue([("a", "routers"), ("a", 0), ("a", 1), ("b", 0), ("b", 1)])
    >>> queue.next_for(None, on={})  # a new worker starts at the first checkpoint
    ('a', 'routers')
    >>> queue.next_for(None, on={"a": 1})  # another goes where no one is
    ('b', 0)
    >>> queue.next_for("a", on={"a": 1, "b": 1})  # a worker keeps to its checkpoint
    ('a', 0)
    >>> queue.put_back(("a", 0)); queue.next_for("b", on={"a": 1, "b": 1})
    ('b', 1)
    >>> queue.next_for("b", on={"a": 1, "b": 1}), len(queue)
    (('a', 0), 1)
    """

    def __init__(self, units: Iterable[Unit]) -> None:
        self._queues: dict[str, collections.deque[int | str]] = {}
        for label, unit in units:
            self._queues.setdefault(label, collections.deque()).append(unit)
        self._order = {label: i for i, label in enumerate(self._queues)}

    def __len__(self) -> int:
        return sum(map(len, self._queues.values()))

    def next_for(self, label: str | None, *, on: Mapping[str, int]) -> Unit | None:
        """The unit a worker that last traced checkpoint ``label`` should trace next (``None``
        when none is left); ``on`` counts the workers on each checkpoint."""
        if label is not None and self._queues.get(label):
            return label, self._queues[label].popleft()
        left = [name for name, queue in self._queues.items() if queue]
        if not left:
            return None
        best = min(left, key=lambda name: (on.get(name, 0), self._order[name]))
        return best, self._queues[best].popleft()

    def put_back(self, unit: Unit) -> None:
        """Return ``unit`` to the front of its checkpoint's queue."""
        label, index = unit
        self._queues.setdefault(label, collections.deque()).appendleft(index)
        self._order.setdefault(label, len(self._order))


class TraceWorker:
    """One Ray worker: opens the store, loads one checkpoint at a time, traces units into it.

    Made a Ray actor by :func:`trace_ray` (``ray.remote(...)(TraceWorker)``), so its class is
    imported by reference on every node: grokviz must be installed there.
    """

    def __init__(self, store: str, options: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(int(options["threads"]))
        self.path = store
        self.options = options
        self.writer: StoreWriter | None = None
        self.plan: Any = None
        self.where = {"host": socket.gethostname(), "pid": os.getpid()}

    def ready(self) -> dict[str, Any]:
        """Check the device here, on the worker (a GPU is seen only where Ray placed us)."""
        from grokviz.tracing._prepare import resolve_device

        self.device = resolve_device(self.options["device"])
        return {**self.where, "device": str(self.device)}

    def _open(self) -> StoreWriter:
        if self.writer is None:
            try:
                self.writer = StoreWriter.open(self.path)
            except NotAStoreError as exc:
                msg = (
                    f"Ray worker on {self.where['host']} cannot open the trace store: {exc} The "
                    "store must be on a filesystem that every node mounts at the same path "
                    "(NFS, Lustre, a shared disk)"
                )
                raise NotAStoreError(msg) from exc
        return self.writer

    def trace(
        self,
        unit: Unit,
        checkpoint: Checkpoint,
        identity: dict[str, Any],
        record: dict[str, Any],
    ) -> dict[str, Any]:
        """Claim, trace and write one unit; say what happened (``traced``, ``done``, ``held``)."""
        from grokviz.tracing import _run

        label, index = unit
        writer = self._open()
        claim = writer.claim(label, index)
        if claim is None:  # another process (another trace of this store) is tracing it
            return {**self.where, "status": "held"}
        with claim:
            finished = (
                not writer.needs_routers(label)
                if index == "routers"
                else index not in writer.missing_units(label)
            )
            if finished:
                return {**self.where, "status": "done"}
            if self.plan is None or self.plan.checkpoint.label != label:
                if self.plan is not None:
                    _run._release(self.plan)
                self.plan = _run._Plan(checkpoint, identity, record)
            opts = self.options
            _run._load(
                self.plan,
                device=self.device,
                dtype=opts["dtype"],
                progress=False,
                load_kwargs=opts["load_kwargs"],
            )
            if index == "routers":
                writer.write_routers(label, _run._routers_frame(self.plan.model, checkpoint))
                return {**self.where, "status": "traced", "samples": 0}
            assert isinstance(index, int)
            tally = _run._Tally()
            _run._trace_unit(
                writer,
                self.plan,
                index,
                selected=set(opts["select"]),
                batch_size=opts["batch_size"],
                max_length=opts["max_length"],
                on_nonfinite=opts["on_nonfinite"],
                bar=_run._progress(0, enabled=False, desc=label),
                tally=tally,
            )
        lo, hi = writer.store.manifest["shards"][index]
        return {
            **self.where,
            "status": "traced",
            "samples": hi - lo,
            "truncated": tally.truncated,
            "encoded": tally.encoded,
            "nonfinite": tally.nonfinite.get(label, []),
        }


def _loadable(checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` as a worker elsewhere loads it: a local folder by its absolute path."""
    if not checkpoint.is_local:
        return checkpoint
    source = str(Path(checkpoint.source).expanduser().resolve())
    return dataclasses.replace(checkpoint, source=source)


def trace_ray(
    checkpoints: Any,
    samples: object,
    store: str | os.PathLike[str] | TraceStore,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    select: Iterable[str] = (),
    batch_size: int = 16,
    max_length: int = 512,
    device: Any = None,
    dtype: Any = None,
    shard_size: int = 1024,
    on_nonfinite: str = "warn",
    wait: bool = True,
    progress: bool = True,
    **load_kwargs: Any,
) -> TraceStore:
    """:func:`grokviz.trace` on a Ray cluster (``engine="ray"``); see the module docstring."""
    from tqdm.auto import tqdm

    from grokviz._ray import connect, describe_resources, import_ray, plan_workers, resources
    from grokviz.tracing._run import _plans, _Tally, _warn_nonfinite, _warn_truncated

    if not is_checkpoint_like(checkpoints) and hasattr(checkpoints, "config"):
        msg = (
            "engine='ray' traces checkpoints that every worker loads itself (folders on a shared "
            "filesystem, or hub revisions); a model loaded in this process cannot be sent to "
            "them. Save it (model.save_pretrained) or trace it with engine='local'"
        )
        raise InputError(msg)
    if _URL.match(str(store)):  # s3://..., also as a Path, which makes it "s3:/..."
        msg = (
            f"the trace store {str(store)!r} is a URL: object storage has neither the locks nor "
            "the atomic renames that workers writing one store need. Trace into a folder on a "
            "filesystem every node mounts (NFS, Lustre), then copy the finished store to the bucket"
        )
        raise InputError(msg)
    import_ray()  # without Ray, say so (and the extra to install) before reading anything
    check_trace_args(batch_size=batch_size, max_length=max_length, on_nonfinite=on_nonfinite)
    frame = check_samples(samples)
    selected = check_select(select, frame["sample_id"].to_list())
    params = {
        "max_length": int(max_length),
        "select": selected,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
    }
    plans = _plans(checkpoints, tokenizer=None, checkpoint=None, **load_kwargs)
    path = (store.path if isinstance(store, TraceStore) else Path(store)).expanduser().resolve()
    with connect(address) as ray:
        total, nodes = resources(ray)
        spec = plan_workers(
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            device=device,
            total=total,
            units=2**31,
        )
        # Everything above only read; the store is created or opened (and locked) from here on.
        writer = StoreWriter.create_or_open(path, frame, params=params, shard_size=shard_size)
        for plan in plans:
            writer.check_checkpoint(plan.identity)
            writer.check_series(plan.checkpoint.label, plan.record)
        for plan in plans:
            writer.add_checkpoint(plan.identity, plan.record)
        units = _missing(writer, [p.checkpoint.label for p in plans], verify=True, log=True)
        if not units:
            return writer.store
        spec = dataclasses.replace(spec, count=min(spec.count, len(units)))
        logger.info(
            "tracing %d unit(s) on %d Ray worker(s) (%s each; cluster: %s)",
            len(units),
            spec.count,
            f"{spec.cpus:g} CPU, {spec.gpus:g} GPU, {spec.device}",
            describe_resources(total, nodes=nodes),
        )
        options = {
            "threads": spec.threads,
            "device": spec.device,
            "dtype": dtype,
            "select": selected,
            "batch_size": batch_size,
            "max_length": max_length,
            "on_nonfinite": on_nonfinite,
            "load_kwargs": load_kwargs,
        }
        jobs = {p.checkpoint.label: (_loadable(p.checkpoint), p.identity, p.record) for p in plans}
        tally = _Tally()
        bar = tqdm(
            total=len(units), disable=not progress, unit="unit", desc="trace", dynamic_ncols=True
        )
        pool = _Pool(ray, spec, str(path), options, jobs, bar=bar, tally=tally)
        try:
            while True:
                held = pool.run(units)
                if not held or not wait:
                    break
                label, unit = held[0]
                logger.info(
                    "waiting for %s, which traces %s unit %s",
                    writer.holder(label, unit),
                    label,
                    unit,
                )
                claim = writer.claim(label, unit, blocking=True)
                if claim is not None:
                    claim.release()  # free again: traced below if its holder did not finish
                units = _missing(writer, list(jobs), verify=False, log=False)
                bar.update(len(held) - sum(1 for u in held if u in units))
        finally:
            pool.shutdown()
            bar.close()
        _warn_truncated(tally.truncated, tally.encoded, max_length)
        for label, ids in tally.nonfinite.items():
            _warn_nonfinite(label, ids, stacklevel=4)
        return writer.store.refresh()


def _missing(writer: StoreWriter, labels: Sequence[str], *, verify: bool, log: bool) -> list[Unit]:
    """The units of ``labels`` still to trace, in series order (router tables first)."""
    shards = writer.store.manifest["shards"]
    units: list[Unit] = []
    for label in labels:
        missing = writer.missing_units(label, verify=verify)
        if writer.needs_routers(label):
            units.append((label, "routers"))
        units += [(label, s) for s in missing]
        done = len(shards) - len(missing)
        if log and missing and done:
            logger.info(
                "%s: %d of %d parts already traced; tracing %d",
                label,
                done,
                len(shards),
                len(missing),
            )
        elif log and not missing:
            logger.info("%s: all %d parts already traced", label, len(shards))
    return units


@dataclasses.dataclass
class _Slot:
    """One worker as the driver sees it."""

    actor: Any
    ready_ref: Any  # ObjectRef of TraceWorker.ready until it answers
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    ref: Any = None  # ObjectRef of the unit in flight
    unit: Unit | None = None
    label: str | None = None  # the checkpoint it was last given

    @property
    def where(self) -> str:
        return f"process {self.info.get('pid', '?')} on {self.info.get('host', '?')}"


class _Pool:
    """The driver's side of the workers: start them, hand out units, notice deaths."""

    def __init__(
        self,
        ray: Any,
        spec: Any,
        store: str,
        options: dict[str, Any],
        jobs: dict[str, tuple[Checkpoint, dict[str, Any], dict[str, Any]]],
        *,
        bar: Any,
        tally: Any,
    ) -> None:
        self.ray = ray
        self.spec = spec
        self.store = store
        self.options = options
        self.jobs = jobs
        self.bar = bar
        self.tally = tally
        self.cls = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=0)(TraceWorker)
        self.slots: list[_Slot] = []
        self.attempts: collections.Counter[Unit] = collections.Counter()
        self.started = 0

    def _spawn(self) -> None:
        # a worker lost while idle (its node went) must not be replaced forever
        if self.started >= self.spec.count * (_MAX_ATTEMPTS + 1):
            msg = (
                f"{self.started} Ray workers were started and {self.started - len(self.slots)} "
                "of them died; the cluster is losing nodes or workers run out of memory (see "
                "`ray status` and the Ray logs)"
            )
            raise WorkerLostError(msg)
        actor = self.cls.remote(self.store, self.options)
        self.slots.append(_Slot(actor, actor.ready.remote()))
        self.started += 1

    def run(self, units: Sequence[Unit]) -> list[Unit]:
        """Trace ``units``; return those other processes held (to be waited for)."""
        queue = UnitQueue(units)
        held: list[Unit] = []
        while len(self.slots) < self.spec.count:
            self._spawn()
        waiting_since = time.monotonic()
        while len(queue) or any(s.ref is not None for s in self.slots):
            self._dispatch(queue)
            refs = [s.ref for s in self.slots if s.ref is not None]
            refs += [s.ready_ref for s in self.slots if s.ready_ref is not None]
            if not refs:  # every worker died and none is starting
                self._spawn()
                continue
            done, _ = self.ray.wait(refs, num_returns=1, timeout=_POLL_S)
            for ref in done:
                self._settle(ref, queue, held)
            if any(s.info for s in self.slots):
                waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > _WAITING_NOTE_S:
                logger.info(
                    "no Ray worker has started yet: the cluster may lack the resources asked "
                    "for (%g CPU, %g GPU each); see `ray status`",
                    self.spec.cpus,
                    self.spec.gpus,
                )
                waiting_since = time.monotonic()
        return held

    def _dispatch(self, queue: UnitQueue) -> None:
        for slot in self.slots:
            if slot.ref is not None or slot.ready_ref is not None:
                continue
            on = collections.Counter(s.label for s in self.slots if s.label is not None)
            unit = queue.next_for(slot.label, on=on)
            if unit is None:
                return
            slot.unit, slot.label = unit, unit[0]
            slot.ref = slot.actor.trace.remote(unit, *self.jobs[unit[0]])

    def _settle(self, ref: Any, queue: UnitQueue, held: list[Unit]) -> None:
        ray = self.ray
        slot = next(s for s in self.slots if ref in (s.ref, s.ready_ref))
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._lost(slot, exc, queue)
            return
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, GrokvizError):
                raise cause from None  # its message says what to do; the type is kept
            raise
        if ref is slot.ready_ref:
            slot.ready_ref, slot.info = None, result
            logger.debug("Ray worker %s is ready (%s)", slot.where, result["device"])
            return
        unit, slot.ref, slot.unit = slot.unit, None, None
        assert unit is not None
        status = result["status"]
        if status == "held":
            held.append(unit)
            return
        self.bar.update(1)
        self.bar.set_postfix_str(unit[0], refresh=False)
        if status == "traced":
            self.tally.truncated += result.get("truncated", 0)
            self.tally.encoded += result.get("encoded", 0)
            if result.get("nonfinite"):
                self.tally.nonfinite.setdefault(unit[0], []).extend(result["nonfinite"])

    def _lost(self, slot: _Slot, exc: BaseException, queue: UnitQueue) -> None:
        """A worker died: retry its unit elsewhere, and replace it if there is work for it."""
        self.slots.remove(slot)
        self._kill(slot)  # make sure: an unreachable actor may still be running
        unit = slot.unit
        if unit is None:
            logger.warning("Ray worker %s died (%s)", slot.where, _first_line(exc))
        else:
            self.attempts[unit] += 1
            if self.attempts[unit] >= _MAX_ATTEMPTS:
                msg = (
                    f"{self.attempts[unit]} Ray workers died tracing unit {unit[1]} of checkpoint "
                    f"{unit[0]!r} (the last: {_first_line(exc)}); this usually means it runs out of "
                    "memory: pass a smaller batch size or max length, or give workers more memory"
                )
                raise WorkerLostError(msg)
            logger.warning(
                "Ray worker %s died tracing %s unit %s (%s); it is traced again on another worker",
                slot.where,
                unit[0],
                unit[1],
                _first_line(exc),
            )
            queue.put_back(unit)
        idle = sum(1 for s in self.slots if s.ref is None)
        if len(queue) > idle and len(self.slots) < self.spec.count:
            self._spawn()

    def _kill(self, slot: _Slot) -> None:
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception as exc:  # already gone
            logger.debug("ray.kill of %s: %s", slot.where, exc)

    def shutdown(self) -> None:
        """Stop every worker (their claims go with them); finished parts are in the store."""
        for slot in self.slots:
            self._kill(slot)
        self.slots.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
