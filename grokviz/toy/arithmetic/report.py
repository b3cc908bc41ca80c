"""The written result of a traced toy run: the paper's Table 1 and each group's grokking delay.

:func:`trace_run` (from :mod:`grokviz.toy.shared.tracing`, re-exported here) traces every checkpoint of
a run over its samples into a trace store; :func:`write_report` runs grokviz's analysis on that
store and writes ``docs/toy_results.md``:

- the memorization-to-generalization delay of each operation, from the dense training log and
  from the paper's per-sample onsets;
- Table 1 on the toy: Pearson and Spearman correlation across checkpoints of the average pathway
  distance, pathway consistency, training loss and validation loss with test accuracy, per group;
- the same under other views (pathway threshold tau, single layers, all training samples rather
  than memorized ones, only checkpoints after test accuracy starts rising), to see where the toy
  agrees with the paper and where it does not.

Every number in the report is computed here; the prose around them is chosen by the numbers.
The Markdown helpers shared with the LM report are in :mod:`grokviz.toy.shared.markdown`, the curve
readings (rise step, validation loss) in :mod:`grokviz.toy.shared.curves`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from grokviz.schema import METRICS, conform
from grokviz.toy.arithmetic.train import ToyConfig, ToyRun

# Moved to the modules both toy reports share; the names stay importable from here.
from grokviz.toy.shared.curves import _first, _rise_step, _val_loss
from grokviz.toy.shared.markdown import (
    _METRIC_NAMES,
    _PAPER_SIGN,
    FINDINGS_MARKER,
    _corr_md,
    _fmt,
    _frame_md,
    _write_with_findings,
)

# --- delays ------------------------------------------------------------------------------------


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


def sample_delays(toy: ToyRun, store: Any) -> pl.DataFrame | None:
    """The paper's per-sample onsets: median memorization and generalization step per domain,
    and the Hungarian pairing of ``Pretrain@t*`` with ``Test@t#`` groups (None if unavailable)."""
    from grokviz.metrics import generalization_onsets, memorization_onsets, pair_groups

    samples = toy.samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = memorization_onsets(store.losses(), samples)
    gen = generalization_onsets(toy.sample_accuracy, samples)
    last = int(store.losses()["step"].max())
    early = pl.col("onset_step") < last  # memorized before the last checkpoint (the paper's count)
    summary = (
        mem.group_by("domain")
        .agg(
            pl.col("eps").first(),
            early.mean().alias("memorized_before_T"),
            pl.col("onset_step").filter(early).median().alias("median_memorization_step"),
        )
        .join(
            gen.group_by("domain").agg(
                (pl.col("onset_step") < last).mean().alias("generalized_before_T"),
                pl.col("onset_step")
                .filter(pl.col("onset_step") < last)
                .median()
                .alias("median_generalization_step"),
            ),
            on="domain",
        )
    )
    try:
        pairs = pair_groups(mem, gen, samples).pairs
    except ImportError:
        return summary.sort("domain")
    paired = pairs.group_by("domain").agg(
        pl.len().alias("paired_groups"), pl.col("delay").median().alias("median_paired_delay")
    )
    return summary.join(paired, on="domain", how="left").sort("domain")


# --- correlations ------------------------------------------------------------------------------


