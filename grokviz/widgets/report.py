"""A shareable report of a trace: one standalone, offline HTML page (``grokviz report``).

The page holds the Timeline, the pathway diagram and the similarity matrix, linked (choose a
checkpoint on the timeline and the other views follow, with no kernel), the table of correlations
with accuracy exactly as :func:`grokviz.metrics.correlate` returns it (every column, so the
controls it reports appear too), and what the analysis chose: the memorization threshold per domain
and how many samples count as memorized. Everything is inlined: it opens from a file, offline.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["write_report"]

_INTRO = """
<p>Each view shows the memorized training samples a trace holds (memorized: from some checkpoint on,
their loss stays below a threshold &epsilon; and within &delta; = {delta} of its final value).
<b>Pathway distance</b> is the mean edit distance between two samples' pathways (lower = more shared),
<b>pathway consistency</b> how smoothly a sample's routing moves from one layer to the next
(higher = smoother); accuracy is never used to compute them.</p>
<p>A correlation across checkpoints is weak evidence on its own: anything that drifts while
training goes on correlates with an accuracy that rises. Read the correlations with the columns
that control for it where the table has them (partial correlation with the step held fixed,
distances relative to a null), and with the groups that never generalize.</p>
"""

_STYLE = """
<style>
.grokviz-report h1{font-size:22px;margin:4px 0 2px}
.grokviz-report h2{font-size:16px;margin:22px 0 4px}
.grokviz-report .meta{color:#757575;margin:0 0 8px}
.grokviz-report table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
.grokviz-report th,.grokviz-report td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right;
  font-variant-numeric:tabular-nums}
.grokviz-report th{font-weight:600}
.grokviz-report td.text,.grokviz-report th.text{text-align:left}
.grokviz-report .scroll{max-width:100%;overflow-x:auto}
@media (prefers-color-scheme: dark){.grokviz-report th,.grokviz-report td{border-color:#333}}
</style>
"""


def _cell(value: Any) -> tuple[str, bool]:
    """A table cell's text and whether it is text (left-aligned) rather than a number."""
    if value is None:
        return "–", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), True
    if isinstance(value, int):
        return f"{value:d}", False
    if isinstance(value, float):
        if value != value:  # NaN
            return "–", False
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}", False
        return f"{value:.3f}", False
    return str(value), True


