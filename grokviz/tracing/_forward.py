"""One batch through the model: padded forward pass, per-sample loss and routing reductions.

:mod:`grokviz.tracing._run` streams batches from here: :func:`_trace_encoded` runs pre-tokenized samples
longest first, halving the batch on out-of-memory errors, and yields
:class:`~grokviz.tracing._run.TraceBatch` frames. All reductions happen on the model's device; only the
small per-sample arrays are copied to the host.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from grokviz.tracing._checkpoints import Checkpoint
    from grokviz.tracing._routing import RoutingCapture

logger = logging.getLogger("grokviz.tracing")


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


# Logits handled at once when computing losses: on the CPU a few MiB, so a chunk stays in cache;
# on accelerators enough for few kernel launches while bounding the temporary float32 copy.
_CPU_CHUNK_ELEMENTS = 1 << 20
_ACCEL_CHUNK_ELEMENTS = 1 << 28


@dataclass
class _Encoded:
    sample_ids: list[str]
    ids: list[list[int]]
    n_truncated: int


def _encode(tokenizer: Any, samples: pl.DataFrame, *, max_length: int) -> _Encoded:
    """Tokenize every sample, keeping at most ``max_length`` tokens; drop samples with none."""
    if max_length < 2:
        msg = f"max_length must be at least 2 tokens (one to predict from, one to predict), got {max_length}"
        raise InputError(msg)
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
    loss: np.ndarray  # [B] float64; NaN where nothing was predicted (n_pred == 0)
    n_tokens: np.ndarray  # [B] int32
    n_pred: np.ndarray  # [B] int32: predicted tokens (n_tokens - 1)
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
                n_pred=n_pred.to(torch.int32).cpu().numpy(),
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
    nothing = reduced.n_pred == 0
    nonfinite = (~nothing & ~np.isfinite(reduced.loss)) | ~np.isfinite(reduced.weights).all(
        axis=(0, 2)
    )

    def const(name: str, value: Any, n: int, dtype: pl.DataType) -> pl.Series:
        return pl.repeat(value, n, dtype=dtype, eager=True).alias(name)

    losses = pl.DataFrame(
        [
            const("checkpoint", label, batch, pl.String()),
            const("step", step, batch, pl.Int64()),
            pl.Series("sample_id", reduced.sample_ids, dtype=pl.String()),
            # null for one-token samples (nothing was predicted; means skip nulls), while a
            # non-finite model output stays NaN / inf and is flagged, never made a plain null
            pl.Series(
                "loss",
                [None if n else float(v) for n, v in zip(nothing, reduced.loss, strict=True)],
                dtype=pl.Float64(),
            ),
            pl.Series("n_tokens", reduced.n_tokens, dtype=pl.Int32()),
            pl.Series("nonfinite", nonfinite, dtype=pl.Boolean()),
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
        raise InputError(msg)


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

    from grokviz.tracing._routing import capture_routing

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
