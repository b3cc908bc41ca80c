"""One-pass pretraining of a tiny OLMoE language model on the generated multi-domain corpus.

The paper's setting, small: every training document (:mod:`grokviz.toy.corpus`) is seen exactly
once, in a seeded shuffled order, with the plain next-token objective; checkpoints are saved on a
schedule and each domain's held-out test task is scored at every one. A run folder has the same
layout and tables as the first toy's (:mod:`grokviz.toy.train`)::

    run.json                 {"kind": "lm", "config": LMConfig, wall time, threads, versions}
    samples.parquet          schema.SAMPLES (+ prompt, answer, seen_step): tracked training
                             documents (split "train", seen_step = the step that trained on
                             them), validation documents ("val", never trained on) and the test
                             prompts with their answers ("test")
    checkpoints/step-NNNNNN/ config.json, model.safetensors (float16), tokenizer files
    accuracy.parquet         schema.ACCURACY: test accuracy per checkpoint x domain (+ "all")
    sample_accuracy.parquet  schema.SAMPLE_ACCURACY: per checkpoint x test sample
    training_log.parquet     per evaluation step x domain x split: loss, answer_loss, accuracy

:class:`LMRun` opens such a folder, :func:`trace_lm` traces it into a trace store;
:mod:`grokviz.toy.lm_report` runs grokviz's analysis on the traced run and writes Markdown.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.schema import ACCURACY, SAMPLE_ACCURACY, SAMPLES, conform
from grokviz.toy.corpus import DOMAINS, MAX_TOKENS, encode, make_corpus, make_tokenizer, vocabulary
from grokviz.toy.model import (
    CHECKPOINT_FORMAT,
    ModelSpec,
    build_model,
    olmoe_config,
    rounded_state,
    save_checkpoint,
)

RUN_KIND = "lm"
"""``run.json["kind"]`` of a run written by :func:`train_lm`."""


@dataclass(frozen=True)
class LMConfig:
    """Everything that determines a one-pass run; the same config gives the same run."""

    docs_per_domain: int = 60_000
    """Training documents per domain; each is trained on exactly once."""
    val_per_domain: int = 200
    test_per_domain: int = 300
    tracked_per_domain: int = 300
    """Training documents per domain kept as samples (traced, evaluated at every checkpoint)."""
    held_out: float = 0.2
    """Fraction of each domain's held-out unit reserved for its test task (see corpus)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1.0
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
            raise ValueError(msg)
        if self.batch_size < 1 or self.n_checkpoints < 1 or self.eval_every < 1:
            msg = (
                "batch_size, n_checkpoints and eval_every must be >= 1; got "
                f"{self.batch_size}, {self.n_checkpoints}, {self.eval_every}"
            )
            raise ValueError(msg)
        if self.spacing not in ("log", "linear"):
            msg = f"spacing must be 'log' or 'linear'; got {self.spacing!r}"
            raise ValueError(msg)
        if self.model.num_layers < 2:
            msg = f"pathway consistency needs >= 2 MoE layers; got {self.model.num_layers}"
            raise ValueError(msg)

    @property
    def steps(self) -> int:
        """Optimizer steps of the one pass: every training document once."""
        return math.ceil(len(DOMAINS) * self.docs_per_domain / self.batch_size)

    def schedule(self) -> list[int]:
        """Checkpoint steps: 0, then about ``n_checkpoints`` steps ending at the last one.

        Log spacing rounds to multiples of ``eval_every`` (close steps merge, so there may be
        fewer); linear spacing is even.

        Examples
        --------
        >>> LMConfig(docs_per_domain=6400, batch_size=64, n_checkpoints=4).schedule()
        [0, 25, 50, 125, 300]
        >>> LMConfig(docs_per_domain=640, batch_size=64, n_checkpoints=3, spacing="linear").schedule()
        [0, 10, 20, 30]
        """
        n = min(self.n_checkpoints, self.steps)
        if self.spacing == "linear" or n == 1:
            return sorted({0, *(round(self.steps * (i + 1) / n) for i in range(n))})
        every = min(self.eval_every, self.steps)
        lo, hi = math.log(every), math.log(self.steps)
        raw = (math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n))
        inner = {max(every, round(x / every) * every) for x in raw}
        return sorted({0, self.steps, *(x for x in inner if x < self.steps)})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LMConfig:
        """The config written by :meth:`to_json`."""
        data = dict(data)
        data["model"] = ModelSpec(**data.get("model", {}))
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


