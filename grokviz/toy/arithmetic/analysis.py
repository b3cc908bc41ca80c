"""The numbers behind the arithmetic toy's report: grokviz's analysis of a traced run.

:func:`analyze_run` runs the paper's analysis and the controls on a run written by
:func:`~grokviz.toy.arithmetic.train.train` and traced by :func:`grokviz.toy.runs.trace_run`:

- when each operation memorizes and generalizes (the dense training log, and the paper's
  per-sample onsets with honest fractions: memorized samples over *all* training samples);
- which training samples count as memorized, with the whole-sample loss (the paper's rule) or
  the answer token's loss (``memorization="answer"``), and how many each group rests on;
- Table 1 on the toy: Pearson / Spearman of distance, consistency, the losses and routing
  entropy with each group's test accuracy, over all checkpoints and from the rise on;
- the controls (:func:`grokviz.validate`): partial correlation with log step fixed against the
  group's own and the other groups' accuracy, the timing of each group's change against its
  rise, the length-matched null and the uniform-weight baseline, the random-answer control;
- other pathway views (τ, top-k, all samples, per layer) and how peaked the routing is.

:mod:`grokviz.toy.arithmetic.report` renders the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from grokviz.errors import InputError
from grokviz.toy.arithmetic.train import ToyRun
from grokviz.toy.shared.curves import _first, _val_loss, with_global

METRIC_NAMES = ["distance", "consistency", "loss", "val_loss", "entropy"]
"""Table 1's metrics, in its column order."""

CONTROLLED = ("distance", "distance_ratio", "consistency")
"""The metrics :func:`grokviz.validate` checks in the report."""


def log_delays(
    log: pl.DataFrame, *, train_level: float = 0.95, test_level: float = 0.9
) -> pl.DataFrame:
    """Per operation: the first step train accuracy reaches ``train_level`` (memorized), the
    first step test accuracy reaches ``test_level`` (generalized), the delay between them, and
    the test accuracy when the group was memorized.

    Examples
    --------
    >>> log = pl.DataFrame({"step": [0, 0, 10, 10, 20, 20], "domain": "add",
    ...     "split": ["train", "test"] * 3, "accuracy": [0.0, 0.0, 1.0, 0.1, 1.0, 0.95]})
    >>> log_delays(log).row(0)
    ('add', 10, 20, 10, 0.1)
    """
    rows = []
    for (domain,), part in log.sort("step").group_by(["domain"], maintain_order=True):
        wide = part.pivot(on="split", index="step", values="accuracy").sort("step")
        steps = wide["step"].to_numpy()
        memorized = _first(steps, wide["train"].to_numpy() >= train_level)
        generalized = _first(steps, wide["test"].to_numpy() >= test_level)
        at_mem = (
            None
            if memorized is None
            else float(wide.filter(pl.col("step") == memorized)["test"][0])
        )
        delay = None if memorized is None or generalized is None else generalized - memorized
        rows.append((str(domain), memorized, generalized, delay, at_mem))
    return pl.DataFrame(
        rows,
        schema={
            "domain": pl.String(),
            "memorized_step": pl.Int64(),
            "generalized_step": pl.Int64(),
            "delay": pl.Int64(),
            "test_acc_at_memorization": pl.Float64(),
        },
        orient="row",
    )


def sample_delays(
    toy: ToyRun, onsets: pl.DataFrame, last_step: int, *, pair: bool = True
) -> pl.DataFrame:
    """The paper's per-sample view per domain: training samples memorized before the last
    checkpoint (count and share of *all* the domain's training samples), test samples that
    generalized before it, their median onsets, and the Hungarian pairing of ``Pretrain@t*``
    with ``Test@t#`` groups when MiniLM is installed (``pair``).

    Examples
    --------
    >>> onsets = pl.DataFrame({"sample_id": ["a", "b", "c"], "domain": "add",
    ...     "onset_step": [100, None, 300]})
    >>> early = (pl.col("onset_step") < 300).fill_null(False)
    >>> onsets.select(early.sum().alias("n"), early.mean().alias("share")).row(0)  # never memorized counts in the share
    (1, 0.3333333333333333)
    """
    from grokviz.metrics import generalization_onsets, pair_groups

    gen = generalization_onsets(toy.sample_accuracy, toy.samples)
    early = (pl.col("onset_step") < last_step).fill_null(False)
    summary = (
        onsets.group_by("domain")
        .agg(
            pl.col("eps").first(),
            early.sum().alias("memorized_before_T"),
            pl.len().alias("training_samples"),
            early.mean().alias("share_memorized"),
            pl.col("onset_step").filter(early).median().alias("median_memorization_step"),
        )
        .join(
            gen.group_by("domain").agg(
                early.mean().alias("share_generalized"),
                pl.col("onset_step").filter(early).median().alias("median_generalization_step"),
            ),
            on="domain",
        )
    )
    if not pair:
        return summary.sort("domain")
    try:
        pairs = pair_groups(onsets.filter(early), gen, toy.samples).pairs
    except (ImportError, ValueError):  # no MiniLM, or a domain without groups to pair
        return summary.sort("domain")
    paired = pairs.group_by("domain").agg(
        pl.len().alias("paired_groups"), pl.col("delay").median().alias("median_paired_delay")
    )
    return summary.join(paired, on="domain", how="left").sort("domain")


