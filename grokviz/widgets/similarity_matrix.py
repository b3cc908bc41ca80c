"""SimilarityMatrix: the pairwise pathway-distance heatmap, ordered by group or by clustering.

Front end: js/src/similarity_matrix.ts. The N x N matrix crosses the wire as raw little-endian
uint16 (integer distances up to 65535) or float32, already in display order, and is painted through
a colour lookup table onto a canvas. Clicking a cell selects the pair (``selected_pair``) and shows
the two pathways aligned by the edit-distance traceback, with substitutions, insertions and
deletions in distinct colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import traitlets as t

from grokviz.widgets._base import GrokvizWidget
from grokviz.widgets._serialization import (
    array_to_bytes,
    path_rows,
    routing_array,
    store_samples,
    table_to_ipc,
    traced_routing,
)
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
    raise ValueError(msg)


def _matrix_bytes(matrix: np.ndarray) -> tuple[bytes, str]:
    """The smallest exact encoding: uint16 for integer distances up to 65535, else float32."""
    m = np.asarray(matrix)
    integral = m.dtype.kind in "iu" or bool(np.all(np.mod(m, 1) == 0))
    if integral and m.size and m.min() >= 0 and m.max() <= np.iinfo(np.uint16).max:
        return array_to_bytes(m, "uint16"), "uint16"
    if integral and not m.size:
        return b"", "uint16"
    return array_to_bytes(m, "float32"), "float32"


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
    order
        ``"group"`` (default), ``"cluster"`` (hierarchical clustering leaf order) or ``"none"``.
    tau, top_k
        Expert selection for pathways (:func:`grokviz.pathways.select_experts`).
    **kwargs
        Other traits, e.g. ``theme="dark"``, ``size=700``.

    Examples
    --------
    >>> from grokviz.widgets import SimilarityMatrix
    >>> matrix = SimilarityMatrix(routing=routing, samples=samples, order="cluster")  # doctest: +SKIP
    >>> matrix.selected_pair  # after clicking a cell  # doctest: +SKIP
    ['math-0007', 'code-0012']
    """

    _view = t.Unicode("similarity_matrix").tag(sync=True)
    _matrix = t.Bytes(b"").tag(sync=True)
    """bytes: the distance matrix in display order, raw little-endian ``_dtype``, row-major."""
    _dtype = t.Enum(["uint16", "float32"], default_value="float32").tag(sync=True)
    """str: element type of ``_matrix``: uint16 for integer distances up to 65535, else float32."""
    _n = t.Int(0).tag(sync=True)
    """int: number of samples (the matrix is ``_n`` x ``_n``)."""
    _samples = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC (sample_id, group) in display order."""
    _paths = t.Bytes(b"").tag(sync=True)
    """bytes: Arrow IPC pathway rows (sample = display index) for the pair alignment."""
    _n_layers = t.Int(0).tag(sync=True)
    """int: number of MoE layers in ``_paths`` (0 without routing)."""

    order = t.Enum(["group", "cluster", "none"], default_value="group")
    """str: row order, ``"group"``, ``"cluster"`` or ``"none"``. Default ``"group"``."""
    selected_pair = t.List(t.Unicode(), maxlen=2).tag(sync=True)
    """list[str]: the two sample_ids of the clicked cell, or ``[]``. Default ``[]``."""
    size = t.Int(520).tag(sync=True)
    """int: side of the heatmap in CSS pixels. Default 520."""

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
        order: str = "group",
        tau: float | None = 0.7,
        top_k: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._live = False  # observers act only once the data is in place
        super().__init__(**kwargs)
        self._tau = None if top_k is not None else tau
        self._top_k = top_k
        self._color_by = color_by
        self._fixed, self._routing, self._ids, self._groups, names = _read(
            distances, routing, sample_ids, groups, samples, color_by
        )
        self._cache: dict[str, np.ndarray] = {}
        self._order_index = np.arange(len(self._ids))
        with self.hold_sync():
            self.set_trait("checkpoints", names)
            self.order = order
            if names:
                self.checkpoint = checkpoint if checkpoint is not None else names[-1]
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
        ``theme``, the compared ``checkpoint`` while the new data has it (else the last one), and
        ``selected_pair`` while both its samples are still compared (else ``[]``). Every
        distance computed from the old data is dropped.

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
            from grokviz.metrics.distance import pairwise_distances
            from grokviz.pathways import encode, select_experts

            w, _ = routing_array(self._routing, name, self._ids)
            paths = select_experts(w, tau=self._tau, top_k=self._top_k)
            packed = encode(paths, unit="expert", num_experts=w.shape[2])
            self._cache[name] = pairwise_distances(packed)
        return self._cache[name]

    def _send_data(self) -> None:
        matrix = self.distances()
        order = display_order(matrix, self._groups, self.order)
        self._order_index = order
        shown = matrix[np.ix_(order, order)]
        data, dtype = _matrix_bytes(shown)
        ids = [self._ids[i] for i in order]
        with self.hold_sync():
            self._matrix = data
            self._dtype = dtype
            self._n = len(ids)
            self._samples = table_to_ipc(
                {"sample_id": ids, "group": [self._groups[i] for i in order]}
            )
            if self._routing is not None and self.checkpoint is not None:
                w, n_layers = routing_array(self._routing, self.checkpoint, ids)
                self._paths = table_to_ipc(path_rows({0: w}, tau=self._tau, top_k=self._top_k))
                self._n_layers = n_layers
            else:
                self._paths = b""
                self._n_layers = 0

    @property
    def sample_ids(self) -> list[str]:
        """The samples in display order (rows and columns of the heatmap, top to bottom)."""
        return [self._ids[i] for i in self._order_index]

    # -- reactions ---------------------------------------------------------------------------

    @t.observe("checkpoint", "order")
    def _on_change(self, change: dict[str, Any]) -> None:
        if self._live:
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
        raise ValueError(msg)
    if fixed is not None and (fixed.ndim != 2 or fixed.shape[0] != fixed.shape[1]):
        msg = f"distances must be a square [N, N] matrix; got shape {fixed.shape}"
        raise ValueError(msg)
    n_fixed = None if fixed is None else fixed.shape[0]
    if sample_ids is None:
        if frame is not None:
            sample_ids = frame["sample_id"].unique(maintain_order=True).to_list()
        else:
            sample_ids = [str(i) for i in range(n_fixed or 0)]
    ids = [str(s) for s in sample_ids]
    if n_fixed is not None and len(ids) != n_fixed:
        msg = f"{len(ids)} sample_ids for a {n_fixed}x{n_fixed} distance matrix"
        raise ValueError(msg)
    if groups is not None:
        if len(groups) != len(ids):
            msg = f"{len(groups)} groups for {len(ids)} samples; give one per sample"
            raise ValueError(msg)
        group_list = [str(g) for g in groups]
    else:
        group_list = sample_groups(ids, samples, color_by, frame if frame is not None else _empty())
    names = [] if frame is None else checkpoint_order(frame)
    return fixed, frame, ids, group_list, names
