"""What does one step of the shipped toy run cost, and does the run fit in 10 minutes?

Baseline: one AdamW step of the shipped config (``ToyConfig()``: batch 512, hidden 64, 4 layers
x 16 experts, top-1) on one thread with transformers' per-expert loop
(``experts_implementation="eager"``). Measured against it, in the same process and interleaved
round by round so that a noisy machine hits every variant alike:

- ``grouped_mm``: the experts kernel the trainer uses, one thread;
- ``grouped_mm, 2 threads``: what ``python -m grokviz.toy train`` runs;
- ``grouped_mm, 2 threads, batch 256``: half the batch (probed as a faster run; see
  docs/toy_results.md for why it was not shipped);
- ``previous shipped config``: 8 experts top-2 over four operations, 2 threads, whose full
  5500-step run took 401-494 s of training on this project's 2-core machine; the ratio of the
  two step times turns that into an estimate for the new run that a busy machine cannot skew.

Every step runs under the trainer's deterministic mode. Also times one evaluation of all
equations (what the trainer does every ``eval_every`` steps) and prints the compute the shipped
run needs, steps x step time + evaluations x evaluation time, against the 10-minute target.

``--toy lm`` times the LM toy's default run instead (``LMConfig()``: batch 64, 4 layers x 16
experts, top-1, one thread, as ``python -m grokviz.toy train --toy lm`` runs it) against its
previous default (8 experts top-2 over three domains, whose full 2813-step run took 196 s of
training on one thread), interleaved the same way, plus one evaluation of all tracked documents.
Run::

    python benchmarks/toy_training.py            # about a minute on 2 cores
    python benchmarks/toy_training.py --rounds 10
    python benchmarks/toy_training.py --toy lm   # under a minute on 1 core
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from grokviz.toy.arithmetic.tasks import vocabulary
from grokviz.toy.arithmetic.train import ToyConfig, _objective, _score_equations, config_samples
from grokviz.toy.shared.loop import deterministic, score
from grokviz.toy.shared.model import ModelSpec, olmoe_config

TARGET_S = 600.0
PREVIOUS_RUN_S = (401.0, 494.0)
"""Training seconds of the previous shipped config's full run, twice, on the 2-core machine."""
PREVIOUS_LM_RUN_S = 196.0
"""Training seconds of the LM toy's previous default run (8 experts top-2, three domains, 2813
steps, one thread) on the same machine."""


def _print_compute(what: str, config: Any, step_s: float, evaluation: float) -> None:
    """The run's compute, steps x step time + evaluations x evaluation time, against the target."""
    n_evals = len(set(range(0, config.steps + 1, config.eval_every)) | set(config.schedule()))
    compute = config.steps * step_s + n_evals * evaluation
    print(
        f"{what} compute: {config.steps} steps x {step_s * 1e3:.1f} ms + {n_evals} "
        f"evaluations x {evaluation:.2f} s = {compute:.0f} s; ratio to the {TARGET_S:.0f} s "
        f"target: {compute / TARGET_S:.2f}"
    )


def _data(config: ToyConfig) -> tuple[Any, Any]:
    """All encoded equations and the training ones."""
    samples, ids = config_samples(config)
    return ids, ids[(samples["split"] == "train").to_torch()]


