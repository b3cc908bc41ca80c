"""``python -m grokviz.toy`` / ``grokviz toy``: train the toy run, trace it, write its report.

python -m grokviz.toy train --out runs/toy            # the shipped run, minutes on 2 cores
python -m grokviz.toy train --out /tmp/t --preset tiny
python -m grokviz.toy trace --run runs/toy            # routing + losses -> runs/toy/trace
python -m grokviz.toy report --run runs/toy --out docs/toy_results.md
python -m grokviz.toy lm --out /tmp/lmtoy --report docs/toy_lm.md   # one-pass toy LM

``trace`` and ``report`` work on both kinds of run folder: :func:`~grokviz.toy.report.trace_run`
opens a run by ``run.json``'s ``"kind"``, and ``report`` hands a one-pass LM run (written by
``lm``) to :func:`~grokviz.toy.lm_report.write_lm_report`, any other run to the first toy's report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The report each kind of run writes when `report` gets no --out.
_DEFAULT_REPORT = {"toy": Path("docs/toy_results.md"), "lm": Path("docs/toy_lm.md")}


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
    tc.add_argument("--run", required=True, type=Path, help="a folder written by `train` or `lm`")
    tc.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    tc.add_argument(
        "--token-samples",
        type=int,
        default=2,
        help="samples per operation (LM run: domain) and split whose per-token routing is kept",
    )
    tc.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = sub.add_parser("report", help="write the Markdown result of a traced run")
    rp.add_argument("--run", required=True, type=Path, help="a folder written by `train` or `lm`")
    rp.add_argument("--store", type=Path, help="trace store folder (default RUN/trace)")
    rp.add_argument(
        "--out",
        type=Path,
        help="Markdown file (default docs/toy_results.md; for an `lm` run docs/toy_lm.md)",
    )

    lm = sub.add_parser(
        "lm", help="one-pass pretraining of a tiny MoE LM on a generated multi-domain corpus"
    )
    lm.add_argument("--out", required=True, type=Path, help="output folder of the run")
    lm.add_argument("--preset", default="default", help="default (docs/toy_lm.md) or tiny")
    lm.add_argument("--seed", type=int, help="seed of the corpus, initialisation and order")
    lm.add_argument("--threads", type=int, help="intra-op CPU threads (fixed for determinism)")
    lm.add_argument("--trace", action="store_true", help="trace the run into OUT/trace")
    lm.add_argument("--report", type=Path, help="trace, then write the Markdown report here")
    lm.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _train(args: argparse.Namespace) -> int:
    import polars as pl

    from grokviz.toy.train import PRESETS, train, with_overrides, with_steps

    if args.preset not in PRESETS:
        print(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "seed": args.seed,
            "threads": args.threads,
            "prompt_weight": args.prompt_weight,
        }.items()
        if value is not None
    }
    config = PRESETS[args.preset]
    if args.steps is not None:
        config = with_steps(config, args.steps)
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
    from grokviz.toy._loop import run_kind

    kind = run_kind(args.run)
    out = args.out if args.out is not None else _DEFAULT_REPORT[kind]
    if kind == "lm":
        from grokviz.toy.lm_report import write_lm_report

        path = write_lm_report(args.run, out, store=args.store)
    else:
        from grokviz.toy.report import write_report

        path = write_report(args.run, store=args.store, out=out)
    print(f"wrote {path}")
    return 0


def _lm(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import polars as pl

    from grokviz.toy.lm import PRESETS, trace_lm, train_lm
    from grokviz.toy.lm_report import write_lm_report

    if args.preset not in PRESETS:
        print(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    changes = {
        k: v for k, v in {"seed": args.seed, "threads": args.threads}.items() if v is not None
    }
    config = replace(PRESETS[args.preset], **changes)
    run = train_lm(config, args.out, progress=not args.quiet)
    print(
        f"trained one pass ({config.steps} steps) in {run.seconds:.0f} s on {config.threads} "
        f"thread(s); {len(run.checkpoints)} checkpoints in {args.out}"
    )
    with pl.Config(tbl_rows=-1):
        print(run.accuracy.pivot(on="task", index="step", values="accuracy"))
    if args.trace or args.report:
        print(f"traced into {trace_lm(args.out, progress=not args.quiet)}")
    if args.report:
        print(f"wrote {write_lm_report(args.out, args.report)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grokviz toy``; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    handlers = {"train": _train, "trace": _trace, "report": _report, "lm": _lm}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
