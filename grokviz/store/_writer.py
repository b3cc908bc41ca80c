"""Writing a trace store: :class:`StoreWriter`, used by every tracer (a trace run, a training
monitor, a Ray worker, a repair).

It keeps the store's promises (DESIGN.md §2):

- nothing is written before the store lock is held, and never into a folder that is neither
  empty nor a grokviz store, so a user's own files are never overwritten;
- every change to the manifest is a transaction under the lock: read, change, write back
  atomically, so several processes can write one store without losing each other's updates;
- units of work (a checkpoint's shard, its router table) are claimed by one live process at a time
  (:mod:`grokviz.store._lock`), and the claims of a process that died are free again at once;
- checkpoints of different weights never share a label; checkpoints of one series agree on MoE
  layers, experts, top-k and vocabulary; a store's sample set is only ever extended;
- every file is written atomically with the store's identity in its metadata, and its SHA-256,
  size and row count go into the manifest, so damage anywhere in it is found, and only that
  part is recomputed.

Examples
--------
>>> import tempfile
>>> from grokviz.testing import tiny_samples
>>> writer = StoreWriter.create_or_open(Path(tempfile.mkdtemp()) / "store", tiny_samples(3),
...                                     params={"max_length": 64})
>>> writer.store.manifest["n_samples"], writer.store.manifest["shards"]
(3, [[0, 3]])
"""

from __future__ import annotations

import contextlib
import datetime
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from grokviz import __version__, schema
from grokviz.errors import (
    InputError,
    NotAStoreError,
    SeriesMismatchError,
    StoreDamagedError,
    StoreMismatchError,
    UnknownCheckpointError,
)
from grokviz.store._files import TMP_SUFFIX, file_digest, write_json, write_parquet
from grokviz.store._format import (
    CLAIMS_DIR,
    FORMAT,
    LOCK_FILE,
    MANIFEST,
    ROUTERS_FILE,
    TABLES,
    VERSION,
    content_hash,
    file_metadata,
    folder_name,
    part_name,
    samples_hash,
    samples_name,
)
from grokviz.store._lock import Claim, describe, store_lock
from grokviz.store._reader import TraceStore, read_manifest

