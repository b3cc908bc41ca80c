"""Routing pathways: which experts a sample passes through, layer by layer (DESIGN.md §1).

A sample's pathway is, per MoE layer, its experts ranked by mean routing weight (descending) and
kept until their cumulative weight exceeds a threshold ``tau`` (paper: 0.7), or a fixed top-k.
The layers' lists are concatenated. This module builds pathways from routing weights, packs them
into integer symbol arrays for the edit-distance kernels of :mod:`grokviz.metrics.distance`, and
converts to and from the paper's string form ``"3,1,5-9,1"``.

Examples
--------
>>> import numpy as np
>>> g = np.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]])  # 1 sample, 2 layers, 3 experts
>>> [layer.tolist() for layer in select_experts(g)[0]]
[[0, 1], [2]]
>>> to_string([[0, 1], [2]])
'0,1-2'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, InputError

__all__ = [
    "PackedPathways",
    "encode",
    "from_string",
    "pathways",
    "select_experts",
    "to_string",
]

# The characters of the paper's string form, in symbol order for ``encode(unit="char")``.
_CHAR_ALPHABET = "0123456789,-"
_CHAR_SYMBOL = {c: i for i, c in enumerate(_CHAR_ALPHABET)}
# ``to_strings`` maps symbol s to chr(_CHAR_BASE + s), skipping the surrogate block so every
# character is a valid code point.
_CHAR_BASE = 0x100
_SURROGATE_START, _SURROGATE_END = 0xD800, 0xE000


def symbols_to_strings(symbols: np.ndarray, lengths: np.ndarray) -> list[str]:
    """One string per row of ``symbols`` (non-negative ints), one character per symbol.

    A bijection from symbol sequences to strings, so edit distances are preserved; used to hand
    pathways to rapidfuzz. Vectorised through a UTF-32 decode rather than a ``chr`` per symbol.
    """
    if symbols.size == 0:
        return ["" for _ in range(len(lengths))]
    codes = symbols.astype(np.int64) + _CHAR_BASE
    codes = np.where(codes >= _SURROGATE_START, codes + (_SURROGATE_END - _SURROGATE_START), codes)
    if codes.max(initial=0) > 0x10FFFF:
        msg = f"symbol {int(symbols.max())} is too large to map to a character"
        raise InputError(msg)
    raw = codes.astype("<u4")
    return [raw[i, : lengths[i]].tobytes().decode("utf-32-le") for i in range(len(lengths))]


@dataclass(frozen=True)
class PackedPathways:
    """Pathways as a padded integer array, the form the edit-distance kernels work on.

    Attributes
    ----------
    symbols : numpy.ndarray
        ``int32 [N, max_len]``: row ``i`` holds pathway ``i``'s symbols, padded with ``-1``.
    lengths : numpy.ndarray
        ``int32 [N]``: the number of real symbols of each pathway.
    alphabet_size : int
        Symbols are in ``0 .. alphabet_size - 1``.
    sample_ids : list of str or None
        The sample of each row, when known.

    Examples
    --------
    >>> p = encode([[np.array([3, 1]), np.array([5])]], num_experts=8)
    >>> p.symbols.tolist(), p.lengths.tolist(), p.alphabet_size
    ([[3, 1, 8, 5]], [4], 9)
    """

    symbols: np.ndarray
    lengths: np.ndarray
    alphabet_size: int
    sample_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.symbols.ndim != 2 or self.lengths.shape != (self.symbols.shape[0],):
            msg = (
                f"symbols must be [N, max_len] and lengths [N]; got shapes "
                f"{self.symbols.shape} and {self.lengths.shape}"
            )
            raise InputError(msg)
        if self.sample_ids is not None and len(self.sample_ids) != len(self.lengths):
            msg = f"{len(self.sample_ids)} sample_ids for {len(self.lengths)} pathways"
            raise InputError(msg)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def to_strings(self) -> list[str]:
        """One string per pathway, one character per symbol (``chr(0x100 + s)``), for rapidfuzz.

        Examples
        --------
        >>> encode([[np.array([0, 1])]], num_experts=2).to_strings() == ["\\u0100\\u0101"]
        True
        """
        return symbols_to_strings(self.symbols, self.lengths)


def _as_weights(weights: Any) -> np.ndarray:
    """``weights`` (numpy or torch, ``[N, L, K]``) as a float64 numpy array, validated."""
    if hasattr(weights, "detach"):  # a torch tensor, on any device
        weights = weights.detach().to("cpu").double().numpy()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        msg = f"weights must have shape [N samples, L layers, K experts]; got shape {w.shape}"
        raise InputError(msg)
    if w.size and not np.isfinite(w).all():
        msg = "weights contain NaN or infinite values; pass finite routing probabilities"
        raise InputError(msg)
    if w.size and w.min() < 0:
        msg = (
            f"weights must be non-negative routing probabilities (softmax outputs); the smallest "
            f"is {w.min():.4g}. Apply a softmax to router logits first."
        )
        raise InputError(msg)
    return w


def _rank(w: np.ndarray, tau: float | None, top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Experts of each row of ``w [..., K]`` in rank order, and how many of them to keep."""
    if (tau is None) == (top_k is None):
        msg = f"give exactly one of tau and top_k; got tau={tau!r}, top_k={top_k!r}"
        raise InputError(msg)
    k = w.shape[-1]
    # A stable sort of the negated weights ranks by weight descending, equal weights by lower
    # expert id first.
    order = np.argsort(-w, axis=-1, kind="stable")
    if top_k is not None:
        if not 1 <= top_k <= k:
            msg = f"top_k must be between 1 and the number of experts {k}; got {top_k}"
            raise InputError(msg)
        counts = np.full(w.shape[:-1], top_k, dtype=np.int64)
        return order, counts
    assert tau is not None
    if not 0 < tau <= 1:
        msg = f"tau must be in (0, 1]; got {tau}"
        raise InputError(msg)
    cumulative = np.cumsum(np.take_along_axis(w, order, axis=-1), axis=-1)
    # Keep experts up to and including the first whose cumulative weight is strictly greater
    # than tau: one more than the number of prefixes still <= tau (cumsum never decreases).
    counts = np.minimum((cumulative <= tau).sum(axis=-1) + 1, k)
    return order, counts


