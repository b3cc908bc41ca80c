"""``grokviz report``: one standalone, offline HTML page of a trace store, for sharing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from grokviz.cli._common import add_debug, read_table
from grokviz.errors import InputError

_EPILOG = """\
examples:
  grokviz report data/samples/toy/trace --accuracy data/samples/toy/accuracy.parquet --out report.html
  grokviz report traces/olmoe --accuracy accuracy.csv --top-k 8 --from-step 490000 --out olmoe.html

The page holds the timeline, the pathway diagram and the similarity matrix, linked (choose a
checkpoint on the timeline and the others follow), and the correlation table. It needs no kernel
and no network: send the one file to a colleague.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz report",
        description="Write one standalone, offline HTML page reporting a trace store.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE", type=Path, help="trace store folder")
    parser.add_argument("--out", type=Path, required=True, help="the .html file to write")
    parser.add_argument("--accuracy", type=Path, help="accuracy table (.csv, .parquet, .jsonl)")
    parser.add_argument("--tau", type=float, default=0.7, help="pathway threshold (default 0.7)")
    parser.add_argument("--top-k", type=int, help="fixed experts per layer instead of --tau")
    parser.add_argument(
        "--samples-per-group",
        type=int,
        default=50,
        help="samples per domain in the diagram and the matrix (default 50)",
    )
    parser.add_argument("--from-step", type=int, help="correlate checkpoints from this step on")
    parser.add_argument(
        "--n-pairs", type=int, default=2000, help="pairs sampled per distance (default 2000)"
    )
    parser.add_argument("--eps", type=float, help="memorization loss ceiling (default: per domain)")
    parser.add_argument("--title", help="the page title")
    add_debug(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    from grokviz.widgets.report import write_report

    if args.out.suffix.lower() not in {".html", ".htm"}:
        msg = f"cannot write {str(args.out)!r}: the report is a web page, name it *.html"
        raise InputError(msg)
    accuracy = None if args.accuracy is None else read_table(args.accuracy, what="accuracy")
    out = write_report(
        args.store,
        args.out,
        accuracy=accuracy,
        tau=args.tau,
        top_k=args.top_k,
        per_group=args.samples_per_group,
        from_step=args.from_step,
        n_pairs=args.n_pairs,
        eps=args.eps,
        title=args.title,
        command=["grokviz", "report", *argv],
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): open it in a browser, offline")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
