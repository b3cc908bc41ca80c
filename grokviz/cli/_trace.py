"""``grokviz trace``: trace checkpoints over a sample file into a resumable trace store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grokviz.cli._common import add_debug, read_table, split_list

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_EPILOG = """\
examples:
  grokviz trace runs/olmoe-tiny --samples samples.parquet --out traces/olmoe-tiny
  grokviz trace allenai/OLMoE-1B-7B-0924 --revisions step5000-tokens20B,step10000-tokens41B \\
      --samples samples.jsonl --out traces/olmoe --device cuda --dtype bfloat16

Re-running the same command resumes: finished (checkpoint, shard) parts are skipped, and parts
found damaged are traced again. Several runs of it on one store share the work.
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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    add_debug(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    import logging

    from grokviz.tracing import list_checkpoints, trace

    logging.getLogger("grokviz").setLevel(logging.WARNING if args.quiet else logging.INFO)
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
    )
    if not args.quiet:
        frame = store.refresh().checkpoints()
        done = int((frame["parts_done"] == frame["parts_total"]).sum())
        line = f"trace store {store.path}: {done} of {frame.height} checkpoint(s) complete"
        if done < frame.height:
            line += "; other processes are still tracing, or run the same command again"
        print(line)
    return 0


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
