"""The Timeline: pathway metrics against accuracy over checkpoints, and the checkpoint picker.

One row per metric (distance, consistency, training loss, ...), one line per group, its
confidence band when the metrics table has one, and test accuracy on a second axis, as in the
paper's figures: a dotted line per task in the colour of the group of that name. Memorization
onsets (``Pretrain@t*``) are dashed rules, generalization onsets (``Test@t#``) solid rules, and a
strip at the bottom draws each paired group's grokking delay as an arrow from ``t*`` to ``t#``.

Clicking a step selects that checkpoint: the :class:`Timeline`'s ``checkpoint`` trait follows, and
:meth:`Timeline.link` ties it to the ``checkpoint`` trait of other views (``PathwayDiagram``,
``SimilarityMatrix``), so one click moves them all. The chart is an altair ``JupyterChart`` in
offline mode: Vega, Vega-Lite and vega-embed come from ``vl-convert-python``, never from a CDN.
"""

from __future__ import annotations

import warnings
from typing import Any

import ipywidgets
import polars as pl
import traitlets

from grokviz import schema

__all__ = ["Timeline"]

#: Metrics drawn first when present, in this order; any other metric follows alphabetically.
_METRIC_ORDER = ("distance", "consistency", "complexity", "loss", "val_loss", "entropy")
_TITLES = {
    "distance": "pathway distance",
    "consistency": "pathway consistency",
    "complexity": "pathway complexity",
    "loss": "training loss",
    "val_loss": "validation loss",
    "entropy": "routing entropy",
}
#: Name of the point selection clicked in the chart and of the value param drawn as the current
#: checkpoint; the kernel reads the first and writes the second (JupyterChart syncs both).
PICK = "pick"
CURRENT = "current_step"
#: Dash pattern of the accuracy lines: dotted, against the metrics' solid lines of the same colour.
_ACCURACY_DASH = (2, 2)


def _import_altair() -> Any:
    try:
        import altair as alt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = 'the Timeline needs altair and vl-convert-python: pip install "grokviz[widgets]"'
        raise ImportError(msg) from exc
    return alt


def _point_tooltip(alt: Any) -> list[Any]:
    """The tooltip of a metric point: its group, checkpoint, step and value."""
    # Vega-Lite 6.4 (the build vl-convert bundles) reads a nominal tooltip field without a format
    # from ``datum[...]`` also in the voronoi layer a ``nearest`` selection adds, where the point's
    # fields live under ``datum.datum``: hovering showed "undefined" for the group and checkpoint
    # (fixed upstream in vega-lite PR 9707). An explicit format takes the path that reads
    # ``datum.datum[...]``.
    return [
        alt.Tooltip("group:N", format=""),
        alt.Tooltip("checkpoint:N", format=""),
        alt.Tooltip("step:Q", format="d"),
        alt.Tooltip("value:Q", format=".4g"),
    ]


def _accuracy_groups(accuracy: pl.DataFrame, groups: list[str]) -> pl.DataFrame:
    """``accuracy`` with a ``group`` column: the metric group each task's line is coloured as.

    A task is its own group (a domain); ``"all"``, the accuracy over every task, is drawn as the
    ``"global"`` group when the metrics have one and no group called ``"all"``.
    """
    overall = "global" if "global" in groups and "all" not in groups else "all"
    return accuracy.with_columns(
        group=pl.when(pl.col("task") == "all").then(pl.lit(overall)).otherwise(pl.col("task"))
    )


def _group_step(group: str) -> int | None:
    """The step in a ``"Pretrain@<step>"`` / ``"Test@<step>"`` label, else None."""
    head, sep, tail = group.rpartition("@")
    if not sep or not head:
        return None
    try:
        return int(tail)
    except ValueError:
        return None


