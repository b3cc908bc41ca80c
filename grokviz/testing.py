"""Tiny random MoE models, a character tokenizer and a samples table, built offline.

Used by grokviz's own tests and handy for trying the API without downloading anything.

Examples
--------
>>> from grokviz.testing import char_tokenizer, tiny_moe
>>> model = tiny_moe("olmoe")
>>> model.config.num_experts, char_tokenizer()("hi")["input_ids"]
(8, [1, 21, 22])
"""

from __future__ import annotations

import string
from typing import Any

from grokviz.errors import InputError

# Keyword arguments per architecture for a model of a few hundred thousand parameters.
# Each has 2 MoE layers of 8 experts with top-2 routing, unless noted.
_COMMON: dict[str, Any] = {
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "num_experts_per_tok": 2,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "olmoe": {"num_experts": 8},
    "mixtral": {"num_local_experts": 8},
    "qwen2_moe": {
        "num_experts": 8,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
    },
    "qwen3_moe": {"num_experts": 8, "moe_intermediate_size": 32, "head_dim": 8},
    "deepseek_v3": {
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "moe_intermediate_size": 32,
        "first_k_dense_replace": 1,  # layer 0 dense, layers 1-2 MoE: exercises layer mapping
        "num_hidden_layers": 3,
        "num_key_value_heads": 4,  # MLA has one key/value head per attention head
        "kv_lora_rank": 16,
        "q_lora_rank": 16,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 8,
        "n_group": 2,
        "topk_group": 1,
    },
    "phimoe": {"num_local_experts": 8},
    "granitemoe": {"num_local_experts": 8},
    "gpt_oss": {"num_local_experts": 8, "head_dim": 8, "layer_types": None},
}


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """Return a transformers config for a tiny model of ``model_type`` (see ``TINY_CONFIGS``)."""
    from transformers import AutoConfig

    if model_type not in TINY_CONFIGS:
        msg = f"no tiny config for {model_type!r}; choose one of {sorted(TINY_CONFIGS)}"
        raise InputError(msg)
    kwargs = {**_COMMON, **TINY_CONFIGS[model_type], **overrides}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_moe(model_type: str = "olmoe", *, seed: int = 0, **overrides: Any) -> Any:
    """Build a randomly initialised tiny causal MoE language model, in eval mode, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()


def tiny_dense(*, seed: int = 0) -> Any:
    """A tiny dense (non-MoE) Llama model, for testing the errors on dense models."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama",
        **{k: v for k, v in _COMMON.items() if k != "num_experts_per_tok"},
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def char_tokenizer(alphabet: str | None = None, *, model_max_length: int = 256) -> Any:
    """A character-level ``PreTrainedTokenizerFast`` that saves and loads like any hub tokenizer.

    Ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; the characters of ``alphabet``
    (default: printable ASCII) follow in order. A BOS token is prepended to every encoding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = alphabet if alphabet is not None else string.printable
    special = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(special)}
    for ch in dict.fromkeys(chars):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def tiny_samples(n: int = 4, *, domains: tuple[str, ...] = ("toy",), start: int = 0) -> Any:
    """A samples table (``schema.SAMPLES``) of ``n`` short texts, cycling through ``domains``.

    Examples
    --------
    >>> tiny_samples(3)["sample_id"].to_list()
    ['s000', 's001', 's002']
    """
    import polars as pl

    ids = range(start, start + n)
    return pl.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in ids],
            "text": [("memorize " * (1 + i % 4)) + f"then generalize #{i}" for i in ids],
            "domain": [domains[i % len(domains)] for i in ids],
            "split": ["train"] * n,
        }
    )
