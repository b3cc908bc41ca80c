"""Several processes writing one store: a short lock for the manifest, and claims on units of work.

Two kinds of lock, both advisory ``flock`` locks that the kernel drops when their holder dies, so
a killed process never leaves a lock behind that someone must clear by hand:

- :func:`store_lock` is held for the few milliseconds it takes to read the manifest, change it and
  write it back, so concurrent writers never lose each other's updates;
- :class:`Claim` marks one *unit* (a checkpoint's shard, or its router table) as being traced by
  a live process. Another process skips a claimed unit, or waits for it (``blocking=True``); the
  claim of a process that died is free again at once, and its unit is traced by whoever claims
  it next. A claim file names its holder (host, pid, start time) for messages.

On network filesystems (NFS v4, Lustre mounted with ``flock``) ``flock`` is cluster-wide; on
object storage there are no locks, and a store must not be written there by several processes.
On Windows, which has no ``flock``, a store has one writer at a time and no protection.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with Claim.acquire(folder, "step-100.00003") as claim:
...     Claim.acquire(folder, "step-100.00003") is None  # the same unit is taken
True
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock file ``path`` for the block (blocking until it is free)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


class Claim:
    """A live process's hold on one unit of a store; release it with :meth:`release` (or ``with``)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path, unit: str, *, blocking: bool = False) -> Claim | None:
        """Claim ``unit`` (a file name) in ``folder``; ``None`` when a live process holds it.

        With ``blocking=True``, wait until the holder releases it or dies, then claim it.
        """
        folder.mkdir(exist_ok=True)
        path = folder / unit
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
                    fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            # The holder we waited for may have released by deleting the file: our lock is then
            # on a file nobody else sees. Keep it only if the path still names our file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_holder()).encode())
            return cls(path, fd)

    @staticmethod
    def holder(folder: Path, unit: str) -> dict[str, Any] | None:
        """Who holds ``unit``, as its claim file says (``None`` when unclaimed or unreadable)."""
        try:
            data = json.loads((folder / unit).read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        """Give the unit up: delete the claim file while still holding it, then unlock."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        # Forget the descriptor before closing it: a Ctrl-C landing between the two must not
        # leave it recorded, or __del__ would close it again (or another file given its number).
        fd, self._fd = self._fd, None
        os.close(fd)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten claim must not outlive its object
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):  # at interpreter exit; never raise from here
                self.release()


def describe(holder: dict[str, Any] | None) -> str:
    """``holder`` (from :meth:`Claim.holder`) in words, for messages."""
    if not holder:
        return "another process"
    started = time.strftime("%H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return f"process {holder.get('pid')} on {holder.get('host')} (since {started})"