def _onset_rules(
    groups: list[str], onsets: pl.DataFrame | None, pairs: pl.DataFrame | None
) -> pl.DataFrame:
    """One row per onset rule: ``group``, ``step``, ``kind`` ("memorization"/"generalization")."""
    rows: set[tuple[str, int, str]] = set()
    for group in groups:
        step = _group_step(group)
        if step is not None:
            kind = "generalization" if group.startswith("Test@") else "memorization"
            rows.add((group, step, kind))
    if onsets is not None:
        for group in onsets["group"].drop_nulls().unique().to_list():
            step = _group_step(group)
            if step is not None:
                kind = "generalization" if group.startswith("Test@") else "memorization"
                rows.add((group, step, kind))
    if pairs is not None:
        for row in pairs.iter_rows(named=True):
            rows.add((row["group"], int(row["train_step"]), "memorization"))
            rows.add((row["test_group"], int(row["test_step"]), "generalization"))
    return pl.DataFrame(
        sorted(rows, key=lambda r: (r[1], r[0])),
        schema={"group": pl.String(), "step": pl.Int64(), "kind": pl.String()},
        orient="row",
    )


def _pairs_frame(pairs: object) -> pl.DataFrame:
    """Normalize a pairs table (``pair_groups(...).pairs`` or ``group, train_step, test_step``)."""
    frame = schema.conform(pairs, {"train_step": pl.Int64()}, name="pairs")
    if "group" not in frame.columns and "train_group" in frame.columns:
        frame = frame.rename({"train_group": "group"})
    frame = schema.conform(
        frame,
        {"group": pl.String(), "train_step": pl.Int64(), "test_step": pl.Int64()},
        name="pairs",
    )
    if "delay" not in frame.columns:
        frame = frame.with_columns(delay=pl.col("test_step") - pl.col("train_step"))
    if "test_group" not in frame.columns:
        frame = frame.with_columns(test_group=pl.format("Test@{}", pl.col("test_step")))
    return frame.with_columns(label=pl.format("{} → {}", pl.col("group"), pl.col("test_group")))


def _metric_order(metrics: list[str]) -> list[str]:
    first = [m for m in _METRIC_ORDER if m in metrics]
    return first + sorted(m for m in metrics if m not in first)


