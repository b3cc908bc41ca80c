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
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError
from grokviz.store import TraceStore, check_samples

if TYPE_CHECKING:
    import torch

    from grokviz.checkpoints import Checkpoint
    from grokviz.routing import RoutingCapture

__all__ = ["TraceBatch", "iter_trace", "trace"]

logger = logging.getLogger(__name__)

# Logits handled at once when computing losses: on the CPU a few MiB, so a chunk stays in cache;
# on accelerators enough for few kernel launches while bounding the temporary float32 copy.
_CPU_CHUNK_ELEMENTS = 1 << 20
_ACCEL_CHUNK_ELEMENTS = 1 << 28


@dataclass
class TraceBatch:
    """The results of one traced batch of samples.

    Attributes
    ----------
    checkpoint : Checkpoint
        The checkpoint the rows belong to.
    losses : pl.DataFrame
        ``schema.LOSSES`` rows of this batch.
    routing : pl.DataFrame
        ``schema.ROUTING`` rows of this batch (one per sample and MoE layer).
    token_routing : pl.DataFrame
        ``schema.TOKEN_ROUTING`` rows of the selected samples in this batch (often empty).
    n_done, n_total : int
        Samples traced so far (this batch included) and in all.
    """

    checkpoint: Checkpoint
    losses: pl.DataFrame
    routing: pl.DataFrame
    token_routing: pl.DataFrame
    n_done: int
    n_total: int


# ---------------------------------------------------------------------------------------------
# tokenization


@dataclass
class _Encoded:
    sample_ids: list[str]
    ids: list[list[int]]
    n_truncated: int


def _encode(tokenizer: Any, samples: pl.DataFrame, *, max_length: int) -> _Encoded:
    """Tokenize every sample, keeping at most ``max_length`` tokens; drop samples with none."""
    if max_length < 2:
        msg = f"max_length must be at least 2 tokens (one to predict from, one to predict), got {max_length}"
        raise ValueError(msg)
    texts = samples["text"].to_list()
    # Asking for one token more than kept tells which samples were truncated without encoding
    # whole books; `verbose=False` silences the tokenizer's own over-length warning.
    encoded = tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=max_length + 1,
        verbose=False,
    )["input_ids"]
    sample_ids = samples["sample_id"].to_list()
    n_truncated = sum(len(ids) > max_length for ids in encoded)
    kept_ids, kept = [], []
    empty = []
    for sid, ids in zip(sample_ids, encoded, strict=True):
        if not ids:
            empty.append(sid)
            continue
        kept_ids.append(sid)
        kept.append(list(ids[:max_length]))
    if empty:
        warnings.warn(
            f"{len(empty)} sample(s) encode to no tokens and are skipped: {empty[:5]}",
            stacklevel=3,
        )
    return _Encoded(kept_ids, kept, n_truncated)


