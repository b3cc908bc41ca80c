"""The Explorer: pick a checkpoint and samples, press Trace, watch routing stream into the views.

Front end: js/src/explorer.ts. A source field lists the checkpoints of a series
(``grokviz.list_checkpoints``); a search box filters the sample list; Trace runs
:func:`grokviz.iter_trace` in a background thread so the kernel stays responsive, and each batch
lands in the progress bar and the views (pathway diagram, similarity matrix) as it arrives.
Selection is one ``selected_samples`` list shared by the Explorer and every view. Errors (a wrong
path, a dense model, nothing selected) appear in red under the controls; what was already traced is
kept, and tracing the same checkpoint again only traces samples not yet traced.

The Explorer is one anywidget: its controls are drawn by grokviz's front end and its views are
child widgets it renders itself, so it works in marimo (``mo.ui.anywidget(explorer)``) as in
JupyterLab, Notebook 7 and VS Code, with no ipywidgets container.
"""

from __future__ import annotations

import contextlib
import html
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
import traitlets

from grokviz import schema
from grokviz.widgets._base import GrokvizWidget
from grokviz.widgets._serialization import table_to_ipc

__all__ = ["Explorer", "ViewFactory", "default_views"]

logger = logging.getLogger(__name__)

#: Builds the views of one checkpoint: ``(routing, token_routing, samples) -> widgets``. Views
#: with an ``update(routing, *, samples, token_routing)`` method are then updated in place.
ViewFactory = Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame], Sequence[Any]]

#: Characters of a sample's text shown in the list.
_PREVIEW = 60
#: How anywidget refers to a child widget in a synced trait (anywidget's WidgetTrait wire form).
_REF = "anywidget:"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


def _thread_class() -> type[threading.Thread]:
    """marimo's Thread inside a running marimo notebook (it may update widgets), else Python's."""
    if "marimo" in sys.modules:
        try:
            import marimo as mo

            if mo.running_in_notebook():
                return mo.Thread
        except Exception:  # pragma: no cover - marimo internals
            logger.debug("marimo is imported but its Thread is not usable", exc_info=True)
    return threading.Thread