def _build_chart(
    metrics: pl.DataFrame,
    *,
    accuracy: pl.DataFrame | None = None,
    onsets: pl.DataFrame | None = None,
    pairs: pl.DataFrame | None = None,
    show: list[str] | None = None,
    width: int = 560,
    row_height: int = 110,
) -> Any:
    """The Timeline's altair chart: one row per metric, onset rules, delay arrows, a step picker.

    Parameters are as for :class:`Timeline`; frames must already conform to their schemas.
    """
    alt = _import_altair()
    present = metrics["metric"].unique().to_list()
    names = _metric_order(present) if show is None else list(show)
    unknown = [m for m in names if m not in present]
    if unknown:
        msg = f"metric(s) {unknown} are not in the metrics table, which has {sorted(present)}"
        raise ValueError(msg)
    groups = sorted(metrics["group"].unique().to_list())
    rules = _onset_rules(groups, onsets, pairs)
    if accuracy is not None and accuracy.height:
        accuracy = (
            _accuracy_groups(accuracy, groups)
            .with_columns(line=pl.lit("test accuracy"))
            .sort("group", "task", "step")
        )
    else:
        accuracy = None
    drawn = set(groups) | set(rules["group"].to_list())
    if accuracy is not None:
        drawn |= set(accuracy["group"].to_list())
    # One colour per group across every row and layer: a group's metric line, its band, its
    # onset rules and its task's accuracy line share it. Its legend shows line strokes at full
    # opacity, so the faint band does not wash them out.
    legend = {"symbolType": "stroke", "symbolStrokeWidth": 2.5, "symbolOpacity": 1}
    # Past ten groups tableau10 would repeat a colour, and two groups would share their lines.
    scheme = "tableau10" if len(drawn) <= 10 else "tableau20"
    color = alt.Color(
        "group:N",
        scale=alt.Scale(domain=sorted(drawn), scheme=scheme),
        title="group",
        legend=alt.Legend(**legend),
    )
    # Line styles on one shared scale: the onset rules' kinds and the dotted accuracy lines.
    dashes: dict[str, list[int]] = {}
    if rules.height:
        dashes |= {"memorization": [5, 3], "generalization": [1, 0]}
    if accuracy is not None:
        dashes["test accuracy"] = list(_ACCURACY_DASH)
    dash_scale = alt.Scale(domain=list(dashes), range=list(dashes.values()))
    steps = _steps(metrics, accuracy)
    x = alt.X("step:Q", title="training step", scale=alt.Scale(zero=False))
    pick = alt.selection_point(name=PICK, fields=["step"], on="click", nearest=True, clear=False)

    rows = []
    for name in names:
        data = metrics.filter(pl.col("metric") == name).sort("group", "step")
        base = alt.Chart(data).encode(x=x)
        title = _TITLES.get(name, name)
        y = alt.Y("value:Q", title=title, scale=alt.Scale(zero=False))
        layers = []
        ci = data.filter(pl.col("ci_low").is_not_null() & pl.col("ci_high").is_not_null())
        if ci.height:
            layers.append(
                alt.Chart(ci)
                .mark_area(opacity=0.18)
                .encode(x=x, y=alt.Y("ci_low:Q", title=title), y2="ci_high:Q", color=color)
            )
        layers.append(base.mark_line().encode(y=y, color=color))
        layers.append(
            base.mark_point(filled=True, size=28)
            .encode(y=y, color=color, tooltip=_point_tooltip(alt))
            .add_params(pick)
        )
        if rules.height:
            layers.append(
                alt.Chart(rules)
                .mark_rule(strokeWidth=1.2, opacity=0.8)
                .encode(
                    x="step:Q",
                    color=color,
                    strokeDash=alt.StrokeDash("kind:N", scale=dash_scale, title="line"),
                    tooltip=["group:N", "kind:N", "step:Q"],
                )
            )
        layers.append(
            alt.Chart(steps)
            .mark_rule(color="black", strokeWidth=2)
            .encode(x="step:Q", tooltip=["checkpoint:N", "step:Q"])
            .transform_filter(f"datum.step == {CURRENT}")
        )
        row = alt.layer(*layers).properties(width=width, height=row_height)
        if accuracy is not None:
            acc = (
                alt.Chart(accuracy)
                .mark_line(strokeWidth=1.5, point=alt.OverlayMarkDef(size=14, filled=True))
                .encode(
                    x=x,
                    y=alt.Y(
                        "accuracy:Q",
                        title="test accuracy",
                        axis=alt.Axis(orient="right"),
                        scale=alt.Scale(domain=[0, 1]),
                    ),
                    color=color,
                    detail="task:N",
                    strokeDash=alt.StrokeDash("line:N", scale=dash_scale, title="line"),
                    tooltip=[
                        "task:N",
                        "checkpoint:N",
                        alt.Tooltip("step:Q", format="d"),
                        alt.Tooltip("accuracy:Q", format=".3f"),
                    ],
                )
            )
            row = alt.layer(row, acc).resolve_scale(y="independent")
        rows.append(row)

    if pairs is not None and pairs.height:
        arrows = pairs.sort("train_step")
        y = alt.Y("label:N", title="grokking delay", sort=None)
        strip = alt.Chart(arrows).encode(y=y, color=color)
        rows.append(
            alt.layer(
                strip.mark_rule(strokeWidth=2).encode(
                    x=alt.X("train_step:Q", title="training step"), x2="test_step:Q"
                ),
                strip.mark_point(shape="triangle-right", filled=True, size=90, opacity=1).encode(
                    x="test_step:Q",
                    tooltip=["group:N", "test_group:N", "train_step:Q", "test_step:Q", "delay:Q"],
                ),
                strip.mark_text(align="left", dx=8, color="black").encode(
                    x="test_step:Q", text=alt.Text("delay:Q", format="+d")
                ),
            ).properties(width=width, height=max(24 * arrows.height, 40))
        )

    with warnings.catch_warnings():
        # The same click selection in every row is one param on purpose (altair issue 3891).
        warnings.simplefilter("ignore", UserWarning)
        chart = alt.vconcat(*rows, spacing=8).add_params(alt.param(name=CURRENT, value=None))
        chart.to_dict()  # validate now, so a bad spec fails here and not in the browser
    # One step axis for every row, so a step lines up across metrics and delays.
    return chart.resolve_scale(x="shared", color="shared", strokeDash="shared")


