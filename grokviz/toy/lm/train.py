"""One-pass pretraining of a tiny OLMoE language model on the generated multi-domain corpus.

The paper's setting, small: every training document (:mod:`grokviz.toy.lm.corpus`) is seen exactly
once, in a seeded shuffled order, with the plain next-token objective; checkpoints are saved on a
schedule and each domain's held-out test task is scored at every one. A run folder has the same
layout and tables as the first toy's (:mod:`grokviz.toy.arithmetic.train`)::

    run.json                 {"kind": "lm", "config": LMConfig, wall time, threads, versions}
    samples.parquet          schema.SAMPLES (+ prompt, answer, seen_step): tracked training
                             documents (split "train", seen_step = the step that trained on
                             them), validation documents ("val", never trained on) and the test
                             prompts with their answers ("test")
    checkpoints/step-NNNNNN/ config.json, model.safetensors (float16), tokenizer files
    accuracy.parquet         schema.ACCURACY: test accuracy per checkpoint x domain (+ "all")
    sample_accuracy.parquet  schema.SAMPLE_ACCURACY: per checkpoint x test sample
    training_log.parquet     per evaluation step x domain x split: loss, answer_loss, accuracy

:class:`LMRun` opens such a folder, :func:`grokviz.toy.runs.trace_run` traces it;
:mod:`grokviz.toy.lm.report` runs grokviz's analysis on the traced run and writes Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from grokviz.errors import InputError
from grokviz.schema import SAMPLES, conform
from grokviz.toy.lm.corpus import (
    DOMAINS,
    MAX_TOKENS,
    encode,
    make_corpus,
    make_tokenizer,
    vocabulary,
)
from grokviz.toy.shared.loop import JsonConfig, Run, train_on_schedule
from grokviz.toy.shared.model import ModelSpec, olmoe_config

RUN_KIND = "lm"
"""``run.json["kind"]`` of a run written by :func:`train_lm`."""


@dataclass(frozen=True)
class LMConfig(JsonConfig):
    """Everything that determines a one-pass run; the same config gives the same run."""

    docs_per_domain: int = 60_000
    """Training documents per domain; each is trained on exactly once."""
    val_per_domain: int = 200
    test_per_domain: int = 300
    tracked_per_domain: int = 300
    """Training documents per domain kept as samples (traced, evaluated at every checkpoint)."""
    held_out: float = 0.2
    """Fraction of each domain's held-out unit reserved for its test task (see corpus)."""
    domains: tuple[str, ...] = DOMAINS
    """The corpus's domains; ``random`` is the negative control (random answers)."""
    model: ModelSpec = field(default_factory=lambda: ModelSpec(num_experts=16, top_k=1))
    """16 experts, top-1, as the arithmetic toy: the paper's regime of many experts per token
    choice (OLMoE: 64, top-8). With 8 experts top-2 a τ = 0.7 pathway kept 5-6 of the 8 and
    single tokens' routing flattened through the run."""
    batch_size: int = 64
    lr: float = 1e-2
    """Peak learning rate. With 16 experts top-1, 3e-3 left single tokens' routing soft (top
    expert 0.42 of the weight at the end) and arithmetic / code test accuracy at 0.45; 1e-2
    routes more sharply (0.54) and keeps test accuracy rising to the end (0.60 / 0.58); see
    docs/toy_lm.md for what the controls make of it."""
    weight_decay: float = 1.0
    router_init_scale: float = 1.0
    """Factor on the routers' initial weights (std 0.02 in OLMoE's init); larger starts routing
    sharp rather than letting it sharpen through the run."""
    norm_weight_decay: float | None = None
    """Weight decay of the RMSNorm gains (they scale what the routers see); None: the same as
    ``weight_decay``."""
    router_weight_decay: float | None = 0.0
    """Weight decay of the router weights; None: the same as ``weight_decay``. Decay keeps the
    routers' logits small, so every token's routing stays close to uniform."""
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 50
    final_lr_fraction: float = 0.1
    """After the warmup the learning rate follows a cosine from ``lr`` down to this fraction
    of it at the last step, as pretraining schedules do."""
    n_checkpoints: int = 16
    """Checkpoints after step 0 (which is always saved), up to the last step."""
    spacing: str = "log"
    """``"log"``: log-spaced multiples of ``eval_every``, dense early where test accuracy
    moves fastest; ``"linear"``: evenly spaced."""
    eval_every: int = 25
    """Steps between evaluations for the training log (checkpoints are always evaluated)."""
    seed: int = 0
    threads: int = 1
    """Intra-op threads. One by default: results then do not depend on the machine's cores."""

    def __post_init__(self) -> None:
        if self.tracked_per_domain > self.docs_per_domain:
            msg = (
                f"tracked_per_domain={self.tracked_per_domain} exceeds docs_per_domain="
                f"{self.docs_per_domain}; track at most every training document"
            )
            raise InputError(msg)
        if self.batch_size < 1 or self.n_checkpoints < 1 or self.eval_every < 1:
            msg = (
                "batch_size, n_checkpoints and eval_every must be >= 1; got "
                f"{self.batch_size}, {self.n_checkpoints}, {self.eval_every}"
            )
            raise InputError(msg)
        if self.spacing not in ("log", "linear"):
            msg = f"spacing must be 'log' or 'linear'; got {self.spacing!r}"
            raise InputError(msg)
        if self.model.num_layers < 2:
            msg = f"pathway consistency needs >= 2 MoE layers; got {self.model.num_layers}"
            raise InputError(msg)

    @property
    def steps(self) -> int:
        """Optimizer steps of the one pass: every training document once."""
        return math.ceil(len(self.domains) * self.docs_per_domain / self.batch_size)

    def schedule(self) -> list[int]:
        """Checkpoint steps: 0, then about ``n_checkpoints`` steps ending at the last one.

        Log spacing rounds to multiples of ``eval_every`` (close steps merge, so there may be
        fewer); linear spacing is even.

        Examples
        --------
        >>> LMConfig(docs_per_domain=6400, batch_size=64, n_checkpoints=4).schedule()
        [0, 25, 75, 150, 400]
        >>> LMConfig(docs_per_domain=640, batch_size=64, n_checkpoints=3, spacing="linear").schedule()
        [0, 13, 27, 40]
        """
        n = min(self.n_checkpoints, self.steps)
        if self.spacing == "linear" or n == 1:
            return sorted({0, *(round(self.steps * (i + 1) / n) for i in range(n))})
        every = min(self.eval_every, self.steps)
        lo, hi = math.log(every), math.log(self.steps)
        raw = (math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n))
        inner = {max(every, round(x / every) * every) for x in raw}
        return sorted({0, self.steps, *(x for x in inner if x < self.steps)})


