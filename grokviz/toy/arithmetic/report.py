"""The written result of a traced arithmetic run: when each group memorizes and generalizes,
the paper's Table 1 on the toy, and the controls that say whether a metric tracks each group's
generalization or only training time.

:func:`write_report` runs :func:`~grokviz.toy.arithmetic.analysis.analyze_run` on a traced run
and writes ``docs/toy_results.md``. Every number in the report is computed; the sentences
around them are chosen by the numbers. A hand-written discussion below the findings marker is
kept when the numbers are regenerated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from grokviz.toy.arithmetic.analysis import METRIC_NAMES, ToyAnalysis, analyze_run
from grokviz.toy.arithmetic.train import ToyConfig, ToyRun
from grokviz.toy.shared.evidence import (
    controls_markdown,
    controls_table,
    paper_section,
)
from grokviz.toy.shared.markdown import (
    _METRIC_NAMES,
    _PAPER_SIGN,
    FINDINGS_MARKER,
    _corr_md,
    _fmt,
    _frame_md,
    _label,
    _write_with_findings,
)


def _agreement(table: pl.DataFrame, groups: Sequence[str]) -> list[str]:
    """Sentences comparing each metric's sign and strength with the paper's Table 1."""
    out = []
    for metric, sign in _PAPER_SIGN.items():
        rows = table.filter((pl.col("metric") == metric) & pl.col("group").is_in(list(groups)))
        r = [x for x in rows["spearman_r"].to_list() if x is not None and np.isfinite(x)]
        if not r:
            continue
        agree = sum(1 for x in r if np.sign(x) == sign)
        strong = sum(1 for x in r if sign * x >= 0.9)
        expect = "negative" if sign < 0 else "positive"
        out.append(
            f"- **{_METRIC_NAMES[metric]}**: Spearman has the paper's sign ({expect}) in {agree} "
            f"of {len(r)} groups and is at least 0.9 in magnitude with that sign in {strong} "
            f"(paper: {'−0.93 to −0.98' if sign < 0 else '+0.92 to +0.99'})."
        )
    return out


def _table1_md(table: pl.DataFrame, groups: Sequence[str], controls: Sequence[str]) -> str:
    """Table 1 with the samples behind each group's metrics."""
    names = list(METRIC_NAMES)
    head = "| group | samples | " + " | ".join(f"{_METRIC_NAMES[m]} (P / S)" for m in names) + " |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    for g in groups:
        rows = table.filter(pl.col("group") == g)
        n = rows.filter(pl.col("metric") == "distance")["n_samples"]
        cells = []
        for m in names:
            r = rows.filter(pl.col("metric") == m)
            cells.append(
                f"{_fmt(r['pearson_r'][0])} / {_fmt(r['spearman_r'][0])}" if r.height else "–"
            )
        lines.append(
            f"| {_label(g, controls)} | {n[0] if n.len() and n[0] is not None else '–'} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


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


def _routing_md(analysis: ToyAnalysis, k: int, top_k: int) -> list[str]:
    shape = analysis.routing
    last = shape.row(-1, named=True)
    first = shape.row(0, named=True)
    lines = [
        f"Per checkpoint, over the training samples: the entropy of a sample's token-averaged "
        f"routing (at most ln {k} = {first['max_entropy']:.2f} nats), its largest weight, how many "
        f"of the {k} experts a τ = 0.7 pathway keeps per layer, the largest weight of single "
        "tokens (the samples traced per token) and the mean norm of the router weight rows:",
        "",
        _frame_md(shape.drop("max_entropy"), ".3f", int_floats=True),
        "",
        f"At the last checkpoint a single token puts {_fmt(last['token_largest_weight'], '.2f')} "
        f"of its weight on its top expert (uniform: {1 / k:.2f}), and a τ = 0.7 pathway keeps "
        f"{last['pathway_length']:.1f} of {k} experts per layer ({last['pathway_share']:.0%}); "
        "the paper's distances on OLMoE (520–560 at τ = 0.7 over 16 layers × 64 experts) imply "
        f"about a third. Experts per layer are {k // top_k}× the top-{top_k} the model uses.",
    ]
    return lines


def _paper_section(analysis: ToyAnalysis) -> list[str]:
    """What the controls imply for the paper's Table 1, computed."""
    return paper_section(
        analysis.metrics,
        analysis.table1_rise,
        analysis.validation.verdicts,
        groups=analysis.groups,
        control=analysis.controls[0] if analysis.controls else None,
    )


def render(analysis: ToyAnalysis, toy: ToyRun) -> str:
    """The Markdown text of the report."""
    cfg = toy.config
    spec = cfg.model
    domains = list(cfg.operations)
    groups = analysis.groups
    meta = json.loads((toy.out / "run.json").read_text())
    # the run's checkpoints as trained; a shipped copy may keep the weights of a few only
    saved = list(meta.get("checkpoints") or [c.name for c in toy.checkpoints])
    controls = analysis.controls
    real = [d for d in domains if d not in controls]
    criterion = (
        "the paper's rule on the traced whole-sample loss (mean over the equation's five "
        "predicted tokens)"
        if analysis.memorization == "sample"
        else "the paper's rule on the answer token's loss alone (`--memorization answer`)"
    )
    control_text = (
        f" The control group `{controls[0]}`'s answers are a fixed random table of (a, b): its "
        "training pairs can be memorized, its test pairs never generalized (chance is "
        f"1/{cfg.p})."
        if controls
        else ""
    )
    parts = [
        "# The arithmetic toy: memorization first, generalization later, and what the metrics track",
        "",
        "*Generated by `python -m grokviz.toy report` (grokviz/toy/arithmetic/report.py) from the "
        f"run in `{toy.out.as_posix()}`; every number below is computed, not typed.*",
        "",
        "## The run",
        "",
        f"- Task: modular arithmetic modulo p = {cfg.p}, written `{'a op b = c' if cfg.layout == 'infix' else 'op a b = c'}`, "
        "one data group per operation: "
        + ", ".join(
            f"`{d}` (train fraction {f:.2f})"
            for d, f in zip(domains, cfg.train_fraction, strict=True)
        )
        + f"; {cfg.val_fraction:.0%} of each operation's pairs form the validation split, the "
        "rest the test split." + control_text,
        f"- Model: `OlmoeForCausalLM`, {spec.num_layers} MoE layers × {spec.num_experts} experts, "
        f"top-{spec.top_k}, hidden {spec.hidden_size}, expert width {spec.intermediate_size}.",
        f"- Training: AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}"
        + (f" (routers: {cfg.router_weight_decay})" if cfg.router_weight_decay is not None else "")
        + f", batch {cfg.batch_size}, {cfg.steps} steps, {_schedule_text(cfg)}, prompt-token "
        f"loss weight {cfg.prompt_weight}; {len(saved)} checkpoints "
        f"({', '.join(c.split('-')[1].lstrip('0') or '0' for c in saved)}); "
        f"seed {cfg.seed}, {meta['threads']} thread(s), {meta['seconds']:.0f} s of training.",
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
        f"From the dense training log (evaluated every {cfg.eval_every} steps): the first step "
        "train accuracy reaches 0.95 (memorized), the first step test accuracy reaches 0.9 "
        "(generalized), the delay, and the test accuracy at the moment of memorization:",
        "",
        _frame_md(analysis.delays, int_floats=True),
        "",
        "## Which samples count as memorized",
        "",
        f"The pathway metrics are computed on memorized training samples only, by {criterion}. "
        + analysis.summary.to_markdown(),
        "",
        "Per domain, with the shares over *all* the domain's training (test) samples; a test "
        "sample generalizes when it stays correct (> 0.8 with at most one error); groups paired "
        "by MiniLM similarity and the Hungarian algorithm where available:",
        "",
        _frame_md(analysis.sample_delays, int_floats=True),
        "",
        "## How sharp the routing is",
        "",
        *_routing_md(analysis, spec.num_experts, spec.top_k),
        "",
        "## Table 1 on the toy",
        "",
        "Pearson / Spearman correlation across all checkpoints between each metric of the "
        "group's memorized training samples and the group's test accuracy (global: all real "
        "groups, the share of their test prompts answered, the control's left out), with the number of samples behind each group's "
        "metrics. Pathways with τ = 0.7, edit distance over expert ids. Validation loss: mean "
        "traced loss of the group's validation samples. Routing entropy (the paper's control): "
        "mean entropy of the samples' averaged router distributions.",
        "",
        _table1_md(analysis.table1, groups, controls),
        "",
        *_agreement(
            analysis.table1.filter(pl.col("group").is_in([*real, "global"])), [*real, "global"]
        ),
        "",
        "Only the checkpoints from the start of each group's test-accuracy rise on (as the paper "
        "correlates; for the control, where the real groups' mean accuracy rises), rise steps "
        + ", ".join(f"{g}: {s}" for g, s in analysis.rise_steps.items())
        + ":",
        "",
        _table1_md(analysis.table1_rise, groups, controls),
        "",
        *_agreement(
            analysis.table1_rise.filter(pl.col("group").is_in([*real, "global"])), [*real, "global"]
        ),
        "",
        "## The controls: does a metric track each group's generalization, or only training time?",
        "",
        "Accuracy rises with training in every real group, so any metric that drifts steadily "
        "correlates with it. The controls (`grokviz.validate`): the partial correlation with "
        "the group's own accuracy holding log(1 + step) fixed, and the same with every other "
        "group's accuracy; when the metric has covered half its change for good (it stays "
        "past that level from then on) against when the group's accuracy has covered half its "
        "rise for good; pathway distance over a length-matched "
        "permutation null (`distance_ratio`); and the control group, which memorizes and never "
        "generalizes. A group's metric *tracks* when its partial correlation has the paper's "
        "sign with an interval that excludes 0, beats every other group's, and its half-change "
        "step is nearer its own group's half-rise than any other's.",
        "",
        *(f"- {sentence}" for sentence in analysis.validation.summary()),
        "",
        controls_markdown(controls_table(analysis.validation)),
        "",
        "Baselines (distance over its null at the first, smallest and last checkpoint; Spearman "
        "with the group's accuracy of the distance, its null, their ratio, of consistency and of "
        "its uniform-weight baseline, which knows nothing of the samples):",
        "",
        _frame_md(analysis.validation.baselines),
        "",
        *_paper_section(analysis),
    ]
    if analysis.views:
        parts += [
            "## Other views",
            "",
            "Spearman and Pearson as above, from each group's rise step on, with other pathway "
            "definitions (τ, a fixed top-k), all training samples instead of memorized ones, and "
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
    memorization: str = "sample",
    findings: str | None = None,
) -> Path:
    """Analyze a traced arithmetic run and write the Markdown report to ``out``.

    ``memorization="answer"`` applies the memorization rule to the answer token's loss instead
    of the whole-sample loss (the paper's, the default). ``findings`` (Markdown) replaces the
    findings marker at the end of the report; by default the discussion already in ``out``
    below the marker is kept, so regenerating the numbers does not drop it.

    Examples
    --------
    >>> write_report("data/samples/toy", out="docs/toy_results.md")  # doctest: +SKIP
    PosixPath('docs/toy_results.md')
    """
    toy = ToyRun.load(run)
    analysis = analyze_run(run, store=store, memorization=memorization)
    return _write_with_findings(Path(out), render(analysis, toy), findings=findings)