def _table(corr: pl.DataFrame, groups: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
    """Pearson / Spearman of each metric with the group's own test accuracy."""
    rows = corr.filter(
        pl.col("group").is_in(list(groups))
        & (pl.col("task") == pl.col("group"))
        & pl.col("metric").is_in(list(metrics))
    )
    return rows.select("group", "metric", "pearson_r", "spearman_r", "n").sort("group", "metric")


@dataclass
class ToyAnalysis:
    """The numbers behind the report."""

    table1: pl.DataFrame
    table1_rise: pl.DataFrame
    rise_steps: dict[str, int]
    views: dict[str, pl.DataFrame]
    delays: pl.DataFrame
    sample_delays: pl.DataFrame | None
    accuracy: pl.DataFrame
    log: pl.DataFrame
    metrics: pl.DataFrame


def _from_rise(
    metrics: pl.DataFrame, accuracy: pl.DataFrame, rise: dict[str, int], names: Sequence[str]
) -> pl.DataFrame:
    """Table 1 rows of each group over the checkpoints from its own rise step on."""
    from grokviz.metrics import correlate

    parts = [
        _table(correlate(metrics.filter(pl.col("group") == g), accuracy, from_step=s), [g], names)
        for g, s in rise.items()
    ]
    return pl.concat(parts)


def analyze_run(
    run: str | Path, *, store: str | Path | None = None, progress: bool = False
) -> ToyAnalysis:
    """Run grokviz's analysis on a traced toy run (see the module docstring).

    Examples
    --------
    >>> result = analyze_run("data/samples/toy")  # doctest: +SKIP
    >>> result.table1.filter(metric="distance")  # doctest: +SKIP
    """
    from grokviz.metrics import analyze, correlate
    from grokviz.store import TraceStore

    toy = ToyRun.load(run)
    st = TraceStore.open(Path(store) if store is not None else toy.out / "trace")
    domains = list(toy.config.operations)
    accuracy = toy.accuracy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = analyze(st, tau=0.7, groups=("global", "domain"), n_boot=0, progress=progress)
    val = _val_loss(st, toy.samples)
    metrics = pl.concat([base, val], how="diagonal_relaxed")
    # the "global" group follows the overall test accuracy ("all")
    acc_global = accuracy.with_columns(
        task=pl.when(pl.col("task") == "all").then(pl.lit("global")).otherwise(pl.col("task"))
    )
    groups = [*domains, "global"]
    names = ["distance", "consistency", "loss", "val_loss", "entropy"]
    global_val = (
        val.group_by("checkpoint", "step")
        .agg(pl.col("value").mean())
        .with_columns(group=pl.lit("global"), metric=pl.lit("val_loss"), ci_low=None, ci_high=None)
    )
    metrics = pl.concat(
        [metrics, conform(global_val, METRICS, name="metrics").select(list(METRICS))],
        how="diagonal_relaxed",
    )
    table1 = _table(correlate(metrics, acc_global), groups, names)

    rise = {g: _rise_step(acc_global, g) for g in groups}
    table1_rise = _from_rise(metrics, acc_global, rise, names)

    views: dict[str, pl.DataFrame] = {}
    view_specs: dict[str, dict[str, Any]] = {
        "tau=0.5": {"tau": 0.5},
        "tau=0.8": {"tau": 0.8},
        "top-2 experts": {"top_k": 2},
        "all training samples": {"memorized_only": False},
        "per layer": {"per_layer": True},
    }
    for name, kwargs in view_specs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = analyze(st, groups=("global", "domain"), n_boot=0, progress=False, **kwargs)
        wanted = sorted(
            {x for x in m["metric"].unique() if x.startswith("distance")} | {"consistency"}
        )
        views[name] = _from_rise(m, acc_global, rise, wanted)

    return ToyAnalysis(
        table1=table1,
        table1_rise=table1_rise,
        rise_steps=rise,
        views=views,
        delays=log_delays(toy.log),
        sample_delays=sample_delays(toy, st),
        accuracy=acc_global,
        log=toy.log,
        metrics=metrics,
    )


# --- the Markdown ------------------------------------------------------------------------------


def _agreement(table: pl.DataFrame, groups: Sequence[str]) -> list[str]:
    """Sentences comparing each metric's sign and strength with the paper's Table 1."""
    out = []
    for metric, sign in _PAPER_SIGN.items():
        rows = table.filter((pl.col("metric") == metric) & pl.col("group").is_in(list(groups)))
        if rows.height == 0:
            continue
        r = rows["spearman_r"].to_numpy()
        agree = int(np.sum(np.sign(r) == sign))
        strong = int(np.sum(sign * r >= 0.9))
        expect = "negative" if sign < 0 else "positive"
        out.append(
            f"- **{_METRIC_NAMES[metric]}**: Spearman has the paper's sign ({expect}) in {agree} "
            f"of {rows.height} groups and is at least 0.9 in magnitude with that sign in {strong} "
            f"(paper: {'−0.93 to −0.98' if sign < 0 else '+0.92 to +0.99'})."
        )
    return out


def _accuracy_table(analysis: ToyAnalysis, groups: Sequence[str]) -> str:
    log = analysis.log
    acc = analysis.accuracy
    steps = sorted(acc["step"].unique().to_list())
    head = "| step | " + " | ".join(f"{g} train / test" for g in groups) + " |"
    lines = [head, "|---" * (len(groups) + 1) + "|"]
    for step in steps:
        cells = []
        for g in groups:
            row = log.filter((pl.col("step") == step) & (pl.col("domain") == g))
            tr = row.filter(pl.col("split") == "train")["accuracy"]
            te = row.filter(pl.col("split") == "test")["accuracy"]
            cells.append(
                f"{_fmt(tr[0] if tr.len() else None, '.2f')} / {_fmt(te[0] if te.len() else None, '.2f')}"
            )
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _schedule_text(cfg: ToyConfig) -> str:
    """The learning-rate schedule in words, e.g. ``"warmup 50 steps, constant, then linear to 0
    over steps 3500–5500"``."""
    text = f"warmup {cfg.warmup} steps, constant"
    if cfg.decay is None or cfg.decay[0] >= cfg.steps:
        return text
    return f"{text}, then linear to 0 over steps {cfg.decay[0]}–{cfg.decay[1]}"


def render(analysis: ToyAnalysis, toy: ToyRun) -> str:
    """The Markdown text of the report."""
    cfg = toy.config
    domains = list(cfg.operations)
    groups = [*domains, "global"]
    names = ["distance", "consistency", "loss", "val_loss", "entropy"]
    meta = json.loads((toy.out / "run.json").read_text())
    spec = cfg.model
    parts = [
        "# Toy OLMoE runs: memorization first, generalization later",
        "",
        "*Generated by `python -m grokviz.toy report` (grokviz/toy/report.py) from the shipped run "
        f"in `{toy.out.as_posix()}`; every number below is computed, not typed.*",
        "",
        "## The run",
        "",
        f"- Task: modular arithmetic modulo p = {cfg.p}, one data group per operation: "
        + ", ".join(
            f"`{d}` (train fraction {f:.2f})"
            for d, f in zip(domains, cfg.train_fraction, strict=True)
        )
        + f"; {cfg.val_fraction:.0%} of each operation's pairs form the validation split, the rest"
        " the test split.",
        f"- Model: `OlmoeForCausalLM`, {spec.num_layers} MoE layers × {spec.num_experts} experts, "
        f"top-{spec.top_k}, hidden {spec.hidden_size}, expert width {spec.intermediate_size}.",
        f"- Training: AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}, batch {cfg.batch_size}, "
        f"{cfg.steps} steps, {_schedule_text(cfg)}, prompt-token loss weight {cfg.prompt_weight}; "
        f"{len(toy.checkpoints)} checkpoints "
        f"({', '.join(c.name.split('-')[1].lstrip('0') or '0' for c in toy.checkpoints)}); "
        f"seed {cfg.seed}, {meta['threads']} thread(s), {meta['seconds']:.0f} s wall time.",
        "- Reproduce: `python -m grokviz.toy train --out runs/toy`, then "
        "`python -m grokviz.toy trace --run runs/toy` and "
        "`python -m grokviz.toy report --run runs/toy --out toy_results.md`. Training is "
        "deterministic for a seed and thread count (seeded batches, deterministic algorithms).",
        "",
        "## Memorization, then generalization",
        "",
        "Train / test accuracy of the answer token at each checkpoint:",
        "",
        _accuracy_table(analysis, domains),
        "",
        "From the dense training log (evaluated every "
        f"{cfg.eval_every} steps): the first step train accuracy reaches 0.95 (memorized), the "
        "first step test accuracy reaches 0.9 (generalized), the delay, "
        "and the test accuracy at the moment of memorization:",
        "",
        _frame_md(analysis.delays, int_floats=True),
        "",
    ]
    if analysis.sample_delays is not None:
        parts += [
            "The paper's per-sample view (traced losses; ε chosen per domain so 20–25% of training "
            "samples are memorized before the last checkpoint, δ = 0.05; a test sample "
            "generalizes when it stays correct, > 0.8 with at most one error; groups paired by "
            "MiniLM similarity and the Hungarian algorithm where available):",
            "",
            _frame_md(analysis.sample_delays, int_floats=True),
            "",
        ]
    parts += [
        "## Table 1 on the toy",
        "",
        "Pearson / Spearman correlation across all checkpoints between each metric of the "
        "group's memorized training samples and the group's test accuracy (global: all groups, "
        "overall test accuracy). Pathways with τ = 0.7, edit distance over expert ids. "
        "Validation loss: mean traced loss of the group's validation samples. Routing entropy (the "
        "paper's control): mean entropy of the samples' averaged router distributions.",
        "",
        _corr_md(analysis.table1, groups, names),
        "",
        *_agreement(analysis.table1, groups),
        "",
        "Only the checkpoints from the start of the test-accuracy rise on (as the paper "
        "correlates), rise steps "
        + ", ".join(f"{g}: {s}" for g, s in analysis.rise_steps.items())
        + ":",
        "",
        _corr_md(analysis.table1_rise, groups, names),
        "",
        *_agreement(analysis.table1_rise, groups),
        "",
        "## Other views",
        "",
        "Spearman and Pearson as above, from each group's rise step on, with other pathway "
        "definitions (τ, a fixed top-2), all training samples instead of memorized ones, and "
        "each MoE layer's distance alone.",
        "",
    ]
    for name, table in analysis.views.items():
        metrics = sorted(table["metric"].unique().to_list())
        parts += [f"### {name}", "", _corr_md(table, groups, metrics), ""]
    parts += [FINDINGS_MARKER, ""]
    return "\n".join(parts)


def write_report(
    run: str | Path,
    *,
    store: str | Path | None = None,
    out: str | Path = "docs/toy_results.md",
    findings: str | None = None,
) -> Path:
    """Analyze a traced toy run and write the Markdown report to ``out``.

    ``findings`` (Markdown) replaces the findings marker at the end of the report; by default
    the discussion already in ``out`` below the marker is kept, so regenerating the numbers does
    not drop it.

    Examples
    --------
    >>> write_report("data/samples/toy", out="docs/toy_results.md")  # doctest: +SKIP
    PosixPath('docs/toy_results.md')
    """
    toy = ToyRun.load(run)
    text = render(analyze_run(run, store=store), toy)
    return _write_with_findings(Path(out), text, findings=findings)
