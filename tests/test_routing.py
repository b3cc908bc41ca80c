"""Router capture and router weights on tiny random models of every supported architecture."""

from __future__ import annotations

import functools

import pytest
import torch

from grokviz.errors import NotMoEError
from grokviz.testing import _COMMON, TINY_CONFIGS, tiny_dense, tiny_moe
from grokviz.tracing import (
    SUPPORTED_ARCHITECTURES,
    capture_routing,
    moe_info,
    router_weight_rows,
)

# More architectures grokviz routes, built here rather than in grokviz.testing.TINY_CONFIGS so
# that other test modules iterating over TINY_CONFIGS stay quick.
EXTRA_CONFIGS: dict[str, dict] = {
    "cohere2_moe": {"num_experts": 8, "moe_intermediate_size": 32, "head_dim": 8},
    "deepseek_v2": {
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "moe_intermediate_size": 32,
        "first_k_dense_replace": 0,
        "kv_lora_rank": 16,
        "q_lora_rank": 16,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 8,
        "num_key_value_heads": 4,
        "topk_method": "greedy",
    },
    "dots1": {
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "moe_intermediate_size": 32,
        "first_k_dense_replace": 0,
        "n_group": 1,
        "topk_group": 1,
        "head_dim": 8,
    },
    "ernie4_5_moe": {
        "moe_num_experts": 8,
        "moe_k": 2,
        "moe_intermediate_size": 32,
        "moe_layer_start_index": 0,
        "head_dim": 8,
    },
    "exaone_moe": {
        "num_experts": 8,
        "moe_intermediate_size": 32,
        "n_group": 1,
        "topk_group": 1,
        "head_dim": 8,
        "first_k_dense_replace": 0,
    },
    "flex_olmo": {"num_experts": 8},
    "glm4_moe": {
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "moe_intermediate_size": 32,
        "first_k_dense_replace": 0,
        "n_group": 1,
        "topk_group": 1,
        "head_dim": 8,
    },
    "granitemoeshared": {"num_local_experts": 8, "shared_intermediate_size": 32},
    "hunyuan_v1_moe": {"num_experts": 8, "moe_topk": 2, "head_dim": 8},
    "jamba": {
        "num_experts": 8,
        "expert_layer_period": 1,
        "expert_layer_offset": 0,
        "attn_layer_period": 1,
        "attn_layer_offset": 0,
    },
    "lfm2_moe": {
        "num_experts": 8,
        "moe_intermediate_size": 32,
        "num_dense_layers": 0,
        "layer_types": ["full_attention", "full_attention"],
    },
    "minimax": {"num_local_experts": 8, "head_dim": 8},
    "minimax_m2": {"num_local_experts": 8, "head_dim": 8},
    "qwen3_next": {
        "num_experts": 8,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
        "head_dim": 8,
        "layer_types": ["linear_attention", "full_attention"],
    },
}

# Written out per architecture (not discovered) so the tests check grokviz's discovery:
# (block attribute of a decoder layer, router attribute of the block).
BLOCK = {
    "olmoe": ("mlp", "gate"),
    "mixtral": ("mlp", "gate"),
    "qwen2_moe": ("mlp", "gate"),
    "qwen3_moe": ("mlp", "gate"),
    "deepseek_v3": ("mlp", "gate"),
    "phimoe": ("mlp", "router"),
    "granitemoe": ("block_sparse_moe", "router"),
    "gpt_oss": ("mlp", "router"),
    "cohere2_moe": ("mlp", "gate"),
    "deepseek_v2": ("mlp", "gate"),
    "dots1": ("mlp", "gate"),
    "ernie4_5_moe": ("mlp", "gate"),
    "exaone_moe": ("mlp", "gate"),
    "flex_olmo": ("mlp", "gate"),
    "glm4_moe": ("mlp", "gate"),
    "granitemoeshared": ("block_sparse_moe", "router"),
    "hunyuan_v1_moe": ("mlp", "gate"),
    "jamba": ("feed_forward", "router"),
    "lfm2_moe": ("feed_forward", "gate"),
    "minimax": ("mlp", "gate"),
    "minimax_m2": ("mlp", "gate"),
    "qwen3_next": ("mlp", "gate"),
}
SIGMOID = {"deepseek_v3", "dots1", "exaone_moe", "glm4_moe", "lfm2_moe", "minimax_m2"}
# Architectures whose choice is simply the k largest routing scores (no group limits or biases).
PLAIN_TOPK = {
    "olmoe",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "phimoe",
    "granitemoe",
    "gpt_oss",
    "cohere2_moe",
    "deepseek_v2",
    "flex_olmo",
    "granitemoeshared",
    "hunyuan_v1_moe",
    "jamba",
    "minimax",
    "qwen3_next",
}
MOE_LAYERS = {"deepseek_v3": (1, 2)}  # first_k_dense_replace=1 of 3 layers; others (0, 1)

