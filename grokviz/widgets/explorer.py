"""The Explorer: pick a checkpoint and samples, press Trace, watch routing stream into the views.

A source field lists the checkpoints of a series (``grokviz.list_checkpoints``); a search box
filters the sample table; Trace runs :func:`grokviz.iter_trace` in a background thread so the
kernel stays responsive, and each batch lands in the progress bar and the views (pathway
diagram, similarity matrix) as it arrives. Selection is one ``selected_samples`` list shared by
the Explorer and every view. Errors (a wrong path, a dense model, nothing selected) appear in red
under the controls; what was already traced is kept, and tracing the same checkpoint again only
traces samples not yet traced.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import polars as pl
import traitlets

from grokviz import schema

__all__ = ["Explorer", "ViewFactory", "default_views"]

logger = logging.getLogger(__name__)

#: Builds the views of one checkpoint: ``(routing, token_routing, samples) -> widgets``. Views
#: with an ``update(routing, *, samples, token_routing)`` method are then updated in place.
ViewFactory = Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame], Sequence[ipywidgets.DOMWidget]]

#: Characters of a sample's text shown in the table.
_PREVIEW = 60


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


class Explorer(ipywidgets.VBox):
    """Trace samples through a checkpoint interactively and explore their routing pathways.

    Parameters
    ----------
    source
        A checkpoint series: a local folder of checkpoint folders or a hub repository id. Its
        checkpoints fill the checkpoint menu; it can be changed in the widget too.
    samples
        A ``schema.SAMPLES`` table (sample_id, text, domain, split), polars, pandas or pyarrow.
    make_views
        Builds the views from the current checkpoint's traced data, called as
        ``make_views(routing, token_routing, samples)``; returns a list of widgets. Default: a
        ``PathwayDiagram`` and a ``SimilarityMatrix``. It is called for the first batch of a
        checkpoint and when the checkpoint changes; later batches go to each view's
        ``update(routing, samples=..., token_routing=...)`` (as the default views have), so the
        views keep their settings. Views without ``update`` are built anew after every batch.
        A view's ``selected_samples`` is linked to the Explorer's, and clicking a
        ``selected_pair`` selects those two samples.
    batch_size, max_length, device
        Passed to :func:`grokviz.iter_trace`.

    Examples
    --------
    >>> import polars as pl
    >>> samples = pl.DataFrame({"sample_id": ["a", "b"], "text": ["1+1=2", "def f(): pass"],
    ...     "domain": ["math", "code"], "split": "train"})
    >>> explorer = Explorer(samples=samples)
    >>> explorer.search.value = "def"
    >>> explorer.table.options
    (('b · code · def f(): pass', 'b'),)
    """

    checkpoint = traitlets.Unicode(None, allow_none=True)
    """str or None: label of the chosen checkpoint (default None until a series is listed)."""

    selected_samples = traitlets.List(traitlets.Unicode())
    """list[str]: sample_ids selected in the table or any linked view (default empty)."""

    running = traitlets.Bool(False)
    """bool: whether a trace is streaming now (default False)."""

    def __init__(
        self,
        source: str | None = None,
        samples: object | None = None,
        *,
        make_views: ViewFactory | None = None,
        batch_size: int = 16,
        max_length: int = 512,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._samples = (
            pl.DataFrame(schema=schema.SAMPLES)
            if samples is None
            else schema.conform(samples, schema.SAMPLES, name="samples")
        )
        self._checkpoints: dict[str, Any] = {}
        # Traced frames per checkpoint, keyed by (source, label): two series may share labels.
        self._parts: dict[tuple[str, str], list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]]
        self._parts = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refiltering = False

        self.source = ipywidgets.Text(
            value=source or "",
            placeholder="checkpoint series: a folder or a hub repo id",
            description="source",
            continuous_update=False,
        )
        """ipywidgets.Text: the checkpoint series; changing it lists its checkpoints."""
        self.checkpoints = ipywidgets.Dropdown(description="checkpoint", options=[])
        """ipywidgets.Dropdown: the series' checkpoints, by label."""
        self.search = ipywidgets.Text(placeholder="search id, domain or text", description="search")
        """ipywidgets.Text: filters the sample table (case-insensitive substring)."""
        self.table = ipywidgets.SelectMultiple(
            options=[], rows=8, layout=ipywidgets.Layout(width="100%")
        )
        """ipywidgets.SelectMultiple: the samples matching the search; selected ones are traced."""
        self.button = ipywidgets.Button(description="Trace", button_style="primary", icon="play")
        """ipywidgets.Button: starts a trace of the selected samples (and stops a running one)."""
        self.progress = ipywidgets.IntProgress(value=0, min=0, max=1, description="traced")
        """ipywidgets.IntProgress: samples traced of the current run."""
        self.status = ipywidgets.HTML("")
        self.errors = ipywidgets.Output()
        """ipywidgets.Output: error messages, in red."""
        for widget, testid in [
            (self.source, "explorer-source"),
            (self.checkpoints, "explorer-checkpoint"),
            (self.search, "explorer-search"),
            (self.table, "explorer-table"),
            (self.button, "explorer-trace"),
            (self.progress, "explorer-progress"),
            (self.errors, "explorer-errors"),
        ]:
            widget.add_class(testid)

        self._make_views = default_views if make_views is None else make_views
        self.views: list[ipywidgets.DOMWidget] = []
        """list: the views showing the current checkpoint's traced samples (updated as they come)."""
        self._views_key: tuple[str, str] | None = None  # the (source, label) the views show
        self._links: list[traitlets.link] = []
        self._placeholder = ipywidgets.HTML(
            "<i>Select samples and press Trace: their pathways appear here as they stream in.</i>"
        )
        # Side by side where the notebook is wide enough, stacked where it is not.
        self._view_box = ipywidgets.HBox(
            [self._placeholder],
            layout=ipywidgets.Layout(flex_flow="row wrap", align_items="flex-start"),
        )
        self._view_box.add_class("explorer-views")

        controls = ipywidgets.VBox(
            [
                ipywidgets.HBox([self.source, self.checkpoints]),
                self.search,
                self.table,
                ipywidgets.HBox([self.button, self.progress, self.status]),
                self.errors,
            ]
        )
        super().__init__(children=[controls, self._view_box], **kwargs)
        self.add_class("grokviz-explorer")

        self.source.observe(self._on_source, names="value")
        self.checkpoints.observe(self._on_checkpoint_menu, names="value")
        self.search.observe(self._on_search, names="value")
        self.table.observe(self._on_table, names="value")
        self.button.on_click(self._on_button)
        self._on_search({"new": ""})
        if source:
            self._on_source({"new": source})

    # -- data ---------------------------------------------------------------------------------

    @property
    def samples(self) -> pl.DataFrame:
        """The sample table the Explorer offers."""
        return self._samples

    def _table(self, index: int, name: str, key: tuple[str, str] | None = None) -> pl.DataFrame:
        with self._lock:
            chunks = self._parts.values() if key is None else [self._parts.get(key, [])]
            parts = [p[index] for chunk in chunks for p in chunk]
        if not parts:
            return pl.DataFrame(schema=getattr(schema, name))
        return pl.concat(parts, how="vertical_relaxed")

    @property
    def losses(self) -> pl.DataFrame:
        """Every traced ``schema.LOSSES`` row so far, all checkpoints and series."""
        return self._table(0, "LOSSES")

    @property
    def routing(self) -> pl.DataFrame:
        """Every traced ``schema.ROUTING`` row so far, all checkpoints and series."""
        return self._table(1, "ROUTING")

    @property
    def token_routing(self) -> pl.DataFrame:
        """Every traced ``schema.TOKEN_ROUTING`` row so far (samples selected when traced)."""
        return self._table(2, "TOKEN_ROUTING")

    def _key(self) -> tuple[str, str] | None:
        checkpoint = self._checkpoints.get(self.checkpoint) if self.checkpoint else None
        return None if checkpoint is None else (str(checkpoint.source), checkpoint.label)

    def _traced(self, key: tuple[str, str]) -> set[str]:
        with self._lock:
            return {s for p in self._parts.get(key, []) for s in p[0]["sample_id"].to_list()}

    # -- reactions ----------------------------------------------------------------------------

    def _on_source(self, change: dict[str, Any]) -> None:
        source = str(change["new"]).strip()
        if not source:
            return
        from grokviz.tracing import list_checkpoints

        try:
            found = list_checkpoints(source)
        except Exception as exc:
            self._error(f"cannot list checkpoints of {source!r}: {exc}")
            return
        if not found:
            self._error(f"{source!r} holds no checkpoints; point the source at a checkpoint series")
            return
        self._checkpoints = {c.label: c for c in found}
        self.checkpoints.options = list(self._checkpoints)
        self.checkpoints.value = found[-1].label
        # Another series may reuse the label shown: redraw from this series' traces.
        self._feed_views()

    def _on_checkpoint_menu(self, change: dict[str, Any]) -> None:
        self.checkpoint = change["new"]

    @traitlets.observe("checkpoint")
    def _on_checkpoint(self, change: dict[str, Any]) -> None:
        label = change["new"]
        if label is not None and label in self._checkpoints:
            self.checkpoints.value = label
        self._feed_views()

    def _on_search(self, change: dict[str, Any]) -> None:
        needle = str(change["new"]).strip().lower()
        frame = self._samples
        if needle:
            hay = pl.concat_str(
                [pl.col("sample_id"), pl.col("domain").fill_null(""), pl.col("text")],
                separator=" ",
            ).str.to_lowercase()
            frame = frame.filter(hay.str.contains(needle, literal=True))
        options = [
            (f"{row['sample_id']} · {row['domain']} · {_preview(row['text'])}", row["sample_id"])
            for row in frame.iter_rows(named=True)
        ]
        keep = [s for s in self.selected_samples if s in {o[1] for o in options}]
        # Re-filtering is not a user's choice: it must not deselect the samples it hides.
        self._refiltering = True
        try:
            self.table.options = options
            self.table.value = tuple(keep)
        finally:
            self._refiltering = False

    def _on_table(self, change: dict[str, Any]) -> None:
        if self._refiltering:
            return
        # Selections outside the current search stay selected: merge rather than replace.
        shown = {value for _, value in self.table.options}
        hidden = [s for s in self.selected_samples if s not in shown]
        self.selected_samples = hidden + list(change["new"])

    @traitlets.observe("selected_samples")
    def _on_selected(self, change: dict[str, Any]) -> None:
        shown = {value for _, value in self.table.options}
        wanted = tuple(s for s in change["new"] if s in shown)
        if tuple(self.table.value) != wanted:
            self.table.value = wanted

    def _on_button(self, _button: ipywidgets.Button) -> None:
        if self.running:
            self._stop.set()
        else:
            self.trace()

    # -- tracing ------------------------------------------------------------------------------

    def trace(self) -> threading.Thread | None:
        """Trace the selected samples through the chosen checkpoint, in a background thread.

        Returns the thread (join it to wait), or None when nothing could start; the reason is
        shown in the error area. Samples already traced at this checkpoint are not traced again.
        """
        self.errors.outputs = ()  # not clear_output(), which captures kernel messages
        if self.running:
            self._error("a trace is already running: wait for it or press Stop")
            return None
        label = self.checkpoint
        if label is None or label not in self._checkpoints:
            self._error("choose a checkpoint first: enter a checkpoint series as the source")
            return None
        if not self.selected_samples:
            self._error("no samples selected: select samples in the table (search to find them)")
            return None
        key = self._key()
        assert key is not None
        done = self._traced(key)
        todo = [s for s in self.selected_samples if s not in done]
        if not todo:
            self._status(f"all {len(self.selected_samples)} selected samples already traced")
            self._feed_views()
            return None
        samples = self._samples.filter(pl.col("sample_id").is_in(todo))
        self._stop.clear()
        self.running = True
        with self.hold_sync():
            self.progress.max = samples.height
            self.progress.value = 0
            self.progress.bar_style = ""
            self.button.description, self.button.icon = "Stop", "stop"
        self._status(f"tracing {samples.height} samples through {html.escape(label)}…")
        thread = threading.Thread(
            target=self._run, args=(self._checkpoints[label], key, samples), daemon=True
        )
        self._thread = thread
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running trace (if any) finishes."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, checkpoint: Any, key: tuple[str, str], samples: pl.DataFrame) -> None:
        from grokviz.tracing import iter_trace

        label = checkpoint.label
        n = 0
        try:
            for batch in iter_trace(
                checkpoint,
                samples,
                select=samples["sample_id"].to_list(),
                batch_size=self.batch_size,
                max_length=self.max_length,
                device=self.device,
                progress=False,
            ):
                with self._lock:
                    chunk = (batch.losses, batch.routing, batch.token_routing)
                    self._parts.setdefault(key, []).append(chunk)
                n = batch.n_done
                # One message per batch: the bar and the views move together.
                with self.hold_sync():
                    self.progress.max = batch.n_total
                    self.progress.value = batch.n_done
                    self._feed_views()
                if self._stop.is_set():
                    self._status(f"stopped after {n} of {samples.height} samples")
                    break
            else:
                self.progress.bar_style = "success"
                self._status(f"traced {n} samples through {html.escape(label)}")
        except Exception as exc:
            logger.exception("trace of %s failed", label)
            self.progress.bar_style = "danger"
            self._error(f"tracing {label} failed after {n} samples: {type(exc).__name__}: {exc}")
        finally:
            with self.hold_sync():
                self.button.description, self.button.icon = "Trace", "play"
                self.running = False

    # -- output -------------------------------------------------------------------------------

    def current_routing(self) -> pl.DataFrame:
        """The traced ``schema.ROUTING`` rows of the current checkpoint."""
        key = self._key()
        if key is None:
            return pl.DataFrame(schema=schema.ROUTING)
        return self._table(1, "ROUTING", key)

    def _feed_views(self) -> None:
        """Show the current checkpoint's traced rows: update the views in place, or build them.

        Views with an ``update`` method (the default ones) keep their widgets, and so the
        user's settings, as batches stream in; they are rebuilt only when the checkpoint or the
        series changes. Views without one are rebuilt from the factory on every call.
        """
        key = self._key()
        routing = self.current_routing()
        tokens = self._table(2, "TOKEN_ROUTING", key) if routing.height else None
        if (
            routing.height
            and self.views
            and key == self._views_key
            and all(callable(getattr(view, "update", None)) for view in self.views)
        ):
            assert tokens is not None
            try:
                for view in self.views:
                    view.update(
                        routing,
                        samples=self._samples,
                        token_routing=tokens if tokens.height else None,
                    )
            except Exception as exc:
                logger.exception("updating the views failed")
                self._error(f"cannot draw the traced samples: {type(exc).__name__}: {exc}")
            return
        views: list[ipywidgets.DOMWidget] = []
        if tokens is not None:
            try:
                views = list(self._make_views(routing, tokens, self._samples))
            except Exception as exc:
                logger.exception("building the views failed")
                self._error(f"cannot draw the traced samples: {type(exc).__name__}: {exc}")
        old = self.views
        for link in self._links:
            link.unlink()
        self._links.clear()
        for view in views:
            traits = view.traits()
            if "selected_samples" in traits:
                self._links.append(
                    traitlets.link((self, "selected_samples"), (view, "selected_samples"))
                )
            if "selected_pair" in traits:
                view.observe(self._on_pair, names="selected_pair")
        self.views = views
        self._views_key = key if views else None
        self._view_box.children = views or [self._placeholder]
        for view in old:
            if "selected_pair" in view.traits():
                view.unobserve(self._on_pair, names="selected_pair")
            view.close()

    def _on_pair(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.selected_samples = list(change["new"])

    def _status(self, text: str) -> None:
        self.status.value = f"<span>{text}</span>"

    def _error(self, message: str) -> None:
        """Show ``message`` in red under the controls (thread-safe: no output capture)."""
        shown = html.escape(message)
        self.errors.outputs = (
            *self.errors.outputs,
            {
                "output_type": "display_data",
                "data": {
                    "text/plain": message,
                    "text/html": f'<pre style="color:#c62828;white-space:pre-wrap">{shown}</pre>',
                },
                "metadata": {},
            },
        )

    @property
    def messages(self) -> list[str]:
        """The error messages shown now, oldest first."""
        return [str(o["data"]["text/plain"]) for o in self.errors.outputs if "data" in o]


def default_views(
    routing: pl.DataFrame, token_routing: pl.DataFrame, samples: pl.DataFrame
) -> list[ipywidgets.DOMWidget]:
    """A ``PathwayDiagram`` and a ``SimilarityMatrix`` of one checkpoint's traced samples.

    Examples
    --------
    >>> diagram, matrix = default_views(routing, token_routing, samples)  # doctest: +SKIP
    """
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix

    diagram = PathwayDiagram(
        routing,
        samples=samples,
        token_routing=token_routing if token_routing.height else None,
        width=560,
        height=400,
    )
    matrix = SimilarityMatrix(routing=routing, samples=samples, size=340)
    return [diagram, matrix]
