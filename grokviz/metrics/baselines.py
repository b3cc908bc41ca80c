"""What pathway distance and consistency would be if routing said nothing about the sample.

A metric can move for reasons that have nothing to do with which samples share pathways. Two
baselines make that visible next to the metric itself:

- :func:`null_pathways` / :func:`null_distances`, a **length-matched permutation null** for
  pathway distance: every sample keeps, layer by layer, how many experts its pathway has (and
  so its length), but which experts they are is drawn at random. Pathways that are "nearly
  random for their length" have a distance close to this null, so ``distance / null`` near 1,
  however the distance itself moves as routing sharpens or flattens.
- :func:`uniform_consistency`, consistency's **uniform-weight baseline**: the consistency every
  sample would get if it spread its routing weight evenly over the experts. It depends on the
  router weight rows alone, not on any sample; a consistency that follows it measures how the
  router rows move, not how samples are routed.

Both are computed by :func:`grokviz.analyze` (rows ``distance_null``, ``distance_ratio`` and
``consistency_uniform``) and read by :func:`grokviz.metrics.validate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grokviz.errors import InputError

__all__ = ["null_distances", "null_pathways", "uniform_consistency"]


def null_pathways(
    weights: Any,
    *,
    tau: float | None = 0.7,
    top_k: int | None = None,
    seed: int | np.random.Generator = 0,
) -> list[list[np.ndarray]]:
    """Length-matched random pathways: each sample's layers keep their number of experts.

    For every sample and layer the experts of the observed pathway
    (:func:`~grokviz.pathways.select_experts` with ``tau`` or ``top_k``) are replaced by the
    same number of distinct experts drawn uniformly at random, in random order. Done by
    permuting the expert ids of each weight vector (:func:`~grokviz.metrics.shuffle_routing`,
    ``mode="experts"``): the sorted weights, and so the number of experts the threshold keeps,
    stay the same, while which experts carry them becomes random.

    Parameters
    ----------
    weights
        Routing weights ``[N, L, K]`` of one checkpoint.
    tau, top_k
        The pathway definition, as for :func:`~grokviz.pathways.select_experts`.
    seed
        Seed or numpy Generator of the permutation.

    Returns
    -------
    list of list of numpy.ndarray
        Per sample, ``L`` arrays of expert ids, the same lengths as the observed pathways'.

    Examples
    --------
    >>> import numpy as np
    >>> from grokviz.pathways import select_experts
    >>> w = np.random.default_rng(0).dirichlet(np.ones(8), size=(3, 2))
    >>> observed, null = select_experts(w), null_pathways(w, seed=1)
    >>> [len(e) for s in observed for e in s] == [len(e) for s in null for e in s]
    True
    """
    from grokviz.metrics.stats import shuffle_routing
    from grokviz.pathways import select_experts

    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
    shuffled = shuffle_routing(w, mode="experts", seed=seed)
    return select_experts(shuffled, tau=None if top_k is not None else tau, top_k=top_k)


def null_distances(
    weights: Any,
    pairs: np.ndarray,
    *,
    tau: float | None = 0.7,
    top_k: int | None = None,
    unit: str = "expert",
    n_null: int = 2,
    seed: int = 0,
    backend: Any = "auto",
    device: Any = None,
) -> np.ndarray:
    """Edit distances of chosen pairs under the length-matched null, averaged over draws.

    Parameters
    ----------
    weights
        Routing weights ``[N, L, K]`` of one checkpoint.
    pairs
        ``int [P, 2]``: the pairs of samples, e.g. the pairs the observed distance used.
    tau, top_k, unit
        Pathway definition and edit-distance symbol, as for :func:`grokviz.analyze`.
    n_null
        Independent null draws averaged per pair.
    seed
        Seed of the draws; equal seeds give equal distances.
    backend, device
        As for :func:`~grokviz.metrics.distance.pair_distances`.

    Returns
    -------
    numpy.ndarray
        ``float64 [P]``: each pair's mean distance over the ``n_null`` draws.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).dirichlet(np.ones(8), size=(4, 3))
    >>> null_distances(w, np.array([[0, 1], [2, 3]]), n_null=3).shape
    (2,)
    """
    from grokviz.metrics.distance import pair_distances
    from grokviz.pathways import encode

    if n_null < 1:
        msg = f"n_null must be at least 1, got {n_null}"
        raise InputError(msg)
    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
    rng = np.random.default_rng(seed)
    total = np.zeros(len(pairs), dtype=np.float64)
    for _ in range(n_null):
        paths = null_pathways(w, tau=tau, top_k=top_k, seed=rng)
        packed = encode(paths, unit=unit, num_experts=w.shape[2])  # type: ignore[arg-type]
        total += pair_distances(packed, pairs, backend=backend, device=device)
    return total / n_null


def uniform_consistency(routers: Any, *, device: Any = None) -> float:
    """The consistency of a sample that routes uniformly: weight ``1/K`` on every expert.

    Its routing embedding at a layer is the mean of that layer's router rows, so the value
    depends on the routers alone. :func:`grokviz.analyze` reports it per checkpoint as
    ``consistency_uniform``; a real consistency that moves with it across checkpoints moves
    because the router rows do.

    Parameters
    ----------
    routers
        Router weight rows ``[L, K, d]`` of one checkpoint, ``L >= 2``.
    device
        Optional torch device.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> routers = np.stack([np.eye(2), np.eye(2), np.eye(2)[::-1]])
    >>> round(uniform_consistency(routers), 6)  # the three mean rows are equal: cosines all 1
    1.0
    """
    from grokviz.metrics.consistency import consistency

    r = np.asarray(routers.detach().cpu() if hasattr(routers, "detach") else routers)
    if r.ndim != 3:
        msg = f"routers must have shape [layers, experts, hidden], got {r.shape}"
        raise InputError(msg)
    uniform = np.full((1, r.shape[0], r.shape[1]), 1.0 / r.shape[1])
    return float(consistency(uniform, r, device=device)[0])