ARCHS = [a for a in [*TINY_CONFIGS, *EXTRA_CONFIGS] if a in SUPPORTED_ARCHITECTURES]


@functools.cache
def _model(model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM, __version__

    try:
        if model_type in TINY_CONFIGS:
            return tiny_moe(model_type)
        kwargs = {**_COMMON, **EXTRA_CONFIGS[model_type], "use_cache": False}
        config = AutoConfig.for_model(model_type, **kwargs)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        return model.eval()
    except Exception as exc:  # an architecture this transformers cannot build
        pytest.skip(
            f"cannot build a tiny {model_type} model with transformers {__version__}: {exc}"
        )


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


def _block(model, model_type: str, layer: int):
    block_name, _ = BLOCK[model_type]
    return getattr(model.model.layers[layer], block_name)


def _router(model, model_type: str, layer: int):
    return getattr(_block(model, model_type, layer), BLOCK[model_type][1])


def _router_weight(model, model_type: str, layer: int) -> torch.Tensor:
    router = _router(model, model_type, layer)
    return router.wg.weight if model_type == "hunyuan_v1_moe" else router.weight


def _ids(batch: int = 2, seq: int = 7, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, seq), generator=gen)


def test_every_tiny_config_is_supported():
    assert set(TINY_CONFIGS) <= set(SUPPORTED_ARCHITECTURES)


def test_moe_info_matches_config(arch):
    model = _model(arch)
    info = moe_info(model)
    assert info.model_type == arch
    assert info.moe_layers == MOE_LAYERS.get(arch, (0, 1))
    assert info.num_layers == len(info.moe_layers)
    assert info.num_experts == 8
    assert info.top_k == model.config.num_experts_per_tok == 2
    assert info.hidden_size == model.config.hidden_size


def test_probs_are_distributions_equal_to_router_logits(arch):
    model = _model(arch)
    ids = _ids()
    with capture_routing(model) as routing, torch.no_grad():
        out = model(ids, output_router_logits=True)
    reference = out.router_logits
    info = moe_info(model)
    assert len(routing.probs) == len(reference) == info.num_layers
    for probs, logits in zip(routing.probs, reference, strict=True):
        assert probs.dtype == torch.float32
        assert probs.shape == (ids.numel(), info.num_experts)
        torch.testing.assert_close(probs.sum(-1), torch.ones(ids.numel()))
        logits = logits.double()
        if arch in SIGMOID:
            scores = 1.0 / (1.0 + torch.exp(-logits))
            expected = scores / scores.sum(-1, keepdim=True)
        else:
            expected = torch.exp(logits - logits.logsumexp(-1, keepdim=True))
        torch.testing.assert_close(probs.double(), expected, rtol=1e-5, atol=1e-6)
        # a random router spreads its weight: guards against comparing two constant tensors
        assert probs.std() > 1e-3


