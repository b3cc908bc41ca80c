"""Pathway edit distances: grokviz against rapidfuzz's cdist, and the sampled mean's accuracy.

Synthetic pathways of the paper's size: 16 MoE layers of 64 experts, tau = 0.7, routing weights
drawn from a Dirichlet whose concentration (2.0) gives about 470 symbols per pathway (experts
plus layer separators). For each N the script times, in the same run:

- baseline: ``rapidfuzz.process.cdist(s, s, scorer=Levenshtein.distance, workers=-1)`` on the
  pathways' strings;
- ``pairwise_distances`` with the auto backend and with the torch backend on ``--device``;

and prints ours / rapidfuzz (below 1 = faster). On a CPU the torch backend can be far slower
than rapidfuzz; past ``--torch-max-pairs`` pairs it is timed on a random subset of pairs and
extrapolated (marked so). Finally the sampled estimate of the mean pairwise distance: its
seconds and its relative error against the exact mean. ``--skip-exact-large`` skips the exact
all-pairs work for N >= 5000 (many minutes on a few CPU cores); the estimate is then compared with
a much larger independent sample (``--reference-pairs``), which the output marks as not exact.

Run: ``python benchmarks/edit_distance.py --n 1000 10000 --device cuda``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from grokviz.metrics.distance import (
    mean_pairwise_distance,
    pair_distances,
    pairwise_distances,
)
from grokviz.pathways import PackedPathways, encode, select_experts

LAYERS, EXPERTS, TAU, CONCENTRATION = 16, 64, 0.7, 2.0
T = TypeVar("T")


def synthetic_pathways(n: int, seed: int = 0) -> PackedPathways:
    """``n`` pathways of the paper's shape (about 470 symbols each)."""
    weights = np.random.default_rng(seed).dirichlet(
        np.full(EXPERTS, CONCENTRATION), size=(n, LAYERS)
    )
    return encode(select_experts(weights, tau=TAU), num_experts=EXPERTS)


def _seconds(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)  # results come back as numpy arrays: device work is finished
    return time.perf_counter() - start, out


def bench_pairwise(paths: PackedPathways, device: str | None, torch_max_pairs: int) -> float:
    """Time the all-pairs matrix; return the exact mean pairwise distance."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from grokviz.metrics._distance_backends import _as_seqs, _strings

    n = len(paths)
    (strings,) = _strings(_as_seqs(paths))  # what grokviz hands rapidfuzz: Latin-1, its fastest
    base_s, base = _seconds(
        process.cdist, strings, strings, scorer=Levenshtein.distance, workers=-1, dtype=np.int32
    )
    print(f"  rapidfuzz cdist (workers=-1):       {base_s:9.2f} s   (baseline)")
    auto_s, auto = _seconds(pairwise_distances, paths, backend="auto", device=device)
    assert np.array_equal(auto, base), "auto backend disagrees with rapidfuzz"
    print(f"  pairwise_distances(auto):           {auto_s:9.2f} s   ratio {auto_s / base_s:6.2f}")
    total_pairs = n * (n - 1) // 2
    if total_pairs <= torch_max_pairs:
        torch_s, got = _seconds(pairwise_distances, paths, backend="torch", device=device)
        assert np.array_equal(got, base), "torch backend disagrees with rapidfuzz"
        note = ""
    else:
        rng = np.random.default_rng(1)
        i = rng.integers(0, n, torch_max_pairs)
        j = rng.integers(0, n, torch_max_pairs)
        part_s, got = _seconds(
            pair_distances, paths, np.stack([i, j], 1), backend="torch", device=device
        )
        assert np.array_equal(got, np.asarray(base)[i, j]), "torch backend disagrees"
        torch_s = part_s * total_pairs / torch_max_pairs
        note = f"  (extrapolated from {torch_max_pairs:,} pairs)"
    print(
        f"  pairwise_distances(torch, {device or 'default'}):"
        f" {torch_s:9.2f} s   ratio {torch_s / base_s:6.2f}{note}"
    )
    return int(base.sum(dtype=np.int64)) / (n * (n - 1))  # each pair twice, zero diagonal


def bench_sampled(
    paths: PackedPathways, n_pairs: int, exact: float | None, *, label: str = "exact"
) -> None:
    seconds, est = _seconds(mean_pairwise_distance, paths, n_pairs=n_pairs, seed=0)
    line = (
        f"  sampled mean ({n_pairs:,} pairs):  {est.value:9.3f}  "
        f"95% CI [{est.ci_low:.3f}, {est.ci_high:.3f}]  {seconds:6.3f} s"
    )
    if exact is not None:
        line += f"   relative error {abs(est.value - exact) / exact:.4%} vs {label} {exact:.3f}"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument(
        "--skip-exact-large",
        action="store_true",
        help="skip the exact all-pairs matrix for N >= 5000 (minutes on a few CPU cores)",
    )
    parser.add_argument("--torch-max-pairs", type=int, default=200_000)
    parser.add_argument("--sample-pairs", type=int, default=5_000)
    parser.add_argument(
        "--reference-pairs",
        type=int,
        default=200_000,
        help="when the exact mean is skipped, compare against a mean of this many other pairs",
    )
    args = parser.parse_args(argv)

    import torch

    print(
        f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    exact_by_n: dict[int, float] = {}
    for n in args.n:
        paths = synthetic_pathways(n)
        print(
            f"N={n:,}: mean pathway length {paths.lengths.mean():.1f} symbols "
            f"(16 layers x 64 experts, tau={TAU}), {n * (n - 1) // 2:,} pairs"
        )
        if n >= 5000 and args.skip_exact_large:
            print("  exact all-pairs timings skipped (--skip-exact-large)")
        else:
            exact_by_n[n] = bench_pairwise(paths, args.device, args.torch_max_pairs)
            print(f"  exact mean pairwise distance:       {exact_by_n[n]:9.3f}")
        exact, label = exact_by_n.get(n), "exact"
        if exact is None and args.reference_pairs:
            ref = mean_pairwise_distance(paths, n_pairs=args.reference_pairs, seed=12345)
            print(
                f"  reference mean ({args.reference_pairs:,} other pairs, not exact): "
                f"{ref.value:.3f}  95% CI [{ref.ci_low:.3f}, {ref.ci_high:.3f}]"
            )
            exact, label = ref.value, "reference"
        bench_sampled(paths, args.sample_pairs, exact, label=label)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
