"""The training loop both toy trainers share: optimize, and evaluate, log and save on a schedule.

:func:`grokviz.toy.arithmetic.train.train` (modular arithmetic) and :func:`grokviz.toy.lm.train_lm`
(one-pass language model) differ in their data, their batches and how they score a sample; what
happens around the optimizer steps is the same and lives here. :func:`train_on_schedule`
evaluates the float16-rounded weights (what a checkpoint stores and the tracer will see) every
``eval_every`` steps and at every checkpoint, saves the checkpoints, and writes the run folder::

    run.json                 {"kind", "config", wall time, threads, versions, checkpoints, ...}
    samples.parquet          schema.SAMPLES (+ the trainer's own columns)
    checkpoints/step-NNNNNN/ config.json, model.safetensors (float16), tokenizer files
    accuracy.parquet         schema.ACCURACY: test accuracy per checkpoint x domain (+ "all")
    sample_accuracy.parquet  schema.SAMPLE_ACCURACY: per checkpoint x test sample
    training_log.parquet     per evaluation step x domain x split: loss, answer_loss, accuracy
    answer_losses.parquet    schema.LOSSES: per checkpoint x training sample, the answer token's
                             loss (n_tokens 1), for a memorization criterion on the answer alone

Runs are deterministic for a config: seeded initialisation, ``torch.use_deterministic_algorithms``
and a fixed number of intra-op threads (:func:`deterministic`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, cast

import polars as pl

from grokviz.errors import InputError
from grokviz.schema import ACCURACY, LOSSES, SAMPLE_ACCURACY, conform
from grokviz.toy.shared.model import (
    CHECKPOINT_FORMAT,
    ModelSpec,
    build_model,
    rounded_state,
    save_checkpoint,
)

_C = TypeVar("_C", bound="JsonConfig")


class JsonConfig:
    """``to_json`` / ``from_json`` for a trainer's frozen config dataclass: its sequences are
    tuples (JSON gives lists back) and its ``model`` is a :class:`~grokviz.toy.shared.model.ModelSpec`."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return asdict(cast(Any, self))

    @classmethod
    def from_json(cls: type[_C], data: dict[str, Any]) -> _C:
        """The config written by :meth:`to_json`."""
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        fields["model"] = ModelSpec(**data.get("model", {}))
        return cls(**fields)


_R = TypeVar("_R", bound="Run")
_D = TypeVar("_D")


# Runs written before the arithmetic toy had a package of its own recorded the kind "toy".
_LEGACY_KINDS = {"toy": "arithmetic"}


def run_kind(folder: str | Path) -> str:
    """``run.json``'s ``"kind"`` in the run folder ``folder``: ``"arithmetic"`` or ``"lm"``.

    A folder without ``run.json``, or one written before runs recorded their kind, counts as
    ``"arithmetic"`` (whose loader then says what is missing); the older name ``"toy"`` reads
    as ``"arithmetic"``.

    Examples
    --------
    >>> run_kind("data/samples/toy")
    'arithmetic'
    """
    meta_path = Path(folder) / "run.json"
    if not meta_path.is_file():
        return "arithmetic"
    kind = str(json.loads(meta_path.read_text()).get("kind", "arithmetic"))
    return _LEGACY_KINDS.get(kind, kind)