def html_table(frame: pl.DataFrame, *, caption: str = "", testid: str = "") -> str:
    """Every column of ``frame`` as an HTML table, numbers right-aligned (3 decimals).

    Examples
    --------
    >>> print(html_table(pl.DataFrame({"metric": ["distance"], "r": [-0.91234]})))  # doctest: +NORMALIZE_WHITESPACE
    <div class="scroll"><table><thead><tr><th class="text">metric</th><th>r</th></tr></thead>
    <tbody><tr><td class="text">distance</td><td>-0.912</td></tr></tbody></table></div>
    """
    attrs = f' data-testid="{html.escape(testid)}"' if testid else ""
    text_class = ' class="text"'
    head = "".join(
        f"<th{text_class if frame.schema[c] == pl.String else ''}>{html.escape(c)}</th>"
        for c in frame.columns
    )
    rows = []
    for row in frame.iter_rows():
        cells = []
        for value in row:
            text, is_text = _cell(value)
            cells.append(f"<td{text_class if is_text else ''}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table{attrs}>{cap}<thead><tr>{head}</tr></thead>\n'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _chosen(onsets: pl.DataFrame, last_step: int) -> pl.DataFrame:
    """Per domain: the threshold used and how many training samples count as memorized."""
    return (
        onsets.group_by("domain")
        .agg(
            pl.col("eps").first().alias("eps"),
            pl.len().alias("training samples"),
            (pl.col("onset_step") < last_step).sum().alias("memorized before the last checkpoint"),
        )
        .with_columns(
            (pl.col("memorized before the last checkpoint") / pl.col("training samples")).alias(
                "share memorized"
            )
        )
        .sort("domain")
    )


def _view_samples(
    samples: pl.DataFrame, onsets: pl.DataFrame, last_step: int, per_group: int
) -> list[str]:
    """Up to ``per_group`` samples per domain: memorized training samples first, table order."""
    memorized = set(onsets.filter(pl.col("onset_step") < last_step)["sample_id"].to_list())
    train = samples.filter(pl.col("split") == "train") if "split" in samples.columns else samples
    ranked = train.with_columns(
        rank=pl.when(pl.col("sample_id").is_in(list(memorized))).then(0).otherwise(1),
        position=pl.int_range(pl.len()),
    ).sort("rank", "position")
    picked = ranked.group_by("domain", maintain_order=True).head(per_group)
    order = {sid: i for i, sid in enumerate(samples["sample_id"].to_list())}
    return sorted(picked["sample_id"].to_list(), key=order.__getitem__)


def write_report(
    store: Any,
    out: str | os.PathLike[str],
    *,
    accuracy: Any = None,
    tau: float | None = 0.7,
    top_k: int | None = None,
    per_group: int = 50,
    from_step: int | None = None,
    n_pairs: int | None = 2000,
    eps: float | dict[str, float] | None = None,
    delta: float = 0.05,
    title: str | None = None,
    command: Sequence[str] | None = None,
) -> Path:
    """Write one standalone, offline HTML page reporting a trace store.

    Parameters
    ----------
    store
        A ``TraceStore`` or the path of one.
    out
        The ``.html`` file to write.
    accuracy
        An accuracy table (``schema.ACCURACY``) to draw and correlate with; optional.
    tau, top_k
        The pathway definition, for the metrics and every view.
    per_group
        Samples per domain drawn in the diagram and the matrix (memorized ones first).
    from_step
        Correlate only checkpoints from this step on (where accuracy starts to rise).
    n_pairs, eps, delta
        Passed to :func:`grokviz.analyze`.
    title
        The page title; default "grokviz report: <store folder>".
    command
        The command line that made the report, printed at the bottom of the page.

    Returns
    -------
    pathlib.Path
        The written page.

    Examples
    --------
    >>> write_report("data/samples/toy/trace", "report.html",
    ...              accuracy=pl.read_parquet("data/samples/toy/accuracy.parquet"))  # doctest: +SKIP
    PosixPath('report.html')
    """
    from grokviz import __version__, schema
    from grokviz.metrics import analyze, correlate, memorization_onsets
    from grokviz.store import TraceStore
    from grokviz.widgets._base import html_page
    from grokviz.widgets.palette import Palette
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix
    from grokviz.widgets.timeline import Timeline

    if isinstance(store, str | os.PathLike):
        name = "/".join(Path(store).resolve().parts[-2:])
        store = TraceStore.open(store)
    else:
        name = Path(str(getattr(store, "root", "trace"))).name
    acc = None if accuracy is None else schema.conform(accuracy, schema.ACCURACY, name="accuracy")
    pathways = {"tau": None, "top_k": top_k} if top_k is not None else {"tau": tau, "top_k": None}
    samples = store.samples()
    checkpoints = store.checkpoints()
    last_step = int(checkpoints["step"].max())
    onsets = memorization_onsets(store.losses(), samples, eps=eps, delta=delta)
    # The thresholds just chosen, so that analyze uses (and warns about) the same ones only once.
    chosen_eps = dict(onsets.select("domain", "eps").unique("domain").iter_rows())
    metrics = analyze(
        store,
        tau=tau if tau is not None else 0.7,
        top_k=top_k,
        eps=chosen_eps,
        delta=delta,
        n_pairs=n_pairs,
        progress=False,
    )
    palette = Palette.from_samples(samples)
    shown = metrics.filter(~pl.col("group").str.starts_with("Pretrain@"))
    names = [m for m in ("distance", "consistency", "loss") if m in set(shown["metric"])]
    timeline_acc = None if acc is None else acc.filter(pl.col("task") != "all")
    timeline = Timeline(
        shown,
        accuracy=timeline_acc if timeline_acc is not None and timeline_acc.height else acc,
        show=names or None,
        palette=palette,
        title="Pathway metrics and test accuracy over training",
    )
    ids = _view_samples(samples, onsets, last_step, per_group)
    distance = metrics.filter((pl.col("group") == "global") & (pl.col("metric") == "distance"))
    scattered = distance.sort("value")["checkpoint"][-1] if distance.height else None
    diagram = PathwayDiagram(
        store, samples=samples, sample_ids=ids, palette=palette, compare=scattered, **pathways
    )
    matrix = SimilarityMatrix(
        routing=store, samples=samples, sample_ids=ids, palette=palette, **pathways
    )
    timeline.link(diagram, matrix)
    timeline.checkpoint = checkpoints["checkpoint"][-1]

    rule = (
        f"top-{top_k} experts per layer"
        if top_k is not None
        else f"experts carrying {tau:g} of the routing weight per layer (τ = {tau:g})"
    )
    heading = title or f"grokviz report: {name}"
    n_ckpt = checkpoints.height
    before = (
        '<div class="grokviz-report">'
        + _STYLE
        + f"<h1>{html.escape(heading)}</h1>"
        + f'<p class="meta">{n_ckpt} checkpoints (steps {int(checkpoints["step"].min())}–{last_step}), '
        + f"{samples.height} samples; pathways: {html.escape(rule)}; grokviz {__version__}</p>"
        + _INTRO.format(delta=delta)
        + "<h2>What the analysis chose</h2>"
        + "<p>The memorization threshold &epsilon; of each domain (chosen on a 0.1 grid so that "
        + "20–25 % of its samples are memorized before the last checkpoint, as in the paper, "
        + "unless given) and how many training samples count as memorized.</p>"
        + html_table(_chosen(onsets, last_step), testid="report-chosen")
        + "<h2>Metrics over training</h2></div>"
    )
    between = [
        '<div class="grokviz-report"><h2>Pathways</h2><p>'
        + html.escape(
            f"{len(ids)} training samples, up to {per_group} per domain, memorized ones first. "
            "Left: the checkpoint where pathways were most scattered (highest distance); right: "
            "the checkpoint chosen on the timeline."
        )
        + "</p></div>",
        '<div class="grokviz-report"><h2>Who shares a pathway with whom</h2></div>',
    ]
    after = '<div class="grokviz-report">'
    if acc is not None:
        corr = correlate(metrics, acc, from_step=from_step)
        span = f" from step {from_step} on" if from_step is not None else " over every checkpoint"
        # Each domain's metrics against that domain's accuracy, and "global" against overall
        # accuracy, first; every other pairing below, folded.
        matched = corr.filter(
            (pl.col("group") == pl.col("task"))
            | ((pl.col("group") == "global") & pl.col("task").is_in(["all", "global"]))
        )
        after += (
            "<h2>Correlation with accuracy across checkpoints</h2>"
            f"<p>{html.escape('Each metric of a domain against the accuracy of that domain' + span)}"
            "; every column as <code>grokviz.metrics.correlate</code> returns it.</p>"
            + html_table(matched if matched.height else corr, testid="report-correlations")
            + f"<details><summary>every group against every task ({corr.height} rows)</summary>"
            + html_table(corr, testid="report-correlations-all")
            + "</details>"
        )
    if command:
        after += f'<p class="meta">made with: <code>{html.escape(" ".join(command))}</code></p>'
    after += "</div>"
    page = html_page(
        [timeline, diagram, matrix], title=heading, before=before, between=between, after=after
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    # The page holds their state; close the widgets and their browser links in the kernel.
    timeline.unlink()
    for widget in (timeline, diagram, matrix):
        widget.close()
    return path
