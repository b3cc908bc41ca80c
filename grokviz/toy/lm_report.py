"""The written result of a one-pass toy LM run: grokviz's analysis of it, rendered as Markdown.

:func:`analyze_lm` runs the paper's analysis on a run written by :func:`~grokviz.toy.lm.train_lm`
and traced by :func:`~grokviz.toy.lm.trace_lm`: test accuracy per domain, when training loss
settles against when test accuracy rises (:func:`timing_table`), the per-sample memorization and
generalization onsets, and Table 1 (Pearson / Spearman of pathway distance, consistency, losses
and routing entropy against test accuracy) under a few choices of checkpoints and pathways.
:func:`render_lm` turns the numbers into Markdown and :func:`write_lm_report` writes it (the
shipped ``docs/toy_lm.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.schema import conform
from grokviz.toy.corpus import DOMAINS
from grokviz.toy.lm import LMRun
from grokviz.toy.report import _METRIC_NAMES, _PAPER_SIGN, _first


def _first_from(steps: Any, ok: Any) -> int | None:
    """The first step from which ``ok`` holds at every later step too (None if never)."""
    import numpy as np

    stays = np.flip(np.cumprod(np.flip(ok.astype(bool)))).astype(bool)
    hits = np.flatnonzero(stays)
    return int(steps[hits[0]]) if hits.size else None


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
    """Test accuracy per checkpoint; the task ``"all"`` is named ``"global"``."""
    timing: pl.DataFrame
    onsets: pl.DataFrame
    """Per domain: the paper's per-sample memorization and generalization onsets."""
    table1: dict[str, pl.DataFrame]
    """Pearson / Spearman per group and metric, under a few choices of checkpoints."""
    rise_steps: dict[str, int]
    """Per group, the checkpoint where its test accuracy's rise begins."""
    views: dict[str, pl.DataFrame]
    """Distance and consistency correlations (without step 0) under other pathway choices."""
    routing: pl.DataFrame
    """Per checkpoint: how peaked the tracked documents' averaged router distributions are."""
    metrics: pl.DataFrame
    memorized_only: bool
    """False when no training document met the memorization rule and all were analyzed."""


def _val_loss(store: Any, samples: pl.DataFrame) -> pl.DataFrame:
    """Mean traced loss of the validation documents per checkpoint and domain (+ global)."""
    from grokviz.schema import METRICS

    val = store.losses().join(
        samples.filter(pl.col("split") == "val").select("sample_id", "domain"), on="sample_id"
    )
    per_domain = val.group_by("checkpoint", "step", "domain").agg(pl.col("loss").mean())
    overall = val.group_by("checkpoint", "step").agg(pl.col("loss").mean())
    frame = pl.concat(
        [
            per_domain.rename({"domain": "group"}),
            overall.with_columns(group=pl.lit("global")),
        ],
        how="diagonal",
    ).with_columns(metric=pl.lit("val_loss"), value=pl.col("loss"), ci_low=None, ci_high=None)
    return conform(frame, METRICS, name="metrics").select(list(METRICS))


