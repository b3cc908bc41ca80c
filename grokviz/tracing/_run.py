"""Trace checkpoints: one forward pass per batch gives per-sample losses and routing weights.

For every sample and checkpoint the tracer records the mean token negative log-likelihood and,
per MoE layer, the paper's routing weights g_l(i): the full-softmax router distribution averaged
over the sample's real tokens. For samples the user selects it also keeps every token's top-k
experts. :func:`iter_trace` streams these as polars frames, batch by batch (the widgets read
from it); :func:`trace` runs over many checkpoints into a resumable :class:`~grokviz.TraceStore`.

Samples are sorted by length into batches so padding stays small; padded positions are masked
out of every reduction and position ids count real tokens only, so a sample's results do not
depend on the batch it landed in (left or right padding alike). All reductions run on the
model's device; only ``[L, B, K]``-sized results travel to the host.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError
from grokviz.store import TraceStore, check_samples
from grokviz.tracing._forward import (
    TraceBatch,
    _check_batch_size,
    _encode,
    _Encoded,
    _trace_encoded,
    _warn_truncated,
)

if TYPE_CHECKING:
    from grokviz.tracing._checkpoints import Checkpoint

__all__ = ["TraceBatch", "iter_trace", "trace"]

logger = logging.getLogger("grokviz.tracing")

# ---------------------------------------------------------------------------------------------
# tokenization


def _progress(total: int, *, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="sample", desc=desc, dynamic_ncols=True)


def _as_checkpoint(source: Any) -> Checkpoint:
    from grokviz.tracing._checkpoints import Checkpoint, list_checkpoints

    if isinstance(source, Checkpoint):
        return source
    found = list_checkpoints(source)
    if len(found) != 1:
        labels = [c.label for c in found]
        msg = (
            f"{str(source)!r} holds {len(found)} checkpoints {labels[:5]}; iter_trace traces "
            "one: pass one of them, or use grokviz.trace for a series"
        )
        raise ValueError(msg)
    return found[0]


def _default_device(device: Any) -> Any:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
        A :class:`~grokviz.Checkpoint`, a checkpoint folder or hub repo id (loaded with
        :func:`~grokviz.load_model`), or an already loaded ``transformers`` MoE model.
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
    >>> import polars as pl
    >>> from grokviz.testing import tiny_moe, char_tokenizer
    >>> samples = pl.DataFrame({"sample_id": ["a"], "text": ["hi"], "domain": ["x"], "split": ["train"]})
    >>> batches = list(iter_trace(tiny_moe(), samples, tokenizer=char_tokenizer(), progress=False))
    >>> batches[0].routing.height  # one row per (sample, MoE layer)
    2
    """
    _check_batch_size(batch_size)
    frame = check_samples(samples)
    if isinstance(source, (str, os.PathLike)) or _is_checkpoint(source):
        from grokviz.tracing._loading import load_model

        checkpoint = _as_checkpoint(source)
        model, loaded_tokenizer = load_model(
            checkpoint, device=_default_device(device), dtype=dtype
        )
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    else:
        model = source
        if tokenizer is None:
            msg = "iter_trace got a loaded model but no tokenizer: pass tokenizer=..."
            raise ValueError(msg)
        moves = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if moves:
            model.to(**moves)
        if checkpoint is None:
            checkpoint = _anonymous_checkpoint(model)
    from grokviz.tracing._routing import moe_info

    moe_info(model)  # a dense model fails here, before any tokenizing
    encoded = _encode(tokenizer, frame, max_length=max_length)
    _warn_truncated(encoded.n_truncated, frame.height, max_length)
    # checks ran above, at call time; the batches stream from this generator
    return _stream(model, tokenizer, checkpoint, encoded, set(select), batch_size, progress)


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


def _is_checkpoint(obj: Any) -> bool:
    if type(obj).__name__ != "Checkpoint":
        return False
    from grokviz.tracing._checkpoints import Checkpoint

    return isinstance(obj, Checkpoint)


def _anonymous_checkpoint(model: Any) -> Checkpoint:
    from grokviz.tracing._checkpoints import Checkpoint

    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model")
    return Checkpoint(source=name, revision=None, step=None, tokens=None, label=name)


# ---------------------------------------------------------------------------------------------
# many checkpoints into a store


def _resolve_checkpoints(checkpoints: Any) -> list[Checkpoint]:
    from grokviz.tracing._checkpoints import list_checkpoints

    items = (
        [checkpoints]
        if isinstance(checkpoints, (str, os.PathLike)) or _is_checkpoint(checkpoints)
        else list(checkpoints)
    )
    resolved: list[Checkpoint] = []
    for item in items:
        resolved += [item] if _is_checkpoint(item) else list_checkpoints(item)
    if not resolved:
        msg = f"no checkpoints to trace in {checkpoints!r}"
        raise EmptyInputError(msg)
    labels = [c.label for c in resolved]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        msg = f"several checkpoints share the label(s) {dupes}; labels must be unique in a store"
        raise ValueError(msg)
    return resolved


def _identity(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "label": checkpoint.label,
        "step": checkpoint.step,
        "tokens": checkpoint.tokens,
        **checkpoint.identity(),
    }


def _model_record(model: Any) -> dict[str, Any]:
    from grokviz.tracing._routing import moe_info

    info = moe_info(model)
    return {
        "model_type": info.model_type,
        "num_layers": info.num_layers,
        "num_experts": info.num_experts,
        "top_k": info.top_k,
        "hidden_size": info.hidden_size,
        "moe_layers": list(info.moe_layers),
    }


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


