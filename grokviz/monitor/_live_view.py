"""Views that grow while a model trains: the Timeline and the PathwayDiagram of a live store.

:class:`LiveView` keeps a :class:`~grokviz.widgets.Timeline` (and optionally a
:class:`~grokviz.widgets.PathwayDiagram`) up to date with a store's live metrics. The widgets are
made once, at the first observation, and then updated in place (``Timeline.update``,
``PathwayDiagram.update``), so the user's selection, zoom and settings stay while points arrive.
Two ways in:

- the training loop runs in this kernel (a :class:`~grokviz.monitor.Monitor`): the view
  subscribes to the monitor's live metrics and redraws as each observation is made, while the
  training cell is still running;
- another process writes the store (``grokviz watch``, a Trainer with the callback):
  :meth:`LiveView.refresh` reads what is new (``TraceStore.refresh``), and
  :meth:`LiveView.follow` does so every few seconds from a background thread until
  :meth:`LiveView.stop`.

Shown in a notebook before the first observation, it says it is waiting; the views appear in the
output of the cell that is running when that observation arrives (the training cell, when the
monitor and the view are in one kernel).

Examples
--------
>>> import tempfile
>>> from grokviz.monitor import Monitor
>>> from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples
>>> monitor = Monitor(tiny_samples(8, domains=("a", "b")), tempfile.mkdtemp() + "/run",
...                   tokenizer=char_tokenizer(), every=1)
>>> view = LiveView(monitor)
>>> view.timeline is None  # nothing observed yet
True
>>> for step in range(2):
...     _ = monitor.observe(tiny_moe(seed=step), step)
>>> view.timeline.steps  # the same widget, grown in place
[0, 1]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import polars as pl

from grokviz.errors import InputError

__all__ = ["LiveView", "timeline_frame"]

logger = logging.getLogger("grokviz.monitor")

_SETS = ("probe", "memorized")
_DEFAULT_SHOW = ("distance", "consistency", "loss", "memorized")


def timeline_frame(
    metrics: pl.DataFrame, memorization: pl.DataFrame, *, sample_set: str
) -> pl.DataFrame:
    """Live metrics as a Timeline draws them: one sample set, groups named like ``analyze``'s.

    ``sample_set`` picks the ``probe`` (the same samples at every observation) or ``memorized`` groups;
    ``<set>`` becomes ``global`` and ``<set>:<domain>`` the domain, so the groups take the
    colours they have in every other view. A ``memorized`` metric, the fraction of the probe
    samples the online criterion counts as memorized (per domain and overall), is added.

    Examples
    --------
    >>> m = pl.DataFrame({"checkpoint": "s1", "step": 1, "group": ["probe", "probe:a", "memorized"],
    ...     "metric": "distance", "value": [3.0, 2.0, 1.0], "ci_low": None, "ci_high": None})
    >>> mem = pl.DataFrame({"checkpoint": "s1", "step": 1, "sample_id": ["x", "y"],
    ...     "domain": "a", "memorized": [True, False]})
    >>> timeline_frame(m, mem, sample_set="probe").sort("metric", "group").select("group", "metric", "value").rows()
    [('a', 'distance', 2.0), ('global', 'distance', 3.0), ('a', 'memorized', 0.5), ('global', 'memorized', 0.5)]
    """
    if sample_set not in _SETS:
        msg = f"sample_set must be one of {list(_SETS)}, got {sample_set!r}"
        raise InputError(msg)
    columns = ["checkpoint", "step", "group", "metric", "value", "ci_low", "ci_high"]
    chosen = metrics.filter(
        (pl.col("group") == sample_set) | pl.col("group").str.starts_with(f"{sample_set}:")
    ).select(columns)
    chosen = chosen.with_columns(
        group=pl.when(pl.col("group") == sample_set)
        .then(pl.lit("global"))
        .otherwise(pl.col("group").str.slice(len(sample_set) + 1))
    )
    if memorization.height:
        counted = memorization
        if "control" in counted.columns:
            counted = counted.filter(~pl.col("control").fill_null(False))
        fraction = pl.col("memorized").cast(pl.Float64).mean().alias("value")
        per_domain = counted.group_by("checkpoint", "step", pl.col("domain").alias("group")).agg(
            fraction
        )
        overall = (
            counted.group_by("checkpoint", "step")
            .agg(fraction)
            .with_columns(group=pl.lit("global"))
        )
        rows = pl.concat([per_domain, overall.select(per_domain.columns)]).with_columns(
            metric=pl.lit("memorized"),
            ci_low=pl.lit(None, dtype=pl.Float64),
            ci_high=pl.lit(None, dtype=pl.Float64),
        )
        chosen = pl.concat([chosen, rows.select(columns)], how="diagonal_relaxed")
    return chosen.sort("step", "metric", "group")


class LiveView:
    """A Timeline (and optionally a PathwayDiagram) that follow a live store as it grows.

    Parameters
    ----------
    source
        A :class:`~grokviz.monitor.Monitor` (observations made in this process), a
        :class:`~grokviz.monitor.LiveMetrics`, or a store folder another process writes.
    sample_set
        ``"probe"`` (default): the metrics of every probe sample, comparable over time;
        ``"memorized"``: of the samples memorized at each observation, as the paper computes
        them (the set changes as the run goes on).
    show
        Metrics the Timeline draws, in order (default distance, consistency, loss and the
        memorized fraction, those present).
    diagram
        Also keep a :class:`~grokviz.widgets.PathwayDiagram` of the store; its checkpoint list
        grows with each observation and, while it shows the newest checkpoint, it moves on to the
        next one. ``diagram_options`` go to its constructor (e.g. ``{"top_k": 2}``).
    palette
        Shared by both views (default one made from the probe's domains).
    timeline_options
        More keyword arguments for the :class:`~grokviz.widgets.Timeline` (``title``,
        ``row_height`` ...).
    criterion
        For a store folder: the :class:`~grokviz.monitor.OnlineCriterion` that decides which
        samples count as memorized (give the writer's, e.g. ``grokviz watch --eps``, to see
        what it saw); a Monitor's view uses the monitor's.
    """

    def __init__(
        self,
        source: Any,
        *,
        sample_set: str = "probe",
        show: Sequence[str] | None = None,
        diagram: bool = False,
        diagram_options: dict[str, Any] | None = None,
        palette: Any = None,
        timeline_options: dict[str, Any] | None = None,
        criterion: Any = None,
    ) -> None:
        from grokviz.monitor._live import LiveMetrics
        from grokviz.monitor._monitor import Monitor

        if sample_set not in _SETS:
            msg = f"sample_set must be one of {list(_SETS)}, got {sample_set!r}"
            raise InputError(msg)
        self.sample_set = sample_set
        self.show = list(show) if show is not None else None
        self._owns_live = False
        if isinstance(source, (Monitor, LiveMetrics)):
            if criterion is not None:
                msg = (
                    "criterion= is for a view of a store folder; a Monitor or LiveMetrics "
                    "applies its own criterion"
                )
                raise InputError(msg)
            self.live = source.live if isinstance(source, Monitor) else source
        else:
            self.live = LiveMetrics(source, criterion=criterion)
            self._owns_live = True
        self._want_diagram = diagram
        self._diagram_options = dict(diagram_options or {})
        self._palette = palette
        self._timeline_options = dict(timeline_options or {})
        self.timeline: Any = None
        """The :class:`~grokviz.widgets.Timeline` (``None`` until the first observation)."""
        self.diagram: Any = None
        """The :class:`~grokviz.widgets.PathwayDiagram` (``diagram=True``; ``None`` until then)."""
        self._lock = threading.RLock()
        self._display_pending = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unsubscribe = self.live.subscribe(lambda observation: self._redraw())
        if self._owns_live:
            self.live.update()  # what another process has written so far (calls _redraw)
        elif self.live.observations:
            self._redraw()

    # -- updating ------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Read what the store gained since the last look and redraw; return how many
        observations are new. For a store another process writes (a monitor in this kernel
        redraws the views by itself)."""
        with self._lock:
            return len(self.live.update())

    def follow(self, *, interval: float = 2.0) -> LiveView:
        """Refresh every ``interval`` seconds from a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:  # keep following: the next look may succeed
                    logger.exception("refreshing the live view failed")

        self._thread = threading.Thread(target=loop, name="grokviz-live-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop :meth:`follow` and stop listening to the monitor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._unsubscribe()

    def _redraw(self) -> None:
        with self._lock:
            frame = timeline_frame(
                self.live.metrics, self.live.memorization, sample_set=self.sample_set
            )
            if frame.height == 0:
                return
            names = self._shown(frame)
            frame = frame.filter(pl.col("metric").is_in(names))
            first = self.timeline is None
            if first:
                from grokviz.widgets import Palette, Timeline

                if self._palette is None:
                    domains = sorted(set(frame["group"].to_list()) - {"global"})
                    self._palette = Palette.from_groups(["global", *domains])
                which = "probe set" if self.sample_set == "probe" else "memorized probe samples"
                options: dict[str, Any] = {
                    "title": f"Live pathway metrics of the {which} (training data only)"
                }
                options.update(self._timeline_options)
                self.timeline = Timeline(frame, show=names, palette=self._palette, **options)
            else:
                self.timeline.update(frame, show=names)
            if self._want_diagram:
                self._redraw_diagram()
            if first and self._display_pending:
                self._display_pending = False
                self._display_views()

    def _shown(self, frame: pl.DataFrame) -> list[str]:
        present = set(frame["metric"].to_list())
        if self.show is None:
            return [m for m in _DEFAULT_SHOW if m in present]
        missing = [m for m in self.show if m not in present]
        if missing and self.timeline is None:
            logger.info("live view: %s not computed (yet)", missing)
        return [m for m in self.show if m in present]

    def _redraw_diagram(self) -> None:
        store = self.live.store
        if store is None:
            return
        # the checkpoints observed so far, as on the Timeline (the store may hold newer ones)
        observed = list(self.live.observations)
        routing = store.routing(lazy=True).filter(pl.col("checkpoint").is_in(observed)).collect()
        samples = store.samples()
        if self.diagram is None:
            from grokviz.widgets import PathwayDiagram

            options = {"palette": self._palette, "samples": samples, **self._diagram_options}
            self.diagram = PathwayDiagram(routing, **options)
            return
        names = list(self.diagram.checkpoints)
        at_newest = not names or self.diagram.checkpoint == names[-1]
        self.diagram.update(routing, samples=samples)
        if at_newest and self.diagram.checkpoints:
            self.diagram.checkpoint = self.diagram.checkpoints[-1]

    # -- showing ---------------------------------------------------------------------------------

    def views(self) -> list[Any]:
        """The widgets made so far (the Timeline, then the diagram)."""
        return [v for v in (self.timeline, self.diagram) if v is not None]

    def _display_views(self) -> None:
        from IPython.display import display

        display(*self.views())

    def _ipython_display_(self) -> None:
        with self._lock:
            if self.views():
                self._display_views()
                return
            self._display_pending = True
        print(
            f"grokviz live view of {str(self.live.path)!r}: waiting for the first observation "
            "(the views appear in the output of the cell running when it arrives)"
        )

    def __repr__(self) -> str:
        n = len(self.live.observations)
        return f"LiveView({str(self.live.path)!r}, {n} observation{'s' * (n != 1)}, sample_set={self.sample_set!r})"
