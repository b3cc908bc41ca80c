"""The written result of a one-pass toy LM run: grokviz's analysis of it, rendered as Markdown.

:func:`analyze_lm` (in :mod:`grokviz.toy.lm.analysis`, re-exported here with
:class:`LMAnalysis` and :func:`timing_table`) runs the paper's analysis on a run written by
:func:`~grokviz.toy.lm.train_lm` and traced by :func:`~grokviz.toy.runs.trace_run`: test accuracy
per domain, when training loss settles against when test accuracy rises, the per-sample
memorization and generalization onsets, and Table 1 (Pearson / Spearman of pathway distance,
consistency, losses and routing entropy against test accuracy) under a few choices of checkpoints
and pathways, and the controls of :func:`grokviz.validate` with the ``random`` domain as the
negative control. :func:`render_lm` turns the numbers into Markdown (the sentences on what the
controls show come from :mod:`grokviz.toy.lm.controls`) and :func:`write_lm_report` writes it
(the shipped ``docs/toy_lm.md``, what ``python -m grokviz.toy report`` writes for an LM run); the
Markdown helpers it shares with the first toy's report are in :mod:`grokviz.toy.shared.markdown`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from grokviz.toy.lm.analysis import LMAnalysis, analyze_lm
from grokviz.toy.lm.analysis import _onsets as _onsets
from grokviz.toy.lm.analysis import timing_table as timing_table
from grokviz.toy.lm.controls import bottom_line, dip_sentences, own_time_sentences
from grokviz.toy.lm.corpus import N_RANDOM_ANSWERS
from grokviz.toy.lm.train import LMRun

# The analysis and the shared helpers moved out; the names stay importable from here.
from grokviz.toy.shared.curves import _first as _first
from grokviz.toy.shared.curves import _first_from as _first_from
from grokviz.toy.shared.curves import _rise_step as _rise_step
from grokviz.toy.shared.curves import _val_loss as _val_loss
from grokviz.toy.shared.evidence import controls_markdown, controls_table, paper_section
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
from grokviz.toy.shared.model import ModelSpec


def _labelled(table: pl.DataFrame, controls: list[str]) -> pl.DataFrame:
    """``table`` with each control group's name marked ``(control)``, as the tables show it."""
    return table.with_columns(
        group=pl.when(pl.col("group").is_in(controls))
        .then(pl.col("group") + " (control)")
        .otherwise(pl.col("group"))
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


def _timing_sentences(timing: pl.DataFrame, controls: list[str]) -> list[str]:
    out = []
    for row in timing.iter_rows(named=True):
        d, settled, half = row["domain"], row["loss_settled_step"], row["test_half_step"]
        if d in controls:
            out.append(
                f"- `{d}` (control): its answers are random draws, so its test accuracy can only "
                f"be chance ({1 / N_RANDOM_ANSWERS:.2f}): it ends at {row['test_last']:.2f} "
                f"(max {row['test_max']:.2f}); its training loss settled at step {settled}, and "
                f"the answer accuracy on its training documents at the end is "
                f"{row['train_answer_last']:.2f}."
            )
            continue
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


def _view_cells(table: pl.DataFrame, metric: str, groups: list[str], controls: list[str]) -> str:
    cells = []
    for group in groups:
        row = table.filter((pl.col("group") == group) & (pl.col("metric") == metric))
        if row.height:
            cells.append(
                f"{_label(group, controls)} {_fmt(row['pearson_r'][0])} / "
                f"{_fmt(row['spearman_r'][0])}"
            )
    return f"{_METRIC_NAMES[metric]} (P / S) " + ", ".join(cells or ["–"])


def _shape_sentences(analysis: LMAnalysis, spec: ModelSpec) -> list[str]:
    """What the routing-shape table says about the direction of the distance."""
    shape = analysis.routing.sort("step")
    largest = shape["largest_weight"].to_list()
    length = shape["pathway_length"].to_list()
    steps = shape["step"].to_list()
    peak = max(range(len(largest)), key=largest.__getitem__)
    views = [analysis.table1["without step 0"], *analysis.views.values()]
    dist = pl.concat(
        [v.filter(pl.col("metric") == "distance") for v in views], how="diagonal_relaxed"
    ).filter(~pl.col("group").is_in(analysis.controls))
    rho = [r for r in dist["spearman_r"].to_list() if r is not None and math.isfinite(r)]
    up = sum(r > 0 for r in rho)
    k, top_k = spec.num_experts, spec.top_k
    last = shape.row(-1, named=True)
    out = [
        f"- Across the views above (without step 0), the distance's Spearman correlation with "
        f"test accuracy is positive in {up} of {len(rho)} (real group, view) cells; the paper's "
        "sign is negative.",
        f"- At the last checkpoint a single token puts {_fmt(last['token_largest_weight'], '.2f')} "
        f"of its weight on its top expert (uniform: {1 / k:.2f}), and a τ = 0.7 pathway keeps "
        f"{last['pathway_length']:.1f} of {k} experts per layer ({last['pathway_share']:.0%}); the "
        "paper's distances on OLMoE (520–560 at τ = 0.7 over 16 layers × 64 experts) imply about "
        f"a third. Experts per layer are {k // top_k}× the top-{top_k} the model uses.",
        (
            f"- The token-averaged router distributions are most peaked at step {steps[peak]} "
            f"(largest weight {largest[peak]:.3f}, pathways of {length[peak]:.1f} experts per "
            f"layer) and end at {largest[-1]:.3f} ({length[-1]:.1f} experts per layer)."
            if peak < len(steps) - 1
            else f"- The token-averaged router distributions are most peaked at the last "
            f"checkpoint (largest weight {largest[-1]:.3f}, pathways of {length[-1]:.1f} experts "
            f"per layer, from {largest[0]:.3f} and {length[0]:.1f} at step {steps[0]})."
        ),
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


def _run_md(analysis: LMAnalysis, lm: LMRun) -> list[str]:
    """The section that says what was trained, and how to train it again."""
    cfg, spec = lm.config, lm.config.model
    meta = json.loads((lm.out / "run.json").read_text())
    control = analysis.controls[0] if analysis.controls else None
    routers = []
    if cfg.router_weight_decay is not None:
        routers.append(f"routers: {cfg.router_weight_decay}")
    if cfg.norm_weight_decay is not None:
        routers.append(f"norm gains: {cfg.norm_weight_decay}")
    init = (
        f"; router weights initialised {cfg.router_init_scale}× OLMoE's"
        if cfg.router_init_scale != 1.0
        else ""
    )
    return [
        f"- Corpus (`grokviz/toy/lm/corpus.py`): {cfg.docs_per_domain} training documents per "
        f"domain ({', '.join(analysis.domains)}), shuffled together and seen **once** each "
        f"({meta['steps']} steps of {cfg.batch_size}). Test tasks: `arithmetic` and `code` "
        f"hold out the same {cfg.held_out:.0%} of the (operation, a, b) problems (never seen in "
        f"either domain), `facts` {cfg.held_out:.0%} of the cities (which then appear in "
        "training only as atomic facts, never applied to a person)"
        + (
            f"; the control `{control}` (`r3 with r7 gives q2`) holds out {cfg.held_out:.0%} of "
            "its pairs, whose answers are random draws like its training pairs': memorizable, "
            "never generalizable"
            if control
            else ""
        )
        + f". {cfg.test_per_domain} test prompts, {cfg.val_per_domain} "
        f"validation documents and {cfg.tracked_per_domain} tracked training documents per "
        "domain.",
        f"- Model: `OlmoeForCausalLM`, {spec.num_layers} MoE layers × {spec.num_experts} experts, "
        f"top-{spec.top_k} ({spec.num_experts // spec.top_k}× as many experts as each token "
        f"uses), hidden {spec.hidden_size}, expert width {spec.intermediate_size}; "
        f"AdamW lr {cfg.lr} (warmup {cfg.warmup} steps, then cosine to "
        f"{cfg.final_lr_fraction}×), weight decay {cfg.weight_decay}"
        + (f" ({', '.join(routers)})" if routers else "")
        + f"{init}; seed {cfg.seed}; {meta['threads']} thread(s), "
        f"{meta['seconds']:.0f} s of training wall time.",
        "- Reproduce: `python -m grokviz.toy train --toy lm --out runs/lm --report "
        "docs/toy_lm.md` (trains the default preset, traces into `runs/lm/trace` and writes "
        "this file), or `python -m grokviz.toy report --run runs/lm` for a run already traced. "
        "The run itself is not shipped. Training is deterministic for a seed and thread count: "
        "seeded corpus, order and initialisation, deterministic kernels, a fixed number of "
        "threads.",
        "- Test accuracy: the answer (the document's last word, one token) is the argmax after "
        "the prompt. Training loss: mean next-token loss of the tracked training documents, "
        "most of whose tokens (names, numbers, variables) are random draws the model cannot "
        "predict, so it has a floor well above 0.",
    ]


def _controls_md(analysis: LMAnalysis, lm: LMRun) -> list[str]:
    """The controls of :func:`grokviz.validate`, and what they show, in words from the numbers."""
    validation = analysis.validation
    real = [d for d in analysis.domains if d not in analysis.controls]
    control = analysis.controls[0] if analysis.controls else None
    first_step = min((s for s in analysis.accuracy["step"].to_list() if s > 0), default=None)
    lead, dips = dip_sentences(
        analysis.accuracy,
        analysis.metrics,
        [*real, "global"],
        n_test=lm.config.test_per_domain,
        controls=analysis.controls,
    )
    return [
        "## The controls: does a metric track each domain's generalization, or only training time?",
        "",
        "Test accuracy rises with training in the real domains, so any metric that drifts "
        "steadily correlates with it. The controls (`grokviz.validate`): the partial "
        "correlation with the domain's own accuracy holding log(1 + step) fixed, and the same "
        "with every other domain's accuracy; when the metric has covered half its change for "
        "good (it stays past that level from then on) against when the domain's accuracy has "
        "covered half its rise for good (with bootstrap "
        "intervals over the tracked documents); pathway distance over a length-matched "
        "permutation null (`distance_ratio`); consistency against its uniform-weight baseline"
        + (
            f"; and the control domain `{control}`, which memorizes and never generalizes"
            if control
            else ""
        )
        + ". A domain's metric *tracks* when its partial correlation has the paper's sign with "
        "an interval that excludes 0, beats every other domain's, and its half-change step is "
        "nearer its own domain's half-rise than any other's.",
        "",
        "### What they show",
        "",
        bottom_line(validation, real),
        "",
        *(
            f"- {sentence}"
            for sentence in own_time_sentences(validation, real, first_step=first_step)
        ),
        "",
        lead,
        "",
        *(f"- {sentence}" for sentence in dips),
        "",
        "### The verdicts and their numbers",
        "",
        *(f"- {sentence}" for sentence in validation.summary()),
        "",
        controls_markdown(controls_table(validation)),
        "",
        "Baselines (distance over its null at the first, smallest and last checkpoint; Spearman "
        "with the domain's accuracy of the distance, its null, their ratio, of consistency and "
        "of its uniform-weight baseline, which knows nothing of the documents):",
        "",
        _frame_md(validation.baselines),
        "",
    ]


def render_lm(analysis: LMAnalysis, lm: LMRun) -> str:
    """The Markdown text of the report of a traced one-pass run."""
    cfg = lm.config
    controls = analysis.controls
    real = [d for d in analysis.domains if d not in controls]
    groups = [*real, *controls, "global"]
    shown = [_label(g, controls) for g in groups]
    parts = [
        "# A one-pass toy LM: pretraining on a generated multi-domain corpus",
        "",
        "*Generated by `python -m grokviz.toy report` (grokviz/toy/lm/report.py) from a run of "
        "`python -m grokviz.toy train --toy lm`; every number below is computed, and the "
        "sentences around them are chosen by the numbers.*",
        "",
        "## The run",
        "",
        *_run_md(analysis, lm),
        "",
        "## Test accuracy over checkpoints",
        "",
        "Per domain, and `global`: the real domains' mean"
        + (
            f" (the control `{controls[0]}` left out; its chance is {1 / N_RANDOM_ANSWERS:.2f})"
            if controls
            else ""
        )
        + "; the training loss is the tracked training documents' mean.",
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
        *_timing_sentences(analysis.timing, controls),
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
        "memorized training documents and the group's test accuracy (global: the real domains' "
        "documents and mean accuracy; the control from where that mean rises). Pathways with "
        "τ = 0.7, edit distance over expert ids. Validation loss: mean traced loss of the "
        "domain's validation documents. The paper reports distance −0.93 to −0.98 and "
        "consistency +0.92 to +0.99.",
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
                + ", ".join(f"{_label(g, controls)} {s}" for g, s in analysis.rise_steps.items())
                + ". A group whose accuracy is flat over these checkpoints has no correlation.",
                "",
            ]
        parts += [
            _corr_md(_labelled(table, controls), shown),
            "",
            *_agreement(table, [*real, "global"]),
            "",
        ]
    parts += [
        "### Other pathway choices",
        "",
        "Distance and consistency against test accuracy without step 0, with other thresholds, "
        f"a fixed top-{cfg.model.top_k} pathway (the experts the model uses), and all tracked "
        "training documents instead of memorized ones:",
        "",
    ]
    for name, table in analysis.views.items():
        parts.append(
            f"- {name}: " + "; ".join(_view_cells(table, m, groups, controls) for m in _PAPER_SIGN)
        )
    parts.append("")
    if analysis.validation is not None:
        parts += _controls_md(analysis, lm)
        rise = analysis.table1["from the start of each group's rise"]
        parts += paper_section(
            analysis.metrics,
            rise,
            analysis.validation.verdicts,
            groups=rise["group"].unique(maintain_order=True).to_list(),
            control=analysis.controls[0] if analysis.controls else None,
            noun="domain",
        )
    parts += [
        "## The metrics themselves",
        "",
        "The global group's series (memorized training documents of the real domains; loss and "
        "validation loss as above; entropy of the averaged router distributions):",
        "",
        _series_md(analysis, "global"),
        "",
        f"How peaked routing is: the tracked training documents' token-averaged router "
        f"distributions over {cfg.model.num_experts} experts (uniform would be "
        f"{1 / cfg.model.num_experts:.3f} per expert): their entropy, mean largest weight and "
        "pathway length per layer (τ = 0.7); the largest weight of single tokens (only the few "
        "documents traced per token); and the mean norm of the router weight rows:",
        "",
        _frame_md(analysis.routing.drop("max_entropy"), ".3f"),
        "",
        *_shape_sentences(analysis, cfg.model),
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
