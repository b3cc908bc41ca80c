"""``grokviz metrics``: pathway metrics of a trace store, optionally correlated with accuracy."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grokviz.cli._common import add_debug, read_table
from grokviz.errors import InputError

_EPILOG = """\
examples:
  grokviz metrics traces/olmoe --out metrics.parquet
  grokviz metrics traces/olmoe --accuracy accuracy.csv --from-step 490000 --per-layer

The accuracy file has columns checkpoint, step, task, accuracy (.csv, .parquet, .jsonl or .json).
Metrics are computed on memorized training samples only unless --all-samples is given.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz metrics",
        description="Pathway distance, consistency, loss and entropy per checkpoint and group.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE", type=Path, help="trace store folder")
    parser.add_argument("--accuracy", type=Path, help="accuracy table (.csv or .parquet)")
    parser.add_argument("--tau", type=float, default=0.7, help="pathway threshold (default 0.7)")
    parser.add_argument("--top-k", type=int, help="fixed experts per layer instead of --tau")
    parser.add_argument(
        "--unit", choices=("expert", "char"), default="expert", help="edit-distance symbol"
    )
    parser.add_argument("--eps", type=float, help="memorization loss ceiling (default: per domain)")
    parser.add_argument("--delta", type=float, default=0.05, help="memorization tolerance")
    parser.add_argument(
        "--all-samples", action="store_true", help="analyze every training sample, not memorized"
    )
    parser.add_argument("--n-pairs", type=int, help="sample this many pairs per distance")
    parser.add_argument("--per-layer", action="store_true", help="add per-layer distances")
    parser.add_argument(
        "--from-step", type=int, help="correlate only checkpoints from this step on"
    )
    parser.add_argument("--out", type=Path, help="write the metrics table (.parquet or .csv)")
    parser.add_argument("--device", help="torch device for distances (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of pair sampling and bootstrap")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="compute each checkpoint as a task on a Ray cluster (ADDRESS, or RAY_ADDRESS, a "
        "cluster `ray start` started here, else a local one); with --device cuda on its GPUs",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_debug(parser)
    return parser


def _write_table(frame: Any, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in {".parquet", ".csv"}:
        msg = f"cannot write {str(path)!r}: use a .parquet or .csv file name"
        raise InputError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)


def summary(metrics: Any) -> Any:
    """One row per checkpoint and group, one column per metric (the printed table)."""
    import polars as pl

    wide = metrics.filter(pl.col("metric") != "accuracy").pivot(
        on="metric", index=["step", "group"], values="value", aggregate_function="first"
    )
    order = ["step", "group", "distance", "consistency", "complexity", "loss", "entropy"]
    first = [c for c in order if c in wide.columns]
    # global first, then domains, then memorization groups in onset order
    is_group = pl.col("group").str.starts_with("Pretrain@")
    rank = pl.when(pl.col("group") == "global").then(0).when(is_group).then(2).otherwise(1)
    onset = pl.col("group").str.extract(r"@(\d+)$").cast(pl.Int64)
    wide = wide.sort(rank, onset, "group", "step", nulls_last=False)
    return wide.select(first + [c for c in wide.columns if c not in first])


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    import polars as pl

    from grokviz.metrics import analyze, correlate

    if args.out is not None and args.out.suffix.lower() not in {".parquet", ".csv"}:
        msg = f"cannot write {str(args.out)!r}: use a .parquet or .csv file name"
        raise InputError(msg)
    accuracy = None if args.accuracy is None else read_table(args.accuracy, what="accuracy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = analyze(
            args.store,
            accuracy=accuracy,
            tau=args.tau,
            top_k=args.top_k,
            unit=args.unit,
            eps=args.eps,
            delta=args.delta,
            memorized_only=not args.all_samples,
            n_pairs=args.n_pairs,
            per_layer=args.per_layer,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            engine="local" if args.ray is None else "ray",
            ray_address=args.ray or None,
        )
    for w in caught:  # one line each, not Python's two-line source display
        print(f"grokviz metrics: warning: {w.message}", file=sys.stderr)
    columns = ["group", "metric", "task", "pearson_r", "pearson_p", "spearman_r", "spearman_p"]
    with pl.Config(
        tbl_rows=500,
        tbl_cols=40,
        tbl_width_chars=200,
        float_precision=4,
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print(summary(metrics))
        if accuracy is not None:
            corr = correlate(metrics, accuracy, from_step=args.from_step)
            print("\ncorrelation with accuracy across checkpoints:")
            print(corr.select(*columns, "r2", "n"))
    if args.out is not None:
        _write_table(metrics, args.out)
        print(f"wrote {metrics.height} rows to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
