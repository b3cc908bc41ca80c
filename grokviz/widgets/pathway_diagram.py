"""PathwayDiagram: samples' routes through the experts, layer by layer, across checkpoints.

Front end: js/src/pathway_diagram.ts. Layers run left to right and experts top to bottom. Each
sample's pathway (its experts per layer, selected by cumulative weight ``tau`` or a fixed
``top_k``) contributes to route bundles between the experts of adjacent layers: a bundle is as wide
as the share of its group's samples taking that route, so a route every sample of a group takes is
thick and scattered, instance-specific routes are many thin faint ones. Experts are dots sized by
their load, and a strip under the routes says per layer how many experts each group's samples
spread over. ``compare`` shows a second checkpoint beside the current one; a slider (arrow keys step
one checkpoint) morphs between checkpoints. Hovering a group, an expert or a route highlights its
samples' routes; clicking selects them, drawn as lines of their own. Few samples are drawn as
per-sample lines. With token routing, a token mode shows one sample's tokens and a token's route.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import traitlets as t

from grokviz import schema
from grokviz.errors import InputError, UnknownCheckpointError, UnknownSampleError
from grokviz.widgets._base import GrokvizWidget
from grokviz.widgets._serialization import (
    path_rows,
    routing_array,
    store_samples,
    table_to_ipc,
    traced_routing,
)
from grokviz.widgets.palette import Palette

__all__ = ["PathwayDiagram"]


def checkpoint_order(routing: pl.DataFrame) -> list[str]:
    """Checkpoint labels of a routing table in training order (by step, then label)."""
    frame = routing.select("checkpoint", "step").unique().sort(["step", "checkpoint"])
    labels: list[str] = frame["checkpoint"].to_list()
    if len(set(labels)) != len(labels):
        msg = f"checkpoint labels must each have one step; found repeated labels in {labels}"
        raise InputError(msg)
    return labels


def sample_groups(
    sample_ids: list[str], samples: Any, color_by: str | None, routing: pl.DataFrame
) -> list[str]:
    """The group of each sample: ``samples[color_by]`` (or a routing column of that name), else ""."""
    if not color_by:
        return [""] * len(sample_ids)
    source: pl.DataFrame | None = None
    if samples is not None:
        frame = samples if isinstance(samples, pl.DataFrame) else pl.DataFrame(samples)
        if "sample_id" not in frame.columns:
            msg = f"the samples table needs a sample_id column; it has {frame.columns}"
            raise InputError(msg)
        if color_by not in frame.columns:
            msg = f"color_by={color_by!r} is not a column of samples; choose one of {frame.columns}"
            raise InputError(msg)
        source = frame
    elif color_by in routing.columns:
        source = routing
    if source is None:
        return [""] * len(sample_ids)
    pairs = source.select(pl.col("sample_id").cast(pl.String), pl.col(color_by).cast(pl.String))
    mapping = dict(pairs.unique(subset="sample_id", keep="first").iter_rows())
    return [mapping.get(sid) or "" for sid in sample_ids]


def _read(
    routing: Any, token_routing: Any, sample_ids: list[str] | None, *, tokens_mode: bool
) -> tuple[pl.DataFrame, list[str], pl.DataFrame | None, list[str]]:
    """Check and conform a diagram's data: (routing, sample ids, token routing, checkpoints)."""
    frame = traced_routing(routing)
    tokens = (
        None
        if token_routing is None
        else schema.conform(token_routing, schema.TOKEN_ROUTING, name="token routing")
    )
    if tokens is None and tokens_mode:
        msg = "mode='tokens' needs token_routing=...; trace with token routing for some samples"
        raise InputError(msg)
    if sample_ids is None:
        sample_ids = frame["sample_id"].unique(maintain_order=True).to_list()
    return frame, [str(s) for s in sample_ids], tokens, checkpoint_order(frame)


def _first_token_sample(tokens: pl.DataFrame) -> str | None:
    have = tokens["sample_id"].unique(maintain_order=True).to_list()
    return str(have[0]) if have else None