def answer_losses(toy: ToyRun) -> pl.DataFrame:
    """Per checkpoint and training sample, the answer token's loss (``schema.LOSSES``).

    The trainer records it (``answer_losses.parquet``); for a run written before it did, it
    is computed here from the checkpoints, as the trainer would have.
    """
    if toy.answer_losses is not None:
        return toy.answer_losses
    import torch

    from grokviz.toy.arithmetic.tasks import encode
    from grokviz.toy.arithmetic.train import _score_equations
    from grokviz.toy.shared.loop import deterministic, score
    from grokviz.toy.shared.model import load_checkpoint

    cfg = toy.config
    train = toy.samples.filter(pl.col("split") == "train")
    ids = encode(train, p=cfg.p, operations=cfg.operations, layout=cfg.layout)
    frames = []
    with deterministic(cfg.threads), torch.no_grad():
        for folder in toy.checkpoints:
            model, _ = load_checkpoint(folder)
            step = int(folder.name.split("-")[1])
            scores = score(model, ids, _score_equations, batch_size=4096)
            frames.append(
                train.select("sample_id").with_columns(
                    checkpoint=pl.lit(folder.name),
                    step=pl.lit(step, pl.Int64),
                    loss=pl.Series(scores.answer_loss.double().numpy()),
                    n_tokens=pl.lit(1, pl.Int32),
                )
            )
    return pl.concat(frames).select("checkpoint", "step", "sample_id", "loss", "n_tokens")


def _own(corr: pl.DataFrame, groups: list[str], names: list[str]) -> pl.DataFrame:
    """Correlation rows of each group's metric with the group's own accuracy."""
    return corr.filter(
        pl.col("group").is_in(groups)
        & (pl.col("task") == pl.col("group"))
        & pl.col("metric").is_in(names)
    ).select("group", "metric", "pearson_r", "spearman_r", "partial_r", "n", "n_samples")


@dataclass
class ToyAnalysis:
    """The numbers behind the arithmetic toy's report."""

    memorization: str
    """``"sample"`` (the paper's whole-sample loss) or ``"answer"`` (the answer token's)."""
    summary: Any
    """:class:`grokviz.metrics.MemorizationSummary` of the memorization rule's choices."""
    table1: pl.DataFrame
    table1_rise: pl.DataFrame
    rise_steps: dict[str, int]
    validation: Any
    """:class:`grokviz.metrics.Validation` of distance, its ratio to the null, consistency."""
    views: dict[str, pl.DataFrame]
    delays: pl.DataFrame
    sample_delays: pl.DataFrame
    routing: pl.DataFrame
    accuracy: pl.DataFrame
    log: pl.DataFrame
    metrics: pl.DataFrame
    groups: list[str]
    controls: list[str]


