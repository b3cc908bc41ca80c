"""The Timeline: pathway metrics against accuracy over checkpoints, and the checkpoint picker.

Front end: js/src/timeline.ts. One row per metric (distance, consistency, training loss, ...), one
solid line per group with its confidence band when the metrics table has one, and test accuracy on
a second axis as in the paper's figures: a dotted line per task in the colour of the group of that
name. Memorization onsets (``Pretrain@t*``) are dashed rules, generalization onsets (``Test@t#``)
solid ones, and a strip at the bottom draws each paired group's grokking delay as an arrow from
``t*`` to ``t#``. Negative-control groups (random targets) are grey and dashed. The legend lists
the groups drawn and says which line is which.

Clicking a step (or pressing the arrow keys) selects that checkpoint: the ``checkpoint`` trait
follows, and :meth:`Timeline.link` ties it to the ``checkpoint`` trait of other views
(``PathwayDiagram``, ``SimilarityMatrix``), in the kernel and in the browser, so one click moves
them all, also in an exported HTML page. Drawn by grokviz's own front end (no CDN, no Vega): it
follows the notebook's light or dark theme, exports PNG and SVG, and works in marimo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import traitlets

from grokviz import schema
from grokviz.errors import InputError
from grokviz.widgets._base import GrokvizWidget
from grokviz.widgets._serialization import table_to_ipc
from grokviz.widgets.palette import Palette

__all__ = ["Timeline"]

#: Metrics drawn first when present, in this order; any other metric follows alphabetically.
_METRIC_ORDER = ("distance", "consistency", "complexity", "loss", "val_loss", "entropy")
_TITLES = {
    "distance": "pathway distance (lower = more shared)",
    "consistency": "pathway consistency (higher = smoother)",
    "complexity": "pathway complexity",
    "loss": "training loss",
    "val_loss": "validation loss",
    "entropy": "routing entropy",
    "memorized": "memorized fraction (online criterion)",  # the training monitor's live views
}


def _title(metric: str) -> str:
    """A metric's row title: ``distance@3`` is the per-layer distance of layer 3."""
    head, sep, layer = metric.partition("@")
    if sep and layer.isdigit():
        return f"{_TITLES.get(head, head).split(' (')[0]}, layer {layer}"
    return _TITLES.get(metric, metric)


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

    def add(group: str) -> None:
        step = _group_step(group)
        if step is not None:
            kind = "generalization" if group.startswith("Test@") else "memorization"
            rows.add((group, step, kind))

    for group in groups:
        add(group)
    if onsets is not None:
        for group in onsets["group"].drop_nulls().unique().to_list():
            add(group)
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


# what Timeline._prepare hands _send_tables: metrics, accuracy, onsets, pairs, names, steps
_Prepared = tuple[
    pl.DataFrame,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    list[str],
    pl.DataFrame,
]


def _metric_order(metrics: list[str]) -> list[str]:
    first = [m for m in _METRIC_ORDER if m in metrics]
    return first + sorted(m for m in metrics if m not in first)


def _steps(metrics: pl.DataFrame, accuracy: pl.DataFrame | None) -> pl.DataFrame:
    """Every checkpoint (label, step) the Timeline knows, one row each, by step."""
    frames = [metrics.select("checkpoint", "step")]
    if accuracy is not None:
        frames.append(accuracy.select("checkpoint", "step"))
    return pl.concat(frames).unique(subset="step", keep="first").sort("step")


def _accuracy_groups(accuracy: pl.DataFrame, groups: list[str]) -> pl.DataFrame:
    """``accuracy`` with a ``group`` column: the metric group each task's line is coloured as.

    A task is drawn as the metric group of its name (a domain); ``"all"``, the accuracy over every
    task, as ``"global"`` when the metrics have that group. Any other task keeps its own name.
    """
    overall = "global" if "global" in groups and "all" not in groups else "all"
    return accuracy.with_columns(
        group=pl.when(pl.col("task") == "all").then(pl.lit(overall)).otherwise(pl.col("task"))
    )


