"""SimilarityMatrix: the pairwise pathway-distance heatmap, ordered by group or by clustering.

Front end: js/src/similarity_matrix.ts. Each checkpoint's N x N matrix crosses the wire as raw
little-endian uint16 (integer distances up to 65535) or float32, already in display order, and is
painted at the canvas's device resolution through a colour lookup table, so hover and click hit
exactly the cell drawn under the pointer however small cells are. The colour range is fixed across
checkpoints by default, so a colour means the same distance at every checkpoint. With more samples
than pixels it shows group means first (one block per pair of groups); clicking a block or the
mouse wheel zooms in. Clicking a cell selects the pair (``selected_pair``) and shows the two
pathways aligned by the edit-distance traceback, with a key for substitutions, insertions and
deletions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import traitlets as t

from grokviz.errors import InputError
from grokviz.widgets._base import GrokvizWidget
from grokviz.widgets._serialization import (
    array_to_bytes,
    path_rows,
    routing_array,
    store_samples,
    table_to_ipc,
    traced_routing,
)
from grokviz.widgets.palette import Palette
from grokviz.widgets.pathway_diagram import checkpoint_order, sample_groups

__all__ = ["SimilarityMatrix", "display_order"]


def display_order(distances: np.ndarray, groups: Sequence[str], order: str) -> np.ndarray:
    """Row order of the matrix: ``"group"``, ``"cluster"`` or ``"none"`` (as given).

    ``"group"`` puts groups in order of first appearance, samples of a group in their given order.

    ``"cluster"`` is the leaf order of average-linkage hierarchical clustering of the distances
    (scipy), which puts samples with similar pathways next to each other.

    Examples
    --------
    >>> d = np.array([[0, 5, 1], [5, 0, 5], [1, 5, 0]])
    >>> display_order(d, ["b", "a", "b"], "group").tolist()  # groups in order of appearance
    [0, 2, 1]
    >>> display_order(d, ["", "", ""], "cluster").tolist()  # samples 0 and 2 side by side
    [1, 0, 2]
    """
    n = distances.shape[0]
    if order == "none" or n < 2:
        return np.arange(n)
    if order == "group":
        first = {g: i for i, g in reversed(list(enumerate(groups)))}
        return np.array(sorted(range(n), key=lambda i: (first[groups[i]], i)), dtype=np.int64)
    if order == "cluster":
        from scipy.cluster.hierarchy import leaves_list, linkage
        from scipy.spatial.distance import squareform

        condensed = squareform(np.asarray(distances, dtype=np.float64), checks=False)
        return np.asarray(leaves_list(linkage(condensed, method="average")), dtype=np.int64)
    msg = f"order must be 'group', 'cluster' or 'none'; got {order!r}"
    raise InputError(msg)


def _matrix_dtype(matrices: Sequence[np.ndarray]) -> str:
    """The smallest exact encoding: uint16 for integer distances up to 65535, else float32."""
    for m in matrices:
        m = np.asarray(m)
        if not m.size:
            continue
        integral = m.dtype.kind in "iu" or bool(np.all(np.mod(m, 1) == 0))
        if not (integral and m.min() >= 0 and m.max() <= np.iinfo(np.uint16).max):
            return "float32"
    return "uint16"


def _matrix_bytes(matrix: np.ndarray) -> tuple[bytes, str]:
    """One matrix in its smallest exact encoding (see :func:`_matrix_dtype`)."""
    dtype = _matrix_dtype([matrix])
    return array_to_bytes(np.asarray(matrix), dtype), dtype


def off_diagonal_range(matrix: np.ndarray) -> tuple[float, float]:
    """Smallest and largest distance between two different samples (the diagonal is all 0).

    Examples
    --------
    >>> off_diagonal_range(np.array([[0, 3], [3, 0]]))
    (3.0, 3.0)
    """
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    if n < 2:
        return (0.0, 0.0)
    mask = ~np.eye(n, dtype=bool)
    values = m[mask]
    return (float(values.min()), float(values.max()))


class SimilarityMatrix(GrokvizWidget):
    """Pairwise pathway distances as a heatmap; click a cell to compare the two pathways.

    Parameters
    ----------
    distances
        A precomputed symmetric ``[N, N]`` distance matrix. When omitted, distances are computed
        from ``routing`` at ``checkpoint`` with :func:`grokviz.metrics.distance.pairwise_distances`
        (expert-symbol edit distance) and recomputed when ``checkpoint`` changes.
    routing
        A routing table (``grokviz.schema.ROUTING``) or ``TraceStore``: the pathways to compare
        and align. Optional when ``distances`` is given (the pair view then shows no alignment).
    checkpoint
        The checkpoint compared; default the last one.
    sample_ids
        The samples, in ``distances``' row order (required with ``distances`` unless ``routing``
        gives them); with ``routing`` alone, restricts and orders the samples compared.
    groups
        Each sample's group (same order as ``sample_ids``); or give ``samples`` and ``color_by``.
    samples, color_by
        A samples table and its column that groups samples (default ``"domain"``).
    palette
        The :class:`~grokviz.widgets.Palette` (or list of groups in hue order) colouring the group
        bands; default one derived from every value of ``samples[color_by]``.
    order
        ``"group"`` (default), ``"cluster"`` (hierarchical clustering leaf order) or ``"none"``.
    tau, top_k
        Expert selection for pathways (:func:`grokviz.pathways.select_experts`).
    color_range
        ``"fixed"`` (default): one colour range for every checkpoint, from the smallest to the
        largest distance between two samples over all checkpoints (estimated on 600 samples
        when there are more); ``"checkpoint"``: each checkpoint's own range; or ``(lo, hi)``.
    **kwargs
        Other traits, e.g. ``theme="dark"``, ``size=700``, ``display="groups"``.

    Examples
    --------
    >>> from grokviz.widgets import SimilarityMatrix
    >>> matrix = SimilarityMatrix(routing=routing, samples=samples, order="cluster")  # doctest: +SKIP
    >>> matrix.selected_pair  # after clicking a cell  # doctest: +SKIP
    ['math-0007', 'code-0012']
    """

    _view = t.Unicode("similarity_matrix").tag(sync=True)
    _matrices = t.Bytes(b"").tag(sync=True)
    """bytes: the loaded checkpoints' matrices in display order, raw little-endian ``_dtype``,
    row-major, one after another in ``_loaded`` order."""
    _loaded = t.List(t.Int()).tag(sync=True)
    """list[int]: indices into ``checkpoints`` of the matrices in ``_matrices`` ([0] without
    routing)."""
    _dtype = t.Enum(["uint16", "float32"], default_value="float32").tag(sync=True)
    """str: element type of ``_matrices``: uint16 for integer distances up to 65535, else float32."""
    _n = t.Int(0).tag(sync=True)
    """int: number of samples (each matrix is ``_n`` x ``_n``)."""
    _samples = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (sample_id, group) in display order."""
    _paths = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC pathway rows of the loaded checkpoints (sample = display index)."""
    _n_layers = t.Int(0).tag(sync=True)
    """int: number of MoE layers in ``_paths`` (0 without routing)."""
    _range = t.List(t.Float(), allow_none=True, default_value=None).tag(sync=True)
    """list[float] | None: the colour range [lo, hi] shared by every checkpoint, or None for each
    checkpoint's own."""

    tau = t.Float(0.7, allow_none=True).tag(sync=True)
    """float | None: cumulative-weight threshold of the pathways compared. Default 0.7."""
    top_k = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: a fixed number of experts per layer instead of ``tau``. Default None."""
    order = t.Enum(["group", "cluster", "none"], default_value="group")
    """str: row order, ``"group"``, ``"cluster"`` or ``"none"``. Default ``"group"``."""
    display = t.Enum(["auto", "samples", "groups"], default_value="auto").tag(sync=True)
    """str: ``"samples"`` (every pair), ``"groups"`` (mean distance of each pair of groups) or
    ``"auto"`` (default: group means while cells would be under one pixel)."""
    selected_pair = t.List(t.Unicode(), maxlen=2).tag(sync=True)
    """list[str]: the two sample_ids of the clicked cell, or ``[]``. Default ``[]``."""
    size = t.Int(None, allow_none=True).tag(sync=True)
    """int | None: side of the heatmap in CSS pixels; None (default) fits the output's width."""

    # Send every checkpoint's matrix at once up to this many matrix cells in all; beyond it, the
    # shown checkpoint only, the others when asked for.
    _PRELOAD_CELLS = 1_000_000
    # The fixed colour range is computed from every sample up to this many, else from this many.
    _RANGE_SAMPLES = 600

    def __init__(
        self,
        distances: np.ndarray | None = None,
        *,
        routing: Any = None,
        checkpoint: str | None = None,
        sample_ids: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        samples: Any = None,
        color_by: str = "domain",
        palette: Palette | list[str] | None = None,
        order: str = "group",
        tau: float | None = 0.7,
        top_k: int | None = None,
        color_range: str | tuple[float, float] = "fixed",
        **kwargs: Any,
    ) -> None:
        self._live = False  # observers act only once the data is in place
        super().__init__(**kwargs)
        self._color_by = color_by
        self._color_range = _check_range(color_range)
        self._export_all = False
        self._given_palette = palette
        self._fixed, self._routing, self._ids, self._groups, names = _read(
            distances, routing, sample_ids, groups, samples, color_by
        )
        self._samples_frame = (
            samples
            if samples is not None
            else (store_samples(routing) if routing is not None else None)
        )
        self._cache: dict[str, np.ndarray] = {}
        self._order_index = np.arange(len(self._ids))
        with self.hold_sync():
            self.set_trait("checkpoints", names)
            self.top_k = top_k
            self.tau = None if top_k is not None else tau
            self.order = order
            if names:
                self.checkpoint = checkpoint if checkpoint is not None else names[-1]
            self._live = True
            self._send_data()

    @classmethod
    def empty(
        cls,
        *,
        samples: Any = None,
        color_by: str = "domain",
        palette: Palette | list[str] | None = None,
        tau: float | None = 0.7,
        top_k: int | None = None,
        color_range: str | tuple[float, float] = "fixed",
        **kwargs: Any,
    ) -> SimilarityMatrix:
        """A matrix with nothing to compare yet (it says so); :meth:`update` gives it data.

        For views made before their data exists, as the Explorer's are.

        Examples
        --------
        >>> matrix = SimilarityMatrix.empty(samples=samples)  # doctest: +SKIP
        """
        self = cls.__new__(cls)
        self._live = False
        GrokvizWidget.__init__(self, **kwargs)
        self._color_by = color_by
        self._color_range = _check_range(color_range)
        self._export_all = False
        self._given_palette = palette
        self._samples_frame = samples
        self._fixed, self._routing, self._ids, self._groups = None, None, [], []
        self._cache = {}
        self._order_index = np.arange(0)
        with self.hold_sync():
            self.top_k = top_k
            self.tau = None if top_k is not None else tau
            self._live = True
            self._send_data()
        return self

    def clear(self) -> None:
        """Compare nothing again (keeping the settings), until the next :meth:`update`."""
        self._live = False
        self._fixed, self._routing, self._ids, self._groups = None, None, [], []
        self._cache.clear()
        self._order_index = np.arange(0)
        with self.hold_sync():
            self.selected_pair = []
            self.set_trait("checkpoints", [])
            self.checkpoint = None
            self._live = True
            self._send_data()

    def update(
        self,
        routing: Any = None,
        *,
        samples: Any = None,
        token_routing: Any = None,
        sample_ids: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        distances: np.ndarray | None = None,
    ) -> None:
        """Replace the samples compared and send the new matrix, keeping the user's settings.

        The arguments mean what they mean to the constructor (groups come from ``samples`` by
        the ``color_by`` it was built with). Kept: ``order``, ``tau`` / ``top_k``, ``size``,
        ``theme``, the palette, the compared ``checkpoint`` while the new data has it (else the
        last one), and ``selected_pair`` while both its samples are still compared (else ``[]``).
        Every distance computed from the old data is dropped.

        Parameters
        ----------
        routing
            The new routing table (``grokviz.schema.ROUTING``) or ``TraceStore``.
        samples
            The samples table grouping the samples; default a store's samples.
        token_routing
            Not used by the matrix: accepted so that every grokviz view updates with one call.
        sample_ids, groups, distances
            As for the constructor.

        Raises
        ------
        EmptyInputError
            ``routing`` has no rows.
        ValueError
            Neither ``routing`` nor ``distances`` is given, or they disagree on the number of
            samples. The widget is left as it was.

        Examples
        --------
        >>> matrix = SimilarityMatrix(routing=first_batch, samples=samples)  # doctest: +SKIP
        >>> matrix.order = "cluster"  # doctest: +SKIP
        >>> matrix.update(both_batches, samples=samples)  # doctest: +SKIP
        >>> matrix.order, matrix.distances().shape  # doctest: +SKIP
        ('cluster', (32, 32))
        """
        fixed, frame, ids, group_list, names = _read(
            distances, routing, sample_ids, groups, samples, self._color_by
        )
        shown = self.checkpoint if self.checkpoint in names else (names[-1] if names else None)
        self._live = False  # observers wait until the new data is in place
        self._fixed, self._routing, self._ids, self._groups = fixed, frame, ids, group_list
        if samples is not None:
            self._samples_frame = samples
        self._cache.clear()
        self._order_index = np.arange(len(ids))
        with self.hold_sync():
            if any(s not in ids for s in self.selected_pair):
                self.selected_pair = []
            self.set_trait("checkpoints", names)
            self.checkpoint = shown
            self._live = True
            self._send_data()

    # -- data --------------------------------------------------------------------------------

    def distances(self, checkpoint: str | None = None) -> np.ndarray:
        """The ``[N, N]`` distance matrix in ``sample_ids`` order (not display order).

        Examples
        --------
        >>> matrix.distances().shape  # doctest: +SKIP
        (200, 200)
        """
        if self._fixed is not None:
            return self._fixed
        name = checkpoint or self.checkpoint
        assert name is not None and self._routing is not None
        if name not in self._cache:
            self._cache[name] = self._pairwise(name, self._ids)
        return self._cache[name]

    def _pairwise(self, checkpoint: str, ids: Sequence[str]) -> np.ndarray:
        from grokviz.metrics.distance import pairwise_distances
        from grokviz.pathways import encode, select_experts

        assert self._routing is not None
        w, _ = routing_array(self._routing, checkpoint, list(ids))
        paths = select_experts(w, tau=self.tau, top_k=self.top_k)
        packed = encode(paths, unit="expert", num_experts=w.shape[2])
        return pairwise_distances(packed)

    def _fixed_range(self) -> list[float] | None:
        """The colour range shared by every checkpoint (see ``color_range``)."""
        if isinstance(self._color_range, tuple):
            return [float(self._color_range[0]), float(self._color_range[1])]
        if self._color_range == "checkpoint":
            return None
        if self._fixed is not None or not self.checkpoints:
            return list(off_diagonal_range(self.distances()))
        n = len(self._ids)
        if n <= self._RANGE_SAMPLES:
            ranges = [off_diagonal_range(self.distances(c)) for c in self.checkpoints]
        else:
            # A fixed, seeded subset: the range of 600 samples, widened by what is shown.
            rng = np.random.default_rng(0)
            subset = [
                self._ids[i] for i in sorted(rng.choice(n, self._RANGE_SAMPLES, replace=False))
            ]
            ranges = [off_diagonal_range(self._pairwise(c, subset)) for c in self.checkpoints]
            ranges += [off_diagonal_range(m) for m in self._cache.values()]
        return [min(r[0] for r in ranges), max(r[1] for r in ranges)]

    def _window(self) -> list[str | None]:
        """The checkpoints whose matrices go to the browser (None: the given matrix, no routing)."""
        if not self.checkpoints:
            return [None]
        if self._fixed is not None:
            return [self.checkpoint]  # the given matrix, with this checkpoint's pathways
        n = len(self._ids)
        if self._export_all or n * n * len(self.checkpoints) <= self._PRELOAD_CELLS:
            return list(self.checkpoints)
        return [self.checkpoint]

    def _send_data(self) -> None:
        if self._fixed is None and self._routing is None:
            self._send_nothing()
            return
        window = self._window()
        shown_name = self.checkpoint if self._fixed is None else None
        matrix = self.distances(shown_name)
        order = display_order(matrix, self._groups, self.order)
        self._order_index = order
        ix = np.ix_(order, order)
        matrices = [
            (matrix if self._fixed is not None or c == shown_name else self.distances(c))[ix]
            for c in window
        ]
        dtype = _matrix_dtype(matrices)
        ids = [self._ids[i] for i in order]
        group_list = [self._groups[i] for i in order]
        with self.hold_sync():
            self._use_palette(
                self._given_palette,
                sorted(set(group_list)),
                samples=self._samples_frame,
                by=self._color_by,
            )
            self._matrices = b"".join(array_to_bytes(m, dtype) for m in matrices)
            self._loaded = [0 if c is None else self.checkpoints.index(c) for c in window]
            self._dtype = dtype
            self._n = len(ids)
            self._range = self._fixed_range()  # type: ignore[assignment]
            self._samples = table_to_ipc({"sample_id": ids, "group": group_list})
            if self._routing is not None and self.checkpoint is not None:
                weights = {}
                n_layers = 0
                for c in window:
                    assert c is not None  # routing gives checkpoints
                    w, n_layers = routing_array(self._routing, c, ids)
                    weights[self.checkpoints.index(c)] = w
                self._paths = table_to_ipc(path_rows(weights, tau=self.tau, top_k=self.top_k))
                self._n_layers = n_layers
            else:
                self._paths = b""
                self._n_layers = 0

    def _send_nothing(self) -> None:
        with self.hold_sync():
            self._use_palette(
                self._given_palette, [], samples=self._samples_frame, by=self._color_by
            )
            self._matrices = b""
            self._loaded = []
            self._n = 0
            self._range = None  # type: ignore[assignment]
            self._samples = table_to_ipc({"sample_id": [], "group": []})
            self._paths = b""
            self._n_layers = 0

    def _prepare_export(self) -> None:
        """Send every checkpoint's matrix: an HTML page has no kernel to compute the next one."""
        if not self._export_all:
            self._export_all = True
            if self._live:
                self._send_data()

    @property
    def sample_ids(self) -> list[str]:
        """The samples in display order (rows and columns of the heatmap, top to bottom)."""
        return [self._ids[i] for i in self._order_index]

    def set_pathways(self, *, tau: float | None = None, top_k: int | None = None) -> None:
        """Choose the pathway definition in one step: ``tau`` or ``top_k`` (the other is None)."""
        if (tau is None) == (top_k is None):
            msg = f"give exactly one of tau (e.g. 0.7) and top_k (e.g. 2); got tau={tau}, top_k={top_k}"
            raise InputError(msg)
        if (self.tau, self.top_k) == (tau, top_k):
            return
        live, self._live = self._live, False
        try:
            with self.hold_sync():
                # Clear the one not given first, so that no moment has both set.
                if tau is None:
                    self.tau, self.top_k = None, top_k
                else:
                    self.top_k, self.tau = None, tau
        finally:
            self._live = live
        self._cache.clear()
        if self._live and self._routing is not None:
            self._send_data()

    # -- reactions ---------------------------------------------------------------------------

    @t.observe("checkpoint", "order")
    def _on_change(self, change: dict[str, Any]) -> None:
        if not self._live:
            return
        if change["name"] == "checkpoint" and self._loaded_all():
            return  # the browser has every checkpoint already; only the pair view follows
        self._send_data()

    def _loaded_all(self) -> bool:
        return bool(self.checkpoints) and len(self._loaded) == len(self.checkpoints)

    @t.observe("tau", "top_k")
    def _on_pathways(self, change: dict[str, Any]) -> None:
        if not self._live:
            return
        new = change["new"]
        if new is not None:
            other = "top_k" if change["name"] == "tau" else "tau"
            if getattr(self, other) is not None:
                self.set_pathways(**{change["name"]: new})
                return
        if self.tau is None and self.top_k is None:
            return  # mid-update: the other one follows
        self._cache.clear()
        if self._routing is not None:
            self._send_data()

    @t.validate("selected_pair")
    def _check_pair(self, proposal: dict[str, Any]) -> list[str]:
        pair = list(proposal["value"])
        if len(pair) not in (0, 2):
            msg = f"selected_pair takes two sample_ids or none; got {pair}"
            raise t.TraitError(msg)
        unknown = [s for s in pair if s not in getattr(self, "_ids", pair)]
        if unknown:
            msg = f"selected_pair names samples not in the matrix: {unknown}"
            raise t.TraitError(msg)
        return pair