class PathwayDiagram(GrokvizWidget):
    """Samples' routing pathways drawn through the experts, with a morphing checkpoint slider.

    Parameters
    ----------
    routing
        A routing table (``grokviz.schema.ROUTING``: checkpoint, step, sample_id, layer, weights),
        anything polars reads through the Arrow interface, or a ``TraceStore``.
    tau, top_k
        Expert selection per layer (:func:`grokviz.pathways.select_experts`): keep experts until
        their cumulative weight exceeds ``tau``, or a fixed ``top_k`` (which overrides ``tau``).
    samples
        A samples table (``sample_id`` and the ``color_by`` column) to colour samples by group.
        Defaults to the trace store's samples when ``routing`` is a store.
    color_by
        Column of ``samples`` giving each sample's group (e.g. ``"domain"``, ``"group"``).
    palette
        The :class:`~grokviz.widgets.Palette` (or list of groups in hue order) giving each group
        its colour; default one derived from every value of ``samples[color_by]``, so a view of
        some samples keeps the colours of the whole table. Pass the same palette to every view.
    compare
        A checkpoint to draw beside the current one (e.g. the most scattered one), or None.
    token_routing
        A token routing table (``grokviz.schema.TOKEN_ROUTING``) enabling the token mode.
    checkpoint
        The checkpoint shown first; default the last one.
    sample_ids
        Show only these samples, in this order; default every sample of the routing table.
    **kwargs
        Other traits, e.g. ``theme="dark"``, ``height=600``, ``mode="tokens"``,
        ``min_share=0.05``.

    Examples
    --------
    >>> from grokviz.widgets import PathwayDiagram
    >>> diagram = PathwayDiagram(routing, samples=samples, color_by="domain")  # doctest: +SKIP
    >>> diagram.compare = diagram.checkpoints[0]  # first and current side by side  # doctest: +SKIP
    >>> diagram.checkpoint = diagram.checkpoints[0]  # doctest: +SKIP
    >>> diagram.selected_samples  # what the user clicked  # doctest: +SKIP
    ['math-0007']
    """

    _view = t.Unicode("pathway_diagram").tag(sync=True)
    _paths = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC pathway rows of the loaded checkpoints (see _serialization)."""
    _samples = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (sample_id, group), one row per sample index."""
    _tokens = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (token_index, token) of ``token_sample``."""
    _token_routes = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (token_index, layer, expert, weight) of ``token_sample`` at ``checkpoint``."""
    _n_layers = t.Int(0).tag(sync=True)
    """int: number of MoE layers in the pathway rows."""
    _n_experts = t.Int(0).tag(sync=True)
    """int: number of experts per layer."""

    tau = t.Float(0.7, allow_none=True).tag(sync=True)
    """float | None: cumulative-weight threshold selecting each layer's experts. Default 0.7."""
    top_k = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: a fixed number of experts per layer instead of ``tau``. Default None."""
    color_by = t.Unicode("domain")
    """str: column of ``samples`` colouring each sample's pathway. Default ``"domain"``."""
    mode = t.Enum(["samples", "tokens"], default_value="samples").tag(sync=True)
    """str: ``"samples"`` (every sample's pathway) or ``"tokens"`` (one sample's tokens). Default ``"samples"``."""
    aggregate = t.Enum(["auto", "always", "never"], default_value="auto").tag(sync=True)
    """str: ``"always"`` route bundles per group, ``"never"`` one line per sample; ``"auto"``
    (default) bundles unless there are 24 samples or fewer."""
    compare = t.Unicode(None, allow_none=True).tag(sync=True)
    """str | None: a checkpoint drawn beside the current one, to compare them. Default None."""
    min_share = t.Float(0.02, min=0.0, max=1.0).tag(sync=True)
    """float: bundles carrying less than this share of a group's samples are not drawn. Default 0.02."""
    selected_samples = t.List(t.Unicode()).tag(sync=True)
    """list[str]: sample_ids selected in the view (click; shift-click adds). Default ``[]``."""
    token_sample = t.Unicode(None, allow_none=True).tag(sync=True)
    """str | None: the sample whose tokens the token mode shows. Default: the first with tokens."""
    selected_token = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: token_index whose route the token mode draws (click a token). Default None."""
    width = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: drawing width in CSS pixels; None (default) fits the output's width."""
    height = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: height of the routes area in CSS pixels; None (default) grows with the experts."""

    # Send every checkpoint at once when checkpoints x samples x layers is at most this; beyond it,
    # only the shown checkpoint and its successor, and more as the slider asks for them.
    _PRELOAD_CELLS = 200_000

    def __init__(
        self,
        routing: Any,
        *,
        tau: float | None = 0.7,
        top_k: int | None = None,
        samples: Any = None,
        color_by: str = "domain",
        token_routing: Any = None,
        checkpoint: str | None = None,
        sample_ids: list[str] | None = None,
        palette: Palette | list[str] | None = None,
        compare: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._given_palette = palette
        self._export_all = False
        if samples is None:
            samples = store_samples(routing)
        frame, ids, tokens, names = _read(
            routing, token_routing, sample_ids, tokens_mode=kwargs.get("mode") == "tokens"
        )
        self._routing = frame
        self._samples_frame = samples
        self._sample_ids: list[str] = ids
        self._weights: dict[int, np.ndarray] = {}
        self._rows: dict[int, dict[str, np.ndarray]] = {}
        self._loaded: tuple[int, ...] = ()
        self._token_frame = tokens
        with self.hold_sync():
            self.set_trait("checkpoints", names)
            self.top_k = top_k
            self.tau = None if top_k is not None else tau
            self.color_by = color_by
            self.checkpoint = checkpoint if checkpoint is not None else names[-1]
            self.compare = compare
            self._send_samples()
            self._send_paths()
            if self._token_frame is not None and self.token_sample is None:
                self.token_sample = _first_token_sample(self._token_frame)
            self._send_tokens()

    @classmethod
    def empty(
        cls,
        *,
        samples: Any = None,
        color_by: str = "domain",
        palette: Palette | list[str] | None = None,
        tau: float | None = 0.7,
        top_k: int | None = None,
        **kwargs: Any,
    ) -> PathwayDiagram:
        """A diagram with nothing to draw yet (it says so); :meth:`update` gives it data.

        For views made before their data exists, as the Explorer's are (marimo can create
        widgets only while a cell runs, not later from a trace running in the background).

        Examples
        --------
        >>> diagram = PathwayDiagram.empty(samples=samples)  # doctest: +SKIP
        >>> diagram.update(routing, samples=samples)  # doctest: +SKIP
        """
        self = cls.__new__(cls)
        GrokvizWidget.__init__(self, **kwargs)
        self._given_palette = palette
        self._export_all = False
        self._samples_frame = samples
        self._reset()
        with self.hold_sync():
            self.top_k = top_k
            self.tau = None if top_k is not None else tau
            self.color_by = color_by
            self._send_samples()
        return self

    def _reset(self) -> None:
        """Forget the data: nothing loaded, nothing cached."""
        self._loaded = ()
        self._routing = pl.DataFrame(schema=schema.ROUTING)
        self._sample_ids = []
        self._weights = {}
        self._rows = {}
        self._token_frame = None

    def clear(self) -> None:
        """Draw nothing again (keeping the settings), until the next :meth:`update`."""
        self._reset()
        with self.hold_sync():
            self.set_trait("checkpoints", [])
            self.checkpoint = None
            self.compare = None
            self.token_sample = None
            self.selected_token = None
            self._send_samples()
            self._paths = b""
            self._tokens = b""
            self._token_routes = b""
            self._n_layers = 0
            self._n_experts = 0

    def update(
        self,
        routing: Any,
        *,
        samples: Any = None,
        token_routing: Any = None,
        sample_ids: list[str] | None = None,
    ) -> None:
        """Replace the data drawn and send it, keeping the user's settings.

        The arguments mean what they mean to the constructor. Kept: ``mode``, ``color_by``,
        ``tau`` / ``top_k``, ``aggregate``, ``selected_samples``, the size and theme, the shown
        ``checkpoint`` while the new data has it (else the last one), and ``token_sample`` /
        ``selected_token`` while the new token routing has them (else its first sample). Only
        traits whose bytes changed go to the front end.

        Parameters
        ----------
        routing
            The new routing table (``grokviz.schema.ROUTING``) or ``TraceStore``.
        samples
            The samples table colouring pathways by ``color_by``; default a store's samples.
        token_routing
            The new token routing table (``grokviz.schema.TOKEN_ROUTING``), or None for none.
        sample_ids
            Show only these samples, in this order; default every sample of ``routing``.

        Raises
        ------
        EmptyInputError
            ``routing`` has no rows.
        ValueError
            ``mode`` is ``"tokens"`` and no ``token_routing`` is given, or ``color_by`` is not a
            column of ``samples``. The widget is left as it was.

        Examples
        --------
        >>> diagram = PathwayDiagram(first_batch, samples=samples)  # doctest: +SKIP
        >>> diagram.mode = "tokens"  # doctest: +SKIP
        >>> diagram.update(both_batches, samples=samples, token_routing=tokens)  # doctest: +SKIP
        >>> diagram.mode, len(diagram.sample_ids)  # doctest: +SKIP
        ('tokens', 32)
        """
        if samples is None:
            samples = store_samples(routing)
        frame, ids, tokens, names = _read(
            routing, token_routing, sample_ids, tokens_mode=self.mode == "tokens"
        )
        # Check color_by against the new samples before anything changes.
        sample_groups(ids, samples, self.color_by, frame)
        shown = self.checkpoint if self.checkpoint in names else names[-1]
        compare = self.compare if self.compare in names else None
        token_sample, token = None, None
        if tokens is not None:
            have = tokens.filter(pl.col("sample_id") == (self.token_sample or ""))
            token_sample = self.token_sample if have.height else _first_token_sample(tokens)
            kept = token_sample == self.token_sample
            if kept and self.selected_token in set(have["token_index"].to_list()):
                token = self.selected_token
        # The observers stay idle until _send_paths sets _loaded again; every cache goes.
        self._loaded = ()
        self._routing = frame
        self._samples_frame = samples
        self._sample_ids = ids
        self._token_frame = tokens
        self._weights.clear()
        self._rows.clear()
        with self.hold_sync():
            self.set_trait("checkpoints", names)
            self.checkpoint = shown
            self.compare = compare
            self.token_sample = token_sample
            self.selected_token = token
            self._send_samples()
            self._send_paths(force=True)
            self._send_tokens()

    # -- data --------------------------------------------------------------------------------

    def _weights_of(self, index: int) -> np.ndarray:
        if index not in self._weights:
            w, _ = routing_array(self._routing, self.checkpoints[index], self._sample_ids)
            self._weights[index] = w
        return self._weights[index]

    def _window(self) -> tuple[int, ...]:
        n = len(self.checkpoints)
        first = self._weights_of(0)
        cells = n * first.shape[0] * first.shape[1]
        if cells <= self._PRELOAD_CELLS or self._export_all:
            return tuple(range(n))
        i = self.checkpoints.index(self.checkpoint) if self.checkpoint in self.checkpoints else 0
        window = {i, i + 1} if i + 1 < n else {max(0, i - 1), i}
        if self.compare in self.checkpoints:
            window.add(self.checkpoints.index(self.compare))
        return tuple(sorted(window))

    def _prepare_export(self) -> None:
        """Send every checkpoint: an HTML page has no kernel to ask for the next one."""
        self._export_all = True
        if self._ready():
            self._send_paths()

    def _send_paths(self, *, force: bool = False) -> None:
        window = self._window()
        if window == self._loaded and not force:
            return
        for index in window:
            if index not in self._rows:
                self._rows[index] = path_rows(
                    {index: self._weights_of(index)}, tau=self.tau, top_k=self.top_k
                )
        merged = {
            name: np.concatenate([self._rows[i][name] for i in window])
            for name in self._rows[window[0]]
        }
        w = self._weights_of(window[0])
        with self.hold_sync():
            self._n_layers = int(w.shape[1])
            self._n_experts = int(w.shape[2])
            self._paths = table_to_ipc(merged)
        self._loaded = window

    def _send_samples(self) -> None:
        groups = sample_groups(self._sample_ids, self._samples_frame, self.color_by, self._routing)
        with self.hold_sync():
            self._use_palette(
                self._given_palette,
                sorted(set(groups)),
                samples=self._samples_frame,
                by=self.color_by,
            )
            self._samples = table_to_ipc({"sample_id": self._sample_ids, "group": groups})

    def _send_tokens(self) -> None:
        frame = self._token_frame
        if frame is None or self.token_sample is None:
            self._tokens = b""
            self._token_routes = b""
            return
        rows = frame.filter(pl.col("sample_id") == self.token_sample)
        tokens = rows.select("token_index", "token").unique("token_index").sort("token_index")
        here = rows.filter(pl.col("checkpoint") == self.checkpoint).sort("token_index", "layer")
        exploded = here.select("token_index", "layer", "experts", "weights").explode(
            "experts", "weights"
        )
        with self.hold_sync():
            self._tokens = table_to_ipc(
                {
                    "token_index": tokens["token_index"].to_numpy().astype(np.int32),
                    "token": tokens["token"].to_list(),
                }
            )
            self._token_routes = table_to_ipc(
                {
                    "token_index": exploded["token_index"].to_numpy().astype(np.int32),
                    "layer": exploded["layer"].to_numpy().astype(np.uint16),
                    "expert": exploded["experts"].to_numpy().astype(np.uint16),
                    "weight": exploded["weights"].to_numpy().astype(np.float32),
                }
            )

    # -- reactions ---------------------------------------------------------------------------

    @t.observe("checkpoint", "compare")
    def _on_checkpoint(self, change: dict[str, Any]) -> None:
        if not self._ready():
            return
        self._send_paths()
        if change["name"] == "checkpoint":
            self._send_tokens()

    @t.validate("compare")
    def _check_compare(self, proposal: dict[str, Any]) -> str | None:
        value = proposal["value"]
        known = list(self.checkpoints)
        if value is not None and known and value not in known:
            msg = f"compare={value!r} is not a checkpoint of this diagram; choose one of {known}"
            raise t.TraitError(msg)
        return value

    def set_pathways(self, *, tau: float | None = None, top_k: int | None = None) -> None:
        """Choose the pathway definition in one step: ``tau`` or ``top_k`` (the other is None).

        Examples
        --------
        >>> diagram.set_pathways(top_k=2)  # doctest: +SKIP
        """
        if (tau is None) == (top_k is None):
            msg = f"give exactly one of tau (e.g. 0.7) and top_k (e.g. 2); got tau={tau}, top_k={top_k}"
            raise InputError(msg)
        if (self.tau, self.top_k) == (tau, top_k):
            return
        with self.hold_sync():
            if top_k is not None:
                self.top_k = top_k  # the observer clears tau
            else:
                self.tau = tau

    @t.observe("tau", "top_k")
    def _on_selection_rule(self, change: dict[str, Any]) -> None:
        # tau and top_k exclude each other; clearing one re-enters here once, which recomputes.
        if change["name"] == "top_k" and change["new"] is not None and self.tau is not None:
            self.tau = None
            return
        if change["name"] == "tau" and change["new"] is not None and self.top_k is not None:
            self.top_k = None
            return
        if not self._ready():
            return
        if self.tau is None and self.top_k is None:
            msg = "set one of tau (e.g. 0.7) or top_k (e.g. 8) to select each layer's experts"
            raise t.TraitError(msg)
        self._rows.clear()
        self._send_paths(force=True)

    @t.observe("color_by")
    def _on_color_by(self, change: dict[str, Any]) -> None:
        if self._ready():
            self._send_samples()

    @t.observe("token_sample")
    def _on_token_sample(self, change: dict[str, Any]) -> None:
        if self._ready():
            with self.hold_sync():
                self.selected_token = None
                self._send_tokens()

    @t.observe("selected_samples")
    def _on_selection(self, change: dict[str, Any]) -> None:
        # The token mode follows the latest selected sample that has token routing.
        frame = self._token_frame
        new = [s for s in change["new"] if s not in (change["old"] or [])]
        if frame is None or not new:
            return
        if frame.filter(pl.col("sample_id") == new[-1]).height:
            self.token_sample = new[-1]

    def _ready(self) -> bool:
        return hasattr(self, "_routing") and bool(self.checkpoints) and self._loaded != ()

    # -- public helpers ----------------------------------------------------------------------

    @property
    def sample_ids(self) -> list[str]:
        """The samples drawn, in index order (the ``sample`` column of the pathway rows)."""
        return list(self._sample_ids)

    def pathway(self, sample_id: str, checkpoint: str | None = None) -> list[list[int]]:
        """The experts of ``sample_id`` per layer at ``checkpoint`` (default the shown one).

        Examples
        --------
        >>> diagram.pathway("math-0007")  # doctest: +SKIP
        [[3, 1], [9], [12, 4, 5]]
        """
        from grokviz.pathways import select_experts

        if sample_id not in self._sample_ids:
            msg = f"sample {sample_id!r} is not drawn here; choose one of {self._sample_ids[:5]}..."
            raise UnknownSampleError(msg)
        name = checkpoint or self.checkpoint
        if name not in self.checkpoints:
            msg = f"checkpoint {name!r} is not in this widget's data; choose one of {self.checkpoints}"
            raise UnknownCheckpointError(msg)
        index = self.checkpoints.index(name)
        w = self._weights_of(index)[self._sample_ids.index(sample_id)][None]
        return [layer.tolist() for layer in select_experts(w, tau=self.tau, top_k=self.top_k)[0]]