def _steps(metrics: pl.DataFrame, accuracy: pl.DataFrame | None) -> pl.DataFrame:
    """Every checkpoint (label, step) the Timeline knows, one row each, by step."""
    frames = [metrics.select("checkpoint", "step")]
    if accuracy is not None:
        frames.append(accuracy.select("checkpoint", "step"))
    return pl.concat(frames).unique(subset="step", keep="first").sort("step")


class Timeline(ipywidgets.VBox):
    """Distance, consistency and loss per group over checkpoints against accuracy; pick a step.

    Parameters
    ----------
    metrics
        A metrics table (``schema.METRICS``: checkpoint, step, group, metric, value, ci_low,
        ci_high), e.g. from ``grokviz.analyze``. Anything polars reads (pandas, pyarrow) works.
    accuracy
        Optional accuracy table (``schema.ACCURACY``: checkpoint, step, task, accuracy), drawn on
        a second axis in every row: one dotted line per task, in the colour of the metric group
        of the same name (task ``"all"`` in that of ``"global"``).
    onsets
        Optional per-sample onsets (a ``group`` column of ``"Pretrain@<step>"`` /
        ``"Test@<step>"`` labels, as ``memorization_onsets`` returns): one rule per onset.
    pairs
        Optional paired groups (``group`` or ``train_group``, ``train_step``, ``test_step``, and
        optionally ``test_group``, ``delay``), as ``pair_groups(...).pairs``: delay arrows.
    show
        Metrics to draw, in order; default every metric of the table (distance, consistency,
        complexity, loss, entropy first).
    width, row_height
        Size of each row in pixels.

    Examples
    --------
    >>> import polars as pl
    >>> m = pl.DataFrame({"checkpoint": ["s1", "s2"], "step": [1, 2], "group": "global",
    ...     "metric": "distance", "value": [5.0, 4.0], "ci_low": None, "ci_high": None})
    >>> t = Timeline(m)
    >>> t.step = 2
    >>> t.checkpoint
    's2'
    """

    checkpoint = traitlets.Unicode(None, allow_none=True)
    """str or None: label of the selected checkpoint (default None: none selected)."""

    step = traitlets.Int(None, allow_none=True)
    """int or None: training step of the selected checkpoint (default None)."""

    def __init__(
        self,
        metrics: object,
        *,
        accuracy: object | None = None,
        onsets: object | None = None,
        pairs: object | None = None,
        show: list[str] | None = None,
        width: int = 560,
        row_height: int = 110,
        offline: bool = True,
        **kwargs: Any,
    ) -> None:
        alt = _import_altair()
        if offline:
            # Vega, Vega-Lite and vega-embed bundled by vl-convert: nothing fetched from a CDN.
            alt.JupyterChart.enable_offline()
        self._metrics = schema.conform(metrics, schema.METRICS, name="metrics")
        if self._metrics.height == 0:
            from grokviz.errors import EmptyInputError

            msg = "the metrics table is empty: compute metrics first, e.g. grokviz.analyze(...)"
            raise EmptyInputError(msg)
        self._accuracy = (
            None if accuracy is None else schema.conform(accuracy, schema.ACCURACY, name="accuracy")
        )
        onset_frame = None
        if onsets is not None:
            onset_frame = schema.conform(onsets, {"group": pl.String()}, name="onsets")
        pair_frame = None if pairs is None else _pairs_frame(pairs)
        self._steps = _steps(self._metrics, self._accuracy)
        self._label_of = dict(zip(self._steps["step"], self._steps["checkpoint"], strict=True))
        self._step_of = {v: k for k, v in self._label_of.items()}
        spec = _build_chart(
            self._metrics,
            accuracy=self._accuracy,
            onsets=onset_frame,
            pairs=pair_frame,
            show=show,
            width=width,
            row_height=row_height,
        )
        # Canvas, not SVG: many checkpoints x groups stay fast, and tests can read the pixels.
        self.chart = alt.JupyterChart(spec, embed_options={"actions": False, "renderer": "canvas"})
        """altair.JupyterChart: the chart widget; its ``selections.pick`` is the clicked step."""
        self._label = ipywidgets.HTML(self._caption())
        self._links: list[traitlets.link] = []
        super().__init__(children=[self._label, self.chart], **kwargs)
        self.add_class("grokviz-timeline")
        self.chart.selections.observe(self._on_pick, names=[PICK])

    @property
    def steps(self) -> list[int]:
        """The training steps of every checkpoint on the Timeline, ascending."""
        return self._steps["step"].to_list()

    def _caption(self) -> str:
        if self.step is None:
            return "<b>checkpoint:</b> click a step to choose one"
        return f"<b>checkpoint:</b> {self.checkpoint} (step {self.step})"

    def _on_pick(self, change: dict[str, Any]) -> None:
        points = change["new"].value
        if points:
            self.step = int(points[0]["step"])

    @traitlets.validate("step")
    def _valid_step(self, proposal: dict[str, Any]) -> int | None:
        step = proposal["value"]
        if step is not None and step not in self._label_of:
            msg = f"step {step} is not on the Timeline; choose one of {self.steps}"
            raise traitlets.TraitError(msg)
        return step

    @traitlets.validate("checkpoint")
    def _valid_checkpoint(self, proposal: dict[str, Any]) -> str | None:
        label = proposal["value"]
        if label is not None and label not in self._step_of:
            msg = (
                f"checkpoint {label!r} is not on the Timeline; choose one of {list(self._step_of)}"
            )
            raise traitlets.TraitError(msg)
        return label

    @traitlets.observe("step")
    def _on_step(self, change: dict[str, Any]) -> None:
        step = change["new"]
        self.checkpoint = None if step is None else self._label_of[step]
        # Draw the current-checkpoint rule however the step was chosen (click, code, a link).
        self.chart.params.current_step = step
        self._label.value = self._caption()

    @traitlets.observe("checkpoint")
    def _on_checkpoint(self, change: dict[str, Any]) -> None:
        label = change["new"]
        self.step = None if label is None else self._step_of[label]

    def link(self, *views: traitlets.HasTraits) -> Timeline:
        """Tie each view's ``checkpoint`` trait to this Timeline's, both ways; return ``self``.

        A view whose ``checkpoint`` trait is an integer is linked to :attr:`step` instead of the
        checkpoint label. Links live in the kernel, so they follow clicks in any linked view.

        Examples
        --------
        >>> import polars as pl, traitlets
        >>> class View(traitlets.HasTraits):
        ...     checkpoint = traitlets.Unicode(None, allow_none=True)
        >>> m = pl.DataFrame({"checkpoint": ["s1", "s2"], "step": [1, 2], "group": "global",
        ...     "metric": "distance", "value": [5.0, 4.0], "ci_low": None, "ci_high": None})
        >>> view = View()
        >>> t = Timeline(m).link(view)
        >>> t.checkpoint = "s2"
        >>> view.checkpoint
        's2'
        """
        for view in views:
            trait = view.traits().get("checkpoint") if hasattr(view, "traits") else None
            if trait is None:
                msg = f"{type(view).__name__} has no 'checkpoint' trait to link to the Timeline"
                raise TypeError(msg)
            mine = "step" if isinstance(trait, traitlets.Int) else "checkpoint"
            theirs = getattr(view, "checkpoint", None)
            if getattr(self, mine) is None and theirs is not None:
                # traitlets.link copies ours over theirs: keep a view's choice when we have none.
                setattr(self, mine, theirs)
            self._links.append(traitlets.link((self, mine), (view, "checkpoint")))
        return self

    def unlink(self) -> None:
        """Undo every :meth:`link`."""
        for link in self._links:
            link.unlink()
        self._links.clear()