def _check_range(value: Any) -> str | tuple[float, float]:
    if value in ("fixed", "checkpoint"):
        return str(value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        msg = f"color_range must be 'fixed', 'checkpoint' or (lo, hi); got {value!r}"
        raise InputError(msg) from None
    if not hi > lo:
        msg = f"color_range=(lo, hi) needs hi > lo; got {value!r}"
        raise InputError(msg)
    return (lo, hi)


def _empty() -> pl.DataFrame:
    return pl.DataFrame({"sample_id": []}, schema={"sample_id": pl.String()})


def _read(
    distances: np.ndarray | None,
    routing: Any,
    sample_ids: Sequence[str] | None,
    groups: Sequence[str] | None,
    samples: Any,
    color_by: str,
) -> tuple[np.ndarray | None, pl.DataFrame | None, list[str], list[str], list[str]]:
    """Check and conform a matrix's data: (distances, routing, ids, groups, checkpoints)."""
    fixed = None if distances is None else np.asarray(distances)
    if samples is None and routing is not None:
        samples = store_samples(routing)
    frame = None if routing is None else traced_routing(routing)
    if fixed is None and frame is None:
        msg = "give distances=... (an [N, N] matrix) or routing=... to compute them from"
        raise InputError(msg)
    if fixed is not None and (fixed.ndim != 2 or fixed.shape[0] != fixed.shape[1]):
        msg = f"distances must be a square [N, N] matrix; got shape {fixed.shape}"
        raise InputError(msg)
    n_fixed = None if fixed is None else fixed.shape[0]
    if sample_ids is None:
        if frame is not None:
            sample_ids = frame["sample_id"].unique(maintain_order=True).to_list()
        else:
            sample_ids = [str(i) for i in range(n_fixed or 0)]
    ids = [str(s) for s in sample_ids]
    if n_fixed is not None and len(ids) != n_fixed:
        msg = f"{len(ids)} sample_ids for a {n_fixed}x{n_fixed} distance matrix"
        raise InputError(msg)
    if groups is not None:
        if len(groups) != len(ids):
            msg = f"{len(groups)} groups for {len(ids)} samples; give one per sample"
            raise InputError(msg)
        group_list = [str(g) for g in groups]
    else:
        group_list = sample_groups(ids, samples, color_by, frame if frame is not None else _empty())
    names = [] if frame is None else checkpoint_order(frame)
    return fixed, frame, ids, group_list, names