def select_experts(
    weights: Any, *, tau: float | None = 0.7, top_k: int | None = None
) -> list[list[np.ndarray]]:
    """Each sample's experts per layer, in rank order: the pathway before concatenation.

    Per sample and layer, experts are ranked by weight, descending; equal weights rank the lower
    expert id first. With ``tau``, experts are kept until their cumulative weight *exceeds* tau
    (strictly greater, the paper's wording): weights ``.5, .3, .2`` and ``tau=.7`` keep 2 experts,
    while ``.5, .2, .3`` keep 3, since ``.5 + .2`` only reaches tau. Sums are taken in float64 from
    the weights as given, so a sum that equals tau only up to rounding falls on either side. If
    the weights never exceed tau (e.g. ``tau=1``), all K experts are kept. With ``top_k``, the
    ``top_k`` highest experts are kept.

    Parameters
    ----------
    weights
        Routing weights ``[N, L, K]`` (numpy or torch): per sample and layer, the full-softmax
        weights averaged over the sample's tokens. Must be non-negative.
    tau
        Cumulative-weight threshold in ``(0, 1]``. Set ``tau=None`` to use ``top_k``.
    top_k
        Fixed number of experts per layer. Exactly one of ``tau`` and ``top_k`` may be given.

    Returns
    -------
    list of list of numpy.ndarray
        Per sample, ``L`` int64 arrays of expert ids in rank order.

    Examples
    --------
    >>> g = np.array([[[0.5, 0.3, 0.2]], [[0.2, 0.2, 0.6]]])
    >>> [[e.tolist() for e in s] for s in select_experts(g, tau=0.7)]
    [[[0, 1]], [[2, 0]]]
    >>> [[e.tolist() for e in s] for s in select_experts(g, tau=None, top_k=1)]
    [[[0]], [[2]]]
    """
    w = _as_weights(weights)
    order, counts = _rank(w, tau, top_k)
    n, n_layers, k = w.shape
    keep = np.arange(k) < counts[..., None]
    flat = order[keep]
    cuts = np.cumsum(counts.ravel())[:-1]
    per_row = np.split(flat, cuts) if flat.size else [flat] * (n * n_layers)
    return [per_row[i * n_layers : (i + 1) * n_layers] for i in range(n)]


