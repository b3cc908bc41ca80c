"""Crash-safe file writes: a file is either its old self or completely written, never half.

Each write goes to a temporary file in the target's folder, which is flushed, fsynced and then
renamed over the target with ``os.replace`` (atomic on POSIX and Windows); the folder is fsynced
too where the platform allows, so the rename itself survives a power cut. Temporary files carry
:data:`_TMP_SUFFIX`, so whoever owns a folder can sweep those a killed writer left behind.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_json(folder / "run.json", {"steps": 10})
>>> (folder / "run.json").read_text()
'{\\n "steps": 10\\n}'
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

_TMP_SUFFIX = ".grokviz-tmp"


def atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills a temp file, which is fsynced and renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), hence optional.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    """Write ``frame`` to ``path`` atomically as zstd Parquet."""
    atomic_write(path, lambda fh: frame.write_parquet(fh, compression="zstd"))


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically as indented JSON."""
    text = json.dumps(data, indent=1, sort_keys=False).encode()
    atomic_write(path, lambda fh: fh.write(text))
