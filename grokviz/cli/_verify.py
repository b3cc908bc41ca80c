"""``grokviz verify``: check every file of a trace store and, with ``--repair``, recompute what
is missing or damaged from the checkpoints the store records."""

from __future__ import annotations

import argparse
from pathlib import Path

from grokviz.cli._common import add_debug, read_table

_EPILOG = """\
examples:
  grokviz verify traces/olmoe
  grokviz verify traces/olmoe --repair --device cuda
  grokviz verify traces/olmoe --repair --samples samples.parquet   # a damaged sample set

Each problem is one line: missing, damaged, foreign (a file of another store), misplaced,
untraced (a unit an interrupted run did not finish), leftover (a half-written file; --repair
removes it) or unexpected (a file grokviz did not write; always left alone). The exit status
is 0 when the store is whole, 1 when it is not.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz verify",
        description="Check every file of a trace store: present, whole, its own, in its place.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE", type=Path, help="trace store folder")
    parser.add_argument(
        "--repair", action="store_true", help="recompute every missing or damaged part"
    )
    parser.add_argument(
        "--samples", type=Path, help="the samples table, to restore a damaged sample set"
    )
    parser.add_argument("--device", help="torch device for recomputing (default: cuda or cpu)")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per forward pass")
    parser.add_argument(
        "--quick", action="store_true", help="check sizes and metadata only, not every byte"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow loading pickle (.bin) weights"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_debug(parser)
    return parser


def main(argv: list[str]) -> int:
    """Run ``grokviz verify`` with command-line arguments ``argv``; return the exit status."""
    from grokviz.store import TraceStore
    from grokviz.tracing import repair

    args = _parser().parse_args(argv)
    store = TraceStore.open(args.store)
    report = store.verify(checksums=not args.quick)
    print(report)
    if not args.repair:
        return 0 if report.ok else 1
    if report.ok and not report.problems:
        return 0
    samples = None if args.samples is None else read_table(args.samples, what="samples")
    repaired = repair(
        store,
        samples=samples,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        allow_pickle=args.allow_pickle,
    )
    after = repaired.verify()
    units = sum(len(u) for u in report.units().values())
    if after.ok:
        print(f"repaired {store.path}: {units} unit(s) recomputed; every file is whole")
        return 0
    print(after)
    return 1
