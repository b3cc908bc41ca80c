"""What every ``grokviz`` subcommand shares: reading tables, and one boundary for errors.

:func:`run_command` is that boundary. A failure a user can cause ends in one line naming what
was wrong and what to do, never a traceback: grokviz's own errors carry such a message, and the
usual failures of the layers below (a file that cannot be read, a table polars cannot parse, a
device that is missing) are translated here. Anything else is a bug, reported in one line too,
with ``--debug`` showing the traceback. Warnings print as one line each; ``--debug`` keeps
Python's format.

Examples
--------
>>> run_command("demo", lambda: 0)
0
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grokviz.errors import GrokvizError, InputError

# Column types of the tables the commands read, so that e.g. CSV ids "007" stay "007".
_STRING_COLUMNS: dict[str, tuple[str, ...]] = {
    "samples": ("sample_id", "text", "domain", "split"),
    "accuracy": ("checkpoint", "task"),
}


def read_table(path: Path, *, what: str) -> Any:
    """Read the ``what`` table (e.g. "samples") from a Parquet, CSV, JSON Lines or JSON file.

    Text columns of known tables are read as strings, whatever they look like, so that
    sample ids such as ``007`` round-trip exactly.

    Raises
    ------
    InputError
        The file is missing, of an unknown kind, or cannot be parsed.

    Examples
    --------
    >>> import tempfile
    >>> csv = Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = csv.write_text("sample_id,text,domain,split\\n007,hi,x,train\\n")
    >>> read_table(csv, what="samples")["sample_id"].to_list()
    ['007']
    """
    import polars as pl

    if not path.is_file():
        msg = f"{what} file {str(path)!r} does not exist" + (
            " (it is a folder)" if path.is_dir() else ""
        )
        raise InputError(msg)
    strings = _STRING_COLUMNS.get(what, ())
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            header = pl.read_csv(path, n_rows=0).columns
            overrides = {c: pl.String() for c in strings if c in header}
            return pl.read_csv(path, schema_overrides=overrides)
        if suffix in (".jsonl", ".ndjson"):
            return pl.read_ndjson(path)  # JSON says itself what is a string
        if suffix == ".json":
            return pl.read_json(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"cannot read the {what} file {str(path)!r}: {first}"
        raise InputError(msg) from exc
    msg = f"cannot read {what} from {str(path)!r}: use a .parquet, .csv, .jsonl or .json file"
    raise InputError(msg)


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated command-line lists)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def add_debug(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--debug`` flag every command has (handled by :func:`run_command`)."""
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback too"
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def explain(exc: BaseException) -> tuple[str, int]:
    """A one-line message and exit status for ``exc``: 2 for what the user can fix, 1 for bugs."""
    if isinstance(exc, GrokvizError):
        return _one_line(str(exc)), 2
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer samples, a smaller --batch-size or --max-length", 2
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _one_line(f"{where}{exc.strerror or exc}"), 2
    module = type(exc).__module__ or ""
    if module.startswith("polars"):
        return _one_line(f"a table could not be processed ({name}): {exc}"), 2
    if "safetensors" in module or name == "SafetensorError":
        return _one_line(f"a weights file could not be read ({name}): {exc}"), 2
    if "CUDA" in str(exc):
        return _one_line(f"the GPU failed ({name}): {exc}"), 2
    message = _one_line(f"unexpected {name}: {exc}") + (
        " (this is a bug in grokviz or a case it does not handle yet; run again with --debug "
        "for the traceback and report it)"
    )
    return message, 1


def run_command(name: str, body: Callable[[], int | None], *, argv: Sequence[str] = ()) -> int:
    """Run one subcommand's ``body`` behind the error boundary; return the exit status."""
    debug = "--debug" in argv
    prefix = f"grokviz {name}"

    def show(message: Warning | str, category: Any = None, *args: Any, **kwargs: Any) -> None:
        print(f"{prefix}: warning: {_one_line(str(message))}", file=sys.stderr)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("grokviz: %(message)s"))
    log = logging.getLogger("grokviz")
    log.addHandler(handler)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = show
            return int(body() or 0)
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `grokviz metrics ... | head`
        return 0
    except Exception as exc:
        message, status = explain(exc)
        if debug:
            traceback.print_exc()
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return status
    finally:
        log.removeHandler(handler)
