"""Pathway consistency, its complement complexity, and routing entropy (DESIGN.md §1).

A sample's routing embedding at MoE layer ``l`` is the routing-weighted sum of that layer's router
weight rows, ``e_l(i) = sum_k g_l(i, k) W_l[k]``. Consistency compares adjacent layers' embeddings:
with ``c_l = cos(e_l(i), e_{l+1}(i))`` and ``m = max_l |c_l|``,
``consistency = mean_l c_l / (m + 1e-8)`` (higher = smoother routing, always in ``[-1, 1]``) and
``complexity = 1 - consistency`` (the paper's literal ``C_i``). The paper divides by
``max_l c_l``; the two agree whenever the cosine largest in size is positive, as in trained
routers. Where it is not (a maximum near 0 with negative cosines beside it), the paper's ratio is
unbounded: it reached 2.2 on an early toy checkpoint. Routing entropy is the control the
paper uses to show that the trend is not a mere sharpening of the router.

Everything is batched over samples in torch, on whatever device the inputs are on; numpy inputs are
accepted and give numpy outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from grokviz.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "adjacent_cosines",
    "complexity",
    "consistency",
    "routing_embeddings",
    "routing_entropy",
]

# the paper's stabiliser in the max-normalisation (DESIGN.md §1)
_EPS = 1e-8

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _as_tensor(x: Any, *, name: str, device: Any = None) -> torch.Tensor:
    import torch

    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
            # torch warns on read-only arrays (e.g. from Arrow); a copy is cheap next to the math
            t = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
        except Exception as exc:
            msg = f"{name} must be a numpy array or torch tensor, got {type(x).__name__}: {exc}"
            raise TypeError(msg) from exc
    if device is not None:
        t = t.to(device)
    # float64 keeps numpy-in/numpy-out results identical to a numpy reference; tensors keep
    # their own floating dtype so GPU work stays in float32.
    if not t.is_floating_point() or not isinstance(x, torch.Tensor):
        t = t.double()
    return t


def _back(t: torch.Tensor, like: Any) -> Any:
    import torch

    if isinstance(like, torch.Tensor):
        return t
    return t.detach().cpu().numpy()


def _check_shapes(weights: torch.Tensor, routers: torch.Tensor) -> None:
    if weights.ndim != 3:
        msg = (
            f"weights must have shape [samples, layers, experts], got {tuple(weights.shape)}; "
            "pass TraceStore.routing_array(checkpoint)[0]"
        )
        raise InputError(msg)
    if routers.ndim != 3:
        msg = (
            f"routers must have shape [layers, experts, hidden], got {tuple(routers.shape)}; "
            "pass TraceStore.router_array(checkpoint)"
        )
        raise InputError(msg)
    if weights.shape[1:] != routers.shape[:2]:
        msg = (
            f"weights have {weights.shape[1]} layers x {weights.shape[2]} experts but routers have "
            f"{routers.shape[0]} layers x {routers.shape[1]} experts; take both from the same "
            "checkpoint and the same layers"
        )
        raise InputError(msg)


def routing_embeddings(weights: ArrayT, routers: Any, *, device: Any = None) -> ArrayT:
    """Routing embeddings ``e_l(i) = sum_k g_l(i, k) W_l[k]`` of every sample and layer.

    Parameters
    ----------
    weights
        Per-sample routing weights ``g``, shape ``[N, L, K]`` (numpy or torch).
    routers
        Router weight rows ``W``, shape ``[L, K, d]``.
    device
        Optional torch device to compute on; by default the device ``weights`` are on.

    Returns
    -------
    Array of shape ``[N, L, d]``, numpy when ``weights`` is numpy, else a tensor.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[[1.0, 0.0], [0.5, 0.5]]])  # 1 sample, 2 layers, 2 experts
    >>> w = np.array([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 2.0]]])
    >>> routing_embeddings(g, w)[0].tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    import torch

    g = _as_tensor(weights, name="weights", device=device)
    w = _as_tensor(routers, name="routers", device=g.device).to(g.dtype)
    _check_shapes(g, w)
    e = torch.einsum("nlk,lkd->nld", g, w)
    return _back(e, weights)