def analyze_run(
    run: str | Path,
    *,
    store: str | Path | None = None,
    memorization: str = "sample",
    replicates: int = 100,
    views: bool = True,
    pair: bool = True,
    progress: bool = False,
) -> ToyAnalysis:
    """Run grokviz's analysis and its controls on a traced arithmetic run.

    Parameters
    ----------
    run
        A run folder written by :func:`~grokviz.toy.arithmetic.train.train`, traced.
    store
        Its trace store (default ``<run>/trace``).
    memorization
        ``"sample"``: the paper's rule on the traced whole-sample loss; ``"answer"``: the same
        rule on the answer token's loss, which settles when the answer is memorized (the
        other four tokens of an equation are unpredictable, so the whole-sample loss stays
        high and drifts).
    replicates
        Resamples of each group's samples for the intervals over samples.
    views
        Also compute the other pathway views (a few analyses more).
    pair
        Pair memorization and generalization groups with MiniLM (when installed).
    progress
        Show analyze's progress bar.

    Examples
    --------
    >>> result = analyze_run("data/samples/toy", replicates=10, views=False, pair=False)
    >>> result.table1.columns[:4], result.memorization
    (['group', 'metric', 'pearson_r', 'spearman_r'], 'sample')
    """
    from grokviz.metrics import (
        analyze,
        correlate,
        memorization_onsets,
        memorization_summary,
        rise_step,
        validate,
    )
    from grokviz.store import TraceStore
    from grokviz.toy.shared.evidence import routing_shape

    if memorization not in ("sample", "answer"):
        msg = f"memorization must be 'sample' or 'answer', got {memorization!r}"
        raise InputError(msg)
    toy = ToyRun.load(run)
    st = TraceStore.open(Path(store) if store is not None else toy.out / "trace")
    losses = st.losses() if memorization == "sample" else answer_losses(toy)
    onsets = memorization_onsets(losses, toy.samples)
    last_step = int(losses["step"].max())  # type: ignore[arg-type]
    base = analyze(
        st,
        onsets=onsets,
        groups=("global", "domain"),
        replicates=replicates,
        n_boot=0,
        progress=progress,
    )
    real_samples = (
        toy.samples.filter(~pl.col("control").fill_null(False))
        if "control" in toy.samples.columns
        else toy.samples
    )
    val = pl.concat(
        [
            _val_loss(st, toy.samples),
            # the global group holds no control samples; neither does its validation loss
            _val_loss(st, real_samples, overall=True).filter(pl.col("group") == "global"),
        ]
    )
    metrics = pl.concat([base, val], how="diagonal_relaxed")
    control_ops = [op for op in toy.config.operations if _is_control(op)]
    real_ops = [op for op in toy.config.operations if op not in control_ops]
    # the "global" group holds no control samples: it follows the share of the real operations'
    # test prompts answered (the trainer's "all" counts the control's prompts too)
    tests = toy.samples.filter(pl.col("split") == "test").group_by("domain").len()
    counts = dict(zip(tests["domain"].to_list(), tests["len"].to_list(), strict=True))
    accuracy = with_global(toy.accuracy, real_ops, counts)
    groups = [*real_ops, *control_ops, "global"]
    corr = correlate(metrics, accuracy, n_boot=0)
    table1 = _own(corr, groups, METRIC_NAMES)
    rise = {g: rise_step(*_series(accuracy, g)) for g in [*real_ops, "global"]}
    # a control's accuracy never rises: correlate it from where the real groups' mean rises
    real_mean = (
        accuracy.filter(pl.col("task").is_in(real_ops))
        .group_by("step")
        .agg(pl.col("accuracy").mean())
        .sort("step")
    )
    for c in control_ops:
        rise[c] = rise_step(real_mean["step"].to_numpy(), real_mean["accuracy"].to_numpy())
    table1_rise = pl.concat(
        [
            _own(
                correlate(metrics.filter(pl.col("group") == g), accuracy, from_step=s, n_boot=0),
                [g],
                METRIC_NAMES,
            )
            for g, s in rise.items()
        ]
    )
    validation = validate(
        metrics,
        accuracy.filter(pl.col("task") != "global"),
        sample_accuracy=toy.sample_accuracy,
        samples=toy.samples,
        groups=real_ops,
        controls=control_ops,
        metric_names=CONTROLLED,
    )
    view_frames: dict[str, pl.DataFrame] = {}
    if views:
        specs: dict[str, dict[str, Any]] = {
            "tau=0.5": {"tau": 0.5},
            "tau=0.8": {"tau": 0.8},
            f"top-{max(1, toy.config.model.top_k)} experts": {"top_k": toy.config.model.top_k},
            "all training samples": {"memorized_only": False},
            "per layer": {"per_layer": True},
        }
        for name, kwargs in specs.items():
            m = analyze(
                st,
                onsets=onsets,
                groups=("global", "domain"),
                n_boot=0,
                replicates=0,
                baselines=False,
                progress=False,
                **kwargs,
            )
            wanted = sorted(
                {x for x in m["metric"].unique() if x.startswith("distance")} | {"consistency"}
            )
            view_frames[name] = pl.concat(
                [
                    _own(
                        correlate(m.filter(pl.col("group") == g), accuracy, from_step=s, n_boot=0),
                        [g],
                        wanted,
                    )
                    for g, s in rise.items()
                ]
            )
    return ToyAnalysis(
        memorization=memorization,
        summary=memorization_summary(onsets, toy.samples),
        table1=table1,
        table1_rise=table1_rise,
        rise_steps=rise,
        validation=validation,
        views=view_frames,
        delays=log_delays(toy.log),
        sample_delays=sample_delays(toy, onsets, last_step, pair=pair),
        routing=routing_shape(st),
        accuracy=accuracy,
        log=toy.log,
        metrics=metrics,
        groups=groups,
        controls=control_ops,
    )


def _is_control(operation: str) -> bool:
    from grokviz.toy.arithmetic.tasks import OPERATIONS

    return OPERATIONS[operation].control


def _series(accuracy: pl.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray]:
    part = accuracy.filter(pl.col("task") == task).sort("step")
    return part["step"].to_numpy(), part["accuracy"].to_numpy()
