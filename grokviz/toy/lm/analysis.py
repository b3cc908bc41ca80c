"""The numbers behind a one-pass toy LM run's report: grokviz's analysis of the traced run.

:func:`analyze_lm` runs the paper's analysis on a run written by :func:`~grokviz.toy.lm.train_lm`
and traced by :func:`~grokviz.toy.runs.trace_run`: test accuracy per domain, when training loss
settles against when test accuracy rises (:func:`timing_table`), the per-sample memorization and
generalization onsets, how peaked the routing is, and Table 1 (Pearson / Spearman of pathway
distance, consistency, losses and routing entropy against test accuracy) under a few choices of
checkpoints and pathways. :mod:`grokviz.toy.lm.report` renders the result (and re-exports these
names, its public home).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.toy.lm.corpus import CONTROL_DOMAINS
from grokviz.toy.lm.train import LMRun
from grokviz.toy.shared.curves import _first, _first_from, _rise_step, _val_loss, with_global
from grokviz.toy.shared.markdown import _METRIC_NAMES


def timing_table(log: pl.DataFrame, *, loss_tol: float = 0.1) -> pl.DataFrame:
    """Per domain: when the training documents' loss settles, and when test accuracy rises.

    ``loss_settled_step`` is the first evaluation step from which the mean loss of the tracked
    training documents stays within ``loss_tol`` of its total drop above its final value;
    ``test_half_step`` / ``test_90_step`` are the first steps at which test accuracy has covered
    half / 90% of the way from its first value to its maximum.

    Examples
    --------
    >>> log = pl.DataFrame({"step": [0, 0, 10, 10, 20, 20, 30, 30], "domain": "d",
    ...     "split": ["train", "test"] * 4, "loss": [5.0, 5.0, 1.5, 3.0, 1.0, 2.0, 1.0, 2.0],
    ...     "accuracy": [0.0, 0.0, 0.5, 0.2, 1.0, 0.6, 1.0, 1.0]})
    >>> timing_table(log).select("loss_settled_step", "test_half_step", "test_90_step").row(0)
    (20, 20, 30)
    """
    rows = []
    for (domain,), part in log.sort("step").group_by(["domain"], maintain_order=True):
        train = part.filter(pl.col("split") == "train").sort("step")
        test = part.filter(pl.col("split") == "test").sort("step")
        loss, steps = train["loss"].to_numpy(), train["step"].to_numpy()
        settled = _first_from(steps, loss - loss[-1] <= loss_tol * (loss[0] - loss[-1]))
        acc, tsteps = test["accuracy"].to_numpy(), test["step"].to_numpy()
        gain = acc.max() - acc[0]
        half = _first(tsteps, acc >= acc[0] + 0.5 * gain) if gain > 0 else None
        ninety = _first(tsteps, acc >= acc[0] + 0.9 * gain) if gain > 0 else None
        rows.append(
            (
                str(domain),
                settled,
                half,
                ninety,
                float(acc[0]),
                float(acc.max()),
                float(acc[-1]),
                float(train["accuracy"][-1]),
            )
        )
    return pl.DataFrame(
        rows,
        schema={
            "domain": pl.String(),
            "loss_settled_step": pl.Int64(),
            "test_half_step": pl.Int64(),
            "test_90_step": pl.Int64(),
            "test_first": pl.Float64(),
            "test_max": pl.Float64(),
            "test_last": pl.Float64(),
            "train_answer_last": pl.Float64(),
        },
        orient="row",
    )


@dataclass
class LMAnalysis:
    """The numbers behind :func:`write_lm_report`."""

    accuracy: pl.DataFrame
    """Test accuracy per checkpoint and domain, and ``"global"``: the real domains' mean (the
    control domain left out, as from the metrics' global group)."""
    timing: pl.DataFrame
    onsets: pl.DataFrame
    """Per domain: the paper's per-sample memorization and generalization onsets."""
    summary: Any
    """:class:`grokviz.metrics.MemorizationSummary`: what the memorization rule chose."""
    memorization: str
    """``"sample"`` (the whole document's loss, the paper's) or ``"answer"`` (the last word's)."""
    table1: dict[str, pl.DataFrame]
    """Pearson / Spearman per group and metric, under a few choices of checkpoints."""
    rise_steps: dict[str, int]
    """Per group, the checkpoint where its test accuracy's rise begins."""
    views: dict[str, pl.DataFrame]
    """Distance and consistency correlations (without step 0) under other pathway choices."""
    routing: pl.DataFrame
    """Per checkpoint: how peaked routing is (:func:`grokviz.toy.shared.evidence.routing_shape`)."""
    metrics: pl.DataFrame
    memorized_only: bool
    """False when no training document met the memorization rule and all were analyzed."""
    validation: Any = None
    """:class:`grokviz.metrics.Validation`: the controls, the ``random`` domain as control."""
    domains: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)


def _onsets(lm: LMRun, onsets: pl.DataFrame, last: int) -> pl.DataFrame:
    """Per domain: training documents memorized before the last checkpoint (count and share of
    all tracked ones), test prompts generalized before it, and their median onsets."""
    from grokviz.metrics import generalization_onsets

    gen = generalization_onsets(lm.sample_accuracy, lm.samples)
    early = (pl.col("onset_step") < last).fill_null(False)  # never memorized: not early
    return (
        onsets.group_by("domain")
        .agg(
            pl.col("eps").first(),
            early.sum().alias("memorized_docs"),
            early.mean().alias("memorized_before_T"),
            pl.col("onset_step").filter(early).median().alias("median_memorization_step"),
        )
        .join(
            gen.group_by("domain").agg(
                early.mean().alias("generalized_before_T"),
                pl.col("onset_step").filter(early).median().alias("median_generalization_step"),
            ),
            on="domain",
        )
        .sort("domain")
    )


