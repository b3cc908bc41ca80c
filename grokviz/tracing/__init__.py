"""Tracing: from checkpoints to per-sample losses and routing weights.

One forward pass per batch gives every sample's loss and, per MoE layer, its routing weights
g_l(i) (the full-softmax router distribution averaged over the sample's real tokens). The pieces,
in the order data flows through them:

- checkpoints: find a run's checkpoints (local folders or hub revisions) and say what their
  weights are (:class:`Checkpoint`, :func:`list_checkpoints`);
- loading: load one safely (:func:`load_model`: safetensors only, no remote code unless asked);
- routing: reach the routers of each MoE architecture (:func:`moe_info`, :func:`capture_routing`);
- the forward pass and the trace run: :func:`iter_trace` streams one checkpoint's results batch
  by batch; :func:`trace` fills a resumable :class:`~grokviz.store.TraceStore` from a series,
  and :func:`repair` recomputes what :meth:`~grokviz.store.TraceStore.verify` found damaged.

Wherever a checkpoint is accepted, a folder, ``"owner/name@revision"`` or a :class:`Checkpoint`
will do (:func:`as_checkpoint`).

``import grokviz.tracing`` does not import torch or transformers; the functions load them.
"""

from __future__ import annotations

from grokviz.tracing._checkpoints import (
    Checkpoint,
    as_checkpoint,
    checkpoints_frame,
    list_checkpoints,
    parse_step,
)
from grokviz.tracing._forward import TraceBatch
from grokviz.tracing._loading import load_model
from grokviz.tracing._prepare import resolve_device, weights_hash
from grokviz.tracing._repair import repair
from grokviz.tracing._routing import (
    SUPPORTED_ARCHITECTURES,
    MoEInfo,
    RoutingCapture,
    capture_routing,
    moe_info,
    router_weight_rows,
)
from grokviz.tracing._run import iter_trace, trace

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "Checkpoint",
    "MoEInfo",
    "RoutingCapture",
    "TraceBatch",
    "as_checkpoint",
    "capture_routing",
    "checkpoints_frame",
    "iter_trace",
    "list_checkpoints",
    "load_model",
    "moe_info",
    "parse_step",
    "repair",
    "resolve_device",
    "router_weight_rows",
    "trace",
    "weights_hash",
]
