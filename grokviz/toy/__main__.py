"""``python -m grokviz.toy`` / ``grokviz toy``: train the toy run, trace it, write its report.

python -m grokviz.toy train --out runs/toy            # the shipped run, minutes on 2 cores
python -m grokviz.toy train --out /tmp/t --preset tiny
python -m grokviz.toy trace --run runs/toy            # routing + losses -> runs/toy/trace
python -m grokviz.toy report --run runs/toy --out docs/toy_results.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz toy",
        description="Tiny OLMoE-architecture runs on modular arithmetic that grok on a CPU.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a toy run and save its checkpoint series and tables")
    tr.add_argument("--out", required=True, type=Path, help="output folder of the run")
    tr.add_argument("--preset", default="default", help="default (the shipped run) or tiny")
    tr.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    tr.add_argument("--seed", type=int, help="seed of the split, initialisation and batches")
    tr.add_argument("--threads", type=int, help="intra-op CPU threads (fixed for determinism)")
    tr.add_argument(
        "--prompt-weight",
        type=float,
        help="loss weight of the prompt tokens (1: plain LM objective, 0: answer only)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    tc = sub.add_parser("trace", help="trace a run's checkpoints into RUN/trace")
    tc.add_argument("--run", required=True, type=Path, help="a folder written by `train`")
    tc.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    tc.add_argument(
        "--token-samples",
        type=int,
        default=2,
        help="samples per operation and split whose per-token routing is kept",
    )
    tc.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = sub.add_parser("report", help="write the Markdown result of a traced run")
    rp.add_argument("--run", required=True, type=Path, help="a folder written by `train`")
    rp.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    rp.add_argument("--out", type=Path, default=Path("docs/toy_results.md"), help="Markdown file")
    return parser


def _train(args: argparse.Namespace) -> int:
    import polars as pl

    from grokviz.toy.train import PRESETS, train, with_overrides

    if args.preset not in PRESETS:
        print(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "steps": args.steps,
            "seed": args.seed,
            "threads": args.threads,
            "prompt_weight": args.prompt_weight,
        }.items()
        if value is not None
    }
    config = PRESETS[args.preset]
    if args.steps is not None and config.checkpoints:
        # keep the preset's explicit checkpoints that still fall inside the shorter run
        kept = tuple(s for s in config.checkpoints if s <= args.steps)
        changes["checkpoints"] = tuple(sorted({*kept, args.steps}))
    config = with_overrides(config, **changes)
    run = train(config, args.out, progress=not args.quiet)
    last = run.log.filter(pl.col("step") == run.log["step"].max())
    print(
        f"trained {config.steps} steps in {run.seconds:.0f} s on {config.threads} thread(s); "
        f"{len(run.checkpoints)} checkpoints in {args.out}"
    )
    with pl.Config(tbl_rows=-1):
        print(last)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from grokviz.toy.report import trace_run

    store = trace_run(
        args.run, store=args.store, token_samples=args.token_samples, progress=not args.quiet
    )
    print(f"traced into {store}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from grokviz.toy.report import write_report

    path = write_report(args.run, store=args.store, out=args.out)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grokviz toy``; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    handlers = {"train": _train, "trace": _trace, "report": _report}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