def _stepper(
    config: ToyConfig, train_ids: Any, *, kernel: str, batch_size: int
) -> Callable[[], None]:
    """A closure that runs one training step of a fresh model built like the trainer's."""
    from transformers import AutoModelForCausalLM

    model_config = olmoe_config(
        config.model, vocab_size=len(vocabulary(p=config.p, operations=config.operations))
    )
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_config(
        model_config, attn_implementation="sdpa", experts_implementation=kernel
    ).train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    gen = torch.Generator().manual_seed(config.seed)

    def step() -> None:
        batch = train_ids[torch.randint(0, len(train_ids), (batch_size,), generator=gen)]
        loss = _objective(model(input_ids=batch[:, :-1]).logits, batch, config.prompt_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time(fn: Callable[[], object], *, threads: int, n: int) -> float:
    """Mean seconds per call of ``fn`` over ``n`` calls with ``threads`` intra-op threads."""
    with deterministic(threads):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n


def _lm_model(config: Any) -> Any:
    """A fresh model of the LM toy's ``config``, built as its trainer builds it."""
    from grokviz.toy.lm.corpus import MAX_TOKENS
    from grokviz.toy.lm.corpus import vocabulary as lm_vocabulary
    from grokviz.toy.shared.model import build_model

    model_config = olmoe_config(config.model, vocab_size=len(lm_vocabulary()))
    model_config.max_position_embeddings = MAX_TOKENS
    return build_model(model_config, seed=config.seed)


def _lm_stepper(config: Any, train_ids: Any) -> Callable[[], None]:
    """One training step of the LM toy's trainer (its loss and parameter groups) on a fresh
    model of ``config``, on random batches of ``train_ids``."""
    from grokviz.toy.lm.train import _next_token_nll
    from grokviz.toy.shared.loop import _param_groups

    model = _lm_model(config).train()
    opt = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, betas=config.betas)
    gen = torch.Generator().manual_seed(config.seed)

    def step() -> None:
        batch = train_ids[torch.randint(0, len(train_ids), (config.batch_size,), generator=gen)]
        nll, real = _next_token_nll(model(input_ids=batch[:, :-1]).logits, batch)
        loss = nll.sum() / real.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def lm_main(args: argparse.Namespace) -> None:
    """``--toy lm``: the LM toy's default run against its previous default, one thread."""
    import polars as pl

    from grokviz.toy.lm.corpus import DOMAINS, encode, make_corpus
    from grokviz.toy.lm.train import LMConfig, _score_documents

    config = LMConfig()
    previous = replace(
        config,
        model=ModelSpec(num_experts=8, top_k=2),
        router_weight_decay=None,
        domains=DOMAINS[:3],
    )
    corpus = make_corpus(n_train=2000, n_val=0, n_test=0, seed=config.seed)
    train_ids = encode(corpus.filter(pl.col("split") == "train")["text"].to_list())
    steppers = {
        "default (16 experts top-1)": _lm_stepper(config, train_ids),
        "previous default (8 experts top-2)": _lm_stepper(previous, train_ids),
    }
    for stepper in steppers.values():  # warm-up
        _time(stepper, threads=config.threads, n=5)
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(args.rounds):
        for name, stepper in steppers.items():
            times[name].append(_time(stepper, threads=config.threads, n=args.steps * 5))
    print(
        f"LM toy training step (batch {config.batch_size}, {config.threads} thread), median of "
        f"{args.rounds} rounds x {args.steps * 5} steps:"
    )
    for name in steppers:
        print(f"  {name:36s} {statistics.median(times[name]) * 1e3:7.1f} ms/step")
    n_docs = len(config.domains) * (
        config.tracked_per_domain + config.val_per_domain + config.test_per_domain
    )
    shadow = _lm_model(config)
    ids = train_ids[:n_docs]  # as many documents as the trainer evaluates, of the same lengths
    evaluation = _time(
        lambda: score(shadow, ids, _score_documents, batch_size=1024), threads=config.threads, n=5
    )
    step_s = statistics.median(times["default (16 experts top-1)"])
    print(f"  one evaluation of all {n_docs} tracked documents: {evaluation:.3f} s")
    _print_compute("default run", config, step_s, evaluation)
    ratio = step_s / statistics.median(times["previous default (8 experts top-2)"])
    estimate = PREVIOUS_LM_RUN_S * ratio * config.steps / previous.steps
    print(
        f"step time against the previous default: {ratio:.2f}x; its {previous.steps}-step run "
        f"took {PREVIOUS_LM_RUN_S:.0f} s, so this {config.steps}-step one needs about "
        f"{estimate:.0f} s (ratio to the target {estimate / TARGET_S:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument(
        "--toy", choices=("arithmetic", "lm"), default="arithmetic", help="which toy to time"
    )
    args = parser.parse_args()
    if args.toy == "lm":
        lm_main(args)
        return

    config = ToyConfig()
    previous = replace(
        config,
        operations=("add", "sub", "mul", "div"),
        train_fraction=(0.5,) * 4,
        layout="infix",
        model=ModelSpec(num_experts=8, top_k=2),
        router_weight_decay=None,
    )
    ids, train_ids = _data(config)
    variants = {
        "eager loop, 1 thread (baseline)": (1, "eager", config.batch_size),
        "grouped_mm, 1 thread": (1, "grouped_mm", config.batch_size),
        "grouped_mm, 2 threads (shipped)": (2, "grouped_mm", config.batch_size),
        "grouped_mm, 2 threads, batch 256": (2, "grouped_mm", 256),
    }
    steppers = {
        name: _stepper(config, train_ids, kernel=kernel, batch_size=batch)
        for name, (_, kernel, batch) in variants.items()
    }
    reference = "previous shipped config, 2 threads"
    variants[reference] = (2, "grouped_mm", config.batch_size)
    steppers[reference] = _stepper(
        previous, _data(previous)[1], kernel="grouped_mm", batch_size=previous.batch_size
    )
    for name, (threads, _, _) in variants.items():  # warm-up
        _time(steppers[name], threads=threads, n=3)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (threads, _, _) in variants.items():
            times[name].append(_time(steppers[name], threads=threads, n=args.steps))

    base = statistics.median(times["eager loop, 1 thread (baseline)"])
    print(
        f"toy training step, shipped config (batch {config.batch_size}), median of "
        f"{args.rounds} rounds x {args.steps} steps:"
    )
    for name in variants:
        t = statistics.median(times[name])
        print(f"  {name:36s} {t * 1e3:7.1f} ms/step   speed-up vs baseline {base / t:5.2f}x")

    from transformers import AutoModelForCausalLM

    model_config = olmoe_config(
        config.model, vocab_size=len(vocabulary(p=config.p, operations=config.operations))
    )
    shadow = AutoModelForCausalLM.from_config(
        model_config, attn_implementation="sdpa", experts_implementation="grouped_mm"
    )
    evaluation = _time(
        lambda: score(shadow, ids, _score_equations, batch_size=4096), threads=2, n=10
    )
    shipped = statistics.median(times["grouped_mm, 2 threads (shipped)"])
    print(f"  one evaluation of all {len(ids)} equations: {evaluation:.3f} s")
    _print_compute("shipped run", config, shipped, evaluation)
    ratio = shipped / statistics.median(times[reference])
    low, high = (s * ratio for s in PREVIOUS_RUN_S)
    print(
        f"step time against the previous shipped config: {ratio:.2f}x; its full run took "
        f"{PREVIOUS_RUN_S[0]:.0f}-{PREVIOUS_RUN_S[1]:.0f} s of training, so this one needs about "
        f"{low:.0f}-{high:.0f} s (ratio to the target {low / TARGET_S:.2f}-{high / TARGET_S:.2f})"
    )


if __name__ == "__main__":
    main()