def _onsets(lm: LMRun, store: Any) -> pl.DataFrame:
    import warnings

    from grokviz.metrics import generalization_onsets, memorization_onsets

    last = int(store.losses()["step"].max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eps search warns when no grid value hits 20-25%
        mem = memorization_onsets(store.losses(), lm.samples)
    gen = generalization_onsets(lm.sample_accuracy, lm.samples)
    early = (pl.col("onset_step") < last).fill_null(False)  # never memorized: not early
    return (
        mem.group_by("domain")
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


def _routing_shape(store: Any, *, tau: float = 0.7) -> pl.DataFrame:
    """Per checkpoint, over the tracked training documents: the mean largest weight of their
    token-averaged router distributions, the mean pathway length per layer, the mean largest
    weight of single tokens (documents with per-token traces only) and the mean norm of the
    router rows."""
    import numpy as np

    rows = []
    train = store.samples().filter(pl.col("split") == "train")["sample_id"]
    tokens = (
        store.token_routing()
        .filter(pl.col("sample_id").is_in(train.implode()))
        .group_by("step")
        .agg(pl.col("weights").list.first().mean().alias("token_largest_weight"))
    )
    for label, step in store.checkpoints().select("checkpoint", "step").iter_rows():
        weights, _ = store.routing_array(label, sample_ids=train.to_list())
        ranked = -np.sort(-np.asarray(weights), axis=-1)  # [N, L, K], largest first
        length = (np.cumsum(ranked, axis=-1) < tau).sum(axis=-1) + 1  # experts to pass tau
        norm = np.linalg.norm(np.asarray(store.router_array(label)), axis=-1).mean()
        rows.append((step, float(ranked[..., 0].mean()), float(length.mean()), float(norm)))
    names = ["step", "largest_weight", f"pathway_length_tau{tau}", "router_row_norm"]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    frame = frame.join(tokens.with_columns(pl.col("step").cast(pl.Int64)), on="step", how="left")
    return frame.select(*names[:3], "token_largest_weight", names[3]).sort("step")


def _rise_step(accuracy: pl.DataFrame, *, fraction: float = 0.25) -> int:
    """The last checkpoint before the maximum whose accuracy is still below
    ``first + fraction * (max - first)``: where the sustained rise begins."""
    part = accuracy.sort("step")
    acc, steps = part["accuracy"].to_list(), part["step"].to_list()
    peak = max(range(len(acc)), key=acc.__getitem__)
    level = acc[0] + fraction * (acc[peak] - acc[0])
    below = [steps[i] for i in range(peak + 1) if acc[i] < level]
    return int(below[-1]) if below else int(steps[0])


def analyze_lm(run: str | Path, *, store: str | Path | None = None) -> LMAnalysis:
    """Run grokviz's analysis on a traced one-pass run (see :func:`write_lm_report`).

    Examples
    --------
    >>> result = analyze_lm("/tmp/lmtoy")  # doctest: +SKIP
    >>> result.table1["all checkpoints"].filter(metric="distance")  # doctest: +SKIP
    """
    import warnings

    from grokviz.errors import EmptyInputError
    from grokviz.metrics import analyze, correlate
    from grokviz.store import TraceStore

    lm = LMRun.load(run)
    st = TraceStore.open(Path(store) if store is not None else lm.out / "trace")
    accuracy = lm.accuracy.with_columns(
        task=pl.when(pl.col("task") == "all").then(pl.lit("global")).otherwise(pl.col("task"))
    )
    memorized_only = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eps search, as in _onsets
        kwargs: dict[str, Any] = {"tau": 0.7, "groups": ("global", "domain"), "n_boot": 0}
        try:
            base = analyze(st, accuracy=accuracy, progress=False, **kwargs)
        except EmptyInputError:  # nothing memorized (a short run): use every tracked document
            memorized_only = False
            base = analyze(st, accuracy=accuracy, memorized_only=False, progress=False, **kwargs)
    metrics = pl.concat([base, _val_loss(st, lm.samples)], how="vertical_relaxed")
    steps = sorted(accuracy["step"].unique().to_list())
    groups = [*DOMAINS, "global"]
    rise = {g: _rise_step(accuracy.filter(pl.col("task") == g)) for g in groups}
    choices = {
        "all checkpoints": dict.fromkeys(groups, steps[0]),
        "without step 0": dict.fromkeys(groups, steps[min(1, len(steps) - 1)]),
        "from the start of each group's rise": rise,
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
            .select("group", "metric", "pearson_r", "spearman_r", "n")
            .sort("group", "metric")
        )
    views = {}
    view_specs: dict[str, dict[str, Any]] = {
        "tau = 0.5": {"tau": 0.5},
        "tau = 0.8": {"tau": 0.8},
        "top-2 experts": {"top_k": 2},
        "all tracked training documents": {"memorized_only": False},
    }
    for name, spec in view_specs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = {"tau": 0.7, "memorized_only": memorized_only, **spec}
            m = analyze(st, groups=("global", "domain"), n_boot=0, progress=False, **spec)
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
        onsets=_onsets(lm, st),
        table1=table1,
        rise_steps=rise,
        views=views,
        routing=_routing_shape(st),
        metrics=metrics,
        memorized_only=memorized_only,
    )


def _fmt(value: Any, spec: str = "+.2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _frame_md(frame: pl.DataFrame, spec: str = ".2f") -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|---" * frame.width + "|"]
    for row in frame.iter_rows():
        cells = [
            _fmt(v, spec) if isinstance(v, float) else "–" if v is None else str(v) for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _corr_md(table: pl.DataFrame, groups: list[str]) -> str:
    names = list(_METRIC_NAMES)
    lines = [
        "| group | " + " | ".join(f"{_METRIC_NAMES[m]} (P / S)" for m in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for group in groups:
        cells = []
        for metric in names:
            row = table.filter((pl.col("group") == group) & (pl.col("metric") == metric))
            cells.append(
                f"{_fmt(row['pearson_r'][0])} / {_fmt(row['spearman_r'][0])}" if row.height else "–"
            )
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
                upper_bound=len(DOMAINS) * lm.config.docs_per_domain
            )
        )
    )
    train_loss = (
        lm.log.filter(pl.col("split") == "train")
        .group_by("step")
        .agg(pl.col("loss").mean().alias("train_loss"))
    )
    wide = wide.join(train_loss, on="step", how="left")
    order = ["step", "documents", *DOMAINS, "global", "train_loss"]
    return _frame_md(wide.select([c for c in order if c in wide.columns]))


def _view_cells(table: pl.DataFrame, metric: str, groups: list[str]) -> str:
    cells = []
    for group in groups:
        row = table.filter((pl.col("group") == group) & (pl.col("metric") == metric))
        if row.height:
            cells.append(f"{group} {_fmt(row['pearson_r'][0])} / {_fmt(row['spearman_r'][0])}")
    return f"{_METRIC_NAMES[metric]} (P / S) " + ", ".join(cells or ["–"])


def _memorized_sentences(onsets: pl.DataFrame) -> list[str]:
    off = onsets.filter(~pl.col("memorized_before_T").is_between(0.2, 0.25))
    if off.height == 0:
        return []
    counts = ", ".join(
        f"{d} {n} ({f:.0%})"
        for d, n, f in off.select("domain", "memorized_docs", "memorized_before_T").iter_rows()
    )
    return [
        f"No ε on the 0.1 grid gives 20–25% in {off.height} domain(s): {counts} of the tracked "
        "training documents count as memorized before the last checkpoint (the rule asks a "
        "document's loss to stay within δ of its final value from t* on). The pathway metrics "
        "of the memorized groups below rest on these few documents; the view over all tracked "
        "training documents does not.",
        "",
    ]


def _shape_sentences(analysis: LMAnalysis) -> list[str]:
    """What the routing-shape table says about the direction of the distance."""
    shape = analysis.routing.sort("step")
    largest = shape["largest_weight"].to_list()
    length = shape[shape.columns[2]].to_list()
    steps = shape["step"].to_list()
    peak = max(range(len(largest)), key=largest.__getitem__)
    views = [analysis.table1["without step 0"], *analysis.views.values()]
    dist = pl.concat([v.filter(pl.col("metric") == "distance") for v in views])
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
    groups = [*DOMAINS, "global"]
    parts = [
        "# A one-pass toy LM: pretraining on a generated multi-domain corpus",
        "",
        "*Generated by `grokviz.toy.lm_report.write_lm_report` from a run of "
        "`python -m grokviz.toy lm`; every number below is computed, and the sentences around "
        "them are chosen by the numbers.*",
        "",
        "## The run",
        "",
        f"- Corpus (`grokviz/toy/corpus.py`): {cfg.docs_per_domain} training documents per "
        f"domain ({', '.join(DOMAINS)}), shuffled together and seen **once** each "
        f"({meta['steps']} steps of {cfg.batch_size}). Test tasks: `arithmetic` and `code` "
        f"hold out the same {cfg.held_out:.0%} of the (operation, a, b) problems (never seen in "
        f"either domain), `facts` {cfg.held_out:.0%} of the cities (which then appear in "
        "training only as atomic facts, never applied to a person). "
        f"{cfg.test_per_domain} test prompts, {cfg.val_per_domain} "
        f"validation documents and {cfg.tracked_per_domain} tracked training documents per "
        "domain.",
        f"- Model: `OlmoeForCausalLM`, {spec.num_layers} MoE layers × {spec.num_experts} experts, "
        f"top-{spec.top_k}, hidden {spec.hidden_size}, expert width {spec.intermediate_size}; "
        f"AdamW lr {cfg.lr} (warmup {cfg.warmup} steps, then cosine to "
        f"{cfg.final_lr_fraction}×), weight decay {cfg.weight_decay}; seed {cfg.seed}; {meta['threads']} thread(s), "
        f"{meta['seconds']:.0f} s of training wall time.",
        "- Reproduce: `python -m grokviz.toy lm --out /tmp/lmtoy --report docs/toy_lm.md` "
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
        "The paper's per-sample view on the traced checkpoints (ε chosen per domain so that "
        "20–25% of tracked training documents count as memorized before the last checkpoint "
        "where the grid allows, δ = 0.05; a test prompt generalizes from the checkpoint after "
        "which it stays correct):",
        "",
        _frame_md(analysis.onsets),
        "",
        *_memorized_sentences(analysis.onsets),
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


FINDINGS_MARKER = "<!-- findings -->"
"""Where :func:`write_lm_report` keeps a hand-written discussion when it regenerates the numbers."""


def write_lm_report(
    run: str | Path, path: str | Path = "docs/toy_lm.md", *, store: str | Path | None = None
) -> Path:
    """Analyze a traced one-pass run and write its Markdown report to ``path``.

    Trace the run first (:func:`trace_lm`). The report gives per-domain test accuracy over the
    checkpoints, whether training losses settle before test accuracy rises, and Pearson /
    Spearman of pathway distance, consistency, training and validation loss and routing
    entropy against test accuracy per domain.

    Examples
    --------
    >>> write_lm_report("/tmp/lmtoy", "docs/toy_lm.md")  # doctest: +SKIP
    PosixPath('docs/toy_lm.md')
    """
    lm = LMRun.load(run)
    text = render_lm(analyze_lm(run, store=store), lm)
    out = Path(path)
    if out.is_file() and FINDINGS_MARKER in (old := out.read_text()):
        # keep the discussion below the marker, so regenerating the numbers does not drop it
        kept = old.split(FINDINGS_MARKER, 1)[1].strip()
        text = text.replace(
            FINDINGS_MARKER, f"{FINDINGS_MARKER}\n\n{kept}\n" if kept else FINDINGS_MARKER
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