# The documented run (docs/toy_lm.md) and a seconds-long one for tests and smoke runs.
PRESETS: dict[str, LMConfig] = {
    "default": LMConfig(),
    "tiny": LMConfig(
        docs_per_domain=96,
        val_per_domain=4,
        test_per_domain=6,
        tracked_per_domain=8,
        model=ModelSpec(hidden_size=16, intermediate_size=16, num_layers=2, num_experts=4, top_k=1),
        batch_size=16,
        warmup=2,
        n_checkpoints=3,
        eval_every=6,
    ),
}


def lr_factor(config: LMConfig, step: int) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``: linear warmup, then cosine.

    Examples
    --------
    >>> config = LMConfig(docs_per_domain=640, batch_size=64, warmup=10)
    >>> [round(lr_factor(config, s), 2) for s in (0, 9, 20, 30)]
    [0.1, 1.0, 0.78, 0.33]
    """
    if step < config.warmup:
        return (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    low = config.final_lr_fraction
    return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _shuffled_batches(n: int, batch_size: int, *, seed: int) -> Iterator[Any]:
    """Indices ``0..n-1`` in one seeded random order, cut into consecutive batches."""
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    yield from order.split(batch_size)


def _next_token_nll(logits: Any, ids: Any) -> Any:
    """Per-position NLL of ``ids[:, 1:]`` (0 at padding) and the mask of real targets."""
    import torch.nn.functional as F

    targets = ids[:, 1:]
    real = targets != 0  # <pad> is id 0
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return nll * real, real


def _score_documents(logits: Any, ids: Any) -> tuple[Any, Any, Any]:
    """Per right-padded document of ``ids``: the mean NLL of its real tokens (the tracer's
    loss), the last word's NLL, and whether the last word is the argmax after the prompt."""
    import torch

    nll, real = _next_token_nll(logits, ids)
    last = real.sum(dim=1) - 1  # index of the answer among the predicted positions
    rows = torch.arange(len(ids))
    correct = logits[rows, last].argmax(-1) == ids[:, 1:][rows, last]
    return nll.sum(dim=1) / real.sum(dim=1), nll[rows, last], correct


