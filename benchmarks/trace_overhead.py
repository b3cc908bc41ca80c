"""How much does tracing cost over a bare forward pass?

Baseline: the model's forward pass over the same padded batches in ``torch.inference_mode``.
Measured: grokviz's whole tracing path on those batches: the forward pass with routing capture,
the per-sample loss and routing-weight reductions on the device, the copy of the reduced arrays
to the host and the polars frames (``grokviz.trace``'s own batch loop, minus tokenizing).

Prints tokens/s of both and the ratio traced/bare time (target: at most 1.05). Run, e.g.::

    python benchmarks/trace_overhead.py                      # small OLMoE on the CPU
    python benchmarks/trace_overhead.py --device cuda --hidden 1024 --layers 8 --experts 64 \\
        --batch-size 16 --seq-len 512
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from grokviz.testing import TINY_CONFIGS, char_tokenizer, tiny_config
from grokviz.tracing import Checkpoint
from grokviz.tracing._forward import _Encoded, _trace_encoded


def build_model(args: argparse.Namespace) -> Any:
    """A random MoE of ``args.model_type`` at the requested size, in eval mode on the device."""
    from transformers import AutoModelForCausalLM

    experts_key = next(k for k in TINY_CONFIGS[args.model_type] if "experts" in k)
    overrides: dict[str, Any] = {
        "hidden_size": args.hidden,
        "intermediate_size": args.hidden * 2,
        "num_hidden_layers": args.layers,
        "num_attention_heads": max(1, args.hidden // 64),
        "num_key_value_heads": max(1, args.hidden // 64),
        "vocab_size": args.vocab,
        "max_position_embeddings": max(4096, args.seq_len),
        "num_experts_per_tok": args.top_k,
        experts_key: args.experts,
    }
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
        if key in TINY_CONFIGS[args.model_type]:
            overrides[key] = args.hidden
    if "head_dim" in TINY_CONFIGS[args.model_type]:
        overrides["head_dim"] = 64
    config = tiny_config(args.model_type, **overrides)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if args.experts_implementation:
        model.set_experts_implementation(args.experts_implementation)
    return model.to(args.device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare(model: Any, batches: list[torch.Tensor], device: str) -> None:
    with torch.inference_mode():
        for ids in batches:
            ids = ids.to(device)
            mask = torch.ones_like(ids)
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    _sync(device)


def traced(model: Any, tokenizer: Any, batches: list[torch.Tensor], device: str) -> int:
    rows = [seq.tolist() for ids in batches for seq in ids]
    encoded = _Encoded([f"s{i}" for i in range(len(rows))], rows, 0)
    checkpoint = Checkpoint("benchmark", step=0)
    n = 0
    for batch in _trace_encoded(
        model,
        tokenizer,
        checkpoint,
        encoded,
        select=set(),
        batch_size=batches[0].shape[0],
        bar=None,
    ):
        n += batch.routing.height
    _sync(device)
    return n


def timed(bare_fn: Any, traced_fn: Any, repeats: int) -> tuple[float, float, float]:
    """Median times of both, and the median of per-repeat ratios.

    The two alternate within each repeat, so a shared machine's changing load hits both alike.
    """
    bare_fn()  # warm-up: allocator, kernels, lazy inits
    traced_fn()
    bare_times, traced_times, ratios = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        bare_fn()
        middle = time.perf_counter()
        traced_fn()
        end = time.perf_counter()
        bare_times.append(middle - start)
        traced_times.append(end - middle)
        ratios.append((end - middle) / (middle - start))
    return statistics.median(bare_times), statistics.median(traced_times), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="olmoe", choices=sorted(TINY_CONFIGS))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=50304, help="OLMoE's vocabulary size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--experts-implementation", help="transformers experts kernel: eager, grouped_mm, ..."
    )
    args = parser.parse_args()

    model = build_model(args)
    # one vocabulary entry per id, so the tokenizer can pad (ids beyond it are never decoded)
    tokenizer = char_tokenizer()
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(4, args.vocab, (args.batch_size, args.seq_len), generator=generator)
        for _ in range(args.batches)
    ]
    tokens = args.batches * args.batch_size * args.seq_len
    t_bare, t_traced, ratio = timed(
        lambda: bare(model, batches, args.device),
        lambda: traced(model, tokenizer, batches, args.device),
        args.repeats,
    )
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.model_type}, {params / 1e6:.1f}M parameters, hidden {args.hidden}, "
        f"{args.layers} layers, {args.experts} experts top-{args.top_k}, vocab {args.vocab}, "
        f"{args.dtype}, experts kernel {model.config._experts_implementation}"
    )
    print(
        f"device: {args.device}; {args.batches} batches of {args.batch_size} x {args.seq_len} "
        f"tokens; median of {args.repeats}"
    )
    print(f"bare forward : {tokens / t_bare:12,.0f} tokens/s  ({t_bare * 1e3:8.1f} ms)")
    print(f"traced       : {tokens / t_traced:12,.0f} tokens/s  ({t_traced * 1e3:8.1f} ms)")
    print(f"ratio traced/bare time: {ratio:.3f}  (median of paired runs; target <= 1.05)")


if __name__ == "__main__":
    main()
