"""``grokviz watch``: follow a folder a training job writes checkpoints into, and trace each one
into a trace store over a probe set of training samples once it is completely written."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from grokviz.cli._common import add_debug, read_table

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_EPILOG = """\
examples:
  grokviz watch runs/olmoe --samples train.parquet --out runs/olmoe/monitor
  grokviz watch runs/olmoe --samples train.parquet --out live --pattern 'ep{step}' --interval 30
  grokviz watch runs/olmoe --samples train.parquet --out live --once   # what is there now

Checkpoint folders are the subfolders named checkpoint-N (the transformers Trainer), step-N,
stepN, global_stepN, ckpt_N or iterN, or what --pattern names ({step} marks the step, or a
regular expression with a (?P<step>...) group). A folder is traced once it is completely
written: config.json and every weight file whole (a safetensors file as long as its header
says, every shard an index lists), no temporary files, and either trainer_state.json present
(the Trainer writes it last) or nothing changed for --settle seconds.

The probe set is drawn from the training samples of --samples, --per-domain of each domain
(the same draw as grokviz.monitor.Monitor's). Ctrl-C stops; the same command resumes, skipping
what is traced. `grokviz metrics STORE` analyzes the store with the paper's criterion after.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz watch",
        description="Follow a training run's checkpoint folder and trace each new checkpoint.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="CHECKPOINT_DIR", type=Path, help="the run's folder")
    parser.add_argument(
        "--samples", required=True, type=Path, help="samples table (.parquet, .csv, .jsonl)"
    )
    parser.add_argument("--out", required=True, type=Path, help="trace store folder")
    parser.add_argument("--pattern", help="checkpoint folder names, e.g. 'ckpt-{step}'")
    parser.add_argument(
        "--per-domain",
        default="32",
        help="probe samples per domain, or 'all' (default 32)",
    )
    parser.add_argument("--seed", type=int, default=0, help="which probe samples are drawn")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between looks")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds a folder must stay unchanged"
    )
    parser.add_argument("--once", action="store_true", help="trace what is complete now, then stop")
    parser.add_argument("--eps", type=float, help="online memorization loss ceiling")
    parser.add_argument("--window", type=int, default=3, help="observations it must hold for")
    parser.add_argument(
        "--metrics-out", type=Path, help="also write the live metrics here (.parquet or .csv)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="samples per forward pass")
    parser.add_argument("--max-length", type=int, default=512, help="truncate samples to N tokens")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=_DTYPES, default="auto", help="weights precision")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow loading pickle (.bin) weights"
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow running a checkpoint's own code"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    add_debug(parser)
    return parser


def _per_domain(text: str) -> int | None:
    from grokviz.errors import InputError

    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        msg = f"--per-domain must be a number or 'all', got {text!r}"
        raise InputError(msg) from None


def _line(observation: Any) -> str:
    """One line per observation: the probe's headline metrics and how much is memorized."""
    s = observation.scalars()
    parts = [f"{observation.checkpoint} (step {observation.step}):"]
    for name in ("distance", "consistency", "loss"):
        value = s.get(f"grokviz/probe/{name}")
        if value is not None:
            parts.append(f"{name} {value:.4g}")
    memorized = int(s.get("grokviz/memorized/count", 0))
    n = observation.memorization.height
    parts.append(f"memorized {memorized}/{n}")
    return " ".join(parts)


def _write_metrics(path: Path, frame: Any) -> None:
    """Write ``frame`` to ``path`` atomically (a reader never sees half a file)."""
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix.lower() == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp)
    os.replace(tmp, path)


def _stop_on_sigterm() -> None:
    # A job scheduler ends jobs with SIGTERM: stop the same way as Ctrl-C, between parts.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def _run(args: argparse.Namespace) -> int:
    import logging

    from grokviz.monitor import OnlineCriterion, Watcher

    logging.getLogger("grokviz").setLevel(logging.WARNING if args.quiet else logging.INFO)
    samples = read_table(args.samples, what="samples")
    if "split" in samples.columns:
        import polars as pl

        samples = samples.filter(pl.col("split") == "train")  # never test or validation data
    watcher = Watcher(
        args.folder,
        samples,
        args.out,
        pattern=args.pattern,
        per_domain=_per_domain(args.per_domain),
        seed=args.seed,
        settle=args.settle,
        criterion=OnlineCriterion(eps=args.eps, window=args.window),
        max_length=args.max_length,
        batch_size=args.batch_size,
        device=args.device,
        dtype=None if args.dtype == "auto" else args.dtype,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
    )
    if not args.quiet:
        print(
            f"watching {args.folder} for checkpoints; probe of {watcher.probe.height} training "
            f"samples; store {args.out} (Ctrl-C stops, the same command resumes)",
            flush=True,
        )
    for observation in watcher.iter(interval=args.interval, once=args.once):
        if not args.quiet:
            print(_line(observation), flush=True)
        if args.metrics_out is not None:
            _write_metrics(args.metrics_out, watcher.live.metrics)
    return 0


def main(argv: list[str]) -> int:
    """Run ``grokviz watch`` with command-line arguments ``argv``; return the exit status."""
    args = _parser().parse_args(argv)
    _stop_on_sigterm()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(
            f"\ngrokviz watch: stopped. Traced checkpoints are saved in {str(args.out)!r}; run the "
            "same command again to resume.",
            file=sys.stderr,
            flush=True,
        )
        return 130
