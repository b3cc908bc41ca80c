"""Train a toy OLMoE run that memorizes first and generalizes later, saving a checkpoint series.

The trainer is plain AdamW with strong weight decay (the classic recipe under which modular
arithmetic groks), full-batch-like minibatches, and a fixed checkpoint schedule. It writes, under
the output folder::

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

import json
import math
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.schema import ACCURACY, SAMPLE_ACCURACY, conform
from grokviz.toy.model import (
    CHECKPOINT_FORMAT,
    ModelSpec,
    build_model,
    olmoe_config,
    rounded_state,
    save_checkpoint,
)
from grokviz.toy.tasks import encode, make_samples, make_tokenizer, vocabulary


@dataclass(frozen=True)
class ToyConfig:
    """Everything that determines a toy run; the same config and seed give the same run."""

    p: int = 31
    operations: tuple[str, ...] = ("add", "sub", "div", "sqsum")
    train_fraction: tuple[float, ...] = (0.5, 0.8, 0.7, 0.3)
    """Per operation, in the order of ``operations``."""
    val_fraction: float = 0.1
    """Of each operation's pairs, held out for a validation loss (not in the test accuracy)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    steps: int = 4500
    batch_size: int = 512
    lr: float = 5e-3
    weight_decay: float = 2.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 50
    prompt_weight: float = 0.01
    """Weight of the four prompt tokens' next-token losses relative to the answer token's.
    1 is the plain language-model objective (exactly the tracer's per-sample loss); 0 trains on
    the answer only. See docs/toy_results.md for why the shipped run uses a small weight."""
    checkpoints: tuple[int, ...] = (
        *(50, 100, 200, 500, 750, 1000),
        *(1250, 1500, 1750, 2000, 2500, 3000, 3500, 4500),
    )
    """Steps to save: a few while the run memorizes, evenly spaced while it generalizes. Empty
    means :func:`checkpoint_steps` (log-spaced) with ``n_checkpoints``."""
    n_checkpoints: int = 14
    eval_every: int = 50
    seed: int = 0
    threads: int = 1
    """Intra-op threads. One by default: results then do not depend on the machine's cores."""

    def __post_init__(self) -> None:
        if len(self.train_fraction) != len(self.operations):
            msg = (
                f"train_fraction has {len(self.train_fraction)} values for "
                f"{len(self.operations)} operations {self.operations}; give one per operation"
            )
            raise ValueError(msg)
        if not 0.0 <= self.prompt_weight <= 1.0:
            msg = f"prompt_weight must be in [0, 1]; got {self.prompt_weight}"
            raise ValueError(msg)
        bad = [s for s in self.checkpoints if not 0 <= s <= self.steps]
        if bad:
            msg = f"checkpoint steps {bad} lie outside 0..steps={self.steps}"
            raise ValueError(msg)

    def schedule(self) -> list[int]:
        """The steps at which checkpoints are saved."""
        if self.checkpoints:
            return sorted(set(self.checkpoints))
        return checkpoint_steps(self.steps, n=self.n_checkpoints, every=self.eval_every)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToyConfig:
        """The config written by :meth:`to_json`."""
        data = dict(data)
        data["model"] = ModelSpec(**data.get("model", {}))
        for key in ("operations", "train_fraction", "betas", "checkpoints"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# The shipped run (see docs/toy_results.md) and a seconds-long one for tests and smoke runs.
PRESETS: dict[str, ToyConfig] = {
    "default": ToyConfig(),
    "tiny": ToyConfig(
        p=7,
        operations=("add", "sub"),
        train_fraction=(0.5, 0.5),
        model=ModelSpec(hidden_size=16, intermediate_size=16, num_layers=2, num_experts=4),
        steps=6,
        batch_size=16,
        warmup=2,
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
        raise ValueError(msg)
    if n == 1:
        return [steps]
    lo, hi = math.log(every), math.log(steps)
    raw = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    out = sorted({max(every, round(s / every) * every) for s in raw} | {steps})
    return [s for s in out if s <= steps]


@contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    import torch

    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


@dataclass
class _Eval:
    """Per-sample results of one evaluation."""

    loss: Any  # mean next-token NLL over the 5 predicted tokens (the tracer's loss)
    answer_loss: Any  # NLL of the answer token
    correct: Any  # answer token is the argmax given the prompt


def evaluate(model: Any, ids: Any, *, batch_size: int = 4096) -> _Eval:
    """Run ``model`` on encoded equations ``ids`` (``(n, 6)``) without gradients."""
    import torch
    import torch.nn.functional as F

    losses, answer_losses, correct = [], [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for chunk in ids.split(batch_size):
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            nll = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")
            losses.append(nll.mean(dim=1))
            answer_losses.append(nll[:, -1])
            correct.append(logits[:, -1].argmax(-1) == chunk[:, -1])
    model.train(was_training)
    return _Eval(torch.cat(losses), torch.cat(answer_losses), torch.cat(correct))


def _objective(logits: Any, batch: Any, prompt_weight: float) -> Any:
    """Weighted mean next-token NLL: weight 1 on the answer, ``prompt_weight`` on the others."""
    import torch
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
    weights = torch.full((nll.shape[1],), prompt_weight, dtype=nll.dtype)
    weights[-1] = 1.0
    return (nll * weights).sum(dim=1).mean() / weights.sum()


def _log_rows(step: int, samples: pl.DataFrame, result: _Eval) -> pl.DataFrame:
    frame = samples.select("domain", "split").with_columns(
        loss=pl.Series(result.loss.numpy()),
        answer_loss=pl.Series(result.answer_loss.numpy()),
        correct=pl.Series(result.correct.numpy()),
    )
    return (
        frame.group_by("domain", "split")
        .agg(
            pl.col("loss").mean(),
            pl.col("answer_loss").mean(),
            pl.col("correct").mean().alias("accuracy"),
        )
        .with_columns(step=pl.lit(step, pl.Int64))
        .select("step", "domain", "split", "loss", "answer_loss", "accuracy")
    )


@dataclass
class ToyRun:
    """What :func:`train` wrote: the folder and the frames it saved there."""

    out: Path
    config: ToyConfig
    samples: pl.DataFrame
    log: pl.DataFrame
    accuracy: pl.DataFrame
    sample_accuracy: pl.DataFrame
    checkpoints: list[Path]
    seconds: float

    @classmethod
    def load(cls, out: str | Path) -> ToyRun:
        """Open a run folder written by :func:`train`.

        Examples
        --------
        >>> run = ToyRun.load("data/samples/toy")  # doctest: +SKIP
        >>> run.accuracy.columns  # doctest: +SKIP
        ['checkpoint', 'step', 'task', 'accuracy']
        """
        folder = Path(out)
        if not (folder / "run.json").is_file():
            msg = f"{folder} holds no toy run (no run.json); create one with `python -m grokviz.toy train --out {folder}`"
            raise FileNotFoundError(msg)
        meta = json.loads((folder / "run.json").read_text())
        return cls(
            out=folder,
            config=ToyConfig.from_json(meta["config"]),
            samples=pl.read_parquet(folder / "samples.parquet"),
            log=pl.read_parquet(folder / "training_log.parquet"),
            accuracy=pl.read_parquet(folder / "accuracy.parquet"),
            sample_accuracy=pl.read_parquet(folder / "sample_accuracy.parquet"),
            checkpoints=sorted((folder / "checkpoints").glob("step-*[0-9]")),
            seconds=float(meta["seconds"]),
        )


def train(config: ToyConfig, out: str | Path, *, progress: bool = True) -> ToyRun:
    """Train the toy run ``config`` and write its checkpoints and tables under ``out``.

    Parameters
    ----------
    config
        The run; see :data:`PRESETS` for the shipped one.
    out
        Output folder (created; existing checkpoints of the same steps are replaced).
    progress
        Show a progress bar with the current per-split accuracy.

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
    from tqdm.auto import tqdm

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    samples = make_samples(
        p=config.p,
        operations=config.operations,
        train_fraction=dict(zip(config.operations, config.train_fraction, strict=True)),
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    samples.write_parquet(folder / "samples.parquet")
    vocab = vocabulary(p=config.p, operations=config.operations)
    tokenizer = make_tokenizer(p=config.p, operations=config.operations)
    ids = encode(samples, p=config.p, operations=config.operations)
    train_ids = ids[(samples["split"] == "train").to_torch()]
    test_mask = samples["split"] == "test"
    schedule = set(config.schedule())
    eval_steps = {s for s in range(0, config.steps + 1, config.eval_every)} | schedule

    logs: list[pl.DataFrame] = []
    accuracy_rows: list[dict[str, Any]] = []
    sample_frames: list[pl.DataFrame] = []
    saved: list[Path] = []
    start = time.perf_counter()
    with _deterministic(config.threads):
        model_config = olmoe_config(config.model, vocab_size=len(vocab))
        model = build_model(model_config, seed=config.seed)
        shadow = build_model(model_config, seed=config.seed)  # holds the float16-rounded weights
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup))
        )
        gen = torch.Generator().manual_seed(config.seed)
        bar = tqdm(total=config.steps, disable=not progress, desc="toy", unit="step")
        for step in range(config.steps + 1):
            if step in eval_steps:
                shadow.load_state_dict({k: v.float() for k, v in rounded_state(model).items()})
                result = evaluate(shadow, ids)
                rows = _log_rows(step, samples, result)
                logs.append(rows)
                if step in schedule:
                    label = CHECKPOINT_FORMAT.format(step=step)
                    path = save_checkpoint(model, tokenizer, folder / "checkpoints", step=step)
                    saved.append(path)
                    # the log so far, so a long run can be watched (and inspected if stopped)
                    pl.concat(logs).write_parquet(folder / "training_log.parquet")
                    sample_frames.append(
                        samples.filter(test_mask)
                        .select("sample_id")
                        .with_columns(
                            checkpoint=pl.lit(label),
                            step=pl.lit(step, pl.Int64),
                            correct=pl.Series(result.correct[test_mask.to_torch()].numpy()),
                        )
                    )
                    test = rows.filter(pl.col("split") == "test")
                    accuracy_rows += [
                        {"checkpoint": label, "step": step, "task": d, "accuracy": a}
                        for d, a in test.select("domain", "accuracy").iter_rows()
                    ]
                    overall = float(result.correct[test_mask.to_torch()].float().mean())
                    accuracy_rows.append(
                        {"checkpoint": label, "step": step, "task": "all", "accuracy": overall}
                    )
                acc = rows.group_by("split").agg(pl.col("accuracy").mean()).sort("split")
                bar.set_postfix({s: f"{a:.2f}" for s, a in acc.iter_rows()})
            if step == config.steps:
                break
            batch = train_ids[torch.randint(0, len(train_ids), (config.batch_size,), generator=gen)]
            logits = model(input_ids=batch[:, :-1]).logits
            loss = _objective(logits, batch, config.prompt_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
        bar.close()
    seconds = time.perf_counter() - start

    log = pl.concat(logs).sort("step", "domain", "split")
    accuracy = conform(pl.DataFrame(accuracy_rows), ACCURACY, name="accuracy").sort("step", "task")
    sample_accuracy = conform(
        pl.concat(sample_frames).select("checkpoint", "step", "sample_id", "correct"),
        SAMPLE_ACCURACY,
        name="sample_accuracy",
    )
    log.write_parquet(folder / "training_log.parquet")
    accuracy.write_parquet(folder / "accuracy.parquet")
    sample_accuracy.write_parquet(folder / "sample_accuracy.parquet")
    meta = {
        "config": config.to_json(),
        "seconds": seconds,
        "threads": config.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "checkpoints": [p.name for p in saved],
    }
    (folder / "run.json").write_text(json.dumps(meta, indent=1))
    return ToyRun(folder, config, samples, log, accuracy, sample_accuracy, saved, seconds)


def with_overrides(config: ToyConfig, **changes: Any) -> ToyConfig:
    """``config`` with some fields replaced; ``model_*`` keys change the :class:`ModelSpec`.

    Examples
    --------
    >>> with_overrides(PRESETS["default"], steps=100, model_num_layers=2).model.num_layers
    2
    """
    model_changes = {k[len("model_") :]: v for k, v in changes.items() if k.startswith("model_")}
    rest = {k: v for k, v in changes.items() if not k.startswith("model_")}
    if model_changes:
        rest["model"] = replace(config.model, **model_changes)
    return replace(config, **rest)