def pathways(
    routing: pl.DataFrame,
    *,
    tau: float | None = 0.7,
    top_k: int | None = None,
    layers: Sequence[int] | None = None,
) -> pl.DataFrame:
    """Pathways from a routing table: one row per checkpoint, sample and layer.

    Parameters
    ----------
    routing
        A frame in the ``routing`` schema (checkpoint, step, sample_id, layer, weights), or
        anything polars reads through the Arrow interface.
    tau, top_k
        Expert selection, as in :func:`select_experts`.
    layers
        Keep only these MoE layers (0-based indices among the model's MoE layers).

    Returns
    -------
    polars.DataFrame
        Columns checkpoint, step, sample_id, layer, experts (``list[i16]``, in rank order), in the
        input's row order.

    Examples
    --------
    >>> routing = pl.DataFrame({
    ...     "checkpoint": ["c0", "c0"], "step": [0, 0], "sample_id": ["a", "a"],
    ...     "layer": [0, 1], "weights": [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]})
    >>> pathways(routing)["experts"].to_list()
    [[0, 1], [2]]
    """
    import pyarrow as pa

    frame = schema.conform(routing, schema.ROUTING, name="routing")
    if layers is not None:
        frame = frame.filter(pl.col("layer").is_in([int(x) for x in layers]))
    keys = frame.select("checkpoint", "step", "sample_id", "layer")
    if frame.height == 0:
        return keys.with_columns(pl.lit(None, dtype=pl.List(pl.Int16())).alias("experts"))
    sizes = frame["weights"].list.len()
    k = int(sizes[0])
    if sizes.n_unique() != 1 or sizes.null_count():
        msg = (
            f"every routing row needs the same number of expert weights; found sizes "
            f"{sorted(sizes.unique().to_list(), key=lambda x: (x is None, x))}"
        )
        raise InputError(msg)
    w = frame["weights"].explode().to_numpy().astype(np.float64).reshape(frame.height, 1, k)
    w = _as_weights(w)
    order, counts = _rank(w[:, 0, :], tau, top_k)
    keep = np.arange(k) < counts[:, None]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = order[keep].astype(np.int16)
    experts = pl.from_arrow(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)))
    assert isinstance(experts, pl.Series)
    return keys.with_columns(experts.alias("experts"))


def to_string(layers: Sequence[Sequence[int]] | Sequence[np.ndarray]) -> str:
    """The paper's string form of a pathway: experts joined by ``,``, layers by ``-``.

    Layers must be non-empty for :func:`from_string` to read the string back.

    Examples
    --------
    >>> to_string([[3, 1, 5], [9, 1]])
    '3,1,5-9,1'
    """
    parts = []
    for layer in layers:
        ids = [int(e) for e in layer]
        if any(e < 0 for e in ids):
            msg = f"expert ids must be non-negative; got layer {ids}"
            raise InputError(msg)
        parts.append(",".join(map(str, ids)))
    return "-".join(parts)


def from_string(s: str) -> list[list[int]]:
    """Read a pathway in the paper's string form back into per-layer expert lists.

    Examples
    --------
    >>> from_string("3,1,5-9,1")
    [[3, 1, 5], [9, 1]]
    >>> from_string("")
    []
    """
    if s == "":
        return []
    try:
        return [[int(e) for e in layer.split(",")] for layer in s.split("-")]
    except ValueError:
        msg = (
            f"{s!r} is not a pathway string; expected expert ids joined by ',' and layers by "
            f"'-', e.g. '3,1,5-9,1'"
        )
        raise InputError(msg) from None


