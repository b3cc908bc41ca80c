"""Exact Levenshtein distances between pathways, on a GPU (torch) or CPU (rapidfuzz).

Pathway distance is the edit distance with unit costs for insertion, deletion and substitution
(DESIGN.md §1). Pathways come as :class:`~grokviz.pathways.PackedPathways`, lists of strings, or
lists of integer sequences. Two backends give identical, exact results:

- ``"rapidfuzz"``: :mod:`rapidfuzz` on the CPU, all cores (``workers=-1``);
- ``"torch"``: Myers' bit-parallel algorithm (Myers 1999, in Hyyrö's formulation) with
  multi-word bit vectors, run for many pairs at once as ``int64`` tensors on any device.
  Each word holds 62 bits of a pattern, so sums with a carry never overflow a signed ``int64``
  and every shift stays non-negative: the arithmetic is exact by construction.

``backend="auto"`` picks torch when ``device`` names a CUDA device, or when ``device`` is None and
a CUDA GPU is available, and rapidfuzz otherwise.

The torch backend has three kernels, all exact. On CUDA with Triton (shipped with CUDA builds of
torch) a fused Triton kernel runs each block of pairs through all text symbols in one launch,
after a one-time check against eager mode. Without Triton, large CUDA workloads (about 10M pairs
of the paper's length and up) use ``torch.compile`` on the per-symbol step, smaller ones and the
CPU run it eagerly (~40 tensor ops per text symbol). A failing kernel falls back to eager mode.
``GROKVIZ_DISTANCE_KERNEL=eager|compile|triton`` forces one.

The monitored quantity is the average pairwise distance of a set of samples:
:func:`mean_pairwise_distance` gives it exactly, or estimated from a uniform sample of distinct
pairs with a confidence interval.

Examples
--------
>>> pairwise_distances(["kitten", "sitting", ""]).tolist()
[[0, 3, 6], [3, 0, 7], [6, 7, 0]]
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import polars as pl

from grokviz.errors import EmptyInputError
from grokviz.metrics._myers import _Myers, _pad, _Seqs
from grokviz.pathways import PackedPathways, _layers_from_frame, symbols_to_strings

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = [
    "DistanceEstimate",
    "cross_distances",
    "mean_cross_distance",
    "mean_pairwise_distance",
    "pair_distances",
    "pairwise_distances",
    "per_layer_mean_distance",
]

Backend = Literal["auto", "torch", "rapidfuzz"]
Paths = PackedPathways | Sequence[str] | Sequence[Sequence[int]] | Sequence[np.ndarray]

_log = logging.getLogger(__name__)

# Symbols above this are renumbered densely before building per-symbol bit masks or characters.
_MAX_DIRECT_SYMBOL = 1024
# Pairs enumerated at once for all-pairs work (index arrays of 64 MiB); the kernel sub-chunks.
_PAIR_BLOCK = 1 << 22


@dataclass(frozen=True)
class DistanceEstimate:
    """A mean distance with its confidence interval.

    Attributes
    ----------
    value : float
        The mean distance (exact, or the sample mean).
    ci_low, ci_high : float
        Confidence interval; both equal ``value`` when ``exact``.
    n_pairs : int
        Pairs the value was computed from.
    exact : bool
        Whether every pair was used.
    """

    value: float
    ci_low: float
    ci_high: float
    n_pairs: int
    exact: bool


# ---------------------------------------------------------------------------------------------
# inputs


def _as_seqs(paths: Paths) -> _Seqs:
    if isinstance(paths, PackedPathways):
        return _Seqs(paths.symbols.astype(np.int64), paths.lengths.astype(np.int64))
    if isinstance(paths, (str, bytes)):
        msg = "pass a list of pathways, not a single string"
        raise TypeError(msg)
    items = list(paths)
    if items and all(isinstance(p, str) for p in items):
        strings = [str(p) for p in items]
        codes = [
            np.frombuffer(s.encode("utf-32-le"), dtype="<u4").astype(np.int64) for s in strings
        ]
        return _Seqs(*_pad(codes), strings=strings)
    arrays = []
    for p in items:
        a = np.asarray(p.detach().cpu() if hasattr(p, "detach") else p).ravel()
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0):
            msg = f"pathways must be sequences of non-negative ints or strings; got {p!r:.80}"
            raise TypeError(msg)
        arrays.append(a.astype(np.int64))
    return _Seqs(*_pad(arrays))


def _compact(*groups: _Seqs) -> list[_Seqs]:
    """Renumber the symbols of all groups jointly to ``0 .. alphabet-1`` when they are large."""
    top = max((int(g.symbols.max(initial=-1)) for g in groups), default=-1)
    if top < _MAX_DIRECT_SYMBOL:
        return list(groups)
    values = np.unique(np.concatenate([g.symbols[g.symbols >= 0] for g in groups]))
    out = []
    for g in groups:
        ranks = np.where(g.symbols >= 0, np.searchsorted(values, g.symbols), -1)
        out.append(_Seqs(ranks, g.lengths, g.strings))
    return out


def _strings(*groups: _Seqs) -> list[list[str]]:
    """The groups as rapidfuzz strings, one character per symbol, consistent across groups."""
    if all(g.strings is not None for g in groups):
        return [list(g.strings) for g in groups if g.strings is not None]
    return [symbols_to_strings(g.symbols, g.lengths) for g in _compact(*groups)]


def _resolve(backend: Backend, device: Any) -> tuple[str, Any]:
    if backend not in ("auto", "torch", "rapidfuzz"):
        msg = f"backend must be 'auto', 'torch' or 'rapidfuzz'; got {backend!r}"
        raise ValueError(msg)
    if backend == "rapidfuzz":
        if device is not None and str(device) != "cpu":
            msg = f"the rapidfuzz backend runs on the CPU; use backend='torch' for device {device}"
            raise ValueError(msg)
        return "rapidfuzz", None
    import torch

    if device is None:
        cuda = torch.cuda.is_available()
        if backend == "auto" and not cuda:
            return "rapidfuzz", None
        return "torch", torch.device("cuda" if cuda else "cpu")
    dev = torch.device(device)
    if backend == "auto" and dev.type != "cuda":
        return "rapidfuzz", None
    return "torch", dev


# ---------------------------------------------------------------------------------------------
# pairs


def _n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _triangle_pairs(n: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs ``i < j`` of ``n`` items numbered row by row: ``k -> (i, j)``."""
    k = np.asarray(k, dtype=np.int64)
    row_start = lambda i: i * (2 * n - i - 1) // 2  # noqa: E731
    i = np.floor(((2 * n - 1) - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    i = np.clip(i, 0, max(n - 2, 0))
    # float rounding can leave i one off near a row boundary
    i = np.where(row_start(i) > k, i - 1, i)
    i = np.where(row_start(i + 1) <= k, i + 1, i)
    return i, k - row_start(i) + i + 1


def _all_pair_chunks(n: int, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    total = _n_pairs(n)
    for start in range(0, total, size):
        yield _triangle_pairs(n, np.arange(start, min(start + size, total)))


def _pairs_rapidfuzz(sa: list[str], sb: list[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if len(a) == 0:
        return np.zeros(0, dtype=np.int32)
    left, right = [sa[i] for i in a], [sb[j] for j in b]
    return np.asarray(
        process.cpdist(left, right, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


def _cdist(sa: list[str], sb: list[str]) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    # Passing the same list twice lets rapidfuzz compute one triangle and mirror it.
    return np.asarray(
        process.cdist(sa, sb, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


# ---------------------------------------------------------------------------------------------
# public: matrices and pairs


def pairwise_distances(
    paths: Paths,
    *,
    backend: Backend = "auto",
    device: Any = None,
    chunk_pairs: int | None = None,
) -> np.ndarray:
    """Edit distance between every two pathways.

    Parameters
    ----------
    paths
        :class:`~grokviz.pathways.PackedPathways`, a list of strings, or a list of int sequences.
    backend
        ``"torch"``, ``"rapidfuzz"``, or ``"auto"``: torch when ``device`` is a CUDA device or
        (``device=None``) a CUDA GPU is available, rapidfuzz otherwise.
    device
        Torch device for the torch backend (default: CUDA when available, else CPU).
    chunk_pairs
        Pairs processed at once by the torch backend, bounding its memory (default: about
        ``2**22 / words`` on CUDA, ``2**15 / words`` on CPU, words = ``ceil(length / 62)``).

    Returns
    -------
    numpy.ndarray
        ``int32 [N, N]``, symmetric with a zero diagonal.

    Examples
    --------
    >>> pairwise_distances([[1, 2, 3], [1, 3], []], backend="rapidfuzz").tolist()
    [[0, 1, 3], [1, 0, 2], [3, 2, 0]]
    """
    seqs = _as_seqs(paths)
    name, dev = _resolve(backend, device)
    n = len(seqs)
    if name == "rapidfuzz":
        (strings,) = _strings(seqs)
        return _cdist(strings, strings)
    out = np.zeros((n, n), dtype=np.int32)
    kernel = _Myers(_compact(seqs)[0], dev, chunk_pairs, total_pairs=_n_pairs(n))
    for i, j in _all_pair_chunks(n, _PAIR_BLOCK):
        d = kernel(i, j)
        out[i, j] = d
        out[j, i] = d
    return out


def cross_distances(
    a: Paths, b: Paths, *, backend: Backend = "auto", device: Any = None
) -> np.ndarray:
    """Edit distance between every pathway of ``a`` and every pathway of ``b``.

    Returns
    -------
    numpy.ndarray
        ``int32 [len(a), len(b)]``.

    Examples
    --------
    >>> cross_distances(["abc", "b"], ["abd"], backend="rapidfuzz").tolist()
    [[1], [2]]
    """
    sa, sb = _as_seqs(a), _as_seqs(b)
    name, dev = _resolve(backend, device)
    if name == "rapidfuzz":
        left, right = _strings(sa, sb)
        return _cdist(left, right)
    joint, offset = _joined(sa, sb)
    kernel = _Myers(joint, dev, None)
    i, j = np.divmod(np.arange(len(sa) * len(sb), dtype=np.int64), max(len(sb), 1))
    return kernel(i, j + offset).reshape(len(sa), len(sb))


def _joined(sa: _Seqs, sb: _Seqs) -> tuple[_Seqs, int]:
    """Both groups as one set of sequences (b after a) with a shared alphabet."""
    ca, cb = _compact(sa, sb)
    width = max(ca.symbols.shape[1], cb.symbols.shape[1])
    pad = lambda s: np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=-1)  # noqa: E731
    symbols = np.concatenate([pad(ca.symbols), pad(cb.symbols)])
    return _Seqs(symbols, np.concatenate([ca.lengths, cb.lengths])), len(sa)


def pair_distances(
    paths: Paths, pairs: np.ndarray, *, backend: Backend = "auto", device: Any = None
) -> np.ndarray:
    """Edit distances of chosen pairs of pathways.

    Parameters
    ----------
    paths
        The pathways, as for :func:`pairwise_distances`.
    pairs
        ``int [P, 2]``: row ``(i, j)`` asks for the distance between pathways ``i`` and ``j``.

    Returns
    -------
    numpy.ndarray
        ``int32 [P]``.

    Examples
    --------
    >>> pair_distances(["ab", "b", "abc"], np.array([[0, 2], [1, 1]]), backend="rapidfuzz").tolist()
    [1, 0]
    """
    seqs = _as_seqs(paths)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= len(seqs)):
        msg = f"pair indices must be in 0..{len(seqs) - 1}; got {pairs.min()}..{pairs.max()}"
        raise IndexError(msg)
    return _pair_distances(seqs, None, pairs[:, 0], pairs[:, 1], backend, device)


def _pair_distances(
    sa: _Seqs, sb: _Seqs | None, a: np.ndarray, b: np.ndarray, backend: Backend, device: Any
) -> np.ndarray:
    name, dev = _resolve(backend, device)
    if name == "rapidfuzz":
        if sb is None:
            (strings,) = _strings(sa)
            return _pairs_rapidfuzz(strings, strings, a, b)
        left, right = _strings(sa, sb)
        return _pairs_rapidfuzz(left, right, a, b)
    if sb is None:
        return _Myers(_compact(sa)[0], dev, None)(a, b)
    joint, offset = _joined(sa, sb)
    return _Myers(joint, dev, None)(a, b + offset)


# ---------------------------------------------------------------------------------------------
# public: means


def _estimate(d: np.ndarray, population: int, confidence: float) -> DistanceEstimate:
    """Mean of ``d`` sampled without replacement from ``population`` pairs, with a CLT interval."""
    n = len(d)
    value = float(d.mean(dtype=np.float64))
    if n >= population:
        return DistanceEstimate(value, value, value, n, True)
    if not 0 < confidence < 1:
        msg = f"confidence must be in (0, 1); got {confidence}"
        raise ValueError(msg)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    sd = float(d.std(ddof=1)) if n > 1 else math.inf
    fpc = math.sqrt((population - n) / (population - 1))
    half = z * sd / math.sqrt(n) * fpc
    return DistanceEstimate(value, value - half, value + half, n, False)


def _check_n_pairs(n_pairs: int | None) -> None:
    if n_pairs is not None and n_pairs < 2:
        msg = f"n_pairs must be at least 2 for a confidence interval; got {n_pairs}"
        raise ValueError(msg)


def mean_pairwise_distance(
    paths: Paths,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
) -> DistanceEstimate:
    """Average edit distance over the unordered pairs of distinct pathways.

    Exact over all ``N (N - 1) / 2`` pairs when ``n_pairs`` is None or at least that many;
    otherwise the mean of ``n_pairs`` distinct pairs drawn uniformly (without replacement),
    with a normal-approximation confidence interval including the finite-population correction.

    Parameters
    ----------
    paths
        The pathways, as for :func:`pairwise_distances`; at least 2.
    n_pairs
        Pairs to sample, or None for the exact mean.
    confidence
        Coverage of the interval, in ``(0, 1)``.
    seed
        Seed of the pair sample.
    backend, device
        As for :func:`pairwise_distances`.

    Returns
    -------
    DistanceEstimate

    Examples
    --------
    >>> mean_pairwise_distance(["ab", "ac", "bc"], backend="rapidfuzz").value
    1.3333333333333333
    """
    seqs = _as_seqs(paths)
    n = len(seqs)
    if n < 2:
        msg = f"the mean pairwise distance needs at least 2 pathways; got {n}"
        raise EmptyInputError(msg)
    _check_n_pairs(n_pairs)
    population = _n_pairs(n)
    if n_pairs is None or n_pairs >= population:
        name, dev = _resolve(backend, device)
        if name == "rapidfuzz":
            (strings,) = _strings(seqs)
            # symmetric with a zero diagonal: each unordered pair is counted twice
            value = int(_cdist(strings, strings).sum(dtype=np.int64)) / 2 / population
            return DistanceEstimate(value, value, value, population, True)
        kernel = _Myers(_compact(seqs)[0], dev, None, total_pairs=population)
        total = sum(
            int(kernel(i, j).sum(dtype=np.int64)) for i, j in _all_pair_chunks(n, _PAIR_BLOCK)
        )
        value = total / population
        return DistanceEstimate(value, value, value, population, True)
    k = np.random.default_rng(seed).choice(population, size=n_pairs, replace=False)
    i, j = _triangle_pairs(n, k)
    return _estimate(_pair_distances(seqs, None, i, j, backend, device), population, confidence)


def mean_cross_distance(
    a: Paths,
    b: Paths,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
) -> DistanceEstimate:
    """Average edit distance between a pathway of ``a`` and one of ``b`` (e.g. two domains).

    Exact over all ``len(a) * len(b)`` pairs, or sampled as in :func:`mean_pairwise_distance`.

    Examples
    --------
    >>> mean_cross_distance(["ab", "b"], ["abc"], backend="rapidfuzz").value
    1.5
    """
    sa, sb = _as_seqs(a), _as_seqs(b)
    if len(sa) == 0 or len(sb) == 0:
        msg = f"the mean cross distance needs pathways in both groups; got {len(sa)} and {len(sb)}"
        raise EmptyInputError(msg)
    _check_n_pairs(n_pairs)
    population = len(sa) * len(sb)
    if n_pairs is None or n_pairs >= population:
        k = np.arange(population, dtype=np.int64)
    else:
        k = np.random.default_rng(seed).choice(population, size=n_pairs, replace=False)
    i, j = np.divmod(k, len(sb))
    d = _pair_distances(sa, sb, i, j, backend, device)
    return _estimate(d, population, confidence)


@overload
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = ...,
    confidence: float = ...,
    seed: int = ...,
    backend: Backend = ...,
    device: Any = ...,
    estimates: Literal[False] = ...,
) -> np.ndarray: ...
@overload
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = ...,
    confidence: float = ...,
    seed: int = ...,
    backend: Backend = ...,
    device: Any = ...,
    estimates: Literal[True],
) -> list[DistanceEstimate]: ...
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
    estimates: bool = False,
) -> np.ndarray | list[DistanceEstimate]:
    """Mean pairwise distance of each layer's expert lists alone (the paper's Fig. 5).

    Parameters
    ----------
    paths
        Per sample, its layers' expert lists (:func:`~grokviz.pathways.select_experts`), or a
        :func:`~grokviz.pathways.pathways` frame of one checkpoint.
    n_pairs, confidence, seed, backend, device
        As for :func:`mean_pairwise_distance`, applied per layer (same pairs in every layer).
    estimates
        Return a :class:`DistanceEstimate` per layer instead of an array of means.

    Returns
    -------
    numpy.ndarray or list of DistanceEstimate
        ``float64 [L]`` means, or ``L`` estimates.

    Examples
    --------
    >>> per_layer_mean_distance([[[0, 1], [2]], [[0, 2], [2]]], backend="rapidfuzz").tolist()
    [1.0, 0.0]
    """
    if isinstance(paths, pl.DataFrame):
        layered, _ = _layers_from_frame(paths)
    else:
        layered = [[np.asarray(layer, dtype=np.int64).ravel() for layer in p] for p in paths]
    n_layers = {len(p) for p in layered}
    if len(n_layers) > 1:
        msg = f"every pathway needs the same number of layers; got {sorted(n_layers)}"
        raise ValueError(msg)
    count = n_layers.pop() if n_layers else 0
    out = [
        mean_pairwise_distance(
            [p[layer] for p in layered],
            n_pairs=n_pairs,
            confidence=confidence,
            seed=seed,
            backend=backend,
            device=device,
        )
        for layer in range(count)
    ]
    if estimates:
        return out
    return np.array([e.value for e in out], dtype=np.float64)
