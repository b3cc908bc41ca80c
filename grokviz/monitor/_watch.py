"""Follow a folder that a training job writes checkpoints into, and trace each one once it is whole.

:class:`Watcher` (and ``grokviz watch``) looks at a run's output folder every few seconds. A
subfolder whose name matches the pattern (the Trainer's ``checkpoint-<N>``, ``step-<N>``, or a
pattern of the user's) is a checkpoint of step ``N``. It is traced into the store, over the probe
set, once it is *completely written*, which is decided from the files alone, without any help
from the writer:

1. ``config.json`` is there and parses;
2. the weights are whole: ``model.safetensors``, or every shard a
   ``model.safetensors.index.json`` lists (``.bin`` files with ``allow_pickle``); a safetensors
   file must have exactly the size its own header declares (a file still being written is
   shorter);
3. no temporary file (``*.tmp``, ``*.partial``, ``*.incomplete``, ``tmp*``) is left in it;
4. and either the folder holds ``trainer_state.json``, which the ``transformers`` Trainer writes
   after everything else of a checkpoint, or nothing in the folder (names, sizes, modification
   times) changed between two looks at least ``settle`` seconds apart.

Tracing goes through :func:`grokviz.trace`, so it follows the store's rules: parts are written
atomically and claimed, an interrupted watch loses at most the part in flight, and a watch
started again with the same arguments skips what is done (the weights of checkpoints already
in the store are checked once against what they were traced from). A checkpoint that disappears
before it is traced (``save_total_limit`` rotating old ones out) is skipped with a warning;
one that fails to load is reported once and retried only when its files change.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.errors import (
    CheckpointLoadError,
    CheckpointNotFoundError,
    InputError,
    StoreMismatchError,
)
from grokviz.monitor._live import LiveMetrics, Observation
from grokviz.monitor._monitor import check_store
from grokviz.monitor._online import OnlineCriterion
from grokviz.monitor._probe import DEFAULT_PER_DOMAIN, probe_set

__all__ = ["DEFAULT_PATTERN", "Watcher", "folder_complete", "watch"]

logger = logging.getLogger("grokviz.monitor")

DEFAULT_PATTERN = r"(?:checkpoint|step|global_step|ckpt|iter)[-_]?(?P<step>\d+)"
"""Checkpoint folder names ``grokviz watch`` follows by default: ``checkpoint-500``,
``step-000500``, ``step500``, ``global_step500``, ``ckpt_500``, ``iter500``."""

TRAINER_STATE = "trainer_state.json"
_TEMPORARY = re.compile(r"(\.tmp|\.partial|\.incomplete|\.lock)$|^tmp|^\.tmp", re.IGNORECASE)


def compile_pattern(pattern: str | None) -> re.Pattern[str]:
    """The folder-name pattern as a regex with a ``step`` group.

    ``pattern`` is a regex with a named group ``step`` (or one group), or a template with
    ``{step}`` where the step number stands (``"epoch-1-step-{step}"``).

    Examples
    --------
    >>> compile_pattern("run_{step}").fullmatch("run_0042")["step"]
    '0042'
    >>> compile_pattern(None).fullmatch("checkpoint-500")["step"]
    '500'
    """
    if pattern is None:
        pattern = DEFAULT_PATTERN
    elif "{step}" in pattern:
        head, _, tail = pattern.partition("{step}")
        pattern = re.escape(head) + r"(?P<step>\d+)" + re.escape(tail)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        msg = f"checkpoint pattern {pattern!r} is not a regular expression: {exc}"
        raise InputError(msg) from exc
    if "step" not in compiled.groupindex:
        if compiled.groups != 1:
            msg = (
                f"checkpoint pattern {pattern!r} must say where the step number is: use a group "
                "(?P<step>\\d+), exactly one group, or a template such as 'ckpt-{step}'"
            )
            raise InputError(msg)
        compiled = re.compile(pattern.replace("(", "(?P<step>", 1))
    return compiled


def _snapshot(folder: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file():
            entries.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(entries)


def _safetensors_whole(path: Path) -> bool:
    """Whether a safetensors file has the size its header declares (8-byte length, JSON, data)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return False
            header = json.loads(handle.read(n))
    except (OSError, ValueError):
        return False
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    return size == 8 + n + max(ends, default=0)


def _weights_whole(folder: Path, *, allow_pickle: bool) -> bool:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if not index.is_file():
            continue
        if index_name.startswith("pytorch") and not allow_pickle:
            continue
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        if not shards:
            return False
        for shard in shards:
            path = folder / shard
            if not path.is_file():
                return False
            if shard.endswith(".safetensors") and not _safetensors_whole(path):
                return False
        return True
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return all(_safetensors_whole(p) for p in safetensors)
    return allow_pickle and any(folder.glob("*.bin"))