class Timeline(GrokvizWidget):
    """Distance, consistency and loss per group over checkpoints against accuracy; pick a step.

    Parameters
    ----------
    metrics
        A metrics table (``schema.METRICS``: checkpoint, step, group, metric, value, ci_low,
        ci_high), e.g. from ``grokviz.analyze``. Anything polars reads (pandas, pyarrow) works.
        Rows of metric ``"accuracy"`` (``analyze(..., accuracy=)`` adds them) are drawn as the
        accuracy lines when ``accuracy`` is not given.
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
    palette
        The :class:`~grokviz.widgets.Palette` (or list of groups in hue order) shared with the
        other views; default one made from the table's groups (domains sorted).
    width, row_height
        Width of the chart (None, the default: the output's width) and height of each row.
    title
        The chart's title.

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

    _view = traitlets.Unicode("timeline").tag(sync=True)
    _series = traitlets.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC metric points: metric and group (indices into ``_meta``), step, value,
    ci_low, ci_high (NaN without an interval)."""
    _accuracy = traitlets.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC accuracy points: group (index), task, step, accuracy."""
    _rules = traitlets.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC onset rules: group (index), step, kind (0 memorization, 1 generalization)."""
    _pairs = traitlets.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC delay arrows: group (index), train_step, test_step, delay, label."""
    _meta = traitlets.Dict().tag(sync=True)
    """dict: metrics (name, title), groups, steps (one per checkpoint, in order), tasks, title."""

    checkpoint = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    """str or None: label of the selected checkpoint (default None: none selected)."""

    step = traitlets.Int(None, allow_none=True)
    """int or None: training step of the selected checkpoint (default None)."""

    width = traitlets.Int(None, allow_none=True).tag(sync=True)
    """int | None: width in CSS pixels; None (default) fits the output's width."""
    row_height = traitlets.Int(110).tag(sync=True)
    """int: height of each metric row in CSS pixels. Default 110."""

    def __init__(
        self,
        metrics: object,
        *,
        accuracy: object | None = None,
        onsets: object | None = None,
        pairs: object | None = None,
        show: list[str] | None = None,
        palette: Palette | list[str] | None = None,
        width: int | None = None,
        row_height: int = 110,
        title: str = "Pathway metrics and test accuracy over training",
        offline: bool = True,
        **kwargs: Any,
    ) -> None:
        # `offline` is kept for old calls: nothing is loaded from the network in any case.
        del offline
        prepared = self._prepare(metrics, accuracy, onsets, pairs, show)
        self._show = None if show is None else list(show)
        self._title = title
        self._given_palette = palette
        super().__init__(width=width, row_height=row_height, **kwargs)
        self._send_tables(*prepared, palette, title)

    def _prepare(
        self,
        metrics: object,
        accuracy: object | None,
        onsets: object | None,
        pairs: object | None,
        show: list[str] | None,
    ) -> _Prepared:
        """Check and conform the tables; set the step maps. Nothing is sent or changed on error."""
        frame = schema.conform(metrics, schema.METRICS, name="metrics")
        if frame.height == 0:
            from grokviz.errors import EmptyInputError

            msg = "the metrics table is empty: compute metrics first, e.g. grokviz.analyze(...)"
            raise EmptyInputError(msg)
        acc = (
            None if accuracy is None else schema.conform(accuracy, schema.ACCURACY, name="accuracy")
        )
        carried = frame.filter(pl.col("metric") == "accuracy")
        frame = frame.filter(pl.col("metric") != "accuracy")
        if acc is None and carried.height:
            acc = carried.select("checkpoint", "step", task="group", accuracy="value")
        if frame.height == 0:
            from grokviz.errors import EmptyInputError

            msg = "the metrics table has only accuracy rows: compute metrics, e.g. grokviz.analyze(...)"
            raise EmptyInputError(msg)
        onset_frame = None
        if onsets is not None:
            onset_frame = schema.conform(onsets, {"group": pl.String()}, name="onsets")
        pair_frame = None if pairs is None else _pairs_frame(pairs)
        steps = _steps(frame, acc)
        present = frame["metric"].unique().to_list()
        names = _metric_order(present) if show is None else list(show)
        unknown = [m for m in names if m not in present]
        if unknown:
            msg = f"metric(s) {unknown} are not in the metrics table, which has {sorted(present)}"
            raise InputError(msg)
        self._metrics = frame
        self._accuracy_frame = acc
        self._label_of = dict(zip(steps["step"], steps["checkpoint"], strict=True))
        self._step_of = {v: k for k, v in self._label_of.items()}
        self._step_list: list[int] = steps["step"].to_list()
        return frame, acc, onset_frame, pair_frame, names, steps

    def update(
        self,
        metrics: object,
        *,
        accuracy: object | None = None,
        onsets: object | None = None,
        pairs: object | None = None,
        show: list[str] | None = None,
    ) -> None:
        """Replace the data drawn, in place: the same widget redraws (e.g. a live run's metrics
        as they grow), keeping its palette, title, size and the selected checkpoint while the
        new data has it (else none is selected).

        The arguments mean what they mean to the constructor; ``show`` defaults to the one the
        Timeline was made with. A table that is refused leaves the widget as it was.

        Examples
        --------
        >>> import polars as pl
        >>> m = pl.DataFrame({"checkpoint": ["s1", "s2"], "step": [1, 2], "group": "global",
        ...     "metric": "distance", "value": [5.0, 4.0], "ci_low": None, "ci_high": None})
        >>> t = Timeline(m)
        >>> t.checkpoint = "s2"
        >>> more = pl.concat([m, m.head(1).with_columns(checkpoint=pl.lit("s3"), step=pl.lit(3, dtype=pl.Int64))])
        >>> t.update(more)
        >>> t.steps, t.checkpoint
        ([1, 2, 3], 's2')
        """
        shown = self._show if show is None else list(show)
        selected = self.checkpoint
        before = (self._metrics, self._accuracy_frame, self._label_of, self._step_of)
        before_steps = self._step_list
        try:
            prepared = self._prepare(metrics, accuracy, onsets, pairs, shown)
        except Exception:
            self._metrics, self._accuracy_frame, self._label_of, self._step_of = before
            self._step_list = before_steps
            raise
        self._show = shown
        with self.hold_sync():
            if selected is not None and selected not in self._step_of:
                self.checkpoint = None
            self._send_tables(*prepared, self._given_palette, self._title)

    def _send_tables(
        self,
        metrics: pl.DataFrame,
        accuracy: pl.DataFrame | None,
        onsets: pl.DataFrame | None,
        pairs: pl.DataFrame | None,
        names: list[str],
        steps: pl.DataFrame,
        palette: Palette | Sequence[str] | None,
        title: str,
    ) -> None:
        shown = metrics.filter(pl.col("metric").is_in(names))
        metric_groups = sorted(shown["group"].unique().to_list())
        rules = _onset_rules(metric_groups, onsets, pairs)
        acc = None
        if accuracy is not None and accuracy.height:
            acc = _accuracy_groups(accuracy, metric_groups)
        groups = set(metric_groups) | set(rules["group"].to_list())
        if acc is not None:
            groups |= set(acc["group"].to_list())
        if pairs is not None:
            groups |= set(pairs["group"].to_list())
        with self.hold_sync():
            self._use_palette(palette, sorted(groups))
            ordered = self.palette.order(groups)
            index = {g: i for i, g in enumerate(ordered)}
            metric_index = {m: i for i, m in enumerate(names)}
            self._series = table_to_ipc(
                {
                    "metric": shown["metric"]
                    .replace_strict(metric_index)
                    .to_numpy()
                    .astype(np.uint8),
                    "group": shown["group"].replace_strict(index).to_numpy().astype(np.uint16),
                    "step": shown["step"].to_numpy().astype(np.float64),
                    "value": shown["value"].to_numpy().astype(np.float64),
                    "ci_low": shown["ci_low"].fill_null(np.nan).to_numpy().astype(np.float64),
                    "ci_high": shown["ci_high"].fill_null(np.nan).to_numpy().astype(np.float64),
                }
            )
            if acc is not None:
                self._accuracy = table_to_ipc(
                    {
                        "group": acc["group"].replace_strict(index).to_numpy().astype(np.uint16),
                        "task": acc["task"].to_list(),
                        "step": acc["step"].to_numpy().astype(np.float64),
                        "accuracy": acc["accuracy"].to_numpy().astype(np.float64),
                    }
                )
            self._rules = table_to_ipc(
                {
                    "group": np.array([index[g] for g in rules["group"]], dtype=np.uint16),
                    "step": rules["step"].to_numpy().astype(np.float64),
                    "kind": (rules["kind"] == "generalization").to_numpy().astype(np.uint8),
                }
            )
            if pairs is not None and pairs.height:
                arrows = pairs.sort("train_step")
                self._pairs = table_to_ipc(
                    {
                        "group": np.array([index[g] for g in arrows["group"]], dtype=np.uint16),
                        "train_step": arrows["train_step"].to_numpy().astype(np.float64),
                        "test_step": arrows["test_step"].to_numpy().astype(np.float64),
                        "delay": arrows["delay"].to_numpy().astype(np.float64),
                        "label": arrows["label"].to_list(),
                    }
                )
            tasks = (
                [] if acc is None else acc.select("task", "group").unique().sort("task").to_dicts()
            )
            self._meta = {
                "metrics": [{"name": m, "title": _title(m)} for m in names],
                "groups": ordered,
                "steps": steps["step"].to_list(),
                "tasks": tasks,
                "title": title,
            }
            self.set_trait("checkpoints", steps["checkpoint"].to_list())

    @property
    def steps(self) -> list[int]:
        """The training steps of every checkpoint on the Timeline, ascending."""
        return list(self._step_list)

    @traitlets.validate("step")
    def _valid_step(self, proposal: dict[str, Any]) -> int | None:
        step = proposal["value"]
        if step is not None and step not in self._label_of:
            msg = f"step {step} is not on the Timeline; choose one of {self.steps}"
            raise traitlets.TraitError(msg)
        return step

    @traitlets.validate("checkpoint")
    def _check_checkpoint(self, proposal: dict[str, Any]) -> str | None:
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

    @traitlets.observe("checkpoint")
    def _on_checkpoint(self, change: dict[str, Any]) -> None:
        label = change["new"]
        self.step = None if label is None else self._step_of[label]

    def link(self, *views: traitlets.HasTraits) -> Timeline:
        """Tie each view's ``checkpoint`` trait to this Timeline's, both ways; return ``self``.

        The link lives in the kernel (Python sees every view follow at once); views exported
        together (``to_html``, ``write_html``, ``grokviz report``) are linked in the page. Linked
        views share one palette, and the pathway views (diagram, matrix) one pathway definition.
        A view whose ``checkpoint`` trait is an integer is linked to :attr:`step` instead.

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
        from grokviz.widgets._links import link

        for view in views:
            if not (hasattr(view, "traits") and "checkpoint" in view.traits()):
                msg = f"{type(view).__name__} has no 'checkpoint' trait to link to the Timeline"
                raise InputError(msg)
        link(self, *views)
        return self

    def unlink(self) -> None:
        """Undo every :meth:`link`."""
        from grokviz.widgets._links import unlink

        unlink(self)