# What checkpoints of one series must agree on (a mismatch mixes incomparable pathways).
SERIES_KEYS = ("model_type", "num_layers", "num_experts", "top_k", "vocab_size")
_OURS = {LOCK_FILE, CLAIMS_DIR}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that grokviz did not put there (its lock, claims and temp files)."""
    return sorted(
        p.name for p in folder.iterdir() if p.name not in _OURS and not p.name.endswith(TMP_SUFFIX)
    )


class StoreWriter:
    """Writes one trace store, safely beside other writers of the same store.

    Open it with :meth:`create_or_open` (a tracer with its samples) or :meth:`open` (an existing
    store: a repair, a worker given units). :attr:`store` is the reading view, kept up to date
    with every change this writer makes.

    A unit is traced as: :meth:`claim` it, compute it, :meth:`write_part` (or
    :meth:`write_routers`), release the claim. :meth:`missing_units` says what is left.
    """

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.path = store.path
        self._in_transaction = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StoreWriter:
        """A writer for the existing store at ``path``."""
        return cls(TraceStore.open(path))

    @classmethod
    def create_or_open(
        cls,
        path: str | os.PathLike[str],
        samples: pl.DataFrame,
        *,
        params: Mapping[str, Any],
        shard_size: int = 1024,
    ) -> StoreWriter:
        """Create the store at ``path`` for ``samples``, or open it to trace more of them.

        An existing store must have been traced with the same ``params``; ``samples`` must hold
        every stored sample with its stored text, and may add new ones, which are appended as
        new shards. A damaged sample-set file is restored from ``samples`` when they reproduce it.

        Raises
        ------
        NotAStoreError
            ``path`` is a file, or a folder that holds other files and is not a store.
        StoreMismatchError
            Other parameters, or a sample set that drops or changes stored samples.
        """
        if shard_size < 1:
            msg = f"shard_size must be at least 1, got {shard_size}"
            raise InputError(msg)
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            msg = f"trace store path {str(folder)!r} is a file, not a folder; choose another --out"
            raise NotAStoreError(msg)
        if folder.is_dir() and not (folder / MANIFEST).exists():
            _refuse_foreign(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"cannot create the trace store folder {str(folder)!r}: "
                f"{exc.strerror or exc}; choose a folder you can write to"
            )
            raise NotAStoreError(msg) from exc
        with store_lock(folder / LOCK_FILE):
            # checked again under the lock: another process may have created it meanwhile
            if not (folder / MANIFEST).exists():
                _refuse_foreign(folder)
                manifest = _new_manifest(params)
                write_json(folder / MANIFEST, manifest)
            writer = cls(TraceStore(folder, read_manifest(folder)))
            writer._check_params(params)
            writer._take_samples(samples, shard_size=shard_size)
        return writer

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Hold the store lock, yield the manifest as it is on disk now, write it back after.

        Nothing is written when the block raises. Transactions do not nest.
        """
        if self._in_transaction:
            msg = "StoreWriter.transaction() does not nest"
            raise RuntimeError(msg)
        self._in_transaction = True
        try:
            with store_lock(self.path / LOCK_FILE):
                manifest = read_manifest(self.path)
                yield manifest
                write_json(self.path / MANIFEST, manifest)
            self.store.manifest = manifest
        finally:
            self._in_transaction = False

    def refresh(self) -> dict[str, Any]:
        """Re-read the manifest from disk (other writers' progress) and return it."""
        return self.store.refresh().manifest

    # -- parameters and samples ---------------------------------------------------------------

    def _check_params(self, params: Mapping[str, Any]) -> None:
        stored = self.store.manifest["params"]
        for key, value in params.items():
            if stored.get(key) != value:
                msg = (
                    f"trace store {str(self.path)!r} was traced with {key}={stored.get(key)!r}, "
                    f"not {value!r}; traces made with different parameters must not mix. "
                    f"Pass {key}={stored.get(key)!r} to add to this store, or trace into a new folder."
                )
                raise StoreMismatchError(msg)

    def _take_samples(self, samples: pl.DataFrame, *, shard_size: int) -> None:
        """Record ``samples`` in the store (called with the store lock held)."""
        manifest = self.store.manifest
        _restore_sample_sets(self.store, samples)
        digest = samples_hash(samples)
        if manifest["n_samples"] and manifest["samples_hash"] == digest:
            return
        stored = self.store.samples()
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
            raise StoreMismatchError(msg)
        added = samples.filter(~pl.col("sample_id").is_in(list(old)))
        start, n = stored.height, stored.height + added.height
        index = len(manifest["sample_sets"])
        name = samples_name(index)
        written = write_parquet(
            self.path / name, added, metadata=file_metadata(manifest["store_id"], "samples")
        )
        # the lock is held by create_or_open: write the manifest directly
        manifest["sample_sets"].append(
            {
                "file": name,
                "rows": [start, n],
                "sha256": written.sha256,
                "size": written.size,
                "content": content_hash(added),
            }
        )
        manifest["shards"] += [[i, min(i + shard_size, n)] for i in range(start, n, shard_size)]
        manifest["n_samples"] = n
        manifest["samples_hash"] = samples_hash(pl.concat([stored, added], how="diagonal_relaxed"))
        write_json(self.path / MANIFEST, manifest)

    # -- checkpoints --------------------------------------------------------------------------

    def check_checkpoint(self, identity: Mapping[str, Any]) -> None:
        """Raise if the store holds traces of other weights under ``identity['label']``."""
        entry = self.store.manifest["checkpoints"].get(identity["label"])
        if entry is not None:
            _check_identity(self.path, entry, identity)

    def check_series(self, label: str, record: Mapping[str, Any]) -> None:
        """Raise :class:`SeriesMismatchError` if checkpoint ``label``'s MoE shape ``record`` differs
        from the series this store holds."""
        series = self.store.manifest.get("series")
        if series:
            _check_series(series, label, record)

    def add_checkpoint(self, identity: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """Record checkpoint ``identity['label']`` with its model ``record`` (or check that the
        recorded one matches)."""
        label = identity["label"]
        with self.transaction() as manifest:
            entry = manifest["checkpoints"].get(label)
            series = manifest.get("series")
            if series:
                _check_series(series, label, record)
            else:
                manifest["series"] = {
                    **{k: record.get(k) for k in SERIES_KEYS},
                    "checkpoint": label,
                }
            if entry is not None:
                _check_identity(self.path, entry, identity)
                if entry.get("model") and dict(record) != entry["model"]:
                    msg = (
                        f"checkpoint {label!r} in {str(self.path)!r}: model shape {dict(record)} "
                        f"differs from the stored {entry['model']}; trace into a new folder"
                    )
                    raise StoreMismatchError(msg)
            else:
                taken = {e["dir"] for e in manifest["checkpoints"].values()}
                entry = {
                    **identity,
                    "dir": folder_name(label, taken),
                    "model": dict(record),
                    "routers": None,
                    "parts": {},
                }
                manifest["checkpoints"][label] = entry
            (self.path / entry["dir"]).mkdir(exist_ok=True)

    # -- what is left -------------------------------------------------------------------------

    def missing_units(self, label: str, *, verify: bool = False) -> list[int]:
        """Shards of checkpoint ``label`` not yet traced, in order (all, for an unknown label).

        With ``verify=True`` every finished part of ``label`` is checked first (size, SHA-256
        and the identity in its metadata), and damaged ones are dropped from the manifest, so
        they count as missing and are traced again.
        """
        if verify:
            self.drop_damaged(label)
        entry = self.refresh()["checkpoints"].get(label)
        done = set(map(int, entry["parts"])) if entry else set()
        return [s for s in range(len(self.store.manifest["shards"])) if s not in done]

    def needs_routers(self, label: str, *, verify: bool = False) -> bool:
        """Whether checkpoint ``label``'s router table is still to be written."""
        if verify:
            self.drop_damaged(label)
        entry = self.refresh()["checkpoints"].get(label)
        return entry is None or not entry.get("routers")

    def drop_damaged(self, label: str) -> list[str]:
        """Drop the damaged files of checkpoint ``label`` from the manifest; return their paths."""
        from grokviz.store._verify import check_file

        entry = self.refresh()["checkpoints"].get(label)
        if entry is None:
            return []
        folder = self.path / entry["dir"]
        store_id = self.store.store_id
        bad_shards = [
            shard
            for shard, part in entry["parts"].items()
            if any(
                check_file(
                    folder / part_name(table, int(shard)),
                    part[table],
                    store_id=store_id,
                    table=table,
                    checkpoint=label,
                    shard=int(shard),
                )
                for table in TABLES
            )
        ]
        routers_bad = bool(entry.get("routers")) and bool(
            check_file(
                folder / ROUTERS_FILE,
                entry["routers"],
                store_id=store_id,
                table="routers",
                checkpoint=label,
            )
        )
        if not bad_shards and not routers_bad:
            return []
        with self.transaction() as manifest:
            current = manifest["checkpoints"][label]
            for shard in bad_shards:
                current["parts"].pop(shard, None)
            if routers_bad:
                current["routers"] = None
        dropped = [str(folder / f"*-{int(s):05d}.parquet") for s in bad_shards]
        return dropped + ([str(folder / ROUTERS_FILE)] if routers_bad else [])

    # -- units --------------------------------------------------------------------------------

    def claim(self, label: str, unit: int | str, *, blocking: bool = False) -> Claim | None:
        """Claim unit ``unit`` (a shard index, or ``"routers"``) of checkpoint ``label``.

        Returns ``None`` when a live process holds it (unless ``blocking``, which waits for it).
        """
        entry = self._entry(label)
        name = f"{entry['dir']}.{unit:05d}" if isinstance(unit, int) else f"{entry['dir']}.{unit}"
        return Claim.acquire(self.path / CLAIMS_DIR, name, blocking=blocking)

    def holder(self, label: str, unit: int | str) -> str:
        """Who holds unit ``unit`` of ``label``, in words (for progress messages)."""
        entry = self._entry(label)
        name = f"{entry['dir']}.{unit:05d}" if isinstance(unit, int) else f"{entry['dir']}.{unit}"
        return describe(Claim.holder(self.path / CLAIMS_DIR, name))

    def _entry(self, label: str) -> dict[str, Any]:
        entry = self.store.manifest["checkpoints"].get(label)
        if entry is None:
            entry = self.refresh()["checkpoints"].get(label)
        if entry is None:
            msg = f"checkpoint {label!r} is not recorded in {str(self.path)!r}; add_checkpoint it first"
            raise UnknownCheckpointError(msg)
        return entry

    def write_routers(self, label: str, frame: pl.DataFrame) -> None:
        """Write checkpoint ``label``'s router table (``schema.ROUTERS``) and record it."""
        entry = self._entry(label)
        frame = schema.conform(frame, schema.ROUTERS, name="routers").select(list(schema.ROUTERS))
        meta = file_metadata(self.store.store_id, "routers", checkpoint=label)
        written = write_parquet(self.path / entry["dir"] / ROUTERS_FILE, frame, metadata=meta)
        with self.transaction() as manifest:
            manifest["checkpoints"][label]["routers"] = {
                "sha256": written.sha256,
                "size": written.size,
                "rows": frame.height,
            }

    def write_part(
        self,
        label: str,
        shard: int,
        frames: Mapping[str, pl.DataFrame],
        *,
        nonfinite: int = 0,
    ) -> None:
        """Write the ``losses``, ``routing`` and ``token_routing`` tables of one unit and record
        them; the unit is finished once this returns.

        Raises
        ------
        StoreDamagedError
            The frames hold samples outside the shard, or repeat one (a tracer's bug; nothing is
            recorded).
        """
        entry = self._entry(label)
        lo, hi = self.store.manifest["shards"][shard]
        expected = set(self.store.samples()["sample_id"][lo:hi].to_list())
        got = frames["losses"]["sample_id"].to_list()
        if len(got) != len(set(got)) or not set(got) <= expected:
            stray = sorted(set(got) - expected)[:5]
            msg = (
                f"refusing to write shard {shard} of checkpoint {label!r}: its losses hold "
                f"{len(got)} rows for {len(set(got))} samples, {stray} not in the shard"
            )
            raise StoreDamagedError(msg)
        folder = self.path / entry["dir"]
        frames = dict(frames)
        if "nonfinite" not in frames["losses"].columns:
            frames["losses"] = _flag_nonfinite(frames["losses"], frames["routing"])
            nonfinite = int(frames["losses"]["nonfinite"].sum())
        record: dict[str, Any] = {"nonfinite": int(nonfinite)}
        for table, table_schema in TABLES.items():
            frame = schema.conform(frames[table], table_schema, name=table)
            frame = frame.select(list(table_schema))
            meta = file_metadata(self.store.store_id, table, checkpoint=label, shard=shard)
            written = write_parquet(folder / part_name(table, shard), frame, metadata=meta)
            record[table] = {"sha256": written.sha256, "size": written.size, "rows": frame.height}
        with self.transaction() as manifest:
            manifest["checkpoints"][label]["parts"][str(shard)] = record


# -- helpers ---------------------------------------------------------------------------------


def _flag_nonfinite(losses: pl.DataFrame, routing: pl.DataFrame) -> pl.DataFrame:
    """``losses`` with the ``nonfinite`` flag a tracer would have set: a loss that is NaN or
    infinite, or routing weights that are."""
    bad_routing = (
        routing.filter(~pl.col("weights").list.eval(pl.element().is_finite()).list.all())
        .get_column("sample_id")
        .unique()
    )
    loss_bad = pl.col("loss").is_not_null() & ~pl.col("loss").is_finite()
    flag = loss_bad | pl.col("sample_id").is_in(bad_routing.implode())
    return losses.with_columns(flag.fill_null(False).alias("nonfinite"))


def _new_manifest(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "store_id": uuid.uuid4().hex,
        "created": _now(),
        "grokviz": __version__,
        "params": dict(params),
        "samples_hash": None,
        "n_samples": 0,
        "sample_sets": [],
        "shards": [],
        "series": None,
        "checkpoints": {},
    }


def _refuse_foreign(folder: Path) -> None:
    entries = _foreign_entries(folder)
    if entries:
        shown = ", ".join(entries[:5]) + (
            f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        )
        msg = (
            f"{str(folder)!r} is not a grokviz trace store and is not empty (it holds {shown}); "
            "grokviz never writes into such a folder. Choose a new or empty folder for --out."
        )
        raise NotAStoreError(msg)


def _check_identity(path: Path, entry: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    label = identity["label"]
    # the weights hash decides; without one (unknown sha), source and revision must agree
    keys = ("sha",) if entry.get("sha") or identity.get("sha") else ("source", "revision")
    for key in keys:
        if entry.get(key) != identity.get(key):
            msg = (
                f"checkpoint {label!r} in trace store {str(path)!r} was traced from weights with "
                f"{key}={entry.get(key)!r}, but these have {key}={identity.get(key)!r}; traces "
                "of different weights never mix. Give the checkpoint another label or trace "
                "into a new folder."
            )
            raise StoreMismatchError(msg)


def _check_series(series: Mapping[str, Any], label: str, record: Mapping[str, Any]) -> None:
    differ = [
        f"{key} {record.get(key)!r} vs {series.get(key)!r}"
        for key in SERIES_KEYS
        if series.get(key) is not None
        and record.get(key) is not None
        and series[key] != record[key]
    ]
    if differ:
        msg = (
            f"checkpoint {label!r} does not belong to the series of checkpoint "
            f"{series.get('checkpoint')!r}: {'; '.join(differ)}. Pathways of models of different "
            "shapes cannot be compared; trace it into its own store."
        )
        raise SeriesMismatchError(msg)


def series_mismatch(records: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Raise :class:`SeriesMismatchError` unless all ``(label, record)`` pairs agree."""
    if not records:
        return
    first_label, first = records[0]
    series = {**{k: first.get(k) for k in SERIES_KEYS}, "checkpoint": first_label}
    for label, record in records[1:]:
        _check_series(series, label, record)


def _restore_sample_sets(store: TraceStore, samples: pl.DataFrame) -> None:
    """Rewrite damaged or missing sample-set files from ``samples`` when they reproduce them.

    The store lock must be held. A set is restored only when the rows taken from ``samples``
    give exactly the content hash recorded when it was written; otherwise the store cannot be
    repaired from this table and the error says what to pass.
    """
    manifest = store.manifest
    damaged = [
        s
        for s in manifest["sample_sets"]
        if not (store.path / s["file"]).is_file()
        or (store.path / s["file"]).stat().st_size != s["size"]
        or file_digest(store.path / s["file"]) != s["sha256"]
    ]
    if not damaged:
        return
    intact_ids: set[str] = set()
    for s in manifest["sample_sets"]:
        if s not in damaged:
            intact_ids |= set(pl.read_parquet(store.path / s["file"])["sample_id"].to_list())
    pool = samples.filter(~pl.col("sample_id").is_in(list(intact_ids)))
    taken = 0
    for s in damaged:
        n = s["rows"][1] - s["rows"][0]
        rows = pool.slice(taken, n)
        taken += n
        if rows.height != n or content_hash(rows) != s["content"]:
            msg = (
                f"sample-set file {store.path / s['file']} of trace store {str(store.path)!r} is "
                "damaged or missing, and the samples given do not reproduce it; pass the samples "
                "table this store was traced with (the same rows in the same order) to restore it"
            )
            raise StoreDamagedError(msg)
        written = write_parquet(
            store.path / s["file"], rows, metadata=file_metadata(manifest["store_id"], "samples")
        )
        s.update(sha256=written.sha256, size=written.size)
    write_json(store.path / MANIFEST, manifest)