# The documented run (docs/toy_lm.md) and a seconds-long one for tests and smoke runs.
PRESETS: dict[str, LMConfig] = {
    "default": LMConfig(),
    "tiny": LMConfig(
        docs_per_domain=96,
        val_per_domain=4,
        test_per_domain=6,
        tracked_per_domain=8,
        model=ModelSpec(hidden_size=16, intermediate_size=16, num_layers=2, num_experts=4),
        batch_size=16,
        warmup=2,
        n_checkpoints=3,
        eval_every=6,
    ),
}


@contextmanager
def _fixed_threads(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the block; restores both after."""
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def lr_factor(config: LMConfig, step: int) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``: linear warmup, then cosine.

    Examples
    --------
    >>> config = LMConfig(docs_per_domain=640, batch_size=64, warmup=10)
    >>> [round(lr_factor(config, s), 2) for s in (0, 9, 20, 30)]
    [0.1, 1.0, 0.55, 0.1]
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


@dataclass
class _Eval:
    loss: Any  # mean next-token NLL over the document (the tracer's per-sample loss)
    answer_loss: Any  # NLL of the last word
    correct: Any  # the last word is the argmax after the prompt


def _evaluate(model: Any, ids: Any, *, batch_size: int = 1024) -> _Eval:
    """Score right-padded documents ``ids`` (from :func:`~grokviz.toy.corpus.encode`)."""
    import torch

    losses, answer_losses, correct = [], [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for chunk in ids.split(batch_size):
            # causal attention: real tokens never see the right padding, so no mask is needed
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            nll, real = _next_token_nll(logits, chunk)
            last = real.sum(dim=1) - 1  # index of the answer among the predicted positions
            rows = torch.arange(len(chunk))
            losses.append(nll.sum(dim=1) / real.sum(dim=1))
            answer_losses.append(nll[rows, last])
            correct.append(logits[rows, last].argmax(-1) == chunk[:, 1:][rows, last])
    model.train(was_training)
    return _Eval(torch.cat(losses), torch.cat(answer_losses), torch.cat(correct))


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
        .sort("domain", "split")
    )


@dataclass
class LMRun:
    """What :func:`train_lm` wrote: the folder and the frames it saved there."""

    out: Path
    config: LMConfig
    samples: pl.DataFrame
    log: pl.DataFrame
    accuracy: pl.DataFrame
    sample_accuracy: pl.DataFrame
    checkpoints: list[Path]
    seconds: float

    @classmethod
    def load(cls, out: str | Path) -> LMRun:
        """Open a run folder written by :func:`train_lm`.

        Examples
        --------
        >>> run = LMRun.load("/tmp/lmtoy")  # doctest: +SKIP
        >>> run.accuracy.columns  # doctest: +SKIP
        ['checkpoint', 'step', 'task', 'accuracy']
        """
        folder = Path(out)
        meta_path = folder / "run.json"
        if not meta_path.is_file():
            msg = (
                f"{folder} holds no run (no run.json); create one with "
                f"`python -m grokviz.toy lm --out {folder}`"
            )
            raise FileNotFoundError(msg)
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != RUN_KIND:
            msg = (
                f"{folder} holds a run of kind {meta.get('kind')!r}, not a one-pass LM run; "
                "open it with grokviz.toy.ToyRun.load"
            )
            raise ValueError(msg)
        return cls(
            out=folder,
            config=LMConfig.from_json(meta["config"]),
            samples=pl.read_parquet(folder / "samples.parquet"),
            log=pl.read_parquet(folder / "training_log.parquet"),
            accuracy=pl.read_parquet(folder / "accuracy.parquet"),
            sample_accuracy=pl.read_parquet(folder / "sample_accuracy.parquet"),
            checkpoints=sorted((folder / "checkpoints").glob("step-*[0-9]")),
            seconds=float(meta["seconds"]),
        )


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
        Show a progress bar with the current test accuracy.

    Returns
    -------
    LMRun

    Examples
    --------
    >>> run = train_lm(PRESETS["tiny"], "/tmp/lm-tiny", progress=False)  # doctest: +SKIP
    >>> run.accuracy.filter(task="all")  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(
        n_train=config.docs_per_domain,
        n_val=config.val_per_domain,
        n_test=config.test_per_domain,
        seed=config.seed,
        held_out=config.held_out,
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
    samples.write_parquet(folder / "samples.parquet")
    ids = encode(samples["text"].to_list())
    test_mask = (samples["split"] == "test").to_torch()
    test_ids = samples.filter(pl.col("split") == "test").select("sample_id")
    schedule = set(config.schedule())
    eval_steps = set(range(0, config.steps + 1, config.eval_every)) | schedule
    tokenizer = make_tokenizer()

    logs: list[pl.DataFrame] = []
    accuracy_rows: list[dict[str, Any]] = []
    sample_frames: list[pl.DataFrame] = []
    saved: list[Path] = []
    start = time.perf_counter()
    with _fixed_threads(config.threads):
        model_config = olmoe_config(config.model, vocab_size=len(vocabulary()))
        model_config.max_position_embeddings = MAX_TOKENS
        model = build_model(model_config, seed=config.seed)
        shadow = build_model(model_config, seed=config.seed)  # holds the float16-rounded weights
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(config, s))
        bar = tqdm(total=config.steps, disable=not progress, desc="lm", unit="step")
        for step in range(config.steps + 1):
            if step in eval_steps:
                # evaluate the weights as a checkpoint stores them, as the tracer will see them
                shadow.load_state_dict({k: v.float() for k, v in rounded_state(model).items()})
                result = _evaluate(shadow, ids)
                rows = _log_rows(step, samples, result)
                logs.append(rows)
                if step in schedule:
                    label = CHECKPOINT_FORMAT.format(step=step)
                    saved.append(
                        save_checkpoint(
                            model,
                            tokenizer,
                            folder / "checkpoints",
                            step=step,
                            extra={"documents_seen": min(step * config.batch_size, len(seen))},
                        )
                    )
                    sample_frames.append(
                        test_ids.with_columns(
                            checkpoint=pl.lit(label),
                            step=pl.lit(step, pl.Int64),
                            correct=pl.Series(result.correct[test_mask].numpy()),
                        )
                    )
                    test = rows.filter(pl.col("split") == "test")
                    accuracy_rows += [
                        {"checkpoint": label, "step": step, "task": d, "accuracy": a}
                        for d, a in test.select("domain", "accuracy").iter_rows()
                    ]
                    overall = float(result.correct[test_mask].float().mean())
                    accuracy_rows.append(
                        {"checkpoint": label, "step": step, "task": "all", "accuracy": overall}
                    )
                    pl.concat(logs).write_parquet(folder / "training_log.parquet")
                test_acc = float(result.correct[test_mask].float().mean())
                bar.set_postfix({"test": f"{test_acc:.2f}"})
            if step == config.steps:
                break
            batch = train_ids[batches[step]]
            logits = model(input_ids=batch[:, :-1]).logits
            nll, real = _next_token_nll(logits, batch)
            loss = nll.sum() / real.sum()
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
        "kind": RUN_KIND,
        "config": config.to_json(),
        "seconds": seconds,
        "threads": config.threads,
        "steps": config.steps,
        "documents": len(seen),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "checkpoints": [p.name for p in saved],
    }
    (folder / "run.json").write_text(json.dumps(meta, indent=1))
    return LMRun(folder, config, samples, log, accuracy, sample_accuracy, saved, seconds)


def trace_lm(
    run: str | Path,
    *,
    store: str | Path | None = None,
    token_samples: int = 2,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Trace every checkpoint of a one-pass run over all its samples into a trace store.

    Parameters
    ----------
    run
        A run folder written by :func:`train_lm`.
    store
        The trace store folder (default ``<run>/trace``); resumable.
    token_samples
        Per domain and split, this many samples keep their per-token routing.
    batch_size
        Samples per forward pass.
    progress
        Show a progress bar.

    Returns
    -------
    Path
        The store folder; open it with :class:`grokviz.TraceStore` or pass it to
        :func:`grokviz.analyze`.

    Examples
    --------
    >>> trace_lm("/tmp/lmtoy")  # doctest: +SKIP
    PosixPath('/tmp/lmtoy/trace')
    """
    from grokviz.trace import trace

    lm = LMRun.load(run)
    target = Path(store) if store is not None else lm.out / "trace"
    samples = conform(lm.samples.select(list(SAMPLES)), SAMPLES, name="samples")
    select = (
        samples.group_by("domain", "split", maintain_order=True)
        .head(token_samples)["sample_id"]
        .to_list()
    )
    trace(
        [str(c) for c in lm.checkpoints],
        samples,
        target,
        select=select,
        batch_size=batch_size,
        max_length=MAX_TOKENS,
        progress=progress,
    )
    return target
