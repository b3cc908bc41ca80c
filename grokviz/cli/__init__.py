"""The ``grokviz`` command: ``grokviz trace``, ``metrics``, ``verify``, ``toy``.

Each subcommand lives in its own module exposing ``main(argv) -> int``; this file only
dispatches, so ``grokviz --help`` answers without importing torch. Every subcommand runs behind
one error boundary (:func:`grokviz.cli._common.run_command`): a failure ends in one line that
says what was wrong and what to do, and ``--debug`` adds the traceback.

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
grokviz ...
0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from grokviz.cli._common import read_table, run_command

__all__ = ["COMMANDS", "main", "read_table"]

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
    "verify": (
        "grokviz.cli._verify",
        "check every file of a trace store; --repair recomputes what is damaged",
    ),
    "watch": (
        "grokviz.cli._watch",
        "follow a training run's checkpoint folder, tracing each checkpoint once it is whole",
    ),
    "toy": ("grokviz.toy.__main__", "train and inspect the tiny OLMoE toy runs that grok on a CPU"),
    "report": ("grokviz.cli._report", "one standalone offline HTML page of a trace, for sharing"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: grokviz <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Run `grokviz <command> --help` for a command's options; --debug on any command shows",
        "the traceback of an error.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``grokviz`` command with ``argv`` (default ``sys.argv[1:]``); return its status."""
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
    name, rest = args[0], args[1:]
    module = importlib.import_module(command[0])
    # --debug belongs to the boundary, wherever it stands; the subcommand never sees it
    body = [a for a in rest if a != "--debug"]
    return run_command(name, lambda: module.main(body), argv=rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
