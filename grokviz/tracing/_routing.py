"""Reach the routers of a Mixture-of-Experts model: capture their decisions and read their weights.

Every MoE architecture in ``transformers`` 5 computes its routing in a router module (for example
``OlmoeTopKRouter``) whose forward returns ``(router_logits, top_k_weights, top_k_index)`` for the
flattened ``batch * seq`` tokens. The model class names that module in
``_can_record_outputs["router_logits"]``; grokviz finds the routers through it and hooks their
outputs, so no modelling code is copied or patched. The only per-architecture knowledge is the
*score function* that turns logits into the routing distribution:

- ``"softmax"`` routers (OLMoE, Mixtral, Qwen-MoE, PhiMoE, GraniteMoE, GPT-OSS, ...): the full
  routing distribution is ``softmax(router_logits)`` over all K experts, computed in float32. For
  GPT-OSS the logits include the router's bias; it applies its softmax to the top-k logits only,
  but the full softmax of the same logits is the distribution whose top-k it used.
- ``"sigmoid"`` routers (DeepSeek-V3, GLM-4-MoE, dots1, EXAONE-MoE, LFM2-MoE, MiniMax-M2): each
  expert gets an independent score ``sigmoid(logit)``. grokviz defines the routing distribution
  as these scores normalised to sum to 1 (computed stably as ``softmax(logsigmoid(logits))``). The load-balancing correction bias (``e_score_correction_bias``) only steers which experts
  are *selected*, not how they are weighted, so it is left out of the distribution; ``topk`` still
  reports the experts the model really selected.

Either way each row of :attr:`RoutingCapture.probs` sums to 1 and the paper's quantities (routing
weights g, pathways, routing embeddings) are defined the same way for every architecture.

Examples
--------
>>> import torch
>>> from grokviz.testing import tiny_moe
>>> model = tiny_moe("olmoe")
>>> with capture_routing(model) as routing, torch.no_grad():
...     _ = model(torch.tensor([[1, 5, 9, 12, 7]]))
>>> routing.probs[0].shape  # [tokens, experts] in the first MoE layer
torch.Size([5, 8])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grokviz.errors import NotMoEError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "MoEInfo",
    "RoutingCapture",
    "capture_routing",
    "moe_info",
    "router_weight_rows",
]

# model_type -> how the router turns logits into expert scores. Each entry was checked against
# the architecture's modeling file in transformers 5.24: the router module named in
# `_can_record_outputs["router_logits"]` returns (logits, top-k weights, top-k indices).
# "config" means the model's config says (Cohere2-MoE's `expert_selection_fn`).
_SCORE_FUNCTIONS: dict[str, str] = {
    "olmoe": "softmax",
    "mixtral": "softmax",
    "qwen2_moe": "softmax",
    "qwen3_moe": "softmax",
    "deepseek_v3": "sigmoid",
    "phimoe": "softmax",
    "granitemoe": "softmax",
    "gpt_oss": "softmax",
    # relatives, each checked the same way and tested on a tiny model
    "cohere2_moe": "config",
    "deepseek_v2": "softmax",
    "dots1": "sigmoid",
    "ernie4_5_moe": "softmax",
    "exaone_moe": "sigmoid",
    "flex_olmo": "softmax",
    "glm4_moe": "sigmoid",
    "granitemoeshared": "softmax",
    "hunyuan_v1_moe": "softmax",
    "jamba": "softmax",
    "lfm2_moe": "sigmoid",
    "minimax": "softmax",
    "minimax_m2": "sigmoid",
    "qwen3_next": "softmax",
}

SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_SCORE_FUNCTIONS)
"""``model_type`` names whose routers grokviz can capture."""

# the decoder-layer index inside a module path such as "model.layers.3.mlp.gate"
_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class MoEInfo:
    """The shape of a model's Mixture-of-Experts routing.

    Attributes
    ----------
    model_type
        The ``transformers`` model type, e.g. ``"olmoe"``.
    moe_layers
        Decoder-layer indices that have a router, ascending. Layer ``l`` of every grokviz table is
        ``moe_layers[l]`` of the model (DeepSeek-V3, for instance, starts with dense layers).
    num_experts
        K, the number of routed experts per layer.
    top_k
        How many experts each token is sent to.
    hidden_size
        d, the width of the router's input (and of its weight rows).
    """

    model_type: str
    moe_layers: tuple[int, ...]
    num_experts: int
    top_k: int
    hidden_size: int

    @property
    def num_layers(self) -> int:
        """L, the number of MoE layers."""
        return len(self.moe_layers)


def _not_moe(model: Any, why: str) -> NotMoEError:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    msg = (
        f"grokviz cannot reach Mixture-of-Experts routers in this {model_type!r} model: {why}. "
        f"Supported architectures (transformers model_type): {', '.join(SUPPORTED_ARCHITECTURES)}. "
        "Load an MoE checkpoint of one of these types."
    )
    return NotMoEError(msg)


def _router_class_spec(model: nn.Module) -> tuple[type | None, str | None]:
    """The router class (or class-name suffix) that the model records router logits from."""
    for module in model.modules():
        spec = (getattr(type(module), "_can_record_outputs", None) or {}).get("router_logits")
        if spec is None:
            continue
        if isinstance(spec, type):
            return spec, None
        target = getattr(spec, "target_class", None)
        name = getattr(spec, "class_name", None)
        if target is not None or name is not None:
            return target, name
    return None, None


def _routers(model: nn.Module) -> tuple[str, list[tuple[int, nn.Module]]]:
    """The model type and its ``(decoder layer index, router module)`` pairs in layer order."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _SCORE_FUNCTIONS:
        raise _not_moe(model, "its architecture has no router adapter in grokviz")
    target, suffix = _router_class_spec(model)
    if target is None and suffix is None:
        raise _not_moe(model, "the model declares no router module")
    found: dict[int, nn.Module] = {}
    for name, module in model.named_modules():
        hit = isinstance(module, target) if target is not None else False
        if suffix is not None and type(module).__name__.endswith(suffix):
            hit = True
        if not hit:
            continue
        match = _LAYER_INDEX.search(name)
        if match is None:
            continue  # a router outside the decoder stack, e.g. a multi-token-prediction head
        found[int(match.group(1))] = module
    if not found:
        raise _not_moe(model, "no decoder layer has a router (is it a dense configuration?)")
    return str(model_type), [(index, found[index]) for index in sorted(found)]


