"""``grokviz trace``: trace checkpoints over a sample file into a resumable trace store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grokviz.cli._common import add_debug, read_table, split_list
from grokviz.errors import InputError

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_EPILOG = """\
examples:
  grokviz trace runs/olmoe-tiny --samples samples.parquet --out traces/olmoe-tiny
  grokviz trace allenai/OLMoE-1B-7B-0924 --revisions step5000-tokens20B,step10000-tokens41B \\
      --samples samples.jsonl --out traces/olmoe --device cuda --dtype bfloat16
  grokviz trace allenai/OLMoE-1B-7B-0924 --samples samples.jsonl --out /shared/traces/olmoe \\
      --dtype bfloat16 --ray auto --gpus-per-worker 1

Re-running the same command resumes: finished (checkpoint, shard) parts are skipped, and parts
found damaged are traced again. Several runs of it on one store share the work. With --ray the
units are traced by workers of a Ray cluster (pip install "grokviz[ray]"), which write them into
the store themselves: --out must be on a filesystem every node mounts at the same path.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz trace",
        description="Trace checkpoints: per-sample losses and MoE routing weights into a trace store.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CHECKPOINTS",
        help="checkpoint folder(s), a folder of checkpoint folders, or hub repo id(s)",
    )
    parser.add_argument(
        "--samples",
        required=True,
        type=Path,
        help="samples table (.parquet, .csv, .jsonl or .json) with sample_id, text, domain, split",
    )
    parser.add_argument("--out", required=True, type=Path, help="trace store folder")
    parser.add_argument("--revisions", help="comma-separated hub revisions (branches or tags)")
    parser.add_argument("--select", help="comma-separated sample_ids to keep per-token routing of")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per forward pass")
    parser.add_argument("--max-length", type=int, default=512, help="truncate samples to N tokens")
    parser.add_argument("--shard-size", type=int, default=1024, help="samples per stored part")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=_DTYPES, default="auto", help="weights precision")
    parser.add_argument(
        "--on-nonfinite",
        choices=("warn", "error"),
        default="warn",
        help="non-finite losses or routing: store them flagged and warn (default), or stop",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return when the free units are done, without waiting for other processes' units",
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow loading pickle (.bin) weights"
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow running a checkpoint's own code"
    )
    ray = parser.add_argument_group("on a Ray cluster")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="trace on a Ray cluster: ADDRESS (auto, HOST:6379), or without one RAY_ADDRESS or "
        "the cluster `ray start` started here, else a local one; put it after CHECKPOINTS",
    )
    ray.add_argument(
        "--workers", type=int, help="Ray workers (default: as many as the cluster holds)"
    )
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0,
        help="GPUs each worker holds (a fraction shares one); workers then trace on cuda",
    )
    ray.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs each worker holds")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    add_debug(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    import logging

    from grokviz.tracing import list_checkpoints, trace

    logging.getLogger("grokviz").setLevel(logging.WARNING if args.quiet else logging.INFO)
    engine = _engine(args)
    samples = read_table(args.samples, what="samples")
    revisions = split_list(args.revisions) or None
    checkpoints = []
    for source in args.checkpoints:
        checkpoints += list_checkpoints(source, revisions=revisions)
    store = trace(
        checkpoints,
        samples,
        args.out,
        select=split_list(args.select),
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=args.device,
        dtype=None if args.dtype == "auto" else args.dtype,
        shard_size=args.shard_size,
        on_nonfinite=args.on_nonfinite,
        wait=not args.no_wait,
        progress=not args.no_progress,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
        **engine,
    )
    if not args.quiet:
        frame = store.refresh().checkpoints()
        done = int((frame["parts_done"] == frame["parts_total"]).sum())
        line = f"trace store {store.path}: {done} of {frame.height} checkpoint(s) complete"
        if done < frame.height:
            line += "; other processes are still tracing, or run the same command again"
        print(line)
    return 0


def _engine(args: argparse.Namespace) -> dict[str, Any]:
    """The engine keywords of :func:`grokviz.trace` the options ask for."""
    if args.ray is None:
        given = [
            flag
            for flag, value, default in (
                ("--workers", args.workers, None),
                ("--gpus-per-worker", args.gpus_per_worker, 0),
                ("--cpus-per-worker", args.cpus_per_worker, 1),
            )
            if value != default
        ]
        if given:
            msg = f"{', '.join(given)} apply to --ray only; add --ray [ADDRESS], or leave them out"
            raise InputError(msg)
        return {}
    if args.ray and Path(args.ray).exists():
        msg = (
            f"--ray took {args.ray!r} as the cluster's address, but it is a path here: put --ray "
            "after the checkpoints, or give an address (--ray auto, --ray HOST:6379)"
        )
        raise InputError(msg)
    return {
        "engine": "ray",
        "ray_address": args.ray or None,
        "workers": args.workers,
        "gpus_per_worker": args.gpus_per_worker,
        "cpus_per_worker": args.cpus_per_worker,
    }


def main(argv: list[str]) -> int:
    """Run ``grokviz trace`` with command-line arguments ``argv``; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(
            f"\ngrokviz trace: interrupted. Finished parts are saved in {str(args.out)!r}; "
            "run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
