"""Does tracing on Ray scale with workers? Units per second with 1 and 2 workers on the same work.

The work: a series of ``--checkpoints`` random OLMoE checkpoints (saved to a temporary folder,
``--hidden``/``--layers``/``--experts``) over ``--samples`` texts, in shards of ``--shard-size``:
each checkpoint is one router-table unit plus one unit per shard. Each run traces all of it into
a fresh store, timed from the call to ``grokviz.trace(..., engine="ray")`` to its return, so a
run's time includes starting its workers and loading each checkpoint in each worker that traces
it (what a user waits for).

Measured in the same run, runs alternating so that a shared machine's changing load hits all
alike:

- baseline: ``grokviz.trace`` in this process (``engine="local"``) with as many torch threads
  as one worker has (``--cpus-per-worker``);
- Ray with 1 worker, and with 2 workers, on one Ray cluster started once for the benchmark
  (``--cpus`` CPUs, a local cluster unless ``--address``; started like the tests' cluster,
  see ``tests/_ray_cluster.py``).

Prints units/s of each (median over ``--repeats``), also counted from the moment the last worker
was ready (starting a worker, a Python process that imports torch and transformers, is a fixed
cost a long series amortizes), then the medians of the per-repeat ratios:
Ray 2 workers / Ray 1 worker (the scaling; 2.0 is perfect) and Ray 1 worker / local (what Ray
costs). With GPUs (``--gpus-per-worker 1``, or 0.5 to put both workers on one GPU) the workers
trace on ``cuda`` and the baseline runs on ``cuda`` too. Run, e.g.::

    python benchmarks/trace_scaling.py                       # 2 CPU workers on a local cluster
    python benchmarks/trace_scaling.py --address auto --gpus-per-worker 1 --hidden 1024 \\
        --layers 8 --experts 64 --samples 2048 --shard-size 256
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

TESTS = Path(__file__).resolve().parent.parent / "tests"


def make_series(folder: Path, args: argparse.Namespace) -> Path:
    """``args.checkpoints`` random tiny OLMoE checkpoints with a character tokenizer."""
    from grokviz.testing import char_tokenizer, tiny_moe

    config = {
        "hidden_size": args.hidden,
        "intermediate_size": args.hidden * 2,
        "num_hidden_layers": args.layers,
        "num_attention_heads": max(1, args.hidden // 32),
        "num_key_value_heads": max(1, args.hidden // 32),
        "num_experts": args.experts,
        "num_experts_per_tok": min(2, args.experts),
    }
    tok = char_tokenizer(model_max_length=args.max_length)
    for i in range(args.checkpoints):
        out = folder / f"step-{(i + 1) * 1000:06d}"
        tiny_moe("olmoe", seed=i, **config).save_pretrained(out)
        tok.save_pretrained(out)
    return folder


def make_samples(n: int, chars: int) -> pl.DataFrame:
    """``n`` training texts of about ``chars`` characters each."""
    words = ["memorize", "generalize", "pathway", "expert", "router", "layer", "token", "shard"]
    texts = []
    for i in range(n):
        text = f"sample {i}:"
        while len(text) < chars:
            text += " " + words[(i * 7 + len(text)) % len(words)]
        texts.append(text[:chars])
    return pl.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "text": texts,
            "domain": ["bench"] * n,
            "split": ["train"] * n,
        }
    )


class _ReadyTimes(logging.Handler):
    """When each Ray worker said it was ready (the driver logs it at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if " is ready (" in record.getMessage():
            self.times.append(time.perf_counter())


def timed_trace(run: Path, samples: pl.DataFrame, out: Path, **kwargs: Any) -> tuple[float, float]:
    """Seconds of the whole trace, and seconds after the last worker was ready (Ray runs)."""
    from grokviz import trace

    ready = _ReadyTimes()
    log = logging.getLogger("grokviz.tracing")
    log.addHandler(ready)
    log.setLevel(logging.DEBUG)
    start = time.perf_counter()
    try:
        trace(run, samples, out, progress=False, **kwargs)
    finally:
        log.removeHandler(ready)
    end = time.perf_counter()
    return end - start, end - max(ready.times, default=start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--cpus-per-worker", type=float, default=1)
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--chars", type=int, default=200, help="characters (tokens) per sample")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    device = "cuda" if args.gpus_per_worker else "cpu"
    common = {"shard_size": args.shard_size, "batch_size": args.batch_size, "device": device}
    common["max_length"] = args.max_length
    units = args.checkpoints * (1 + -(-args.samples // args.shard_size))
    with tempfile.TemporaryDirectory(prefix="grokviz-scaling-") as tmp:
        folder = Path(tmp)
        run = make_series(folder / "run", args)
        samples = make_samples(args.samples, args.chars)
        if args.address:
            ray.init(address=args.address, configure_logging=False, log_to_driver=False)
        else:
            # The test cluster's environment (tests/_ray_cluster.py): loopback only, and without
            # the rfc3987-syntax grammar jupyterlab's jsonschema builds in every Ray process
            # (seconds of CPU each); on a loaded machine Ray's agents otherwise miss the raylet's
            # start-up deadline. It changes how fast Ray's processes start, not grokviz's work.
            sys.path.insert(0, str(TESTS))
            from _ray_cluster import cluster_env

            os.environ.update(cluster_env())
            ray.init(
                num_cpus=args.cpus,
                include_dashboard=False,
                object_store_memory=128 * 2**20,
                configure_logging=False,
                log_to_driver=False,
            )
        try:
            print(f"cluster: {ray.cluster_resources()}")
            print(
                f"work: {args.checkpoints} checkpoint(s) x {args.samples} samples of "
                f"{args.chars} tokens, shard size {args.shard_size}: {units} units; model "
                f"hidden {args.hidden}, {args.layers} layers, {args.experts} experts; {device}"
            )
            torch.set_num_threads(max(1, int(args.cpus_per_worker)))
            ray_kwargs = {
                "engine": "ray",
                "cpus_per_worker": args.cpus_per_worker,
                "gpus_per_worker": args.gpus_per_worker,
            }
            timed_trace(run, samples, folder / "warm", **common)  # page cache, lazy imports
            seconds: dict[str, list[float]] = {"local": [], "ray 1": [], "ray 2": []}
            working: dict[str, list[float]] = {name: [] for name in seconds}
            runs = {
                "local": {},
                "ray 1": {**ray_kwargs, "workers": 1},
                "ray 2": {**ray_kwargs, "workers": 2},
            }
            order = list(runs)
            for repeat in range(args.repeats):
                for name in order if repeat % 2 == 0 else order[::-1]:
                    out = folder / f"{name.replace(' ', '')}-{repeat}"
                    total, work = timed_trace(run, samples, out, **common, **runs[name])
                    seconds[name].append(total)
                    working[name].append(work)
                    print(
                        f"  repeat {repeat}: {name:6s} {total:7.2f} s, {work:7.2f} s once "
                        "every worker was ready",
                        flush=True,
                    )
        finally:
            ray.shutdown()
    print(
        f"\n{'run':8s} {'median s':>9s} {'units/s':>8s}   after start-up {'s':>7s} {'units/s':>8s}"
    )
    for name, values in seconds.items():
        median, work = statistics.median(values), statistics.median(working[name])
        print(
            f"{name:8s} {median:9.2f} {units / median:8.2f}   {'':14s} {work:7.2f} {units / work:8.2f}"
        )

    def ratio(of: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(of[a], of[b], strict=True))

    print(
        f"\nunits/s ray 2 workers / ray 1 worker: {ratio(seconds, 'ray 1', 'ray 2'):.2f} "
        f"whole runs, {ratio(working, 'ray 1', 'ray 2'):.2f} once every worker was ready "
        "(2.0 = perfect)"
    )
    print(
        f"units/s ray 1 worker / local (baseline): {ratio(seconds, 'local', 'ray 1'):.2f} "
        f"whole runs, {ratio(working, 'local', 'ray 1'):.2f} once the worker was ready "
        "(1.0 = no cost)"
    )


if __name__ == "__main__":
    main()