def _weight(router: nn.Module) -> torch.Tensor:
    """The router's ``[K, d]`` weight matrix (every supported router is a linear map)."""
    weight = getattr(router, "weight", None)
    if weight is None or weight.dim() != 2:
        # HunYuan-MoE keeps its router's linear map in a child module (`gate.wg`)
        matrices = [p for p in router.parameters() if p.dim() == 2]
        if len(matrices) != 1:
            msg = f"router {type(router).__name__} has no [num_experts, hidden] weight matrix"
            raise NotMoEError(msg)
        weight = matrices[0]
    return weight


def moe_info(model: Any) -> MoEInfo:
    """Describe the Mixture-of-Experts routing of a ``transformers`` causal language model.

    Parameters
    ----------
    model
        A model of one of :data:`SUPPORTED_ARCHITECTURES`.

    Returns
    -------
    MoEInfo
        Its MoE layer indices, number of experts, top-k and hidden size.

    Raises
    ------
    NotMoEError
        If the model is dense or of an architecture grokviz has no router adapter for; the
        message names the model's type and the supported architectures.

    Examples
    --------
    >>> from grokviz.testing import tiny_moe
    >>> moe_info(tiny_moe("olmoe"))
    MoEInfo(model_type='olmoe', moe_layers=(0, 1), num_experts=8, top_k=2, hidden_size=32)
    """
    model_type, routers = _routers(model)
    first = routers[0][1]
    weight = _weight(first)
    shapes = {tuple(_weight(router).shape) for _, router in routers}
    if len(shapes) > 1:
        raise _not_moe(model, f"its MoE layers differ in router shape {sorted(shapes)}")
    top_k = getattr(first, "top_k", None) or model.config.num_experts_per_tok
    return MoEInfo(
        model_type=model_type,
        moe_layers=tuple(index for index, _ in routers),
        num_experts=int(weight.shape[0]),
        top_k=int(top_k),
        hidden_size=int(weight.shape[1]),
    )


def router_weight_rows(model: Any) -> torch.Tensor:
    """The routers' weight matrices, stacked: the paper's expert embeddings.

    Parameters
    ----------
    model
        A model of one of :data:`SUPPORTED_ARCHITECTURES`.

    Returns
    -------
    torch.Tensor
        float32 on the CPU, shape ``[L, K, d]``; ``[l, k]`` is row k of the router weight W_l of
        MoE layer ``l`` (decoder layer ``moe_info(model).moe_layers[l]``). Router biases, where an
        architecture has them, are not part of the rows.

    Examples
    --------
    >>> from grokviz.testing import tiny_moe
    >>> router_weight_rows(tiny_moe("olmoe")).shape
    torch.Size([2, 8, 32])
    """
    import torch

    _, routers = _routers(model)
    with torch.no_grad():
        rows = [
            _weight(router).detach().to(device="cpu", dtype=torch.float32) for _, router in routers
        ]
        return torch.stack(rows)


