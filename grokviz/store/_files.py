"""Crash-safe file writes: a file is either its old self or completely written, never half.

Each write goes to a temporary file in the target's folder, which is flushed, fsynced and then
renamed over the target with ``os.replace`` (atomic on POSIX and Windows); the folder is fsynced
too where the platform allows, so the rename itself survives a power cut. Temporary files carry
:data:`TMP_SUFFIX`, so whoever owns a folder can sweep those a killed writer left behind.

Files are created with mode ``0o666`` less the process umask, like any ``open()``: a store on a
shared cluster filesystem is as readable to colleagues as the user's other files.

Every write returns the SHA-256 and size of the bytes written, which the store's manifest records
so that damage anywhere in a file is found later (:func:`file_digest`).

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> written = write_json(folder / "run.json", {"steps": 10})
>>> (folder / "run.json").read_text()
'{\\n "steps": 10\\n}'
>>> written.size, written.sha256 == file_digest(folder / "run.json")
(16, True)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.errors import TraceStoreError

TMP_SUFFIX = ".grokviz-tmp"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Written:
    """What was written: the file's SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int


def write_bytes(path: Path, data: bytes) -> Written:
    """Write ``data`` to ``path`` atomically; return its digest and size.

    Raises
    ------
    TraceStoreError
        The file cannot be written (permissions, no space left, ...); the message names it.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        # O_EXCL on a fresh name: never follows a link or reuses another writer's temp file;
        # mode 0o666 lets the kernel apply the umask, unlike tempfile.mkstemp's fixed 0o600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    _fsync_dir(path.parent)
    return Written(hashlib.sha256(data).hexdigest(), len(data))


def _write_error(path: Path, exc: OSError) -> TraceStoreError:
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        advice = "free some space and run the same command again; finished parts are kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "check that you may write to that folder, or choose another one"
    else:
        advice = "check the folder and run the same command again; finished parts are kept"
    msg = f"cannot write {str(path)!r}: {reason}; {advice}"
    return TraceStoreError(msg)


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


def parquet_bytes(frame: pl.DataFrame, *, metadata: Mapping[str, str] | None = None) -> bytes:
    """``frame`` as zstd Parquet bytes, with ``metadata`` as the file's key-value metadata."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", metadata=dict(metadata or {}))
    return buffer.getvalue()


def write_parquet(
    path: Path, frame: pl.DataFrame, *, metadata: Mapping[str, str] | None = None
) -> Written:
    """Write ``frame`` to ``path`` atomically as zstd Parquet (see :func:`parquet_bytes`)."""
    return write_bytes(path, parquet_bytes(frame, metadata=metadata))


def write_json(path: Path, data: Mapping[str, Any]) -> Written:
    """Write ``data`` to ``path`` atomically as indented JSON."""
    return write_bytes(path, json.dumps(data, indent=1, sort_keys=False).encode())


def file_digest(path: Path) -> str:
    """The SHA-256 (hex) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_metadata(path: Path) -> dict[str, str]:
    """The key-value metadata of the Parquet file at ``path`` (reads its footer only)."""
    return dict(pl.read_parquet_metadata(path))