@dataclass
class Run:
    """A run folder written by :func:`train_on_schedule`, opened: its config and tables.

    Each trainer subclasses it with its config type, its ``run.json`` kind and the command that
    creates such a run (for the error when a folder holds none).
    """

    out: Path
    config: Any
    samples: pl.DataFrame
    log: pl.DataFrame
    accuracy: pl.DataFrame
    sample_accuracy: pl.DataFrame
    checkpoints: list[Path]
    seconds: float
    answer_losses: pl.DataFrame | None = None
    """Per checkpoint and training sample, the answer token's loss (``schema.LOSSES``); None
    for runs written before the trainer recorded it."""

    kind: ClassVar[str] = ""
    command: ClassVar[str] = ""
    max_length: ClassVar[int] = 0
    """Tokens of the longest sample: the tokenizer's truncation length when tracing the run."""

    @classmethod
    def config_from_json(cls, data: dict[str, Any]) -> Any:
        """The trainer's config from the ``"config"`` entry of ``run.json``."""
        raise NotImplementedError

    @classmethod
    def load(cls: type[_R], out: str | Path) -> _R:
        """Open the run folder ``out``, which must hold a run of this class's kind.

        A ``run.json`` without a ``"kind"`` (written before runs recorded it) counts as
        ``"arithmetic"``.

        Examples
        --------
        >>> from grokviz.toy import ToyRun
        >>> run = ToyRun.load("data/samples/toy")  # doctest: +SKIP
        >>> run.accuracy.columns  # doctest: +SKIP
        ['checkpoint', 'step', 'task', 'accuracy']
        """
        folder = Path(out)
        meta_path = folder / "run.json"
        if not meta_path.is_file():
            msg = f"{folder} holds no run (no run.json); create one with `{cls.command} --out {folder}`"
            raise FileNotFoundError(msg)
        meta = json.loads(meta_path.read_text())
        found = run_kind(folder)
        if found != cls.kind:
            msg = (
                f"{folder} holds a run of kind {found!r}, not {cls.kind!r}; open it with the "
                "loader of its kind (grokviz.toy.ToyRun for 'arithmetic', grokviz.toy.LMRun for 'lm'), "
                "or grokviz.toy.open_run for either"
            )
            raise InputError(msg)
        return cls(
            out=folder,
            config=cls.config_from_json(meta["config"]),
            samples=pl.read_parquet(folder / "samples.parquet"),
            log=pl.read_parquet(folder / "training_log.parquet"),
            accuracy=pl.read_parquet(folder / "accuracy.parquet"),
            sample_accuracy=pl.read_parquet(folder / "sample_accuracy.parquet"),
            checkpoints=sorted((folder / "checkpoints").glob("step-*[0-9]")),
            seconds=float(meta["seconds"]),
            answer_losses=(
                pl.read_parquet(answers)
                if (answers := folder / "answer_losses.parquet").is_file()
                else None
            ),
        )


Scorer = Callable[[Any, Any], tuple[Any, Any, Any]]
"""``scorer(logits, ids) -> (loss, answer_loss, correct)``, one value per row of ``ids``, from
the float32 logits of ``ids[:, :-1]``."""


