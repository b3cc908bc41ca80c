"""Trace checkpoints: one forward pass per batch gives per-sample losses and routing weights.

For every sample and checkpoint the tracer records the mean token negative log-likelihood and,
per MoE layer, the paper's routing weights g_l(i): the full-softmax router distribution averaged
over the sample's real tokens. For samples the user selects it also keeps every token's top-k
experts. :func:`iter_trace` streams these as polars frames, batch by batch (the widgets read
from it); :func:`trace` runs over many checkpoints into a resumable :class:`~grokviz.TraceStore`.

A trace is a set of *units*: each checkpoint's shards of samples, and its router table. Before
anything is written, every checkpoint is checked (its identity, and that the series agrees on MoE
layers, experts, top-k and vocabulary, read from the configs alone). Then each unit is claimed,
computed and written atomically by the store's writer, so an interrupted run loses at most the
units in flight, a damaged part is found and recomputed, and several processes tracing one store
share its units instead of repeating them.

Samples are sorted by length into batches so padding stays small; padded positions are masked
out of every reduction and position ids count real tokens only, so a sample's results do not
depend on the batch it landed in (left or right padding alike). All reductions run on the
model's device; only ``[L, B, K]``-sized results travel to the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import InputError, NonFiniteError
from grokviz.store import StoreWriter, TraceStore, check_samples
from grokviz.store._writer import series_mismatch
from grokviz.tracing._checkpoints import Checkpoint
from grokviz.tracing._forward import (
    TraceBatch,
    _encode,
    _Encoded,
    _model_device,
    _oom_errors,
    _trace_encoded,
    _warn_truncated,
)
from grokviz.tracing._prepare import (
    check_select,
    check_trace_args,
    device_error,
    identity,
    is_checkpoint_like,
    model_record,
    one_checkpoint,
    resolve_checkpoints,
    resolve_device,
    series_record,
    weights_hash,
)

__all__ = ["TraceBatch", "iter_trace", "trace"]

logger = logging.getLogger("grokviz.tracing")


def _progress(total: int, *, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="sample", desc=desc, dynamic_ncols=True)


def _anonymous_checkpoint(model: Any) -> Checkpoint:
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model")
    return Checkpoint(source=name, label=name, sha=weights_hash(model))


def iter_trace(
    source: Any,
    samples: object,
    *,
    tokenizer: Any = None,
    checkpoint: Checkpoint | None = None,
    select: Iterable[str] = (),
    batch_size: int = 16,
    max_length: int = 512,
    device: Any = None,
    dtype: Any = None,
    progress: bool = True,
) -> Iterator[TraceBatch]:
    """Trace one checkpoint over ``samples``, yielding the results batch by batch.

    Parameters
    ----------
    source
        A :class:`~grokviz.Checkpoint`, a checkpoint folder or ``"owner/name@revision"`` (loaded
        with :func:`~grokviz.load_model`), or an already loaded ``transformers`` MoE model.
    samples
        A ``schema.SAMPLES`` table (polars, pandas or pyarrow).
    tokenizer
        Required when ``source`` is a loaded model; otherwise the checkpoint's own is used.
    checkpoint
        Labels the rows when ``source`` is a loaded model (default: a checkpoint labelled
        after the model's name, without step).
    select
        sample_ids whose per-token routing is kept (``TraceBatch.token_routing``).
    batch_size
        Samples per forward pass; halved automatically on out-of-memory errors.
    max_length
        Samples longer than this many tokens are truncated (with one warning saying how many).
    device, dtype
        Where and in which precision to run. Default: the loaded model's device, or CUDA when
        available when loading. Given with a loaded model, the model is moved there.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    Iterator[TraceBatch]
        A generator of each batch's frames; concatenate them for the whole sample set. The
        model is loaded and the samples checked and tokenized when ``iter_trace`` is called;
        the forward passes run as the generator is consumed.

    Raises
    ------
    EmptyInputError
        ``samples`` has no rows.
    NotMoEError
        The model has no routers grokviz can reach.

    Examples
    --------
    >>> from grokviz.testing import tiny_moe, char_tokenizer, tiny_samples
    >>> batches = list(iter_trace(tiny_moe(), tiny_samples(1), tokenizer=char_tokenizer(),
    ...                           progress=False))
    >>> batches[0].routing.height  # one row per (sample, MoE layer)
    2
    """
    check_trace_args(batch_size=batch_size, max_length=max_length, on_nonfinite="warn")
    frame = check_samples(samples)
    selected = set(check_select(select, frame["sample_id"].to_list()))
    if is_checkpoint_like(source):
        from grokviz.tracing._loading import load_model

        checkpoint = one_checkpoint(source)
        model, loaded_tokenizer = load_model(checkpoint, device=resolve_device(device), dtype=dtype)
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    else:
        model = source
        if tokenizer is None:
            msg = "iter_trace got a loaded model but no tokenizer: pass tokenizer=..."
            raise InputError(msg)
        moves = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if moves:
            if "device" in moves:
                moves["device"] = resolve_device(moves["device"])
            model.to(**moves)
        if checkpoint is None:
            checkpoint = _anonymous_checkpoint(model)
    from grokviz.tracing._routing import moe_info

    moe_info(model)  # a dense model fails here, before any tokenizing
    encoded = _encode(tokenizer, frame, max_length=max_length)
    _warn_truncated(encoded.n_truncated, frame.height, max_length)
    # checks ran above, at call time; the batches stream from this generator
    return _stream(model, tokenizer, checkpoint, encoded, selected, batch_size, progress)


def _stream(
    model: Any,
    tokenizer: Any,
    checkpoint: Checkpoint,
    encoded: _Encoded,
    select: set[str],
    batch_size: int,
    progress: bool,
) -> Iterator[TraceBatch]:
    bar = _progress(len(encoded.ids), enabled=progress, desc=checkpoint.label)
    try:
        yield from _trace_encoded(
            model, tokenizer, checkpoint, encoded, select=select, batch_size=batch_size, bar=bar
        )
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# many checkpoints into a store


@dataclass
class _Plan:
    """One checkpoint to trace: what it is, and its model once loaded."""

    checkpoint: Checkpoint
    identity: dict[str, Any]
    record: dict[str, Any]
    model: Any = None
    tokenizer: Any = None
    loaded: bool = False  # this trace loaded the model (and frees it when done with it)


@dataclass
class _Tally:
    """What one trace call saw, reported once at its end."""

    truncated: int = 0
    encoded: int = 0
    nonfinite: dict[str, list[str]] = field(default_factory=dict)


def trace(
    checkpoints: Any,
    samples: object,
    store: str | os.PathLike[str] | TraceStore,
    *,
    tokenizer: Any = None,
    checkpoint: Checkpoint | None = None,
    select: Iterable[str] = (),
    batch_size: int = 16,
    max_length: int = 512,
    device: Any = None,
    dtype: Any = None,
    shard_size: int = 1024,
    on_nonfinite: str = "warn",
    wait: bool = True,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    **load_kwargs: Any,
) -> TraceStore:
    """Trace checkpoints over samples into a resumable trace store folder.

    Samples are split into shards of ``shard_size`` (in store order); each (checkpoint, shard)
    part is written atomically as soon as it is done and recorded in the store's manifest.
    Running the same call again computes only the parts still missing or found damaged, so an
    interrupted run loses at most the shard in flight. Several processes may run it on one
    store at once: they share its units, each traced once.

    Parameters
    ----------
    checkpoints
        One :class:`~grokviz.Checkpoint`, a checkpoint folder or folder of checkpoint folders,
        a hub repo id (all its revisions) or ``"owner/name@revision"``, or a list of these; or a
        loaded ``transformers`` MoE model (with ``tokenizer``, and ``checkpoint`` to label it).
    samples
        A ``schema.SAMPLES`` table. For an existing store it must hold the stored samples and
        may add new ones (appended as new shards); anything else raises ``StoreMismatchError``.
    store
        The store folder (created if missing; it must be empty or a store) or a
        :class:`~grokviz.TraceStore`.
    tokenizer, checkpoint
        With a loaded model only: its tokenizer, and the :class:`~grokviz.Checkpoint` that
        labels it (default: named after the model, identified by a hash of its weights).
    select
        sample_ids whose per-token routing is stored too.
    batch_size, max_length, device, dtype
        As in :func:`iter_trace`. ``max_length``, ``select`` and ``dtype`` are recorded; an
        existing store only takes more traces made with the same values.
    shard_size
        Samples per part; used when the store (or newly added samples) is created.
    on_nonfinite
        What to do when the model gives non-finite losses or routing weights for some samples:
        ``"warn"`` stores them as computed, flagged ``nonfinite`` (analysis leaves them out),
        with one warning per checkpoint naming them; ``"error"`` raises
        :class:`~grokviz.errors.NonFiniteError` before the unit is written.
    wait
        When other processes are tracing units of this store, wait for them and then trace what
        they leave (a process that dies leaves its units to the next); ``False`` returns once
        the free units are done.
    progress
        Show a tqdm progress bar.
    engine
        ``"local"`` traces in this process; ``"ray"`` spreads the units over the workers of a
        Ray cluster (``pip install "grokviz[ray]"``), each of which writes its units into the
        store itself, so the store must be on a filesystem every node mounts at the same path.
        The store is the one a local trace writes; a worker that dies has its unit traced again
        by another. Checkpoints must be named (folders or hub revisions), not loaded models.
    ray_address
        With ``engine="ray"``: the cluster (``"auto"``, ``"host:6379"``); default
        ``RAY_ADDRESS`` or a cluster ``ray start`` started on this machine, else a local one
        for this call. A process already connected (``ray.init``) uses its cluster.
    workers, cpus_per_worker, gpus_per_worker
        With ``engine="ray"``: how many workers (default: as many as the cluster holds, at
        most one per unit) and what each reserves. A worker with GPUs traces on ``cuda``
        (fractions share a GPU); ``device`` is what each worker sees, so ``"cuda"``, not
        ``"cuda:3"``.
    **load_kwargs
        Passed to :func:`~grokviz.load_model` (e.g. ``allow_pickle=True``).

    Returns
    -------
    TraceStore
        The filled store.

    Raises
    ------
    NotAStoreError
        ``store`` is a folder that holds other files and is not a store.
    StoreMismatchError
        The store holds traces of other weights under a checkpoint's label, or was traced with
        other parameters or another sample set.
    SeriesMismatchError
        The checkpoints disagree on MoE layers, experts, top-k or vocabulary.

    Examples
    --------
    >>> import tempfile
    >>> import grokviz
    >>> out = tempfile.mkdtemp() + "/trace"
    >>> traced = grokviz.trace("data/samples/toy/checkpoints/step-000050", samples.head(8), out,
    ...                        progress=False)
    >>> traced.losses().height
    8
    """
    if engine == "ray":
        from grokviz.tracing._ray import trace_ray

        if tokenizer is not None or checkpoint is not None:
            msg = "tokenizer= and checkpoint= label a loaded model, which engine='ray' cannot trace"
            raise InputError(msg)
        return trace_ray(
            checkpoints,
            samples,
            store,
            address=ray_address,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            select=select,
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            dtype=dtype,
            shard_size=shard_size,
            on_nonfinite=on_nonfinite,
            wait=wait,
            progress=progress,
            **load_kwargs,
        )
    if engine != "local":
        msg = f"engine must be 'local' or 'ray', got {engine!r}"
        raise InputError(msg)
    ray_only = {
        "ray_address": ray_address is not None,
        "workers": workers is not None,
        "cpus_per_worker": cpus_per_worker != 1,
        "gpus_per_worker": bool(gpus_per_worker),
    }
    if any(ray_only.values()):
        given = ", ".join(k for k, v in ray_only.items() if v)
        msg = f"{given} apply to engine='ray' only; pass engine='ray' too, or leave them out"
        raise InputError(msg)
    check_trace_args(batch_size=batch_size, max_length=max_length, on_nonfinite=on_nonfinite)
    frame = check_samples(samples)
    selected = check_select(select, frame["sample_id"].to_list())
    params = {
        "max_length": int(max_length),
        "select": selected,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
    }
    resolved_device = resolve_device(device)
    plans = _plans(checkpoints, tokenizer=tokenizer, checkpoint=checkpoint, **load_kwargs)
    path = store.path if isinstance(store, TraceStore) else Path(store)
    # Everything above only read; the store is created or opened (and locked) from here on.
    writer = StoreWriter.create_or_open(path, frame, params=params, shard_size=shard_size)
    for plan in plans:
        writer.check_checkpoint(plan.identity)
        writer.check_series(plan.checkpoint.label, plan.record)
    for plan in plans:
        writer.add_checkpoint(plan.identity, plan.record)
    shards = writer.store.manifest["shards"]
    todo = 0
    for plan in plans:
        missing = writer.missing_units(plan.checkpoint.label, verify=True)
        todo += sum(shards[s][1] - shards[s][0] for s in missing)
        done = len(shards) - len(missing)
        if missing and done:
            logger.info(
                "%s: %d of %d parts already traced; tracing %d",
                plan.checkpoint.label,
                done,
                len(shards),
                len(missing),
            )
        elif not missing:
            logger.info("%s: all %d parts already traced", plan.checkpoint.label, len(shards))
    tally = _Tally()
    bar = _progress(todo, enabled=progress, desc="trace")
    try:
        while True:
            held = []
            for plan in plans:
                held += _trace_free_units(
                    writer,
                    plan,
                    selected=set(selected),
                    batch_size=batch_size,
                    max_length=max_length,
                    device=resolved_device,
                    dtype=dtype,
                    on_nonfinite=on_nonfinite,
                    bar=bar,
                    tally=tally,
                    progress=progress,
                    load_kwargs=load_kwargs,
                )
                _release(plan)
            if not held or not wait:
                break
            label, unit = held[0]
            logger.info(
                "waiting for %s, which traces %s unit %s", writer.holder(label, unit), label, unit
            )
            claim = writer.claim(label, unit, blocking=True)
            if claim is not None:
                claim.release()  # free again: the loop traces it if its holder did not finish
    finally:
        bar.close()
    _warn_truncated(tally.truncated, tally.encoded, max_length)
    return writer.store


def _plans(
    checkpoints: Any, *, tokenizer: Any, checkpoint: Checkpoint | None, **load_kwargs: Any
) -> list[_Plan]:
    """What to trace, checked before anything is written: identities and one series."""
    if not is_checkpoint_like(checkpoints) and hasattr(checkpoints, "config"):
        if tokenizer is None:
            msg = "grokviz.trace got a loaded model but no tokenizer: pass tokenizer=..."
            raise InputError(msg)
        ckpt = checkpoint if checkpoint is not None else _anonymous_checkpoint(checkpoints)
        if not ckpt.sha:
            ckpt = dataclasses.replace(ckpt, sha=weights_hash(checkpoints))
        record = model_record(checkpoints)
        return [_Plan(ckpt, identity(ckpt), record, model=checkpoints, tokenizer=tokenizer)]
    trust = bool(load_kwargs.get("trust_remote_code", False))
    plans = [
        _Plan(c, identity(c), series_record(c, trust_remote_code=trust))
        for c in resolve_checkpoints(checkpoints)
    ]
    series_mismatch([(p.checkpoint.label, p.record) for p in plans])
    return plans


def _trace_free_units(
    writer: StoreWriter,
    plan: _Plan,
    *,
    selected: set[str],
    batch_size: int,
    max_length: int,
    device: Any,
    dtype: Any,
    on_nonfinite: str,
    bar: Any,
    tally: _Tally,
    progress: bool,
    load_kwargs: dict[str, Any],
) -> list[tuple[str, int | str]]:
    """Trace every unit of ``plan``'s checkpoint that no live process holds; return those held."""
    label = plan.checkpoint.label
    held: list[tuple[str, int | str]] = []
    units: list[int | str] = list(writer.missing_units(label))
    if writer.needs_routers(label):
        units.insert(0, "routers")
    for unit in units:
        claim = writer.claim(label, unit)
        if claim is None:
            held.append((label, unit))
            continue
        with claim:
            # another process may have finished it between listing and claiming
            if unit == "routers" and not writer.needs_routers(label):
                continue
            if unit != "routers" and unit not in writer.missing_units(label):
                continue
            _load(plan, device=device, dtype=dtype, progress=progress, load_kwargs=load_kwargs)
            if unit == "routers":
                writer.write_routers(label, _routers_frame(plan.model, plan.checkpoint))
                continue
            assert isinstance(unit, int)
            _trace_unit(
                writer,
                plan,
                unit,
                selected=selected,
                batch_size=batch_size,
                max_length=max_length,
                on_nonfinite=on_nonfinite,
                bar=bar,
                tally=tally,
            )
    if tally.nonfinite.get(label):
        _warn_nonfinite(label, tally.nonfinite[label], stacklevel=5)
        tally.nonfinite[label] = []
    return held


def _warn_nonfinite(label: str, ids: list[str], *, stacklevel: int) -> None:
    warnings.warn(
        f"checkpoint {label!r}: {len(ids)} sample(s) gave non-finite losses or routing "
        f"weights (e.g. {ids[:5]}); they are stored as computed and flagged nonfinite, and "
        "analysis leaves them out. Non-finite outputs usually mean damaged weights or a "
        "dtype that overflows (try dtype float32).",
        stacklevel=stacklevel,
    )


@contextlib.contextmanager
def _quiet_loading(quiet: bool) -> Iterator[None]:
    """Without a progress bar of its own, a trace shows none of transformers' either."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load(
    plan: _Plan, *, device: Any, dtype: Any, progress: bool, load_kwargs: dict[str, Any]
) -> None:
    if plan.model is not None:
        return
    from grokviz.errors import StoreMismatchError
    from grokviz.tracing._loading import load_model

    with _quiet_loading(not progress):
        plan.model, plan.tokenizer = load_model(
            plan.checkpoint, device=device, dtype=dtype, **load_kwargs
        )
    plan.loaded = True
    actual = model_record(plan.model)
    if actual != plan.record:
        msg = (
            f"checkpoint {plan.checkpoint.label!r} loaded as {actual}, but its config describes "
            f"{plan.record}; check the checkpoint's files"
        )
        raise StoreMismatchError(msg)


def _release(plan: _Plan) -> None:
    """Free a model this trace loaded (a model the caller passed in stays as it is)."""
    if not plan.loaded:
        return
    on_accelerator = _model_device(plan.model).type != "cpu"
    plan.model = plan.tokenizer = None
    plan.loaded = False
    if on_accelerator:  # give its memory back before the next checkpoint loads
        gc.collect()
        _empty_cache()


def _trace_unit(
    writer: StoreWriter,
    plan: _Plan,
    shard: int,
    *,
    selected: set[str],
    batch_size: int,
    max_length: int,
    on_nonfinite: str,
    bar: Any,
    tally: _Tally,
) -> None:
    label = plan.checkpoint.label
    lo, hi = writer.store.manifest["shards"][shard]
    rows = writer.store.samples().slice(lo, hi - lo)
    encoded = _encode(plan.tokenizer, rows, max_length=max_length)
    tally.truncated += encoded.n_truncated
    tally.encoded += rows.height
    bar.set_description(label)
    try:
        got = list(
            _trace_encoded(
                plan.model,
                plan.tokenizer,
                plan.checkpoint,
                encoded,
                select=selected,
                batch_size=batch_size,
                bar=bar,
            )
        )
    except _oom_errors() as exc:
        longest = max(map(len, encoded.ids), default=0)
        raise device_error(exc, plan.checkpoint, longest) from exc
    except RuntimeError as exc:
        if "CUDA" in str(exc) or "device" in str(exc).lower():
            raise device_error(exc, plan.checkpoint, 0) from exc
        raise
    bar.update(rows.height - len(encoded.ids))  # samples skipped for having no tokens
    losses = _concat([b.losses for b in got], {**schema.LOSSES, **schema.TRACE_FLAGS})
    bad = losses.filter(pl.col("nonfinite"))["sample_id"].to_list()
    if bad and on_nonfinite == "error":
        msg = (
            f"checkpoint {label!r}: {len(bad)} sample(s) of shard {shard} gave non-finite "
            f"losses or routing weights (e.g. {bad[:5]}); nothing of the shard was written. "
            "Non-finite outputs usually mean damaged weights or a dtype that overflows "
            "(try dtype float32); pass on_nonfinite='warn' to store them flagged."
        )
        raise NonFiniteError(msg)
    if bad:
        tally.nonfinite.setdefault(label, []).extend(bad)
    frames = {
        "losses": losses,
        "routing": _concat([b.routing for b in got], schema.ROUTING),
        "token_routing": _concat([b.token_routing for b in got], schema.TOKEN_ROUTING),
    }
    writer.write_part(label, shard, frames, nonfinite=len(bad))
    logger.debug("%s: wrote part %d", label, shard)


def _routers_frame(model: Any, checkpoint: Checkpoint) -> pl.DataFrame:
    from grokviz.tracing._routing import router_weight_rows

    rows = router_weight_rows(model).numpy()  # [L, K, d]
    n_layers, n_experts, width = rows.shape
    n = n_layers * n_experts
    return pl.DataFrame(
        [
            pl.repeat(checkpoint.label, n, dtype=pl.String(), eager=True).alias("checkpoint"),
            pl.repeat(checkpoint.step, n, dtype=pl.Int64(), eager=True).alias("step"),
            pl.Series("layer", np.repeat(np.arange(n_layers, dtype=np.int16), n_experts)),
            pl.Series("expert", np.tile(np.arange(n_experts, dtype=np.int16), n_layers)),
            pl.Series("vector", rows.reshape(n, width)).cast(pl.List(pl.Float32())),
        ]
    )


def _concat(frames: list[pl.DataFrame], table_schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=table_schema)
    return pl.concat(frames, how="vertical")


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