class Explorer(GrokvizWidget):
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
        ``make_views(routing, token_routing, samples)``; returns a list of widgets. It is called
        for the first batch of a checkpoint and when the checkpoint changes; later batches go to
        each view's ``update(routing, samples=..., token_routing=...)``. Views without ``update``
        are built anew after every batch. Default: a ``PathwayDiagram`` and a
        ``SimilarityMatrix``, made once (empty) with the Explorer and updated from then on, for
        every checkpoint, so they keep the user's settings (and work in marimo, which cannot
        create widgets from a background trace). A view's ``selected_samples`` is linked to the
        Explorer's, and clicking a ``selected_pair`` selects those two samples.
    batch_size, max_length, device
        Passed to :func:`grokviz.iter_trace`.

    Examples
    --------
    >>> import polars as pl
    >>> samples = pl.DataFrame({"sample_id": ["a", "b"], "text": ["1+1=2", "def f(): pass"],
    ...     "domain": ["math", "code"], "split": "train"})
    >>> explorer = Explorer(samples=samples)
    >>> explorer.search = "def"
    >>> explorer.options
    [('b · code · def f(): pass', 'b')]
    """

    _view = traitlets.Unicode("explorer").tag(sync=True)
    source = traitlets.Unicode("").tag(sync=True)
    """str: the checkpoint series (a folder or a hub repo id); changing it lists its checkpoints."""
    search = traitlets.Unicode("").tag(sync=True)
    """str: filters the sample list (case-insensitive substring of id, domain or text)."""
    _options = traitlets.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (sample_id, label) of the samples matching ``search``."""
    selected_samples = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """list[str]: sample_ids selected in the list or any linked view (default empty)."""
    running = traitlets.Bool(False).tag(sync=True)
    """bool: whether a trace is streaming now (default False)."""
    progress = traitlets.List(traitlets.Int(), default_value=[0, 0]).tag(sync=True)
    """list[int]: ``[samples traced, samples to trace]`` of the current run."""
    progress_style = traitlets.Enum(["", "success", "danger"], default_value="").tag(sync=True)
    """str: ``"success"`` once a run finished, ``"danger"`` after a failure, else ``""``."""
    status = traitlets.Unicode("").tag(sync=True)
    """str: what the Explorer is doing or did last."""
    errors = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """list[str]: error messages shown in red under the controls, oldest first."""
    _views = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """list[str]: references (``"anywidget:<model_id>"``) of the views the Explorer renders."""
    _clicks = traitlets.Int(0).tag(sync=True)
    """int: presses of the Trace/Stop button (the front end counts them up)."""

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
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._samples = (
            pl.DataFrame(schema=schema.SAMPLES)
            if samples is None
            else schema.conform(samples, schema.SAMPLES, name="samples")
        )
        self._found: dict[str, Any] = {}
        # Traced frames per checkpoint, keyed by (source, label): two series may share labels.
        self._parts: dict[tuple[str, str], list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]]
        self._parts = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._make_views = default_views if make_views is None else make_views
        self.views: list[Any] = []
        """list: the views showing the current checkpoint's traced samples (updated as they come)."""
        self._views_key: tuple[str, str] | None = None  # the (source, label) the views show
        self._links: list[traitlets.link] = []
        # The default views are made now, empty, and only ever updated: a notebook front end such
        # as marimo can create widgets only while a cell runs, not later from the trace thread.
        self._lasting = make_views is None
        if self._lasting:
            self._show(empty_views(self._samples))
        self._filter()
        if source:
            self.source = source

    # -- data ---------------------------------------------------------------------------------

    @property
    def samples(self) -> pl.DataFrame:
        """The sample table the Explorer offers."""
        return self._samples

    @property
    def options(self) -> list[tuple[str, str]]:
        """The samples matching ``search``, as ``(label, sample_id)`` in table order."""
        return list(self._shown)

    @property
    def messages(self) -> list[str]:
        """The error messages shown now, oldest first."""
        return list(self.errors)

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
        checkpoint = self._found.get(self.checkpoint) if self.checkpoint else None
        return None if checkpoint is None else (str(checkpoint.source), checkpoint.label)

    def _traced(self, key: tuple[str, str]) -> set[str]:
        with self._lock:
            return {s for p in self._parts.get(key, []) for s in p[0]["sample_id"].to_list()}

    # -- reactions ----------------------------------------------------------------------------

    @traitlets.observe("source")
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
        with self.hold_sync():
            self._found = {c.label: c for c in found}
            self.set_trait("checkpoints", list(self._found))
            self.checkpoint = found[-1].label
        # Another series may reuse the label shown: redraw from this series' traces.
        self._feed_views()

    @traitlets.observe("checkpoint")
    def _on_checkpoint(self, change: dict[str, Any]) -> None:
        self._feed_views()

    @traitlets.observe("search")
    def _on_search(self, change: dict[str, Any]) -> None:
        self._filter()

    def _filter(self) -> None:
        needle = self.search.strip().lower()
        frame = self._samples
        if needle:
            hay = pl.concat_str(
                [pl.col("sample_id"), pl.col("domain").fill_null(""), pl.col("text")],
                separator=" ",
            ).str.to_lowercase()
            frame = frame.filter(hay.str.contains(needle, literal=True))
        self._shown = [
            (f"{row['sample_id']} · {row['domain']} · {_preview(row['text'])}", row["sample_id"])
            for row in frame.iter_rows(named=True)
        ]
        self._options = table_to_ipc(
            {"sample_id": [s for _, s in self._shown], "label": [label for label, _ in self._shown]}
        )

    @traitlets.observe("_clicks")
    def _on_button(self, change: dict[str, Any]) -> None:
        if self.running:
            self.stop()
        else:
            self.trace()

    def stop(self) -> None:
        """Stop the running trace after the batch in flight (what was traced is kept)."""
        self._stop.set()

    # -- tracing ------------------------------------------------------------------------------

    def trace(self) -> threading.Thread | None:
        """Trace the selected samples through the chosen checkpoint, in a background thread.

        Returns the thread (join it to wait), or None when nothing could start; the reason is
        shown in the error area. Samples already traced at this checkpoint are not traced again.
        """
        self.errors = []
        if self.running:
            self._error("a trace is already running: wait for it or press Stop")
            return None
        label = self.checkpoint
        if label is None or label not in self._found:
            self._error("choose a checkpoint first: enter a checkpoint series as the source")
            return None
        if not self.selected_samples:
            self._error("no samples selected: select samples in the list (search to find them)")
            return None
        key = self._key()
        assert key is not None
        done = self._traced(key)
        todo = [s for s in self.selected_samples if s not in done]
        if not todo:
            self.status = f"all {len(self.selected_samples)} selected samples already traced"
            self._feed_views()
            return None
        samples = self._samples.filter(pl.col("sample_id").is_in(todo))
        self._stop.clear()
        with self.hold_sync():
            self.running = True
            self.progress = [0, samples.height]
            self.progress_style = ""
            self.status = f"tracing {samples.height} samples through {html.escape(label)}…"
        thread = _thread_class()(
            target=self._run, args=(self._found[label], key, samples), daemon=True
        )
        self._thread = thread
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running trace (if any) finishes."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _batched(self) -> contextlib.ExitStack:
        """Hold the Explorer's and every view's messages until the block ends: one per widget."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.hold_sync())
        for view in self.views:
            if hasattr(view, "hold_sync"):
                stack.enter_context(view.hold_sync())
        return stack

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
                # The progress bar and the views move together: one message per widget per batch.
                with self._batched():
                    self.progress = [batch.n_done, batch.n_total]
                    self._feed_views()
                if self._stop.is_set():
                    self.status = f"stopped after {n} of {samples.height} samples"
                    break
            else:
                with self.hold_sync():
                    self.progress_style = "success"
                    self.status = f"traced {n} samples through {html.escape(label)}"
        except Exception as exc:
            logger.exception("trace of %s failed", label)
            self.progress_style = "danger"
            self._error(f"tracing {label} failed after {n} samples: {type(exc).__name__}: {exc}")
        finally:
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
        if self._lasting:
            try:
                for view in self.views:
                    if routing.height:
                        assert tokens is not None
                        view.update(
                            routing,
                            samples=self._samples,
                            token_routing=tokens if tokens.height else None,
                        )
                    else:
                        view.clear()
            except Exception as exc:
                logger.exception("updating the views failed")
                self._error(f"cannot draw the traced samples: {type(exc).__name__}: {exc}")
            self._views_key = key
            return
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
        views: list[Any] = []
        if tokens is not None:
            try:
                views = list(self._make_views(routing, tokens, self._samples))
            except Exception as exc:
                logger.exception("building the views failed")
                self._error(f"cannot draw the traced samples: {type(exc).__name__}: {exc}")
        old = self.views
        self._show(views)
        self._views_key = key if views else None
        for view in old:
            if "selected_pair" in view.traits():
                view.unobserve(self._on_pair, names="selected_pair")
            view.close()

    def _show(self, views: list[Any]) -> None:
        """Show ``views`` (linking their selections to the Explorer's) instead of the old ones."""
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
        self._views = [
            f"{_REF}{view.model_id}" for view in views if getattr(view, "model_id", None)
        ]

    def _export_children(self) -> list[Any]:
        return list(self.views)

    def _on_pair(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.selected_samples = list(change["new"])

    def _error(self, message: str) -> None:
        """Show ``message`` in red under the controls."""
        self.errors = [*self.errors, message]


def empty_views(samples: pl.DataFrame) -> list[Any]:
    """The Explorer's own views before anything is traced: an empty diagram and matrix.

    They share one palette (from every domain of ``samples``) and fit the Explorer's width.
    """
    from grokviz.widgets.palette import Palette
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix

    palette = Palette.from_samples(samples) if samples.height else None
    return [
        PathwayDiagram.empty(samples=samples, palette=palette),
        SimilarityMatrix.empty(samples=samples, palette=palette),
    ]


def default_views(
    routing: pl.DataFrame, token_routing: pl.DataFrame, samples: pl.DataFrame
) -> list[Any]:
    """A ``PathwayDiagram`` and a ``SimilarityMatrix`` of one checkpoint's traced samples.

    Both fit the Explorer's width; they share one palette (from every domain of ``samples``).

    Examples
    --------
    >>> diagram, matrix = default_views(routing, token_routing, samples)  # doctest: +SKIP
    """
    from grokviz.widgets.palette import Palette
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix

    palette = Palette.from_samples(samples) if samples.height else None
    diagram = PathwayDiagram(
        routing,
        samples=samples,
        token_routing=token_routing if token_routing.height else None,
        palette=palette,
    )
    matrix = SimilarityMatrix(routing=routing, samples=samples, palette=palette, size=None)
    return [diagram, matrix]