def trace(
    checkpoints: Any,
    samples: object,
    store: str | os.PathLike[str] | TraceStore,
    *,
    select: Iterable[str] = (),
    batch_size: int = 16,
    max_length: int = 512,
    device: Any = None,
    dtype: Any = None,
    shard_size: int = 1024,
    progress: bool = True,
    **load_kwargs: Any,
) -> TraceStore:
    """Trace checkpoints over samples into a resumable trace store folder.

    Samples are split into shards of ``shard_size`` (in store order); each (checkpoint, shard)
    part is written atomically as soon as it is done and recorded in the store's manifest.
    Running the same call again computes only the parts still missing, so an interrupted run
    loses at most the shard in flight.

    Parameters
    ----------
    checkpoints
        One :class:`~grokviz.Checkpoint`, a folder of checkpoints / checkpoint folder / hub repo
        id (expanded with :func:`~grokviz.list_checkpoints`), or a list of these.
    samples
        A ``schema.SAMPLES`` table. For an existing store it must equal the stored samples or
        add new ones (appended as new shards); anything else raises ``TraceStoreError``.
    store
        The store folder (created if missing) or an open :class:`~grokviz.TraceStore`.
    select
        sample_ids whose per-token routing is stored too.
    batch_size, max_length, device, dtype
        As in :func:`iter_trace`. ``max_length``, ``select`` and ``dtype`` are recorded; an
        existing store only takes more traces made with the same values.
    shard_size
        Samples per part; used when the store (or newly added samples) is created.
    progress
        Show a tqdm progress bar.
    **load_kwargs
        Passed to :func:`~grokviz.load_model` (e.g. ``allow_pickle=True``).

    Returns
    -------
    TraceStore
        The filled store.

    Raises
    ------
    TraceStoreError
        The store holds traces of other weights under a checkpoint's label, or was traced with
        other parameters or another sample set.

    Examples
    --------
    >>> store = trace("runs/olmoe-tiny", samples, "traces/olmoe-tiny")  # doctest: +SKIP
    >>> store.losses().height  # doctest: +SKIP
    """
    from grokviz.tracing._loading import load_model

    _check_batch_size(batch_size)
    frame = check_samples(samples)
    selected = sorted(set(select))
    params = {
        "max_length": int(max_length),
        "select": selected,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
    }
    resolved = _resolve_checkpoints(checkpoints)
    path = store.path if isinstance(store, TraceStore) else Path(store)
    target = TraceStore._prepare(path, frame, params=params, shard_size=shard_size)
    with target._lock():
        identities = {c.label: _identity(c) for c in resolved}
        for ident in identities.values():
            target._check_identity(ident)  # never mix weights: fail before tracing anything
        missing = {c.label: target._missing_parts(c.label) for c in resolved}
        shards = target.manifest["shards"]
        todo = sum(shards[s][1] - shards[s][0] for parts in missing.values() for s in parts)
        store_samples = target.samples()
        bar = _progress(todo, enabled=progress, desc="trace")
        warned = False
        try:
            for ckpt in resolved:
                parts = missing[ckpt.label]
                n_done = len(shards) - len(parts)
                if not parts:
                    logger.info("%s: all %d parts already traced", ckpt.label, len(shards))
                    continue
                logger.info(
                    "%s: %d of %d parts already traced; tracing %d",
                    ckpt.label,
                    n_done,
                    len(shards),
                    len(parts),
                )
                bar.set_description(ckpt.label)
                model, tokenizer = load_model(
                    ckpt, device=_default_device(device), dtype=dtype, **load_kwargs
                )
                target._begin_checkpoint(identities[ckpt.label], _model_record(model))
                if not target.manifest["checkpoints"][ckpt.label]["routers"]:
                    target._write_routers(ckpt.label, _routers_frame(model, ckpt))
                rows = [i for shard in parts for i in range(*shards[shard])]
                encoded = _encode(tokenizer, store_samples[rows], max_length=max_length)
                if not warned:
                    _warn_truncated(encoded.n_truncated, len(rows), max_length)
                    warned = True
                index = {sid: i for i, sid in enumerate(encoded.sample_ids)}
                all_ids = store_samples["sample_id"].to_list()
                for shard in parts:
                    lo, hi = shards[shard]
                    kept = [index[sid] for sid in all_ids[lo:hi] if sid in index]
                    sub = _Encoded(
                        [encoded.sample_ids[i] for i in kept], [encoded.ids[i] for i in kept], 0
                    )
                    got = list(
                        _trace_encoded(
                            model,
                            tokenizer,
                            ckpt,
                            sub,
                            select=set(selected),
                            batch_size=batch_size,
                            bar=bar,
                        )
                    )
                    bar.update((hi - lo) - len(kept))  # samples skipped for having no tokens
                    target._write_part(
                        ckpt.label,
                        shard,
                        {
                            "losses": _concat([b.losses for b in got], schema.LOSSES),
                            "routing": _concat([b.routing for b in got], schema.ROUTING),
                            "token_routing": _concat(
                                [b.token_routing for b in got], schema.TOKEN_ROUTING
                            ),
                        },
                    )
                    logger.debug("%s: wrote part %d", ckpt.label, shard)
                del model, tokenizer
                gc.collect()
                _empty_cache()
        finally:
            bar.close()
    return target


def _concat(frames: list[pl.DataFrame], table_schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=table_schema)
    return pl.concat(frames, how="vertical")


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