def analyze_lm(
    run: str | Path,
    *,
    store: str | Path | None = None,
    memorization: str = "sample",
    replicates: int = 100,
) -> LMAnalysis:
    """Run grokviz's analysis and its controls on a traced one-pass run (see
    :func:`~grokviz.toy.lm.report.write_lm_report`).

    ``memorization="answer"`` applies the memorization rule to the last word's loss instead of
    the whole document's (the paper's, the default); ``replicates`` resamples of each group's
    documents give the intervals over samples.

    Examples
    --------
    >>> result = analyze_lm("/tmp/lmtoy")  # doctest: +SKIP
    >>> result.table1["all checkpoints"].filter(metric="distance")  # doctest: +SKIP
    """
    from grokviz.errors import EmptyInputError, InputError
    from grokviz.metrics import (
        analyze,
        correlate,
        memorization_onsets,
        memorization_summary,
        validate,
    )
    from grokviz.store import TraceStore
    from grokviz.toy.shared.evidence import routing_shape

    if memorization not in ("sample", "answer"):
        msg = f"memorization must be 'sample' or 'answer', got {memorization!r}"
        raise InputError(msg)
    lm = LMRun.load(run)
    st = TraceStore.open(Path(store) if store is not None else lm.out / "trace")
    domains = list(lm.config.domains)
    controls = [d for d in domains if d in CONTROL_DOMAINS]
    real = [d for d in domains if d not in controls]
    # every domain has as many test prompts: the real domains' mean is the share answered
    accuracy = with_global(lm.accuracy, real)
    if memorization == "answer" and lm.answer_losses is None:
        msg = f"{lm.out} records no answer losses (a run from before they were); retrain it"
        raise InputError(msg)
    losses = st.losses() if memorization == "sample" else lm.answer_losses
    assert losses is not None
    onsets = memorization_onsets(losses, lm.samples)
    memorized_only = True
    kwargs: dict[str, Any] = {"tau": 0.7, "groups": ("global", "domain"), "n_boot": 0}
    try:
        base = analyze(st, onsets=onsets, replicates=replicates, progress=False, **kwargs)
    except EmptyInputError:  # nothing memorized (a short run): use every tracked document
        memorized_only = False
        base = analyze(
            st, onsets=onsets, memorized_only=False, replicates=replicates, progress=False, **kwargs
        )
    real_samples = lm.samples.filter(~pl.col("control").fill_null(False))
    val = pl.concat(
        [
            _val_loss(st, lm.samples),
            # the global group holds no control documents; neither does its validation loss
            _val_loss(st, real_samples, overall=True).filter(pl.col("group") == "global"),
        ]
    )
    metrics = pl.concat([base, val], how="diagonal_relaxed")
    steps = sorted(accuracy["step"].unique().to_list())
    groups = [*real, *controls, "global"]
    rise = {g: _rise_step(accuracy.filter(pl.col("task") == g)) for g in [*real, "global"]}
    # a control's accuracy never rises: correlate it from where the real domains' mean rises
    rise |= dict.fromkeys(controls, rise["global"])
    choices = {
        "all checkpoints": dict.fromkeys(groups, steps[0]),
        "without step 0": dict.fromkeys(groups, steps[min(1, len(steps) - 1)]),
        "from the start of each group's rise": {g: rise[g] for g in groups},
    }
    table1 = {}
    for name, from_steps in choices.items():
        parts = [
            correlate(metrics.filter(pl.col("group") == g), accuracy, from_step=s)
            for g, s in from_steps.items()
        ]
        table1[name] = (
            pl.concat(parts)
            .filter(
                (pl.col("task") == pl.col("group")) & pl.col("metric").is_in(list(_METRIC_NAMES))
            )
            .select("group", "metric", "pearson_r", "spearman_r", "n", "n_samples")
            .sort("group", "metric")
        )
    validation = validate(
        metrics,
        accuracy.filter(pl.col("task") != "global"),
        sample_accuracy=lm.sample_accuracy,
        samples=lm.samples,
        groups=real,
        controls=controls,
        metric_names=("distance", "distance_ratio", "consistency"),
    )
    views = {}
    view_specs: dict[str, dict[str, Any]] = {
        "tau = 0.5": {"tau": 0.5},
        "tau = 0.8": {"tau": 0.8},
        f"top-{lm.config.model.top_k} experts": {"top_k": lm.config.model.top_k},
        "all tracked training documents": {"memorized_only": False},
    }
    for name, spec in view_specs.items():
        spec = {"tau": 0.7, "memorized_only": memorized_only, **spec}
        m = analyze(
            st,
            onsets=onsets,
            groups=("global", "domain"),
            n_boot=0,
            replicates=0,
            baselines=False,
            progress=False,
            **spec,
        )
        views[name] = (
            correlate(m, accuracy, from_step=choices["without step 0"]["global"])
            .filter(
                (pl.col("task") == pl.col("group"))
                & pl.col("metric").is_in(["distance", "consistency"])
            )
            .select("group", "metric", "pearson_r", "spearman_r", "n")
        )
    return LMAnalysis(
        accuracy=accuracy,
        timing=timing_table(lm.log),
        onsets=_onsets(lm, onsets, int(losses["step"].max())),  # type: ignore[arg-type]
        summary=memorization_summary(onsets, lm.samples),
        memorization=memorization,
        table1=table1,
        rise_steps=rise,
        views=views,
        validation=validation,
        routing=routing_shape(st),
        metrics=metrics,
        memorized_only=memorized_only,
        domains=domains,
        controls=controls,
    )
