"""The ``grokviz`` command: ``grokviz trace``, ``grokviz metrics``, ``grokviz toy``.

Each subcommand lives in its own module exposing ``main(argv) -> int``; this file only
dispatches, so ``grokviz --help`` answers without importing torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# subcommand -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "trace": (
        "grokviz.cli._trace",
        "trace checkpoints: per-sample losses and routing into a trace store",
    ),
    "metrics": (
        "grokviz.cli._metrics",
        "pathway metrics of a trace store, optionally against accuracy",
    ),
    "toy": ("grokviz.toy.__main__", "train and inspect the tiny OLMoE toy runs that grok on a CPU"),
    "report": ("grokviz.cli._report", "one standalone offline HTML page of a trace, for sharing"),
}


def read_table(path: Path, *, what: str) -> Any:
    """Read the ``what`` table (e.g. "samples") from a Parquet, CSV, JSON Lines or JSON file."""
    import polars as pl

    if not path.is_file():
        msg = f"{what} file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    readers: dict[str, Callable[[Path], Any]] = {
        ".parquet": pl.read_parquet,
        ".csv": pl.read_csv,
        ".jsonl": pl.read_ndjson,
        ".ndjson": pl.read_ndjson,
        ".json": pl.read_json,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        msg = f"cannot read {what} from {str(path)!r}: use a .parquet, .csv, .jsonl or .json file"
        raise ValueError(msg)
    return reader(path)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: grokviz <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `grokviz <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        from grokviz import __version__

        print(f"grokviz {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"grokviz: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(command[0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
