"""Exact Levenshtein distances between pathways, on a GPU (torch) or CPU (rapidfuzz).

Pathway distance is the edit distance with unit costs for insertion, deletion and substitution
(DESIGN.md §1). Pathways come as :class:`~grokviz.pathways.PackedPathways`, lists of strings, or
lists of integer sequences. The backends give identical, exact results:

- ``"rapidfuzz"``: :mod:`rapidfuzz` on the CPU, all cores (``workers=-1``);
- ``"torch"``: Myers' bit-parallel algorithm (Myers 1999, in Hyyrö's formulation) with
  multi-word bit vectors, run for many pairs at once as ``int64`` tensors on any device.
  Each word holds 62 bits of a pattern, so sums with a carry never overflow a signed ``int64``
  and every shift stays non-negative: the arithmetic is exact by construction;
- ``"stringzilla"`` (optional, ``pip install "grokviz[stringzilla]"`` for CPU cores or
  ``"grokviz[stringzilla-cuda]"`` for NVIDIA GPUs): StringZilla's ``LevenshteinDistances``
  engine over byte strings, one byte per symbol (at most 256 distinct symbols). Its engines
  score whole matrices, so it serves :func:`pairwise_distances`, :func:`cross_distances` and
  exact means, not chosen or sampled pairs.

``backend="auto"`` picks torch when ``device`` names a CUDA device, or when ``device`` is None and
a CUDA GPU is available, and rapidfuzz otherwise.

The torch backend has three kernels, all exact. On CUDA with Triton (shipped with CUDA builds of
torch) a fused Triton kernel runs each block of pairs through all text symbols in one launch,
after a one-time check against eager mode. Without Triton, large CUDA workloads (about 10M pairs
of the paper's length and up) use ``torch.compile`` on the per-symbol step, smaller ones and the
CPU run it eagerly (~40 tensor ops per text symbol). A failing kernel falls back to eager mode.
``GROKVIZ_DISTANCE_KERNEL=eager|compile|triton`` forces one. For all pairs of a set, the pairs,
the kernel and the matrix (or sum) stay on the device; one result is copied back.

The monitored quantity is the average pairwise distance of a set of samples:
:func:`mean_pairwise_distance` gives it exactly, or estimated from a uniform sample of distinct
pairs with a confidence interval. ``n_pairs="auto"`` chooses between the two by cost: exact
while all pairs cost at most about what 20,000 pairs of the paper's 470-symbol pathways cost
(one second or so of rapidfuzz on 2 CPU cores), otherwise a sample of that cost
(:func:`auto_pairs`). The sampled mean's 95 % interval is stated with it.

This module holds the public functions; turning inputs into sequences, choosing the backend and
enumerating pairs is :mod:`grokviz.metrics._distance_backends`'s, the torch kernels
:mod:`grokviz.metrics._myers`'s.

Examples
--------
>>> pairwise_distances(["kitten", "sitting", ""]).tolist()
[[0, 3, 6], [3, 0, 7], [6, 7, 0]]
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import polars as pl

from grokviz.errors import EmptyInputError, InputError

# The inputs, backends and pair enumeration live in _distance_backends; the private names stay
# importable from here.
from grokviz.metrics._distance_backends import _MAX_DIRECT_SYMBOL as _MAX_DIRECT_SYMBOL
from grokviz.metrics._distance_backends import (
    Backend,
    NPairs,
    Paths,
    _as_seqs,
    _cdist,
    _check_n_pairs,
    _compact,
    _n_pairs,
    _pair_distances,
    _resolve,
    _sample_size,
    _strings,
    _sz_bytes,
    _sz_matrix,
    _sz_no_pairs,
    _triangle_pairs,
    auto_pairs,
)
from grokviz.metrics._distance_backends import _joined as _joined
from grokviz.metrics._distance_backends import _pairs_rapidfuzz as _pairs_rapidfuzz
from grokviz.metrics._myers import _Myers
from grokviz.pathways import _layers_from_frame

__all__ = [
    "DistanceEstimate",
    "SampledDistanceWarning",
    "auto_pairs",
    "cross_distances",
    "mean_cross_distance",
    "mean_pairwise_distance",
    "pair_distances",
    "pairwise_distances",
    "per_layer_mean_distance",
]


_log = logging.getLogger(__name__)


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


class SampledDistanceWarning(UserWarning):
    """Some distance values are means of sampled pairs, with their intervals beside them.

    Issued by :func:`grokviz.analyze` when ``n_pairs`` left some group too large for all pairs;
    silence it with ``warnings.simplefilter("ignore", SampledDistanceWarning)``.
    """


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
        ``"torch"``, ``"rapidfuzz"``, ``"stringzilla"``, or ``"auto"``: torch when ``device`` is
        a CUDA device or (``device=None``) a CUDA GPU is available, rapidfuzz otherwise.
    device
        Torch device for the torch backend (default: CUDA when available, else CPU); for
        stringzilla ``"cpu"`` (all cores) or ``"cuda[:i]"`` (default: the GPU when StringZilla's
        CUDA build and a GPU are there).
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
    if name == "stringzilla":
        (strings_b,) = _sz_bytes(seqs)
        return _sz_matrix(strings_b, None, dev)
    kernel = _Myers(_compact(seqs)[0], dev, chunk_pairs, total_pairs=_n_pairs(n))
    out: np.ndarray = kernel.all_pairs(matrix=True)
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
    if name == "stringzilla":
        left_b, right_b = _sz_bytes(sa, sb)
        return _sz_matrix(left_b, right_b, dev)
    joint, offset = _joined(sa, sb)
    kernel = _Myers(joint, dev, None)
    i, j = np.divmod(np.arange(len(sa) * len(sb), dtype=np.int64), max(len(sb), 1))
    return kernel(i, j + offset).reshape(len(sa), len(sb))


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
        raise InputError(msg)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    sd = float(d.std(ddof=1)) if n > 1 else math.inf
    fpc = math.sqrt((population - n) / (population - 1))
    half = z * sd / math.sqrt(n) * fpc
    return DistanceEstimate(value, value - half, value + half, n, False)


def mean_pairwise_distance(
    paths: Paths,
    *,
    n_pairs: NPairs = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
) -> DistanceEstimate:
    """Average edit distance over the unordered pairs of distinct pathways.

    Exact over all ``N (N - 1) / 2`` pairs when ``n_pairs`` is None or at least that many;
    otherwise the mean of ``n_pairs`` distinct pairs drawn uniformly (without replacement),
    with a normal-approximation confidence interval including the finite-population correction.
    The interval is for the mean over all pairs of these pathways; the same ``seed`` draws the
    same pairs for the same number of pathways, so means of one group at several checkpoints
    are taken over the same pairs.

    Parameters
    ----------
    paths
        The pathways, as for :func:`pairwise_distances`; at least 2.
    n_pairs
        Pairs to sample; None for the exact mean; ``"auto"``: exact when affordable, else a
        sample of affordable size (:func:`auto_pairs`).
    confidence
        Coverage of the interval, in ``(0, 1)``.
    seed
        Seed of the pair sample.
    backend, device
        As for :func:`pairwise_distances`; ``"stringzilla"`` gives exact means only.

    Returns
    -------
    DistanceEstimate

    Examples
    --------
    >>> mean_pairwise_distance(["ab", "ac", "bc"], backend="rapidfuzz").value
    1.3333333333333333
    >>> est = mean_pairwise_distance([[i % 7, i % 5, i % 3] for i in range(300)], n_pairs=2000)
    >>> est.exact, est.n_pairs, est.ci_low < est.value < est.ci_high
    (False, 2000, True)
    """
    seqs = _as_seqs(paths)
    n = len(seqs)
    if n < 2:
        msg = f"the mean pairwise distance needs at least 2 pathways; got {n}"
        raise EmptyInputError(msg)
    _check_n_pairs(n_pairs)
    population = _n_pairs(n)
    sample = _sample_size(n_pairs, seqs.lengths, population)
    if sample is None:
        name, dev = _resolve(backend, device)
        if name == "torch":
            kernel = _Myers(_compact(seqs)[0], dev, None, total_pairs=population)
            total = int(kernel.all_pairs(matrix=False))
        else:
            if name == "rapidfuzz":
                (strings,) = _strings(seqs)
                matrix = _cdist(strings, strings)
            else:
                (strings_b,) = _sz_bytes(seqs)
                matrix = _sz_matrix(strings_b, None, dev)
            # symmetric with a zero diagonal: each unordered pair is counted twice
            total = int(matrix.sum(dtype=np.int64)) // 2
        value = total / population
        return DistanceEstimate(value, value, value, population, True)
    k = np.random.default_rng(seed).choice(population, size=sample, replace=False)
    i, j = _triangle_pairs(n, k)
    return _estimate(_pair_distances(seqs, None, i, j, backend, device), population, confidence)


def mean_cross_distance(
    a: Paths,
    b: Paths,
    *,
    n_pairs: NPairs = None,
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
    sample = _sample_size(n_pairs, np.concatenate([sa.lengths, sb.lengths]), population)
    if sample is None:
        if _resolve(backend, device)[0] == "stringzilla":
            value = float(cross_distances(a, b, backend=backend, device=device).mean())
            return DistanceEstimate(value, value, value, population, True)
        k = np.arange(population, dtype=np.int64)
    else:
        if _resolve(backend, device)[0] == "stringzilla":
            raise _sz_no_pairs()
        k = np.random.default_rng(seed).choice(population, size=sample, replace=False)
    i, j = np.divmod(k, len(sb))
    d = _pair_distances(sa, sb, i, j, backend, device)
    return _estimate(d, population, confidence)


@overload
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: NPairs = ...,
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
    n_pairs: NPairs = ...,
    confidence: float = ...,
    seed: int = ...,
    backend: Backend = ...,
    device: Any = ...,
    estimates: Literal[True],
) -> list[DistanceEstimate]: ...
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: NPairs = None,
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
        raise InputError(msg)
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