class LoopConfig(Protocol):
    """What :func:`train_on_schedule` reads from a trainer's config (``ToyConfig``, ``LMConfig``)."""

    @property
    def seed(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def eval_every(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def betas(self) -> tuple[float, float]: ...
    def schedule(self) -> list[int]: ...
    def to_json(self) -> dict[str, Any]: ...


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and ``threads`` intra-op threads inside the block; restores both.

    Examples
    --------
    >>> import torch
    >>> with deterministic(1):
    ...     torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    (1, True)
    """
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
class Scores:
    """Per-sample results of one evaluation, as 1-d tensors in the order of the samples."""

    loss: Any
    """Mean next-token NLL over the sample (the tracer's per-sample loss)."""
    answer_loss: Any
    """NLL of the answer, the last token."""
    correct: Any
    """Whether the answer is the argmax after the prompt."""


def score(model: Any, ids: Any, scorer: Scorer, *, batch_size: int) -> Scores:
    """Run ``model`` without gradients on ``ids`` in chunks and score each row with ``scorer``.

    The model's training mode is restored afterwards.

    Examples
    --------
    >>> last = lambda logits, ids: (logits.mean((1, 2)), logits[:, -1, 0], ids[:, -1] > 0)
    >>> score(model, ids, last, batch_size=256).correct.shape  # doctest: +SKIP
    torch.Size([1000])
    """
    import torch

    losses, answer_losses, correct = [], [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for chunk in ids.split(batch_size):
            # causal attention: real tokens never see right padding, so no mask is needed
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            loss, answer_loss, right = scorer(logits, chunk)
            losses.append(loss)
            answer_losses.append(answer_loss)
            correct.append(right)
    model.train(was_training)
    return Scores(torch.cat(losses), torch.cat(answer_losses), torch.cat(correct))


def log_rows(step: int, samples: pl.DataFrame, scores: Scores) -> pl.DataFrame:
    """One training-log row per domain x split: mean loss, mean answer loss, accuracy.

    Examples
    --------
    >>> import torch
    >>> samples = pl.DataFrame({"domain": ["a", "a", "b"], "split": "test"})
    >>> scores = Scores(torch.tensor([1.0, 3.0, 5.0]), torch.zeros(3), torch.tensor([1, 0, 1]) > 0)
    >>> log_rows(7, samples, scores).select("domain", "loss", "accuracy").rows()
    [('a', 2.0, 0.5), ('b', 5.0, 1.0)]
    """
    frame = samples.select("domain", "split").with_columns(
        loss=pl.Series(scores.loss.numpy()),
        answer_loss=pl.Series(scores.answer_loss.numpy()),
        correct=pl.Series(scores.correct.numpy()),
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
class Trained:
    """What :func:`train_on_schedule` wrote besides the samples and the checkpoints' weights."""

    log: pl.DataFrame
    accuracy: pl.DataFrame
    sample_accuracy: pl.DataFrame
    checkpoints: list[Path]
    seconds: float
    answer_losses: pl.DataFrame


class _Recorder:
    """Collects every evaluation's rows and every checkpoint's accuracy; writes the tables."""

    def __init__(self, folder: Path, samples: pl.DataFrame) -> None:
        self.folder = folder
        self.samples = samples
        self.test_mask = (samples["split"] == "test").to_torch()
        self.test_ids = samples.filter(pl.col("split") == "test").select("sample_id")
        self.train_mask = (samples["split"] == "train").to_torch()
        self.train_ids = samples.filter(pl.col("split") == "train").select("sample_id")
        self.answer_frames: list[pl.DataFrame] = []
        self.logs: list[pl.DataFrame] = []
        self.accuracy_rows: list[dict[str, Any]] = []
        self.sample_frames: list[pl.DataFrame] = []
        self.checkpoints: list[Path] = []

    def evaluated(self, step: int, scores: Scores) -> pl.DataFrame:
        rows = log_rows(step, self.samples, scores)
        self.logs.append(rows)
        return rows

    def saved(self, step: int, scores: Scores, rows: pl.DataFrame, path: Path) -> None:
        label = CHECKPOINT_FORMAT.format(step=step)
        self.checkpoints.append(path)
        correct = scores.correct[self.test_mask]
        self.answer_frames.append(
            self.train_ids.with_columns(
                checkpoint=pl.lit(label),
                step=pl.lit(step, pl.Int64),
                loss=pl.Series(scores.answer_loss[self.train_mask].double().numpy()),
                n_tokens=pl.lit(1, pl.Int32),
            )
        )
        self.sample_frames.append(
            self.test_ids.with_columns(
                checkpoint=pl.lit(label),
                step=pl.lit(step, pl.Int64),
                correct=pl.Series(correct.numpy()),
            )
        )
        test = rows.filter(pl.col("split") == "test")
        self.accuracy_rows += [
            {"checkpoint": label, "step": step, "task": d, "accuracy": a}
            for d, a in test.select("domain", "accuracy").iter_rows()
        ]
        overall = float(correct.float().mean())
        self.accuracy_rows.append(
            {"checkpoint": label, "step": step, "task": "all", "accuracy": overall}
        )
        # the log so far, so a long run can be watched (and inspected if stopped)
        pl.concat(self.logs).write_parquet(self.folder / "training_log.parquet")

    def write(self, meta: Mapping[str, Any], *, seconds: float) -> Trained:
        """Write the tables and ``run.json``: ``meta`` with the wall time, versions, checkpoints."""
        import torch

        log = pl.concat(self.logs).sort("step", "domain", "split")
        accuracy = conform(pl.DataFrame(self.accuracy_rows), ACCURACY, name="accuracy")
        accuracy = accuracy.sort("step", "task")
        sample_accuracy = conform(
            pl.concat(self.sample_frames).select("checkpoint", "step", "sample_id", "correct"),
            SAMPLE_ACCURACY,
            name="sample_accuracy",
        )
        log.write_parquet(self.folder / "training_log.parquet")
        answers = conform(
            pl.concat(self.answer_frames).select(list(LOSSES)), LOSSES, name="answer losses"
        )
        answers.write_parquet(self.folder / "answer_losses.parquet")
        accuracy.write_parquet(self.folder / "accuracy.parquet")
        sample_accuracy.write_parquet(self.folder / "sample_accuracy.parquet")
        run = {
            **meta,
            "seconds": seconds,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "checkpoints": [p.name for p in self.checkpoints],
        }
        (self.folder / "run.json").write_text(json.dumps(run, indent=1))
        return Trained(log, accuracy, sample_accuracy, self.checkpoints, seconds, answers)


def _scale_routers(model: Any, scale: float) -> None:
    """Multiply the freshly initialised router weights by ``scale``: routing then starts as
    sharp as it will be, instead of sharpening steadily through the run (a drift every
    pathway metric would follow)."""
    import torch

    if scale == 1.0:
        return
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                param.mul_(scale)


def _param_groups(model: Any, config: LoopConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: one, or the routers and the norms apart when the config gives
    them a weight decay of their own (``router_weight_decay``, ``norm_weight_decay``). Strong
    weight decay keeps router logits small, and decaying the RMSNorm gains that feed the
    routers shrinks them too, so routing stays close to uniform; MoE recipes often exempt both.
    """
    router_decay = getattr(config, "router_weight_decay", None)
    norm_decay = getattr(config, "norm_weight_decay", None)
    params = list(model.named_parameters())
    if router_decay is None and norm_decay is None:
        return [{"params": [p for _, p in params], "weight_decay": config.weight_decay}]

    def kind(name: str) -> str:
        if router_decay is not None and name.endswith("mlp.gate.weight"):  # OLMoE's router
            return "router"
        if norm_decay is not None and name.endswith("norm.weight"):
            return "norm"
        return "rest"

    decay = {"rest": config.weight_decay, "router": router_decay, "norm": norm_decay}
    groups = []
    for k in ("rest", "router", "norm"):
        chosen = [p for n, p in params if kind(n) == k]
        if chosen:
            groups.append({"params": chosen, "weight_decay": decay[k]})
    return groups


def train_on_schedule(
    config: LoopConfig,
    folder: str | Path,
    *,
    kind: str,
    samples: pl.DataFrame,
    ids: Any,
    scorer: Scorer,
    eval_batch_size: int,
    model_config: Any,
    tokenizer: Any,
    lr_factor: Callable[[int], float],
    batch_loss: Callable[[Any, int], Any],
    checkpoint_extra: Callable[[int], dict[str, Any]] | None = None,
    run_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_step: Callable[[Any, int], Any] | None = None,
) -> Trained:
    """Train a fresh model for ``config.steps`` AdamW steps, evaluating and saving on schedule.

    Parameters
    ----------
    config
        The trainer's config: seed, threads, steps, eval_every, lr, weight_decay, betas, and
        ``schedule()``, the checkpoint steps.
    folder
        The run folder (created); the files it gets are in this module's docstring.
    kind
        ``run.json["kind"]``, which says which trainer wrote the folder.
    samples
        The samples (``schema.SAMPLES`` columns first), written to ``samples.parquet``;
        ``domain`` and ``split`` group the training log, ``split == "test"`` makes the
        accuracy tables.
    ids
        ``samples`` encoded, one row each; evaluated with ``scorer`` in chunks of
        ``eval_batch_size``.
    model_config
        The ``OlmoeConfig`` of the model; it and an evaluation copy are built from
        ``config.seed``.
    tokenizer
        Saved with every checkpoint.
    lr_factor
        The learning rate at a step as a fraction of ``config.lr``.
    batch_loss
        ``batch_loss(model, step)``: the loss the update after ``step`` minimizes.
    checkpoint_extra, run_extra
        More entries for each checkpoint's ``toy_step.json`` (from its step) and for
        ``run.json``.
    progress
        Show a progress bar with the mean accuracy of each split.
    on_step
        ``on_step(model, step)`` is called with the model being trained before the first
        update (``step`` 0) and after each optimizer step (``step`` updates done), e.g. a
        :meth:`grokviz.monitor.Monitor.observe`; what it returns is ignored.

    Returns
    -------
    Trained
        The tables written, the checkpoint folders and the training time in seconds.

    Examples
    --------
    >>> trained = train_on_schedule(config, "/tmp/run", kind="arithmetic", ...)  # doctest: +SKIP
    >>> [p.name for p in trained.checkpoints]  # doctest: +SKIP
    ['step-000002', 'step-000004', 'step-000006']
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    samples.write_parquet(out / "samples.parquet")
    schedule = set(config.schedule())
    eval_steps = set(range(0, config.steps + 1, config.eval_every)) | schedule
    recorder = _Recorder(out, samples)

    start = time.perf_counter()
    with deterministic(config.threads):
        model = build_model(model_config, seed=config.seed)
        _scale_routers(model, getattr(config, "router_init_scale", 1.0))
        shadow = build_model(model_config, seed=config.seed)  # holds the float16-rounded weights
        model.train()
        opt = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, betas=config.betas)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        bar = tqdm(total=config.steps, disable=not progress, desc=kind, unit="step")
        if on_step is not None:
            on_step(model, 0)
        for step in range(config.steps + 1):
            if step in eval_steps:
                shadow.load_state_dict({k: v.float() for k, v in rounded_state(model).items()})
                scores = score(shadow, ids, scorer, batch_size=eval_batch_size)
                rows = recorder.evaluated(step, scores)
                if step in schedule:
                    extra = checkpoint_extra(step) if checkpoint_extra is not None else None
                    path = save_checkpoint(
                        model, tokenizer, out / "checkpoints", step=step, extra=extra
                    )
                    recorder.saved(step, scores, rows, path)
                acc = rows.group_by("split").agg(pl.col("accuracy").mean()).sort("split")
                bar.set_postfix({s: f"{a:.2f}" for s, a in acc.iter_rows()})
            if step == config.steps:
                break
            loss = batch_loss(model, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if on_step is not None:
                on_step(model, step + 1)
            bar.update(1)
        bar.close()
    seconds = time.perf_counter() - start

    meta = {"kind": kind, "config": config.to_json(), "threads": config.threads}
    return recorder.write({**meta, **(run_extra or {})}, seconds=seconds)


def with_overrides(config: _D, **changes: Any) -> _D:
    """A trainer's ``config`` with some fields replaced; ``model_*`` keys change its
    :class:`~grokviz.toy.shared.model.ModelSpec`. Lists become tuples, as the configs keep them.

    Examples
    --------
    >>> from grokviz.toy.arithmetic import PRESETS
    >>> short = with_overrides(PRESETS["default"], steps=100, checkpoints=[50, 100], model_num_layers=2)
    >>> short.steps, short.model.num_layers
    (100, 2)
    """
    import dataclasses

    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    known = {f.name for f in dataclasses.fields(cast(Any, config))}
    model_known = {f.name for f in dataclasses.fields(ModelSpec)}
    bad = [
        k
        for k in changes
        if not (k in known or (k.startswith("model_") and k[len("model_") :] in model_known))
    ]
    if bad:
        msg = (
            f"unknown setting(s) {bad} for {type(config).__name__}; choose from {sorted(known)} "
            f"or model_<field> with a field of ModelSpec {sorted(model_known)}"
        )
        raise InputError(msg)
    model_changes = {k[len("model_") :]: v for k, v in changes.items() if k.startswith("model_")}
    rest = {k: v for k, v in changes.items() if not k.startswith("model_")}
    if model_changes:
        rest["model"] = dataclasses.replace(cast(Any, config).model, **model_changes)
    return dataclasses.replace(cast(Any, config), **rest)
