"""The written result of a one-pass toy LM run: grokviz's analysis of it, rendered as Markdown.

:func:`analyze_lm` (in :mod:`grokviz.toy.lm.analysis`, re-exported here with
:class:`LMAnalysis` and :func:`timing_table`) runs the paper's analysis on a run written by
:func:`~grokviz.toy.lm.train_lm` and traced by :func:`~grokviz.toy.runs.trace_run`: test accuracy
per domain, when training loss settles against when test accuracy rises, the per-sample
memorization and generalization onsets, and Table 1 (Pearson / Spearman of pathway distance,
consistency, losses and routing entropy against test accuracy) under a few choices of checkpoints
and pathways. :func:`render_lm` turns the numbers into Markdown and :func:`write_lm_report` writes
it (the shipped ``docs/toy_lm.md``); the Markdown helpers it shares with the first toy's report
are in :mod:`grokviz.toy.shared.markdown`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from grokviz.toy.lm.analysis import LMAnalysis, analyze_lm
from grokviz.toy.lm.analysis import _onsets as _onsets
from grokviz.toy.lm.analysis import timing_table as timing_table
from grokviz.toy.lm.train import LMRun

# The analysis and the shared helpers moved out; the names stay importable from here.
from grokviz.toy.shared.curves import _first as _first
from grokviz.toy.shared.curves import _first_from as _first_from
from grokviz.toy.shared.curves import _rise_step as _rise_step
from grokviz.toy.shared.curves import _val_loss as _val_loss
from grokviz.toy.shared.evidence import controls_markdown, controls_table
from grokviz.toy.shared.markdown import (
    _METRIC_NAMES,
    _PAPER_SIGN,
    FINDINGS_MARKER,
    _corr_md,
    _fmt,
    _frame_md,
    _write_with_findings,
)


def _agreement(table: pl.DataFrame, groups: list[str]) -> list[str]:
    out = []
    for metric, sign in _PAPER_SIGN.items():
        rows = table.filter((pl.col("metric") == metric) & pl.col("group").is_in(groups))
        r = [x for x in rows["spearman_r"].to_list() if x is not None and math.isfinite(x)]
        same = sum(1 for x in r if x * sign > 0)
        strong = sum(1 for x in r if x * sign >= 0.9)
        expect = "negative" if sign < 0 else "positive"
        out.append(
            f"- {_METRIC_NAMES[metric]}: Spearman has the paper's sign ({expect}) in {same} of "
            f"{len(r)} groups with a value, and is at least 0.9 in size with that sign in {strong}."
        )
    return out


def _timing_sentences(timing: pl.DataFrame) -> list[str]:
    out = []
    for row in timing.iter_rows(named=True):
        d, settled, half = row["domain"], row["loss_settled_step"], row["test_half_step"]
        if row["test_max"] - row["test_first"] < 0.1:
            what = f"test accuracy never rose by 0.1 (max {row['test_max']:.2f})"
        elif settled is None or half is None:
            what = "the order of loss settling and test rise is undefined"
        elif settled < half:
            what = (
                f"training loss settled (step {settled}) **before** test accuracy was half-way up "
                f"(step {half})"
            )
        else:
            what = (
                f"test accuracy was half-way up (step {half}) **before or as** training loss "
                f"settled (step {settled})"
            )
        out.append(
            f"- `{d}`: {what}; test accuracy {row['test_first']:.2f} → max {row['test_max']:.2f}, "
            f"last {row['test_last']:.2f}; answer accuracy on training documents at the end "
            f"{row['train_answer_last']:.2f}."
        )
    return out


def _accuracy_md(lm: LMRun, analysis: LMAnalysis) -> str:
    wide = (
        analysis.accuracy.pivot(on="task", index="step", values="accuracy")
        .sort("step")
        .with_columns(
            documents=(pl.col("step") * lm.config.batch_size).clip(
                upper_bound=len(analysis.domains) * lm.config.docs_per_domain
            )
        )
    )
    train_loss = (
        lm.log.filter(pl.col("split") == "train")
        .group_by("step")
        .agg(pl.col("loss").mean().alias("train_loss"))
    )
    wide = wide.join(train_loss, on="step", how="left")
    order = ["step", "documents", *analysis.domains, "global", "train_loss"]
    return _frame_md(wide.select([c for c in order if c in wide.columns]))


def _view_cells(table: pl.DataFrame, metric: str, groups: list[str]) -> str:
    cells = []
    for group in groups:
        row = table.filter((pl.col("group") == group) & (pl.col("metric") == metric))
        if row.height:
            cells.append(f"{group} {_fmt(row['pearson_r'][0])} / {_fmt(row['spearman_r'][0])}")
    return f"{_METRIC_NAMES[metric]} (P / S) " + ", ".join(cells or ["–"])


def _shape_sentences(analysis: LMAnalysis) -> list[str]:
    """What the routing-shape table says about the direction of the distance."""
    shape = analysis.routing.sort("step")
    largest = shape["largest_weight"].to_list()
    length = shape["pathway_length"].to_list()
    steps = shape["step"].to_list()
    peak = max(range(len(largest)), key=largest.__getitem__)
    views = [analysis.table1["without step 0"], *analysis.views.values()]
    dist = pl.concat(
        [v.filter(pl.col("metric") == "distance") for v in views], how="diagonal_relaxed"
    )
    rho = [r for r in dist["spearman_r"].to_list() if r is not None and math.isfinite(r)]
    up = sum(r > 0 for r in rho)
    out = [
        f"- Across the views above (without step 0), the distance's Spearman correlation with "
        f"test accuracy is positive in {up} of {len(rho)} (group, view) cells; the paper's "
        "sign is negative.",
        f"- The token-averaged router distributions are most peaked at step {steps[peak]} "
        f"(largest weight {largest[peak]:.3f}, pathways of {length[peak]:.1f} experts per "
        f"layer) and end at {largest[-1]:.3f} ({length[-1]:.1f} experts per layer).",
    ]
    if largest[-1] < largest[peak] and length[-1] > length[peak]:
        out.append(
            "  After that peak they flatten towards uniform while test accuracy keeps rising, so "
            "pathways get longer and differ in more places: the distance grows with accuracy."
        )
        token = shape["token_largest_weight"].to_list()
        norm = shape["router_row_norm"].to_list()
        if token[peak] is not None and token[-1] is not None:
            sharper = token[-1] > token[peak]
            out.append(
                f"  Single tokens' routing (the documents with per-token traces) goes from a "
                f"largest weight of {token[peak]:.3f} at step {steps[peak]} to {token[-1]:.3f}: "
                + (
                    "tokens route more sharply while their average flattens, so the flattening "
                    "comes from averaging differently-routed tokens."
                    if sharper
                    else "tokens themselves route less sharply, so the flattening is not an "
                    "artefact of averaging over a document's tokens."
                )
            )
        if norm[-1] > norm[peak]:
            out.append(
                f"  The router rows grow meanwhile (mean norm {norm[peak]:.2f} → {norm[-1]:.2f}), "
                "so the flatter routing does not come from weight decay shrinking the routers; "
                "its cause is not established here."
            )
    out.append("")
    return out


def _series_md(analysis: LMAnalysis, group: str) -> str:
    """The metrics of one group over the checkpoints, next to its test accuracy."""
    names = ["distance", "consistency", "entropy", "loss", "val_loss"]
    metrics = analysis.metrics.filter(
        (pl.col("group") == group) & pl.col("metric").is_in(names)
    ).pivot(on="metric", index="step", values="value")
    acc = analysis.accuracy.filter(pl.col("task") == group).select(
        "step", pl.col("accuracy").alias("test_accuracy")
    )
    wide = acc.join(metrics, on="step", how="left").sort("step")
    return _frame_md(
        wide.select(["step", "test_accuracy", *(n for n in names if n in wide.columns)])
    )


def render_lm(analysis: LMAnalysis, lm: LMRun) -> str:
    """The Markdown text of the report of a traced one-pass run."""
    cfg, spec = lm.config, lm.config.model
    meta = json.loads((lm.out / "run.json").read_text())
    groups = [*analysis.domains, "global"]
    domains = analysis.domains
    parts = [
        "# A one-pass toy LM: pretraining on a generated multi-domain corpus",
        "",
        "*Generated by `grokviz.toy.lm.report.write_lm_report` from a run of "
        "`python -m grokviz.toy train --toy lm`; every number below is computed, and the "
        "sentences around them are chosen by the numbers.*",
        "",
        "## The run",
        "",
        f"- Corpus (`grokviz/toy/lm/corpus.py`): {cfg.docs_per_domain} training documents per "
        f"domain ({', '.join(domains)}), shuffled together and seen **once** each "
        f"({meta['steps']} steps of {cfg.batch_size}). Test tasks: `arithmetic` and `code` "
        f"hold out the same {cfg.held_out:.0%} of the (operation, a, b) problems (never seen in "
        f"either domain), `facts` {cfg.held_out:.0%} of the cities (which then appear in "
        "training only as atomic facts, never applied to a person)"
        + (
            f"; the control `{analysis.controls[0]}` holds out {cfg.held_out:.0%} of its pairs, "
            "whose answers are random draws like its training pairs' (memorizable, never "
            "generalizable)"
            if analysis.controls
            else ""
        )
        + f". {cfg.test_per_domain} test prompts, {cfg.val_per_domain} "
        f"validation documents and {cfg.tracked_per_domain} tracked training documents per "
        "domain.",
        f"- Model: `OlmoeForCausalLM`, {spec.num_layers} MoE layers × {spec.num_experts} experts, "
        f"top-{spec.top_k}, hidden {spec.hidden_size}, expert width {spec.intermediate_size}; "
        f"AdamW lr {cfg.lr} (warmup {cfg.warmup} steps, then cosine to "
        f"{cfg.final_lr_fraction}×), weight decay {cfg.weight_decay}"
        + (f" (routers: {cfg.router_weight_decay})" if cfg.router_weight_decay is not None else "")
        + f"; seed {cfg.seed}; {meta['threads']} thread(s), "
        f"{meta['seconds']:.0f} s of training wall time.",
        "- Reproduce: `python -m grokviz.toy train --toy lm --out /tmp/lmtoy --report "
        "docs/toy_lm.md` "
        "(trains, traces into `/tmp/lmtoy/trace`, writes this file). Training is deterministic "
        "for a seed and thread count: seeded corpus, order and initialisation, deterministic "
        "kernels, a fixed number of threads.",
        "- Test accuracy: the answer (the document's last word, one token) is the argmax after "
        "the prompt. Training loss: mean next-token loss of the tracked training documents, "
        "most of whose tokens (names, numbers, variables) are random draws the model cannot "
        "predict, so it has a floor well above 0.",
        "",
        "## Test accuracy over checkpoints",
        "",
        _accuracy_md(lm, analysis),
        "",
        "## Does training loss settle before test accuracy rises?",
        "",
        f"From the training log (evaluated every {cfg.eval_every} steps): the step from which "
        "the tracked training documents' mean loss stays within 10% of its total drop, and the "
        "steps at which test accuracy covered half and 90% of its rise.",
        "",
        _frame_md(analysis.timing),
        "",
        *_timing_sentences(analysis.timing),
        "",
        "The paper's per-sample view on the traced checkpoints, "
        + (
            "memorization by the whole document's loss (the paper's rule). "
            if analysis.memorization == "sample"
            else "memorization by the last word's loss alone (`--memorization answer`). "
        )
        + analysis.summary.to_markdown(),
        "",
        "Per domain (shares over all tracked training documents and test prompts; a test "
        "prompt generalizes from the checkpoint after which it stays correct):",
        "",
        _frame_md(analysis.onsets),
        "",
        "## Table 1 on the one-pass toy",
        "",
        "Pearson / Spearman correlation across checkpoints between each metric of a group's "
        "memorized training documents and the group's test accuracy (global: all domains, "
        "overall accuracy). Pathways with τ = 0.7, edit distance over expert ids. Validation "
        "loss: mean traced loss of the domain's validation documents. The paper reports "
        "distance −0.93 to −0.98 and consistency +0.92 to +0.99.",
        "",
    ]
    if not analysis.memorized_only:
        parts += [
            "**No tracked training document met the memorization rule before the last "
            "checkpoint, so the metrics below are over all tracked training documents.**",
            "",
        ]
    for name, table in analysis.table1.items():
        parts += [f"### {name}", ""]
        if name.startswith("from the start"):
            parts += [
                "Rise steps: "
                + ", ".join(f"{g} {s}" for g, s in analysis.rise_steps.items())
                + ". A group whose accuracy is flat over these checkpoints has no correlation.",
                "",
            ]
        parts += [_corr_md(table, groups), "", *_agreement(table, groups), ""]
    parts += [
        "### Other pathway choices",
        "",
        "Distance and consistency against test accuracy without step 0, with other thresholds, "
        "a fixed top-2 pathway, and all tracked training documents instead of memorized ones:",
        "",
    ]
    for name, table in analysis.views.items():
        parts.append(f"- {name}: " + "; ".join(_view_cells(table, m, groups) for m in _PAPER_SIGN))
    if analysis.validation is not None:
        parts += [
            "",
            "## The controls",
            "",
            "Test accuracy here is not monotone in training time (it peaks and falls back in "
            "some domains), which makes a metric that merely drifts with time easier to tell "
            "from one that follows accuracy. The controls of `grokviz.validate`: partial "
            "correlation with the domain's own accuracy holding log(1 + step) fixed (and with "
            "the other domains' accuracy), when the metric covers half its change against when "
            "accuracy covers half its rise, distance over its length-matched null, and the "
            "random-answer control domain, which memorizes and never generalizes.",
            "",
            *(f"- {sentence}" for sentence in analysis.validation.summary()),
            "",
            controls_markdown(controls_table(analysis.validation)),
            "",
            _frame_md(analysis.validation.baselines),
        ]
    shape = analysis.routing
    parts += [
        "",
        "## The metrics themselves",
        "",
        "The global group's series (memorized training documents of all domains; loss and "
        "validation loss as above; entropy of the averaged router distributions):",
        "",
        _series_md(analysis, "global"),
        "",
        f"How peaked routing is: the tracked training documents' token-averaged router "
        f"distributions over {lm.config.model.num_experts} experts (uniform would be "
        f"{1 / lm.config.model.num_experts:.3f} per expert): their mean largest weight and "
        "pathway length per layer; the largest weight of single tokens (only the few "
        "documents traced per token); and the mean norm of the router weight rows:",
        "",
        _frame_md(shape, ".3f"),
        "",
        *_shape_sentences(analysis),
        FINDINGS_MARKER,
        "",
    ]
    return "\n".join(parts)


def write_lm_report(
    run: str | Path,
    path: str | Path = "docs/toy_lm.md",
    *,
    store: str | Path | None = None,
    memorization: str = "sample",
) -> Path:
    """Analyze a traced one-pass run and write its Markdown report to ``path``.

    Trace the run first (:func:`~grokviz.toy.runs.trace_run`). The report gives per-domain test accuracy over the
    checkpoints, whether training losses settle before test accuracy rises, and Pearson /
    Spearman of pathway distance, consistency, training and validation loss and routing
    entropy against test accuracy per domain.

    Examples
    --------
    >>> write_lm_report("/tmp/lmtoy", "docs/toy_lm.md")  # doctest: +SKIP
    PosixPath('docs/toy_lm.md')
    """
    lm = LMRun.load(run)
    text = render_lm(analyze_lm(run, store=store, memorization=memorization), lm)
    return _write_with_findings(Path(path), text, end="\n")