@dataclass
class LMRun(Run):
    """What :func:`train_lm` wrote: the folder and the frames it saved there; open one with
    ``LMRun.load(folder)``."""

    config: LMConfig
    kind: ClassVar[str] = RUN_KIND
    command: ClassVar[str] = "python -m grokviz.toy train --toy lm"
    max_length: ClassVar[int] = MAX_TOKENS

    @classmethod
    def config_from_json(cls, data: dict[str, Any]) -> LMConfig:
        return LMConfig.from_json(data)


def _tracked(corpus: pl.DataFrame, config: LMConfig) -> pl.DataFrame:
    """The training documents kept as samples: a seeded random subset of each domain's."""
    train = corpus.filter(pl.col("split") == "train")
    return (
        train.with_columns(_key=pl.int_range(pl.len()).shuffle(seed=config.seed).over("domain"))
        .filter(pl.col("_key") < config.tracked_per_domain)
        .drop("_key")
    )


def train_lm(config: LMConfig, out: str | Path, *, progress: bool = True) -> LMRun:
    """Pretrain a tiny OLMoE model for one pass over the corpus and save checkpoints and tables.

    Every training document is used **exactly once**: the documents of all domains are shuffled
    once (seeded) and cut into consecutive batches of ``config.batch_size`` (the last may be
    smaller); there are no epochs and no sampling with replacement. The objective is the plain
    next-token loss over each document's real tokens, with AdamW, a linear warmup and a cosine
    decay (:func:`lr_factor`).

    Parameters
    ----------
    config
        The run; see :data:`PRESETS`.
    out
        Output folder (created; existing checkpoints of the same steps are replaced).
    progress
        Show a progress bar with the current accuracy of each split.

    Returns
    -------
    LMRun

    Examples
    --------
    >>> run = train_lm(PRESETS["tiny"], "/tmp/lm-tiny", progress=False)  # doctest: +SKIP
    >>> run.accuracy.filter(task="all")  # doctest: +SKIP
    """
    import torch

    corpus = make_corpus(
        n_train=config.docs_per_domain,
        n_val=config.val_per_domain,
        n_test=config.test_per_domain,
        seed=config.seed,
        held_out=config.held_out,
        domains=config.domains,
    )
    train_docs = corpus.filter(pl.col("split") == "train")
    train_ids = encode(train_docs["text"].to_list())
    batches = list(_shuffled_batches(len(train_ids), config.batch_size, seed=config.seed))
    # the step whose update used each training document (steps count from 1)
    seen = torch.empty(len(train_ids), dtype=torch.long)
    for number, batch in enumerate(batches, start=1):
        seen[batch] = number
    train_docs = train_docs.with_columns(seen_step=pl.Series(seen.numpy()))
    samples = pl.concat(
        [
            _tracked(train_docs, config),
            corpus.filter(pl.col("split") != "train").with_columns(
                seen_step=pl.lit(None, pl.Int64)
            ),
        ]
    )
    samples = conform(samples, SAMPLES, name="samples")
    model_config = olmoe_config(config.model, vocab_size=len(vocabulary()))
    model_config.max_position_embeddings = MAX_TOKENS

    def batch_loss(model: Any, step: int) -> Any:
        batch = train_ids[batches[step]]
        nll, real = _next_token_nll(model(input_ids=batch[:, :-1]).logits, batch)
        return nll.sum() / real.sum()

    trained = train_on_schedule(
        config,
        out,
        kind=RUN_KIND,
        samples=samples,
        ids=encode(samples["text"].to_list()),
        scorer=_score_documents,
        eval_batch_size=1024,
        model_config=model_config,
        tokenizer=make_tokenizer(),
        lr_factor=lambda s: lr_factor(config, s),
        batch_loss=batch_loss,
        checkpoint_extra=lambda step: {"documents_seen": min(step * config.batch_size, len(seen))},
        run_extra={"steps": config.steps, "documents": len(seen)},
        progress=progress,
    )
    return LMRun(
        Path(out),
        config,
        samples,
        trained.log,
        trained.accuracy,
        trained.sample_accuracy,
        trained.checkpoints,
        trained.seconds,
        trained.answer_losses,
    )