def folder_complete(folder: str | os.PathLike[str], *, allow_pickle: bool = False) -> bool:
    """Whether ``folder`` passes checks 1-3 of the module docstring (whole config and weights,
    no temporary files). Check 4, that it stopped changing, needs two looks: :class:`Watcher`.

    Examples
    --------
    >>> folder_complete("data/samples/toy/checkpoints/step-000050")
    True
    """
    path = Path(folder)
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    try:
        names = [p.name for p in path.iterdir()]
    except OSError:
        return False
    if any(_TEMPORARY.search(name) for name in names):
        return False
    return _weights_whole(path, allow_pickle=allow_pickle)


@dataclass
class _Seen:
    """What the watcher knows about one checkpoint folder."""

    snapshot: tuple[tuple[str, int, int], ...]
    since: float  # when this snapshot was first seen
    failed: bool = False  # tracing it failed; retried when the snapshot changes


class Watcher:
    """Trace the checkpoints a training job writes into ``folder``, as each is completely written.

    Parameters
    ----------
    folder
        The run's output folder (it may not exist yet).
    samples
        Training samples; the probe set is drawn from them as by :class:`~grokviz.monitor.Monitor`.
    store
        The trace store folder (created; an existing one resumes).
    pattern
        Checkpoint folder names (see :func:`compile_pattern`); default :data:`DEFAULT_PATTERN`.
    per_domain, seed
        Size and draw of the probe set.
    settle
        Seconds a folder without ``trainer_state.json`` must stay unchanged.
    criterion, tau, top_k, unit, n_boot
        The live metrics (:class:`~grokviz.monitor.LiveMetrics`).
    max_length, batch_size, device, dtype, allow_pickle, trust_remote_code
        Passed to :func:`grokviz.trace`.

    Examples
    --------
    >>> import tempfile
    >>> watcher = Watcher("data/samples/toy/checkpoints", samples.filter(pl.col("split") == "train"),
    ...                   tempfile.mkdtemp() + "/live", per_domain=4, settle=0)
    >>> ready = watcher.ready()  # two looks: settle=0 still needs the folder seen once before
    >>> [c.label for c in watcher.ready()][:2]  # doctest: +ELLIPSIS
    ['step-...', 'step-...']
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        samples: object,
        store: str | os.PathLike[str],
        *,
        pattern: str | None = None,
        per_domain: int | None = DEFAULT_PER_DOMAIN,
        seed: int = 0,
        settle: float = 2.0,
        criterion: OnlineCriterion | None = None,
        tau: float = 0.7,
        top_k: int | None = None,
        unit: str = "expert",
        n_boot: int = 200,
        max_length: int = 512,
        batch_size: int = 16,
        device: Any = None,
        dtype: Any = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        if settle < 0:
            msg = f"settle must be >= 0 seconds, got {settle}"
            raise InputError(msg)
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            msg = f"{str(self.folder)!r} is a file; grokviz watch follows a folder of checkpoints"
            raise InputError(msg)
        self.path = Path(store)
        self.pattern = compile_pattern(pattern)
        self.probe = probe_set(samples, per_domain=per_domain, seed=seed)
        check_store(self.path, self.probe)
        self.settle = float(settle)
        self._trace_kwargs: dict[str, Any] = {
            "max_length": max_length,
            "batch_size": batch_size,
            "device": device,
            "dtype": dtype,
            "allow_pickle": allow_pickle,
            "trust_remote_code": trust_remote_code,
        }
        self.live = LiveMetrics(
            self.path, criterion=criterion, tau=tau, top_k=top_k, unit=unit, n_boot=n_boot
        )
        """The live metrics of the store."""
        self._seen: dict[str, _Seen] = {}
        self._done: set[str] = set()
        self._checked = False
        self.live.update()  # what the store holds already continues the series, not "new"

    # -- finding checkpoints ----------------------------------------------------------------------

    def _candidates(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = self.pattern.fullmatch(path.name)
            if match and path.is_dir():
                found.append((int(match["step"]), path))
        return sorted(found, key=lambda item: (item[0], item[1].name))

    def _resume_check(self) -> None:
        """Once: checkpoints the store already holds must still be the weights traced then."""
        from grokviz.tracing import Checkpoint

        self._checked = True
        store = self.live.store
        if store is None:
            return
        entries = store.manifest["checkpoints"]
        complete = set(
            store.checkpoints()
            .filter(pl.col("parts_done") == pl.col("parts_total"))["checkpoint"]
            .to_list()
        )
        for step, path in self._candidates():
            entry = entries.get(path.name)
            if entry is None or path.name not in complete:
                continue
            try:
                sha = Checkpoint(str(path), step=step).identity()["sha"]
            except CheckpointNotFoundError:
                continue
            if entry.get("sha") != sha:
                msg = (
                    f"checkpoint {path.name!r} in {str(self.folder)!r} is not the one trace store "
                    f"{str(self.path)!r} traced under that name (other weights): a new run writing "
                    "into the same folder? Watch it into a new --out folder."
                )
                raise StoreMismatchError(msg)
            self._done.add(path.name)

    def ready(self) -> list[Any]:
        """Checkpoints (:class:`~grokviz.Checkpoint`) complete now and not traced yet, in step order."""
        from grokviz.tracing import Checkpoint, parse_step

        self.live._open()
        if not self._checked:
            self._resume_check()
        now = time.monotonic()
        out = []
        for step, path in self._candidates():
            if path.name in self._done:
                continue
            snapshot = _snapshot(path)
            seen = self._seen.get(path.name)
            if seen is None or seen.snapshot != snapshot:
                self._seen[path.name] = seen = _Seen(snapshot, now)
                if not (path / TRAINER_STATE).is_file():
                    continue  # first look at this state of the folder: look again later
            if seen.failed:
                continue
            whole = folder_complete(path, allow_pickle=self._trace_kwargs["allow_pickle"])
            settled = (path / TRAINER_STATE).is_file() or now - seen.since >= self.settle
            if whole and settled:
                tokens = parse_step(path.name)[1]
                out.append(Checkpoint(str(path), step=step, tokens=tokens, label=path.name))
        return out

    # -- tracing ---------------------------------------------------------------------------------

    def poll(self) -> list[Observation]:
        """Trace every checkpoint that is ready, update the live metrics; return new observations."""
        import grokviz

        for checkpoint in self.ready():
            name = checkpoint.label
            try:
                grokviz.trace(
                    checkpoint, self.probe, self.path, progress=False, **self._trace_kwargs
                )
            except (CheckpointNotFoundError, FileNotFoundError) as exc:
                if not Path(checkpoint.source).exists():
                    warnings.warn(
                        f"checkpoint {name!r} was removed before it could be traced (a "
                        "save_total_limit rotating checkpoints out?); skipped",
                        stacklevel=2,
                    )
                    self._done.add(name)
                    continue
                self._failed(name, exc)
                continue
            except (CheckpointLoadError, OSError) as exc:
                self._failed(name, exc)
                continue
            self._done.add(name)
            logger.info("traced %s", name)
        return self.live.update()

    def _failed(self, name: str, exc: BaseException) -> None:
        self._seen[name].failed = True
        text = " ".join(str(exc).split())
        warnings.warn(
            f"checkpoint {name!r} could not be traced ({text}); it is tried again when its "
            "files change",
            stacklevel=3,
        )

    def run(
        self,
        *,
        interval: float = 5.0,
        once: bool = False,
        until: Callable[[], bool] | None = None,
        on_observation: Callable[[Observation], None] | None = None,
    ) -> None:
        """Poll every ``interval`` seconds until interrupted, calling ``on_observation`` with each
        new observation.

        ``until()`` ends the loop too, checked after each poll. With ``once`` it returns as soon
        as every checkpoint whose files are whole has been traced (waiting ``settle`` seconds
        for those that need it); folders still missing files are left for the next run.
        """
        for observation in self.iter(interval=interval, once=once, until=until):
            if on_observation is not None:
                on_observation(observation)

    def iter(
        self,
        *,
        interval: float = 5.0,
        once: bool = False,
        until: Callable[[], bool] | None = None,
    ) -> Iterator[Observation]:
        """The observations :meth:`run` makes, as a generator."""
        if interval <= 0:
            msg = f"interval must be > 0 seconds, got {interval}"
            raise InputError(msg)
        looks = 0
        while True:
            yield from self.poll()
            looks += 1
            if until is not None and until():
                return
            # `once` looks at least twice: a folder's first look only starts its settle time
            if once and looks >= 2 and not self._waiting(time.monotonic()):
                return
            time.sleep(min(interval, max(self.settle, 0.05)) if once else interval)

    def _waiting(self, now: float) -> bool:
        """Whether some folder is whole but not yet settled (``once`` waits for it)."""
        for _, path in self._candidates():
            seen = self._seen.get(path.name)
            if path.name in self._done or seen is None or seen.failed:
                continue
            allow = self._trace_kwargs["allow_pickle"]
            if folder_complete(path, allow_pickle=allow) and now - seen.since < self.settle:
                return True
        return False


def watch(
    folder: str | os.PathLike[str],
    samples: object,
    store: str | os.PathLike[str],
    *,
    interval: float = 5.0,
    once: bool = False,
    until: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> Iterator[Observation]:
    """Follow ``folder`` and yield an :class:`~grokviz.monitor.Observation` per traced checkpoint.

    The function behind ``grokviz watch``; ``kwargs`` are :class:`Watcher`'s. Stop it by
    breaking out of the loop, by ``KeyboardInterrupt``, with ``until`` or ``once``.

    Examples
    --------
    >>> for observation in watch("runs/olmoe", samples, "runs/olmoe/monitor"):  # doctest: +SKIP
    ...     print(observation.step, observation.scalars()["grokviz/probe/distance"])
    """
    watcher = Watcher(folder, samples, store, **kwargs)
    yield from watcher.iter(interval=interval, once=once, until=until)