def adjacent_cosines(weights: ArrayT, routers: Any, *, device: Any = None) -> ArrayT:
    """Cosine similarities ``c_l = cos(e_l(i), e_{l+1}(i))`` between adjacent layers.

    A zero routing embedding (all-zero weights or router rows) has cosine 0 with anything.

    Parameters
    ----------
    weights
        Per-sample routing weights, shape ``[N, L, K]``, ``L >= 2``.
    routers
        Router weight rows, shape ``[L, K, d]``.
    device
        Optional torch device to compute on.

    Returns
    -------
    Array of shape ``[N, L - 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> w = np.stack([np.eye(2), np.eye(2)])
    >>> adjacent_cosines(g, w).tolist()
    [[0.0]]
    """
    import torch

    g = _as_tensor(weights, name="weights", device=device)
    w = _as_tensor(routers, name="routers", device=g.device).to(g.dtype)
    _check_shapes(g, w)
    if g.shape[1] < 2:
        msg = (
            f"consistency needs at least 2 MoE layers to compare adjacent ones, got {g.shape[1]}; "
            "pass more layers (layers=None uses all of them)"
        )
        raise InputError(msg)
    # Through Gram matrices, never the [N, L, d] embeddings (gigabytes for OLMoE's d=2048):
    # e_l . e_m = g_l^T (W_l W_m^T) g_m, so only [L, K, K] matrices are built.
    gram = torch.einsum("lkd,ljd->lkj", w, w)
    cross = torch.einsum("lkd,ljd->lkj", w[:-1], w[1:])
    sq = (torch.einsum("nlk,lkj->nlj", g, gram) * g).sum(-1).clamp_min(0.0)
    dot = (torch.einsum("nlk,lkj->nlj", g[:, :-1], cross) * g[:, 1:]).sum(-1)
    norms = torch.sqrt(sq[:, :-1] * sq[:, 1:])
    # cos := 0 where either vector is zero, not NaN, so one dead layer cannot poison a mean
    cos = torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), 0.0)
    cos = cos.clamp(-1.0, 1.0)  # rounding can step just outside
    return _back(cos, weights)


def consistency(weights: ArrayT, routers: Any, *, device: Any = None) -> ArrayT:
    """Pathway consistency of each sample: ``mean_l c_l / (max_l |c_l| + 1e-8)``; higher = smoother.

    ``c_l`` are the adjacent-layer cosines of :func:`adjacent_cosines`. The value is 1 when every
    adjacent pair is equally aligned and falls as the transitions become more erratic. It is the
    paper's formula, ``mean_l c_l / (max_l c_l + 1e-8)``, whenever the cosine largest in size is
    positive (trained routers give positive cosines). The paper's maximum can be near 0 or
    negative while other cosines are negative, and the ratio then leaves ``[-1, 1]`` without
    bound; dividing by the largest *size* keeps every value in ``[-1, 1]``. When all of a
    sample's cosines are 0 (for instance zero routing embeddings) its consistency is 0, when all
    are equal and negative it is -1. With exactly 2 layers there is one cosine, so consistency is
    +-1 (up to the 1e-8) whatever the routing: the metric needs 3 or more MoE layers to say
    anything.

    Parameters
    ----------
    weights
        Per-sample routing weights ``g``, shape ``[N, L, K]``, ``L >= 2`` (numpy or torch).
    routers
        Router weight rows ``W``, shape ``[L, K, d]``.
    device
        Optional torch device to compute on; by default the device ``weights`` are on.

    Returns
    -------
    Array of shape ``[N]``; numpy when ``weights`` is numpy, else a tensor on its device.

    Raises
    ------
    ValueError
        With fewer than 2 layers, or when the shapes of ``weights`` and ``routers`` disagree.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.full((1, 3, 2), 0.5)  # same routing in all 3 layers
    >>> w = np.stack([np.eye(2)] * 3)
    >>> consistency(g, w).round(6).tolist()
    [1.0]
    """
    c = adjacent_cosines(_as_tensor(weights, name="weights", device=device), routers)
    m = c.abs().max(dim=1, keepdim=True).values
    out = (c / (m + _EPS)).mean(dim=1)
    return _back(out, weights)


def complexity(weights: ArrayT, routers: Any, *, device: Any = None) -> ArrayT:
    """Pathway complexity ``1 - consistency``, the paper's literal ``C_i``; higher = more erratic.

    Parameters and returns as in :func:`consistency`.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.full((1, 3, 2), 0.5)
    >>> w = np.stack([np.eye(2)] * 3)
    >>> complexity(g, w).round(6).tolist()
    [0.0]
    """
    return 1.0 - consistency(weights, routers, device=device)


def routing_entropy(weights: ArrayT, *, device: Any = None) -> ArrayT:
    """Mean over layers of the entropy (nats) of each sample's routing weights ``g_l(i)``.

    The paper's control: if pathway distance merely tracked how peaked the router is, it would
    follow this entropy. Weights are used as given (they sum to 1 for full-softmax routing);
    ``0 log 0`` counts as 0.

    Parameters
    ----------
    weights
        Per-sample routing weights, shape ``[N, L, K]`` (numpy or torch).
    device
        Optional torch device to compute on.

    Returns
    -------
    Array of shape ``[N]``.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[[0.5, 0.5], [1.0, 0.0]]])
    >>> round(float(routing_entropy(g)[0]), 6)  # (log 2 + 0) / 2
    0.346574
    """
    import torch

    g = _as_tensor(weights, name="weights", device=device)
    if g.ndim != 3:
        msg = f"weights must have shape [samples, layers, experts], got {tuple(g.shape)}"
        raise InputError(msg)
    plogp = torch.where(g > 0, g * torch.log(torch.where(g > 0, g, 1.0)), 0.0)
    out = (-plogp.sum(dim=-1)).mean(dim=-1)
    return _back(out, weights)