def test_topk_is_what_the_experts_received(arch):
    """The experts module of each MoE block is fed the indices the model decided on."""
    model = _model(arch)
    info = moe_info(model)
    fed: dict[int, torch.Tensor] = {}
    handles = []
    for slot, layer in enumerate(info.moe_layers):
        experts = _block(model, arch, layer).experts

        def pre_hook(module, args, kwargs, slot=slot):
            named = kwargs.get("top_k_index", kwargs.get("router_indices"))
            fed[slot] = (args[1] if len(args) > 1 else named).clone()

        handles.append(experts.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        with capture_routing(model) as routing, torch.no_grad():
            model(_ids(seed=3))
    finally:
        for h in handles:
            h.remove()
    assert len(routing.topk) == info.num_layers
    for slot, chosen in enumerate(routing.topk):
        assert chosen.dtype == torch.int64
        assert chosen.shape == (_ids(seed=3).numel(), info.top_k)
        assert torch.equal(chosen, fed[slot].long())
        if arch in PLAIN_TOPK:
            top = routing.probs[slot].topk(info.top_k, dim=-1).indices
            assert torch.equal(chosen.sort(-1).values, top.sort(-1).values)


def test_rows_follow_the_flattened_batch(arch):
    """Row b * seq + t is token t of sequence b: the same as tracing that sequence alone."""
    model = _model(arch)
    ids = _ids(batch=3, seq=5, seed=4)
    with capture_routing(model) as routing, torch.no_grad():
        model(ids)
        batched = [p.clone() for p in routing.probs]
        model(ids[2:3])
        alone = routing.probs
    for b, a in zip(batched, alone, strict=True):
        torch.testing.assert_close(b[10:15], a, rtol=1e-4, atol=1e-5)


def test_capture_keeps_the_last_pass_and_clears():
    model = _model("olmoe")
    with capture_routing(model) as routing, torch.no_grad():
        assert routing.probs == [] and routing.topk == []
        model(_ids(batch=2, seq=6))
        model(_ids(batch=1, seq=4))
        assert [p.shape[0] for p in routing.probs] == [4, 4]
        routing.clear()
        assert routing.probs == [] and routing.topk == []


def test_bfloat16_model_gives_float32_distributions():
    model = tiny_moe("olmoe").to(torch.bfloat16)
    with capture_routing(model) as routing, torch.no_grad():
        model(_ids())
    for probs in routing.probs:
        assert probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[0]))


def test_hooks_are_removed_on_exit_and_on_error(arch):
    model = _model(arch)
    info = moe_info(model)
    routers = [_router(model, arch, layer) for layer in info.moe_layers]
    before = [len(r._forward_hooks) for r in routers]
    with capture_routing(model) as routing:
        assert [len(r._forward_hooks) for r in routers] == [n + 1 for n in before]
    assert [len(r._forward_hooks) for r in routers] == before
    with pytest.raises(RuntimeError, match="boom"), capture_routing(model):
        raise RuntimeError("boom")
    assert [len(r._forward_hooks) for r in routers] == before
    with torch.no_grad():
        model(_ids())
    assert routing.probs == []  # nothing recorded outside the block


def test_router_weight_rows(arch):
    model = _model(arch)
    info = moe_info(model)
    rows = router_weight_rows(model)
    assert rows.shape == (info.num_layers, info.num_experts, info.hidden_size)
    assert rows.dtype == torch.float32 and rows.device.type == "cpu"
    for slot, layer in enumerate(info.moe_layers):
        weight = _router_weight(model, arch, layer)
        assert torch.equal(rows[slot], weight.detach().float())
    # the rows are a copy: editing them leaves the model alone
    rows.zero_()
    assert _router_weight(model, arch, info.moe_layers[0]).abs().sum() > 0


def test_deepseek_dense_first_layers_are_skipped():
    model = tiny_moe("deepseek_v3", num_hidden_layers=4, first_k_dense_replace=2)
    info = moe_info(model)
    assert info.moe_layers == (2, 3)
    assert router_weight_rows(model).shape[0] == 2
    torch.testing.assert_close(router_weight_rows(model)[0], model.model.layers[2].mlp.gate.weight)


def test_dense_model_raises_a_helpful_error():
    model = tiny_dense()
    with pytest.raises(NotMoEError) as excinfo:
        moe_info(model)
    message = str(excinfo.value)
    assert "'llama'" in message
    for name in SUPPORTED_ARCHITECTURES:
        assert name in message
    with pytest.raises(NotMoEError), capture_routing(model):
        pass
    with pytest.raises(NotMoEError):
        router_weight_rows(model)
    assert isinstance(excinfo.value, TypeError)  # callers catching TypeError still work


def test_sigmoid_distribution_is_stable_for_extreme_logits():
    """Very negative logits must not underflow to 0/0: sigmoid ratios are still defined."""
    model = _model("deepseek_v3")
    layer = moe_info(model).moe_layers[0]
    gate = model.model.layers[layer].mlp.gate
    logits = torch.tensor([[-200.0, -201.0, -300.0, -250.0, -200.0, -400.0, -220.0, -210.0]])
    with capture_routing(model) as routing, torch.no_grad():
        gate.forward = lambda hidden, _f=gate.forward: (logits, *_f(hidden)[1:])
        try:
            gate(torch.zeros(1, model.config.hidden_size))
        finally:
            del gate.forward
    probs = routing.probs[0].double()
    assert torch.isfinite(probs).all()
    # for x << 0, sigmoid(x) ~ exp(x): the distribution is the softmax of the logits
    torch.testing.assert_close(probs[0], logits[0].double().softmax(-1), rtol=1e-5, atol=1e-12)
