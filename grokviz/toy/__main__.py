"""``python -m grokviz.toy`` / ``grokviz toy``: train either toy, trace a run, write its report.

python -m grokviz.toy train --out runs/toy                       # the shipped arithmetic run
python -m grokviz.toy train --out /tmp/t --preset tiny
python -m grokviz.toy train --out /tmp/p --steps 2000 --set model_num_experts=16 --set lr=0.004
python -m grokviz.toy train --toy lm --out runs/lm --report docs/toy_lm.md
python -m grokviz.toy trace --run runs/toy                       # routing + losses -> runs/toy/trace
python -m grokviz.toy report --run runs/toy                      # docs/toy_results.md
python -m grokviz.toy report --run runs/toy --memorization answer --out /tmp/answer.md

``trace`` and ``report`` read the toy from the run folder's ``run.json``
(:mod:`grokviz.toy.runs`), so they take any run that ``train`` wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grokviz.errors import InputError

TOYS = ("arithmetic", "lm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grokviz toy",
        description="Tiny OLMoE-architecture runs that memorize first and generalize later, on a CPU.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a toy run and save its checkpoint series and tables")
    tr.add_argument(
        "--toy", choices=TOYS, default="arithmetic", help="which toy (default arithmetic)"
    )
    tr.add_argument("--out", required=True, type=Path, help="output folder of the run")
    tr.add_argument("--preset", default="default", help="default (the documented run) or tiny")
    tr.add_argument(
        "--steps", type=int, help="training steps (arithmetic only; the LM toy runs one pass)"
    )
    tr.add_argument("--seed", type=int, help="seed of the data, initialisation and batches")
    tr.add_argument("--threads", type=int, help="intra-op CPU threads (fixed for determinism)")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a config field (JSON value), e.g. lr=0.004, model_num_experts=16, "
        'operations=\'["add","mul"]\'; repeatable',
    )
    tr.add_argument("--trace", action="store_true", help="trace the run into OUT/trace")
    tr.add_argument("--report", type=Path, help="trace, then write the Markdown report here")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")

    tc = sub.add_parser("trace", help="trace a run's checkpoints into RUN/trace")
    tc.add_argument("--run", required=True, type=Path, help="a folder written by `train`")
    tc.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    tc.add_argument(
        "--token-samples",
        type=int,
        default=2,
        help="samples per domain and split whose per-token routing is kept",
    )
    tc.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = sub.add_parser("report", help="write the Markdown result of a traced run")
    rp.add_argument("--run", required=True, type=Path, help="a folder written by `train`")
    rp.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    rp.add_argument(
        "--out",
        type=Path,
        help="Markdown file (default docs/toy_results.md; for an LM run docs/toy_lm.md)",
    )
    rp.add_argument(
        "--memorization",
        choices=("sample", "answer"),
        default="sample",
        help="memorization criterion on the whole-sample loss (the paper's, default) or on "
        "the answer token's loss",
    )
    return parser


def _settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.004", "model_top_k=1"]`` -> ``{"lr": 0.004, "model_top_k": 1}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            msg = f"--set takes KEY=VALUE, got {pair!r}; e.g. --set lr=0.004"
            raise InputError(msg)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare word: a string
    return out


def _train(args: argparse.Namespace) -> int:
    import polars as pl

    from grokviz.toy.shared.loop import with_overrides

    if args.toy == "lm":
        from grokviz.toy.lm.train import PRESETS, train_lm

        presets: dict[str, Any] = PRESETS
    else:
        from grokviz.toy.arithmetic.train import PRESETS as ARITHMETIC
        from grokviz.toy.arithmetic.train import train, with_steps

        presets = ARITHMETIC
    if args.preset not in presets:
        print(f"unknown preset {args.preset!r}; choose one of {sorted(presets)}", file=sys.stderr)
        return 2
    config = presets[args.preset]
    if args.steps is not None:
        if args.toy == "lm":
            print(
                "--steps: the LM toy trains one pass over its corpus; change its length with "
                "--set docs_per_domain=N",
                file=sys.stderr,
            )
            return 2
        config = with_steps(config, args.steps)
    try:
        changes = _settings(args.set)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    changes |= {
        k: v for k, v in {"seed": args.seed, "threads": args.threads}.items() if v is not None
    }
    try:
        config = with_overrides(config, **changes)
    except (TypeError, ValueError) as exc:
        print(f"bad --set: {exc}", file=sys.stderr)
        return 2
    trainer: Any = train_lm if args.toy == "lm" else train
    run = trainer(config, args.out, progress=not args.quiet)
    print(
        f"trained {config.steps} steps in {run.seconds:.0f} s on {config.threads} thread(s); "
        f"{len(run.checkpoints)} checkpoints in {args.out}"
    )
    with pl.Config(tbl_rows=-1):
        print(run.accuracy.pivot(on="task", index="step", values="accuracy"))
    if args.trace or args.report:
        from grokviz.toy.runs import trace_run

        print(f"traced into {trace_run(args.out, progress=not args.quiet)}")
    if args.report:
        from grokviz.toy.runs import write_run_report

        print(f"wrote {write_run_report(args.out, args.report)}")
    return 0


def _trace(args: argparse.Namespace) -> int:
    from grokviz.toy.runs import trace_run

    store = trace_run(
        args.run, store=args.store, token_samples=args.token_samples, progress=not args.quiet
    )
    print(f"traced into {store}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from grokviz.toy.runs import write_run_report

    path = write_run_report(args.run, args.out, store=args.store, memorization=args.memorization)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grokviz toy``; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    handlers = {"train": _train, "trace": _trace, "report": _report}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
