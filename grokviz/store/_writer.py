"""How :func:`grokviz.trace.trace` fills a trace store: the writing half of ``TraceStore``.

:class:`_StoreWriter` is a mixin of :class:`grokviz.store.TraceStore`; it holds what only the
tracer calls. It keeps the store's promises (DESIGN.md §2): one writer at a time (an advisory
lock), checkpoints of different weights never mixed under one label, a sample set only ever
extended, and the manifest rewritten after every finished part, so an interrupted run resumes
with exactly the parts whose files are missing or damaged. Every file goes through
:mod:`grokviz.store._files`, so none is ever half written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from grokviz.errors import TraceStoreError
from grokviz.store._files import _TMP_SUFFIX, write_json, write_parquet
from grokviz.store._format import (
    MANIFEST,
    ROUTERS_FILE,
    SAMPLES_FILE,
    TABLES,
    _folder_name,
    part_name,
    samples_hash,
)


class _StoreWriter:
    """The methods :func:`grokviz.trace.trace` fills a :class:`~grokviz.store.TraceStore` with."""

    path: Path
    manifest: dict[str, Any]

    if TYPE_CHECKING:  # provided by TraceStore, the reading half

        def samples(self) -> pl.DataFrame: ...
        def _validate(self, file: Path) -> None: ...

    def _check_params(self, params: Mapping[str, Any]) -> None:
        stored = self.manifest["params"]
        for key, value in params.items():
            if stored.get(key) != value:
                msg = (
                    f"trace store {str(self.path)!r} was traced with {key}={stored.get(key)!r}, "
                    f"not {value!r}; traces made with different parameters must not mix. "
                    f"Pass {key}={stored.get(key)!r} to add to this store, or trace into a new folder."
                )
                raise TraceStoreError(msg)

    def _append_samples(self, samples: pl.DataFrame, *, shard_size: int) -> None:
        stored = self.samples()
        old = dict(stored.select("sample_id", "text").iter_rows())
        new = dict(samples.select("sample_id", "text").iter_rows())
        missing = [sid for sid in old if sid not in new]
        changed = [sid for sid, text in old.items() if sid in new and new[sid] != text]
        if missing or changed:
            what = f"lacks {len(missing)} stored sample(s) (e.g. {missing[:3]})" if missing else ""
            if changed:
                what += (" and " if what else "") + (
                    f"changes the text of {len(changed)} sample(s) (e.g. {changed[:3]})"
                )
            msg = (
                f"trace store {str(self.path)!r} holds a different sample set: the samples given "
                f"{what}. Trace into a new folder, or pass the stored samples "
                "(TraceStore.open(path).samples()) plus any new ones."
            )
            raise TraceStoreError(msg)
        added = samples.filter(~pl.col("sample_id").is_in(list(old)))
        combined = pl.concat([stored, added], how="diagonal_relaxed")
        start, n = stored.height, combined.height
        write_parquet(self.path / SAMPLES_FILE, combined)
        self.manifest["shards"] += [
            [i, min(i + shard_size, n)] for i in range(start, n, shard_size)
        ]
        self.manifest["n_samples"] = n
        self.manifest["samples_hash"] = samples_hash(combined)
        self._save()

    def _save(self) -> None:
        write_json(self.path / MANIFEST, self.manifest)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the store so two runs never write it at once."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
            yield
            return
        with open(self.path / ".lock", "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"another process is tracing into {str(self.path)!r}; wait for it or use another folder"
                raise TraceStoreError(msg) from None
            for stale in self.path.rglob(f"*{_TMP_SUFFIX}"):
                stale.unlink(missing_ok=True)  # temp files of a killed run
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _check_identity(self, identity: Mapping[str, Any]) -> None:
        """Raise if the store holds traces of other weights under ``identity['label']``."""
        label = identity["label"]
        entry = self.manifest["checkpoints"].get(label)
        if entry is None:
            return
        # the weights hash decides; without one (unknown sha), source and revision must agree
        keys = ("sha",) if entry.get("sha") or identity.get("sha") else ("source", "revision")
        for key in keys:
            if entry.get(key) != identity.get(key):
                msg = (
                    f"checkpoint {label!r} in trace store {str(self.path)!r} was traced from "
                    f"weights with {key}={entry.get(key)!r}, but these have {key}="
                    f"{identity.get(key)!r}; traces of different weights never mix. Give the "
                    "checkpoint another label or trace into a new folder."
                )
                raise TraceStoreError(msg)

    def _begin_checkpoint(
        self, identity: Mapping[str, Any], info: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Record a checkpoint (or check it matches what is recorded) and return its entry."""
        self._check_identity(identity)
        label = identity["label"]
        entry = self.manifest["checkpoints"].get(label)
        if entry is None:
            taken = {e["dir"] for e in self.manifest["checkpoints"].values()}
            entry = {**identity, "dir": _folder_name(label, taken), "model": dict(info)}
            entry.update(routers=False, parts=[])
            (self.path / entry["dir"]).mkdir(exist_ok=True)
            self.manifest["checkpoints"][label] = entry
            self._save()
            return entry
        if entry.get("model") and dict(info) != entry["model"]:
            msg = (
                f"checkpoint {label!r} in {str(self.path)!r}: model shape {dict(info)} differs "
                f"from the stored {entry['model']}; trace into a new folder"
            )
            raise TraceStoreError(msg)
        (self.path / entry["dir"]).mkdir(exist_ok=True)
        return entry

    def _missing_parts(self, label: str) -> list[int]:
        """Shards of ``label`` still to trace; finished parts with missing or corrupt files count."""
        entry = self.manifest["checkpoints"].get(label)
        done = set(entry["parts"]) if entry else set()
        if entry:
            for shard in sorted(done):
                for table in TABLES:
                    try:
                        self._validate(self.path / entry["dir"] / part_name(table, shard))
                    except TraceStoreError:
                        done.discard(shard)
            if done != set(entry["parts"]):
                entry["parts"] = sorted(done)
                self._save()
        return [s for s in range(len(self.manifest["shards"])) if s not in done]

    def _write_routers(self, label: str, frame: pl.DataFrame) -> None:
        entry = self.manifest["checkpoints"][label]
        write_parquet(self.path / entry["dir"] / ROUTERS_FILE, frame)
        entry["routers"] = True
        self._save()

    def _write_part(self, label: str, shard: int, frames: Mapping[str, pl.DataFrame]) -> None:
        entry = self.manifest["checkpoints"][label]
        for table, table_schema in TABLES.items():
            frame = frames[table].select(list(table_schema))
            write_parquet(self.path / entry["dir"] / part_name(table, shard), frame)
        entry["parts"] = sorted({*entry["parts"], shard})
        self._save()