def _warn_truncated(n_truncated: int, n_total: int, max_length: int) -> None:
    if n_truncated:
        warnings.warn(
            f"{n_truncated} of {n_total} samples are longer than max_length={max_length} tokens "
            "and were truncated to their first max_length tokens; pass a larger max_length to "
            "trace them whole.",
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# one batch on the device


@dataclass
class _Reduced:
    """The host-side results of one batch (numpy), in batch order."""

    sample_ids: list[str]
    loss: np.ndarray  # [B] float64
    n_tokens: np.ndarray  # [B] int32
    weights: np.ndarray  # [L, B, K] float32
    token_sample: list[str]  # per selected token
    token_index: np.ndarray  # [n] int32
    token_ids: list[int]  # [n]
    experts: np.ndarray  # [L, n, top_k] int16
    expert_weights: np.ndarray  # [L, n, top_k] float32


def _pad(
    ids: Sequence[Sequence[int]], *, pad_id: int, left: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        start = width - len(seq) if left else 0
        input_ids[row, start : start + len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, start : start + len(seq)] = 1
    return input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def _token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``[B, T-1]`` negative log-likelihood of token t+1 given tokens up to t, in float32.

    Works through the logits in chunks: on the CPU chunks small enough to stay in cache (one
    fused log-softmax per chunk instead of several full-size passes and a fresh ``[B, T, V]``
    allocation), elsewhere up to ``_ACCEL_CHUNK_ELEMENTS`` at a time to bound the float32 copy.
    """
    import torch

    batch, width, vocab = logits.shape
    out = torch.empty((batch, width - 1), dtype=torch.float32, device=logits.device)
    targets = input_ids[:, 1:, None]
    if logits.device.type == "cpu":
        rows = max(1, _CPU_CHUNK_ELEMENTS // vocab)
        for b in range(batch):
            for start in range(0, width - 1, rows):
                stop = min(start + rows, width - 1)
                logp = torch.log_softmax(logits[b, start:stop].float(), dim=-1)
                out[b, start:stop] = logp.gather(-1, targets[b, start:stop]).squeeze(-1)
    else:
        rows = max(1, _ACCEL_CHUNK_ELEMENTS // (width * vocab))
        for start in range(0, batch, rows):
            logp = torch.log_softmax(logits[start : start + rows, :-1].float(), dim=-1)
            out[start : start + rows] = logp.gather(-1, targets[start : start + rows]).squeeze(-1)
    return out.neg_()


def _run_batch(
    model: Any,
    capture: RoutingCapture,
    sample_ids: list[str],
    ids: list[list[int]],
    *,
    selected: set[str],
    pad_id: int,
    left: bool,
    device: torch.device,
) -> _Reduced:
    import torch

    input_ids, mask = _pad(ids, pad_id=pad_id, left=left, device=device)
    batch, width = input_ids.shape
    # Positions count real tokens only, so a left-padded sample sees the positions it would alone.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    capture.clear()
    try:
        with torch.inference_mode():
            out = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=False,
            )
            # loss: mean NLL over predicted real tokens (target and context both real)
            valid = (mask[:, 1:] * mask[:, :-1]).to(torch.float32)
            nll = _token_nll(out.logits, input_ids)
            del out
            n_pred = valid.sum(1)
            loss = (nll * valid).sum(1) / n_pred  # NaN for one-token samples: nothing predicted

            # g_l(i): masked mean of the full routing distribution over real tokens, all layers
            maskf = mask.to(torch.float32)
            n_real = maskf.sum(1)
            probs = torch.stack(capture.probs)  # [L, B*T, K]
            n_layers, _, n_experts = probs.shape
            probs = probs.view(n_layers, batch, width, n_experts)
            weights = torch.einsum("lbtk,bt->lbk", probs, maskf) / n_real[None, :, None]

            rows = [i for i, sid in enumerate(sample_ids) if sid in selected]
            if rows:
                sel = torch.as_tensor(rows, device=device)
                sel_mask = mask[sel].bool()
                flat = (sel[:, None] * width + torch.arange(width, device=device))[sel_mask]
                token_pos = (sel_mask.long().cumsum(-1) - 1)[sel_mask]
                tok_ids = input_ids.view(-1)[flat]
                topk = torch.stack(capture.topk)[:, flat]  # [L, n, top_k]
                tok_w = probs.view(n_layers, batch * width, n_experts)[:, flat].gather(2, topk)
                counts = sel_mask.sum(1).tolist()
                token_sample = [
                    sample_ids[r] for r, c in zip(rows, counts, strict=True) for _ in range(c)
                ]
                token = (
                    token_pos.to(torch.int32).cpu().numpy(),
                    tok_ids.cpu().tolist(),
                    topk.to(torch.int16).cpu().numpy(),
                    tok_w.float().cpu().numpy(),
                )
            else:
                token_sample = []
                token = (
                    np.zeros(0, np.int32),
                    [],
                    np.zeros((0, 0, 0), np.int16),
                    np.zeros((0, 0, 0), np.float32),
                )
            reduced = _Reduced(
                sample_ids=sample_ids,
                loss=loss.double().cpu().numpy(),
                n_tokens=n_real.to(torch.int32).cpu().numpy(),
                weights=weights.float().cpu().numpy(),
                token_sample=token_sample,
                token_index=token[0],
                token_ids=token[1],
                experts=token[2],
                expert_weights=token[3],
            )
    finally:
        capture.clear()
    return reduced


# ---------------------------------------------------------------------------------------------
# frames


def _frames(
    reduced: _Reduced, checkpoint: Checkpoint, tokenizer: Any
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    label, step = checkpoint.label, checkpoint.step
    batch = len(reduced.sample_ids)
    n_layers, _, n_experts = reduced.weights.shape

    def const(name: str, value: Any, n: int, dtype: pl.DataType) -> pl.Series:
        return pl.repeat(value, n, dtype=dtype, eager=True).alias(name)

    losses = pl.DataFrame(
        [
            const("checkpoint", label, batch, pl.String()),
            const("step", step, batch, pl.Int64()),
            pl.Series("sample_id", reduced.sample_ids, dtype=pl.String()),
            # null, not NaN, for one-token samples: nothing was predicted, and means skip nulls
            pl.Series("loss", reduced.loss, dtype=pl.Float64()).fill_nan(None),
            pl.Series("n_tokens", reduced.n_tokens, dtype=pl.Int32()),
        ]
    )
    n_rows = batch * n_layers
    per_sample = np.ascontiguousarray(reduced.weights.transpose(1, 0, 2)).reshape(n_rows, n_experts)
    routing = pl.DataFrame(
        [
            const("checkpoint", label, n_rows, pl.String()),
            const("step", step, n_rows, pl.Int64()),
            pl.Series("sample_id", reduced.sample_ids, dtype=pl.String()).gather(
                np.repeat(np.arange(batch), n_layers)
            ),
            pl.Series("layer", np.tile(np.arange(n_layers, dtype=np.int16), batch)),
            pl.Series("weights", per_sample).cast(pl.List(pl.Float32())),
        ]
    )
    n_tok = len(reduced.token_sample)
    if n_tok == 0:
        token_routing = pl.DataFrame(schema=schema.TOKEN_ROUTING)
        return losses, routing, token_routing
    top_k = reduced.experts.shape[-1]
    n_rows = n_tok * n_layers
    strings = tokenizer.batch_decode([[t] for t in reduced.token_ids])
    per_token = np.repeat(np.arange(n_tok), n_layers)
    experts = np.ascontiguousarray(reduced.experts.transpose(1, 0, 2)).reshape(n_rows, top_k)
    weights = np.ascontiguousarray(reduced.expert_weights.transpose(1, 0, 2)).reshape(n_rows, top_k)
    token_routing = pl.DataFrame(
        [
            const("checkpoint", label, n_rows, pl.String()),
            const("step", step, n_rows, pl.Int64()),
            pl.Series("sample_id", reduced.token_sample, dtype=pl.String()).gather(per_token),
            pl.Series("token_index", reduced.token_index[per_token], dtype=pl.Int32()),
            pl.Series("token", strings, dtype=pl.String()).gather(per_token),
            pl.Series("layer", np.tile(np.arange(n_layers, dtype=np.int16), n_tok)),
            pl.Series("experts", experts).cast(pl.List(pl.Int16())),
            pl.Series("weights", weights).cast(pl.List(pl.Float32())),
        ]
    )
    return losses, routing, token_routing


# ---------------------------------------------------------------------------------------------
# the batch loop


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    errors: list[type[BaseException]] = [torch.cuda.OutOfMemoryError]
    generic = getattr(torch, "OutOfMemoryError", None)  # torch >= 2.5: any accelerator
    if isinstance(generic, type) and generic not in errors:
        errors.append(generic)
    return tuple(errors)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise ValueError(msg)


def _model_device(model: Any) -> torch.device:
    import torch

    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _trace_encoded(
    model: Any,
    tokenizer: Any,
    checkpoint: Checkpoint,
    encoded: _Encoded,
    *,
    select: set[str],
    batch_size: int,
    bar: Any,
    n_total: int | None = None,
) -> Iterator[TraceBatch]:
    """Trace pre-tokenized samples with a loaded model, longest first, halving batches on OOM."""
    import torch

    from grokviz.routing import capture_routing

    device = _model_device(model)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    # longest first: an out-of-memory error shows up in the first batch, not after an hour
    order = sorted(range(len(encoded.ids)), key=lambda i: -len(encoded.ids[i]))
    total = len(order) if n_total is None else n_total
    oom = _oom_errors()
    was_training = model.training
    model.eval()  # dropout and router jitter off: tracing is deterministic
    done, start = 0, 0
    try:
        with capture_routing(model) as capture:
            while start < len(order):
                chunk = order[start : start + batch_size]
                reduced: _Reduced | None
                try:
                    reduced = _run_batch(
                        model,
                        capture,
                        [encoded.sample_ids[i] for i in chunk],
                        [encoded.ids[i] for i in chunk],
                        selected=select,
                        pad_id=pad_id,
                        left=left,
                        device=device,
                    )
                except oom:
                    if len(chunk) == 1:
                        raise
                    reduced = None
                if reduced is None:
                    # outside the except block, so the traceback's tensors are already freed
                    batch_size = max(1, len(chunk) // 2)
                    logger.warning(
                        "out of memory on a batch of %d samples of up to %d tokens; "
                        "continuing with batch_size=%d",
                        len(chunk),
                        len(encoded.ids[chunk[0]]),
                        batch_size,
                    )
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                start += len(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                losses, routing, token_routing = _frames(reduced, checkpoint, tokenizer)
                yield TraceBatch(checkpoint, losses, routing, token_routing, done, total)
    finally:
        if was_training:
            model.train()


def _progress(total: int, *, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="sample", desc=desc, dynamic_ncols=True)


def _as_checkpoint(source: Any) -> Checkpoint:
    from grokviz.checkpoints import Checkpoint, list_checkpoints

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
        from grokviz.checkpoints import load_model

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
    from grokviz.routing import moe_info

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
    from grokviz.checkpoints import Checkpoint

    return isinstance(obj, Checkpoint)


def _anonymous_checkpoint(model: Any) -> Checkpoint:
    from grokviz.checkpoints import Checkpoint

    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model")
    return Checkpoint(source=name, revision=None, step=None, tokens=None, label=name)


# ---------------------------------------------------------------------------------------------
# many checkpoints into a store


def _resolve_checkpoints(checkpoints: Any) -> list[Checkpoint]:
    from grokviz.checkpoints import list_checkpoints

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
    from grokviz.routing import moe_info

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
    from grokviz.routing import router_weight_rows

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
    from grokviz.checkpoints import load_model

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