def _layers_from_frame(frame: pl.DataFrame) -> tuple[list[list[np.ndarray]], list[str]]:
    """Per sample (first-appearance order), its layers' expert arrays in layer order."""
    missing = [c for c in ("sample_id", "layer", "experts") if c not in frame.columns]
    if missing:
        msg = f"a pathways frame needs columns sample_id, layer, experts; missing {missing}"
        raise InputError(msg)
    if "checkpoint" in frame.columns and frame["checkpoint"].n_unique() > 1:
        names = frame["checkpoint"].unique(maintain_order=True).to_list()
        msg = (
            f"the pathways frame holds {len(names)} checkpoints ({names[:5]}...); distances "
            f"compare samples of one checkpoint. Encode each separately, e.g. "
            f"`for part in frame.partition_by('checkpoint'): encode(part)`"
        )
        raise InputError(msg)
    grouped = (
        frame.with_row_index("_row")
        .sort("layer")
        .group_by("sample_id", maintain_order=False)
        .agg(pl.col("layer"), pl.col("experts"), pl.col("_row").min())
        .sort("_row")
    )
    layer_sets = grouped["layer"].to_list()
    if any(layers != layer_sets[0] for layers in layer_sets):
        bad = next(i for i, layers in enumerate(layer_sets) if layers != layer_sets[0])
        msg = (
            f"sample {grouped['sample_id'][bad]!r} has layers {layer_sets[bad]} but sample "
            f"{grouped['sample_id'][0]!r} has {layer_sets[0]}; every pathway needs the same layers"
        )
        raise InputError(msg)
    paths = [[np.asarray(e, dtype=np.int64) for e in row] for row in grouped["experts"].to_list()]
    return paths, grouped["sample_id"].to_list()


def _pack(seqs: list[np.ndarray], alphabet_size: int, ids: list[str] | None) -> PackedPathways:
    lengths = np.array([len(s) for s in seqs], dtype=np.int32)
    symbols = np.full((len(seqs), int(lengths.max(initial=0))), -1, dtype=np.int32)
    if lengths.sum():
        mask = np.arange(symbols.shape[1]) < lengths[:, None]
        symbols[mask] = np.concatenate(seqs)
    return PackedPathways(symbols, lengths, alphabet_size, ids)


def encode(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    unit: Literal["expert", "char"] = "expert",
    num_experts: int | None = None,
) -> PackedPathways:
    """Pack pathways into integer symbols for edit distances.

    Parameters
    ----------
    paths
        Per sample, its layers' expert lists (the output of :func:`select_experts`), or a
        :func:`pathways` frame of one checkpoint (samples in first-appearance order, each
        sample's layers in layer order).
    unit
        ``"expert"``: one symbol per expert id (``0 .. K-1``) and the separator symbol ``K``
        between consecutive layers, no trailing separator. ``"char"``: one symbol per character
        of the paper's string form (:func:`to_string`): digits ``0-9`` are symbols 0-9, ``,`` is
        10 and ``-`` is 11.
    num_experts
        ``K``, which fixes the separator symbol of ``unit="expert"``. By default one more than
        the largest expert id seen; distances do not depend on it.

    Returns
    -------
    PackedPathways

    Examples
    --------
    >>> encode([[[3, 1], [5]]], num_experts=8).symbols.tolist()
    [[3, 1, 8, 5]]
    >>> encode([[[3, 1], [5]]], unit="char").to_strings()[0] == "".join(
    ...     chr(0x100 + "0123456789,-".index(c)) for c in "3,1-5")
    True
    """
    ids: list[str] | None = None
    if isinstance(paths, pl.DataFrame):
        layered, ids = _layers_from_frame(paths)
    else:
        layered = [[np.asarray(layer, dtype=np.int64).ravel() for layer in p] for p in paths]
    if not layered:
        msg = "no pathways to encode; select experts for at least one sample"
        raise EmptyInputError(msg)
    if unit == "char":
        char_seqs = [
            np.array([_CHAR_SYMBOL[c] for c in to_string(p)], dtype=np.int32) for p in layered
        ]
        return _pack(char_seqs, len(_CHAR_ALPHABET), ids)
    if unit != "expert":
        msg = f"unit must be 'expert' or 'char'; got {unit!r}"
        raise InputError(msg)
    flat = [layer for p in layered for layer in p]
    biggest = max((int(layer.max()) for layer in flat if layer.size), default=-1)
    if flat and min((int(layer.min()) for layer in flat if layer.size), default=0) < 0:
        msg = "expert ids must be non-negative"
        raise InputError(msg)
    k = biggest + 1 if num_experts is None else int(num_experts)
    if k <= biggest:
        msg = f"num_experts={k} but the pathways use expert id {biggest}; pass num_experts > {biggest}"
        raise InputError(msg)
    sep = np.array([k], dtype=np.int64)
    seqs = []
    for p in layered:
        parts: list[np.ndarray] = []
        for i, layer in enumerate(p):
            if i:
                parts.append(sep)
            parts.append(layer)
        seqs.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    return _pack(seqs, k + 1, ids)
