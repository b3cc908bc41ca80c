"""The toy models: OLMoE-architecture configs and checkpoints that load like any hub model.

A checkpoint folder holds ``config.json``, ``model.safetensors`` and the tokenizer files, so
``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)``
load it offline. Weights are stored in float16 to keep a shipped series small; the config says
float32, so transformers loads them as float32 and every consumer (the trainer's own evaluation,
the tracer) sees the same rounded weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokviz.errors import InputError

CHECKPOINT_FORMAT = "step-{step:06d}"
"""Name of a checkpoint folder; ``grokviz.tracing`` reads the step from it."""


@dataclass(frozen=True)
class ModelSpec:
    """Size of a toy OLMoE model. Defaults give 4 MoE layers of 8 experts, top-2, ~0.5 M params."""

    hidden_size: int = 64
    intermediate_size: int = 64
    """Width of each expert's MLP."""
    num_layers: int = 4
    num_experts: int = 8
    top_k: int = 2
    num_heads: int = 4


def olmoe_config(spec: ModelSpec, *, vocab_size: int) -> Any:
    """A transformers ``OlmoeConfig`` for ``spec`` over a vocabulary of ``vocab_size`` tokens.

    Examples
    --------
    >>> config = olmoe_config(ModelSpec(num_layers=2), vocab_size=64)  # doctest: +SKIP
    >>> config.model_type, config.num_experts  # doctest: +SKIP
    ('olmoe', 8)
    """
    from transformers import OlmoeConfig

    if spec.hidden_size % spec.num_heads:
        msg = (
            f"hidden_size {spec.hidden_size} is not a multiple of num_heads {spec.num_heads}; "
            "choose sizes such that each head has hidden_size / num_heads dimensions"
        )
        raise InputError(msg)
    if not 1 <= spec.top_k <= spec.num_experts:
        msg = f"top_k must be in 1..num_experts={spec.num_experts}; got {spec.top_k}"
        raise InputError(msg)
    return OlmoeConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        num_experts=spec.num_experts,
        num_experts_per_tok=spec.top_k,
        max_position_embeddings=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        dtype="float32",
    )


def build_model(config: Any, *, seed: int) -> Any:
    """A freshly initialised ``OlmoeForCausalLM`` (float32, CPU), reproducible from ``seed``.

    Uses transformers' ``grouped_mm`` experts kernel where torch has one. On a CPU at the toy's
    size it is only slightly faster than the per-expert loop (4 % per training step in
    ``benchmarks/toy_training.py``); the shipped run was trained with it, and another kernel sums
    in another order, so it stays.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(
        config, attn_implementation="sdpa", experts_implementation=_experts_kernel()
    )


def _experts_kernel() -> str:
    import torch

    return (
        "grouped_mm"
        if hasattr(torch.nn.functional, "grouped_mm") or hasattr(torch, "_grouped_mm")
        else "eager"
    )


def rounded_state(model: Any) -> dict[str, Any]:
    """The model's weights as float16 CPU tensors, as a checkpoint stores them."""
    import torch

    return {
        name: tensor.detach().to("cpu", torch.float16).contiguous()
        for name, tensor in model.state_dict().items()
    }


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    folder: str | Path,
    *,
    step: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (float16 weights) and ``tokenizer`` to ``folder/step-NNNNNN/``.

    Files are written to a temporary folder first and renamed, so an interrupted run never
    leaves a half-written checkpoint. ``extra`` goes into ``toy_step.json`` (e.g. the training
    loss at that step). Returns the checkpoint folder.
    """
    import shutil

    from safetensors.torch import save_file

    target = Path(folder) / CHECKPOINT_FORMAT.format(step=step)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.config.save_pretrained(tmp)
    save_file(rounded_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(tmp)
    (tmp / "toy_step.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=1))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def load_checkpoint(folder: str | Path) -> tuple[Any, Any]:
    """Load a toy checkpoint folder: ``(model in eval mode, float32; tokenizer)``.

    Plain transformers calls, offline; shown here as the reference way to open one.

    Examples
    --------
    >>> model, tokenizer = load_checkpoint("data/samples/toy/checkpoints/step-000100")  # doctest: +SKIP
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder)
    if not (path / "config.json").is_file():
        msg = f"{path} is not a checkpoint folder (no config.json); pass a folder like .../step-000100"
        raise FileNotFoundError(msg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer
