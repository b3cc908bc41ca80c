"""Train a toy OLMoE run that memorizes first and generalizes later, saving a checkpoint series.

The trainer is plain AdamW with strong weight decay (the classic recipe under which modular
arithmetic groks), full-batch-like minibatches, a warmup-stable-decay learning rate (constant,
then a linear decay to zero at the end, as LLM pretraining runs often end) and a fixed checkpoint
schedule. It writes, under the output folder::

    run.json                 the ToyConfig, wall time, threads, versions
    samples.parquet          schema.SAMPLES (+ a, b, answer)
    checkpoints/step-NNNNNN/ config.json, model.safetensors (float16), tokenizer files
    accuracy.parquet         schema.ACCURACY: test accuracy per checkpoint x operation (+ "all")
    sample_accuracy.parquet  schema.SAMPLE_ACCURACY: per checkpoint x test sample
    training_log.parquet     per evaluation step x operation x split: loss, answer_loss, accuracy

Training is deterministic for a seed and thread count: seeded initialisation and batches,
``torch.use_deterministic_algorithms`` and a fixed number of intra-op threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from grokviz.errors import InputError
from grokviz.toy.arithmetic.tasks import encode, make_samples, make_tokenizer, vocabulary
from grokviz.toy.shared.loop import JsonConfig, Run, train_on_schedule
from grokviz.toy.shared.model import ModelSpec, olmoe_config


@dataclass(frozen=True)
class ToyConfig(JsonConfig):
    """Everything that determines a toy run; the same config and seed give the same run."""

    p: int = 31
    operations: tuple[str, ...] = ("add", "sub", "mul", "div", "random")
    """``random`` is the negative control: a fixed random answer table, memorizable, never
    generalizable (its samples carry ``control=True``)."""
    train_fraction: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5, 0.5)
    """Per operation, in the order of ``operations``."""
    val_fraction: float = 0.1
    """Of each operation's pairs, held out for a validation loss (not in the test accuracy)."""
    layout: str = "prefix"
    """How equations are written: ``"infix"`` (``a op b = c``) or ``"prefix"`` (``op a b =
    c``, so every token after the operation can route by it)."""
    model: ModelSpec = field(default_factory=lambda: ModelSpec(num_experts=16, top_k=1))
    """16 experts, top-1: the paper's regime of many experts per token choice (OLMoE: 64, top-8);
    8 experts top-2 kept 5-6 of 8 experts in a pathway."""
    steps: int = 5500
    batch_size: int = 512
    lr: float = 5e-3
    weight_decay: float = 1.0
    """Weight decay 1 lets the model memorize its training pairs within a few hundred steps, then
    generalize over thousands; 2 slowed memorization until it overlapped generalization."""
    router_init_scale: float = 1.0
    """Factor on the routers' initial weights (std 0.02 in OLMoE's init); larger starts routing
    sharp rather than letting it sharpen through the run."""
    norm_weight_decay: float | None = None
    """Weight decay of the RMSNorm gains (they scale what the routers see); None: the same as
    ``weight_decay``."""
    router_weight_decay: float | None = 0.0
    """Weight decay of the router weights; None: the same as ``weight_decay``. Decay keeps the
    router's logits small, so every token's routing stays close to uniform."""
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 50
    decay: tuple[int, int] | None = (3500, 5500)
    """``(start, end)``: the learning rate falls linearly from ``lr`` at step ``start`` to 0 at step
    ``end``; ``None`` keeps it constant after the warmup. Without the decay the test accuracies
    wobble by several points at the end and the last group needs thousands of steps more to pass
    0.9 (see docs/toy_results.md)."""
    prompt_weight: float = 0.01
    """Weight of the four prompt tokens' next-token losses relative to the answer token's.
    1 is the plain language-model objective (exactly the tracer's per-sample loss); 0 trains on
    the answer only. See docs/toy_results.md for why the shipped run uses a small weight."""
    checkpoints: tuple[int, ...] = (
        *(50, 100, 250, 500, 750, 1000, 1500),
        *(2000, 2500, 3000, 3500, 4000, 4750, 5500),
    )
    """Steps to save: dense while the run memorizes, sparser while it generalizes. Empty means
    :func:`checkpoint_steps` (log-spaced) with ``n_checkpoints``."""
    n_checkpoints: int = 14
    eval_every: int = 50
    seed: int = 0
    threads: int = 2
    """Intra-op threads. The same seed and thread count give a bit-identical run on the same
    machine. Another thread count, or another CPU (instruction set, BLAS), sums in another order
    and gives a slightly different, equally valid run that drifts from this one as it trains."""

    def __post_init__(self) -> None:
        if len(self.train_fraction) != len(self.operations):
            msg = (
                f"train_fraction has {len(self.train_fraction)} values for "
                f"{len(self.operations)} operations {self.operations}; give one per operation"
            )
            raise InputError(msg)
        if not 0.0 <= self.prompt_weight <= 1.0:
            msg = f"prompt_weight must be in [0, 1]; got {self.prompt_weight}"
            raise InputError(msg)
        bad = [s for s in self.checkpoints if not 0 <= s <= self.steps]
        if bad:
            msg = f"checkpoint steps {bad} lie outside 0..steps={self.steps}"
            raise InputError(msg)
        if self.decay is not None and not 0 <= self.decay[0] < self.decay[1]:
            msg = f"decay must be (start, end) with 0 <= start < end, or None; got {self.decay}"
            raise InputError(msg)

    def schedule(self) -> list[int]:
        """The steps at which checkpoints are saved."""
        if self.checkpoints:
            return sorted(set(self.checkpoints))
        return checkpoint_steps(self.steps, n=self.n_checkpoints, every=self.eval_every)


# The shipped run (see docs/toy_results.md) and a seconds-long one for tests and smoke runs.
PRESETS: dict[str, ToyConfig] = {
    "default": ToyConfig(),
    "tiny": ToyConfig(
        p=7,
        operations=("add", "sub", "random"),
        train_fraction=(0.5, 0.5, 0.5),
        model=ModelSpec(hidden_size=16, intermediate_size=16, num_layers=3, num_experts=4),
        steps=6,
        batch_size=16,
        warmup=2,
        decay=(4, 6),
        checkpoints=(2, 4, 6),
        eval_every=2,
        threads=1,
    ),
}


def checkpoint_steps(steps: int, *, n: int, every: int = 1) -> list[int]:
    """About ``n`` log-spaced steps from ``every`` to ``steps``, multiples of ``every``.

    Log spacing puts checkpoints where things change fast early on and still reaches the end.

    Examples
    --------
    >>> checkpoint_steps(1000, n=4, every=50)
    [50, 150, 350, 1000]
    """
    if steps < every or n < 1:
        msg = f"need steps >= every >= 1 and n >= 1; got steps={steps}, every={every}, n={n}"
        raise InputError(msg)
    if n == 1:
        return [steps]
    lo, hi = math.log(every), math.log(steps)
    raw = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    out = sorted({max(every, round(s / every) * every) for s in raw} | {steps})
    return [s for s in out if s <= steps]


def lr_factor(config: ToyConfig, step: int) -> float:
    """The learning rate of the update after ``step`` as a fraction of ``config.lr``: a linear
    warmup over ``config.warmup`` steps, constant, then (with ``config.decay``) linear to 0.

    A run stopped early (``steps`` below the decay's end) is an exact prefix of the full run.

    Examples
    --------
    >>> config = ToyConfig(warmup=10, decay=(100, 200))
    >>> [lr_factor(config, s) for s in (0, 9, 100, 150, 200, 250)]
    [0.1, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    if config.decay is None or step < config.decay[0]:
        return warm
    start, end = config.decay
    return warm * max(0.0, 1.0 - (step - start) / (end - start))


def _score_equations(logits: Any, ids: Any) -> tuple[Any, Any, Any]:
    """Per equation of ``ids`` (``(n, 6)``): the mean NLL of its 5 predicted tokens (the tracer's
    loss), the answer token's NLL, and whether the answer is the argmax after the prompt."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return nll.mean(dim=1), nll[:, -1], logits[:, -1].argmax(-1) == ids[:, -1]


def _objective(logits: Any, batch: Any, prompt_weight: float) -> Any:
    """Weighted mean next-token NLL: weight 1 on the answer, ``prompt_weight`` on the others."""
    import torch
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
    weights = torch.full((nll.shape[1],), prompt_weight, dtype=nll.dtype)
    weights[-1] = 1.0
    return (nll * weights).sum(dim=1).mean() / weights.sum()


@dataclass
class ToyRun(Run):
    """What :func:`train` wrote: the folder and the frames it saved there; open one with
    ``ToyRun.load(folder)``."""

    config: ToyConfig
    kind: ClassVar[str] = "arithmetic"
    max_length: ClassVar[int] = 16
    command: ClassVar[str] = "python -m grokviz.toy train"

    @classmethod
    def config_from_json(cls, data: dict[str, Any]) -> ToyConfig:
        # runs written before the decay existed kept the rate constant
        return ToyConfig.from_json({"decay": None, **data})


def config_samples(config: ToyConfig) -> tuple[Any, Any]:
    """The samples frame of ``config`` and its encoded equations, one row each: what
    :func:`train` trains and evaluates on.

    Examples
    --------
    >>> samples, ids = config_samples(PRESETS["tiny"])
    >>> samples.height == ids.shape[0] == 3 * 7 * 7
    True
    """
    samples = make_samples(
        p=config.p,
        operations=config.operations,
        train_fraction=dict(zip(config.operations, config.train_fraction, strict=True)),
        val_fraction=config.val_fraction,
        seed=config.seed,
        layout=config.layout,
    )
    return samples, encode(samples, p=config.p, operations=config.operations, layout=config.layout)


def train(
    config: ToyConfig,
    out: str | Path,
    *,
    progress: bool = True,
    on_step: Callable[[Any, int], Any] | None = None,
) -> ToyRun:
    """Train the toy run ``config`` and write its checkpoints and tables under ``out``.

    Parameters
    ----------
    config
        The run; see :data:`PRESETS` for the shipped one.
    out
        Output folder (created; existing checkpoints of the same steps are replaced).
    progress
        Show a progress bar with the current per-split accuracy.
    on_step
        ``on_step(model, step)`` after each optimizer step (and with step 0 before the first),
        e.g. a training monitor: ``train(config, out, on_step=monitor.observe)``.

    Returns
    -------
    ToyRun

    Examples
    --------
    >>> run = train(PRESETS["tiny"], "/tmp/toy-run", progress=False)  # doctest: +SKIP
    >>> [c.name for c in run.checkpoints]  # doctest: +SKIP
    ['step-000002', 'step-000004', 'step-000006']
    """
    import torch

    samples, ids = config_samples(config)
    vocab = vocabulary(p=config.p, operations=config.operations)
    train_ids = ids[(samples["split"] == "train").to_torch()]
    gen = torch.Generator().manual_seed(config.seed)

    def batch_loss(model: Any, step: int) -> Any:
        batch = train_ids[torch.randint(0, len(train_ids), (config.batch_size,), generator=gen)]
        logits = model(input_ids=batch[:, :-1]).logits
        return _objective(logits, batch, config.prompt_weight)

    trained = train_on_schedule(
        config,
        out,
        kind=ToyRun.kind,
        samples=samples,
        ids=ids,
        scorer=_score_equations,
        eval_batch_size=4096,
        model_config=olmoe_config(config.model, vocab_size=len(vocab)),
        tokenizer=make_tokenizer(p=config.p, operations=config.operations),
        lr_factor=lambda s: lr_factor(config, s),
        batch_loss=batch_loss,
        progress=progress,
        on_step=on_step,
    )
    return ToyRun(
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


def with_steps(config: ToyConfig, steps: int) -> ToyConfig:
    """``config`` run for ``steps`` steps, keeping its checkpoints that fall inside and adding one
    at the last step. Training does not depend on ``steps``, so a shorter run is an exact prefix
    of the full one (the same accuracies at the same steps).

    Examples
    --------
    >>> short = with_steps(PRESETS["default"], 1200)
    >>> short.steps, short.schedule()
    (1200, [50, 100, 250, 500, 750, 1000, 1200])
    """
    if steps < 1:
        msg = f"steps must be at least 1; got {steps}"
        raise InputError(msg)
    if not config.checkpoints:
        return replace(config, steps=steps)
    kept = {s for s in config.checkpoints if s <= steps}
    return replace(config, steps=steps, checkpoints=tuple(sorted({*kept, steps})))
