"""``analyze`` at the paper's scale on a laptop: its default's time and error, against all pairs.

The trace: :class:`paper_scale.SyntheticRun`, an in-memory ``TraceSource`` (no store is read, so
Parquet reading is left out) of 10 checkpoints x 10,000 training samples routed like OLMoE-1B-7B
(16 layers x 64 experts, 467-symbol pathways at tau = 0.7), four domains, 20-25 % memorized.

Measured in one run, on ``--cores`` cores (default 2, the laptop of issue 18):

1. ``analyze(run)`` with default arguments (``n_pairs="auto"``): time, how many distance values
   are exact and how many sampled, and the note ``analyze`` gives about them.
2. Baseline, the old default ``n_pairs=None`` (every pair of every group at every checkpoint):
   ``analyze(run, n_pairs=2)`` times everything but the distances, and all pairs cost what the
   all-pairs matrix of ``--rate-samples`` memorized pathways costs per pair, measured now. Running
   it whole would take hours, so its time is that sum, marked as extrapolated.
3. Sampled against exact: every group's exact mean at the last checkpoint (``--exact-check``;
   minutes) beside the sampled value and its 95 % interval; and for one domain, how often the
   interval holds the exact mean over ``--coverage-seeds`` fresh samples of pairs.
4. The same analysis of all 10,000 samples (``memorized_only=False``; groups of up to 10,000,
   50 M pairs each): the issue's worst case. Its intervals state its error; no exact check.

Run: ``python benchmarks/analyze_scale.py`` (about 10 minutes on 2 shared cores);
``--quick`` checks the script on 2 checkpoints x 1,500 samples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Any


def _pin(cores: int) -> str:
    """Confine this process (and the threads it starts) to ``cores`` CPUs, before numpy loads."""
    for var in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(cores))
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if hasattr(os, "sched_setaffinity") and len(have) > cores:
        os.sched_setaffinity(0, have[:cores])
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{n} of {os.cpu_count()} CPUs"


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    notes = [str(w.message) for w in caught if type(w.message).__name__ == "SampledDistanceWarning"]
    return seconds, out, notes


def _members(run: Any, *, memorized_only: bool) -> dict[str, list[str]]:
    """The groups ``analyze`` forms (its documented rule), to count their pairs and check means."""
    import polars as pl

    from grokviz.metrics import memorization_onsets

    onsets = memorization_onsets(run.losses(), run.samples())
    if memorized_only:
        onsets = onsets.filter(pl.col("onset_step") < max(run.steps))
    members = {"global": onsets["sample_id"].to_list()}
    for key in ("domain", "group"):
        for (name,), part in onsets.filter(pl.col(key).is_not_null()).group_by([key]):
            members[str(name)] = part["sample_id"].to_list()
    return members


def _sampled(n: int) -> bool:
    """Whether ``n_pairs="auto"`` samples a group of ``n`` paper-length pathways."""
    from grokviz.metrics.distance import auto_pairs

    return auto_pairs([467] * n, n * (n - 1) // 2) is not None


def _paths(run: Any, checkpoint: str, ids: list[str]) -> Any:
    from grokviz.pathways import encode, select_experts

    weights, _ = run.routing_array(checkpoint, sample_ids=ids)
    return encode(select_experts(weights, tau=0.7), num_experts=weights.shape[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2, help="CPUs to run on (the laptop: 2)")
    parser.add_argument("--rate-samples", type=int, default=500)
    parser.add_argument("--exact-check", choices=["all", "small", "none"], default="all")
    parser.add_argument("--coverage-seeds", type=int, default=20)
    parser.add_argument("--skip-all-samples", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 checkpoints x 1,500 samples")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.checkpoints, args.rate_samples, args.coverage_seeds = 1500, 2, 200, 5
    cpus = _pin(args.cores)

    import numpy as np
    import polars as pl
    import torch

    torch.set_num_threads(args.cores)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from paper_scale import SyntheticRun

    from grokviz import analyze
    from grokviz.metrics.distance import mean_pairwise_distance, pairwise_distances

    start = time.perf_counter()
    run = SyntheticRun(args.samples, args.checkpoints)
    built = time.perf_counter() - start
    print(
        f"trace: {args.checkpoints} checkpoints x {args.samples:,} training samples, 16 layers x "
        f"64 experts, 4 domains; in-memory TraceSource (no store I/O; built in {built:.0f} s)"
    )
    print(f"machine: {cpus}, torch threads {torch.get_num_threads()}")
    out: dict[str, Any] = {"checkpoints": args.checkpoints, "samples": args.samples, "cpus": cpus}

    # 1. the default
    t_default, metrics, notes = _timed(analyze, run, progress=False)
    dist = metrics.filter(pl.col("metric") == "distance")
    n_sampled = dist["ci_low"].is_not_null().sum()
    members = _members(run, memorized_only=True)
    sizes = {g: len(ids) for g, ids in members.items()}
    print(
        f"\n1. analyze(run), default arguments: {t_default:7.1f} s in all "
        f"({t_default / args.checkpoints:.1f} s per checkpoint)"
    )
    print(
        f"   {sizes['global']:,} memorized samples analyzed in {len(sizes)} groups "
        f"({min(sizes.values())}-{max(sizes.values()):,} samples); {dist.height} distance "
        f"values: {dist.height - n_sampled} exact, {n_sampled} sampled"
    )
    for note in notes:
        print(f"   analyze says: {note}")
    out |= {"default_s": t_default, "analyzed_samples": sizes["global"], "groups": len(sizes)}
    out |= {"distance_values": dist.height, "sampled_values": int(n_sampled), "notes": notes}

    # 2. the old default, every pair
    t_rest, _, _ = _timed(analyze, run, n_pairs=2, progress=False)
    last = run.labels[-1]
    ids = members["global"][: args.rate_samples]
    paths = _paths(run, last, ids)
    t_rate, _, _ = _timed(pairwise_distances, paths, backend="rapidfuzz")
    rate_pairs = len(ids) * (len(ids) - 1) // 2
    per_pair = t_rate / rate_pairs
    all_pairs = args.checkpoints * sum(n * (n - 1) // 2 for n in sizes.values())
    t_old = t_rest + all_pairs * per_pair
    print(
        f"\n2. baseline n_pairs=None (every pair; the old default): {t_old:9,.0f} s extrapolated "
        f"= {t_rest:.1f} s without distances (analyze(n_pairs=2), measured)\n"
        f"   + {all_pairs:,} pairs x {per_pair * 1e6:.1f} us (all pairs of {len(ids)} pathways "
        f"by rapidfuzz: {rate_pairs:,} pairs in {t_rate:.1f} s, measured)"
    )
    print(f"   ratio old/default: {t_old / t_default:6.1f}x faster; distances took "
          f"{t_default - t_rest:.1f} s of the default's {t_default:.1f} s")  # fmt: skip
    out |= {"without_distances_s": t_rest, "rapidfuzz_us_per_pair": per_pair * 1e6}
    out |= {"old_default_pairs": all_pairs, "old_default_s_extrapolated": t_old}
    out["ratio_old_over_default"] = t_old / t_default

    # 3. sampled against exact
    if args.exact_check != "none":
        print(f"\n3. sampled against exact, checkpoint {last}:")
        print("   group               samples   value      95% interval         exact    error")
        rows = dist.filter(pl.col("checkpoint") == last, pl.col("ci_low").is_not_null())
        worst = 0.0
        covered = 0
        checked = 0
        t_exact = 0.0
        for r in rows.sort("group").iter_rows(named=True):
            n = sizes[r["group"]]
            if args.exact_check == "small" and r["group"] == "global":
                continue
            seconds, exact, _ = _timed(
                mean_pairwise_distance, _paths(run, last, members[r["group"]]), backend="rapidfuzz"
            )
            t_exact += seconds
            err = r["value"] - exact.value
            half = (r["ci_high"] - r["ci_low"]) / 2
            worst = max(worst, abs(err) / exact.value)
            inside = r["ci_low"] <= exact.value <= r["ci_high"]
            covered += inside
            checked += 1
            print(
                f"   {r['group']:<18} {n:8,} {r['value']:9.3f} [{r['ci_low']:.3f}, "
                f"{r['ci_high']:.3f}] {exact.value:9.3f} {err:+7.3f} ({err / half:+.2f} of the "
                f"half-width){'' if inside else '  OUTSIDE'}"
            )
        out["exact_check"] = {"groups": checked, "held": covered, "max_rel_error": worst}
        if checked:
            print(
                f"   largest error {worst:.4%} of the value; the interval held the exact mean in "
                f"{covered} of {checked} groups; exact means took {t_exact:.0f} s"
            )
        # coverage: the smallest group "auto" samples, whose exact mean is cheapest
        by_size = sorted(members, key=lambda g: len(members[g]))
        group = next((g for g in by_size if _sampled(len(members[g]))), None)
        if group is not None and args.coverage_seeds > 0:
            paths = _paths(run, last, members[group])
            exact_value = mean_pairwise_distance(paths, backend="rapidfuzz").value
            hits, widths = 0, []
            for seed in range(1, args.coverage_seeds + 1):
                est = mean_pairwise_distance(paths, n_pairs="auto", seed=seed, backend="rapidfuzz")
                hits += est.ci_low <= exact_value <= est.ci_high
                widths.append((est.ci_high - est.ci_low) / 2 / exact_value)
            print(
                f"   coverage, {group} ({len(members[group]):,} samples), {args.coverage_seeds} "
                f"fresh samples of {est.n_pairs:,} pairs: the 95% interval held the exact mean "
                f"{hits} times; half-width {np.mean(widths):.3%} of the value"
            )
            out["coverage"] = {"group": group, "seeds": args.coverage_seeds, "held": hits}

    # 4. every sample
    if not args.skip_all_samples:
        t_all, every, notes = _timed(analyze, run, memorized_only=False, progress=False)
        dist = every.filter(pl.col("metric") == "distance")
        everyone = _members(run, memorized_only=False)
        pairs = args.checkpoints * sum(len(v) * (len(v) - 1) // 2 for v in everyone.values())
        print(
            f"\n4. analyze(run, memorized_only=False): all {args.samples:,} samples, "
            f"{t_all:7.1f} s in all; {dist['ci_low'].is_not_null().sum()} of {dist.height} "
            f"distance values sampled"
        )
        print(
            f"   every pair would be {pairs:,} pairs: {pairs * per_pair:,.0f} s at the rate "
            f"above (ratio {pairs * per_pair / t_all:,.0f}x)"
        )
        for note in notes:
            print(f"   analyze says: {note}")
        out["all_samples"] = {"s": t_all, "pairs_every": pairs, "notes": notes}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