def _softmax_scores(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().softmax(dim=-1)


def _sigmoid_scores(logits: torch.Tensor) -> torch.Tensor:
    from torch.nn.functional import logsigmoid

    # sigmoid / sum(sigmoid) without underflow to 0/0 for very negative logits
    return logsigmoid(logits.float()).softmax(dim=-1)


_SCORERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": _softmax_scores,
    "sigmoid": _sigmoid_scores,
}


def _score_function(model: Any, model_type: str) -> str:
    name = _SCORE_FUNCTIONS[model_type]
    if name == "config":
        name = getattr(model.config, "expert_selection_fn", "softmax")
    if name not in _SCORERS:
        msg = f"unknown router score function {name!r} in the {model_type!r} config"
        raise NotMoEError(msg)
    return name


class RoutingCapture:
    """The routing of every token in the last forward pass, filled in by :func:`capture_routing`.

    Attributes
    ----------
    info : MoEInfo
        The model's MoE layout; list position ``l`` below is MoE layer ``l``.
    probs : list[torch.Tensor]
        One ``[n_tokens, K]`` float32 tensor per MoE layer (``info.moe_layers`` order): the full
        routing distribution over all K experts of every token, rows in the order of the
        flattened ``batch * seq`` input, on the model's device. Each row sums to 1.
    topk : list[torch.Tensor]
        One ``[n_tokens, top_k]`` int64 tensor per MoE layer: the experts the model used, in the
        model's own order.

    A later forward pass overwrites the tensors of the previous one. Before the first forward
    pass (and after :meth:`clear`) both lists are empty.
    """

    def __init__(self, info: MoEInfo) -> None:
        self.info = info
        self._probs: list[torch.Tensor | None] = [None] * info.num_layers
        self._topk: list[torch.Tensor | None] = [None] * info.num_layers

    @property
    def probs(self) -> list[torch.Tensor]:
        """Per MoE layer, ``[n_tokens, K]`` float32 routing distributions (see the class)."""
        return [p for p in self._probs if p is not None]

    @property
    def topk(self) -> list[torch.Tensor]:
        """Per MoE layer, ``[n_tokens, top_k]`` int64 experts the model used (see the class)."""
        return [t for t in self._topk if t is not None]

    def clear(self) -> None:
        """Forget the captured tensors (frees their memory)."""
        self._probs = [None] * self.info.num_layers
        self._topk = [None] * self.info.num_layers

    def __repr__(self) -> str:
        filled = sum(p is not None for p in self._probs)
        return f"RoutingCapture({self.info.model_type}, {filled}/{self.info.num_layers} layers)"


def _make_hook(
    capture: RoutingCapture, slot: int, scorer: Callable[..., Any]
) -> Callable[..., None]:
    import torch

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        logits, indices = output[0], output[-1]
        with torch.no_grad():
            # No host sync and no per-token Python work: tracing must stay as cheap as a forward.
            logits = logits.detach().reshape(-1, logits.shape[-1])
            capture._probs[slot] = scorer(logits)
            capture._topk[slot] = indices.detach().reshape(logits.shape[0], -1).to(torch.int64)

    return hook


@contextmanager
def capture_routing(model: Any) -> Iterator[RoutingCapture]:
    """Record the routing distribution and chosen experts of every MoE layer during forward passes.

    Forward hooks are registered on the model's routers on entry and removed on exit, also when
    the block raises. The hooks add one small softmax per layer on the model's device and move
    nothing to the host.

    Parameters
    ----------
    model
        A model of one of :data:`SUPPORTED_ARCHITECTURES`.

    Yields
    ------
    RoutingCapture
        Filled by each forward pass run inside the block; see its attributes.

    Raises
    ------
    NotMoEError
        If the model has no routers grokviz can reach.

    Examples
    --------
    >>> import torch
    >>> from grokviz.testing import tiny_moe
    >>> model = tiny_moe("olmoe")
    >>> with capture_routing(model) as routing, torch.no_grad():
    ...     _ = model(torch.tensor([[1, 5, 9, 12]]))
    >>> bool(torch.allclose(routing.probs[0].sum(-1), torch.ones(4)))
    True
    """
    model_type, routers = _routers(model)
    info = moe_info(model)
    capture = RoutingCapture(info)
    scorer = _SCORERS[_score_function(model, model_type)]
    handles = []
    try:
        for slot, (_, router) in enumerate(routers):
            handles.append(router.register_forward_hook(_make_hook(capture, slot, scorer)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
