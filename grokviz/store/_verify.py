"""Checking a trace store file by file: :func:`verify` and the :class:`VerifyReport` it returns.

Each file the manifest lists must exist, have the recorded size and SHA-256, and carry this
store's id, its table, checkpoint and shard in its metadata. What is not so is a
:class:`Problem`, one line each:

- ``missing``: listed, but not there;
- ``damaged``: there, but not the bytes that were written (truncated, overwritten, corrupt);
- ``foreign``: a file of another store (its metadata names another store id);
- ``misplaced``: a file of this store, but of another checkpoint, shard or table;
- ``untraced``: a unit of a recorded checkpoint that was never finished (an interrupted run);
- ``leftover``: a file an interrupted run left behind that the manifest does not list
  (harmless; removed by a repair);
- ``unexpected``: a file grokviz did not write (reported, never touched).

``grokviz verify STORE --repair`` (:func:`grokviz.store.repair`) recomputes the units of every
missing, damaged, foreign, misplaced or untraced file from the checkpoints the store records.

Examples
--------
>>> report = verify(store)
>>> report.ok, len(report.problems)
(True, 0)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from grokviz.store._files import TMP_SUFFIX, file_digest, parquet_metadata
from grokviz.store._format import (
    CLAIMS_DIR,
    LOCK_FILE,
    MANIFEST,
    ROUTERS_FILE,
    TABLES,
    part_name,
    read_file_metadata,
)

if TYPE_CHECKING:
    from grokviz.store._reader import TraceStore

# Problems whose unit a repair recomputes from the recorded checkpoint.
RECOMPUTABLE = ("missing", "damaged", "foreign", "misplaced", "untraced")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store's files.

    Attributes
    ----------
    kind
        ``missing``, ``damaged``, ``foreign``, ``misplaced``, ``untraced``, ``leftover`` or
        ``unexpected`` (see :mod:`grokviz.store._verify`).
    path
        The file (or, for ``untraced``, the part file that should exist).
    detail
        What exactly is wrong, in words.
    checkpoint, unit
        The checkpoint label and unit (a shard index, ``"routers"`` or ``"samples"``) the file
        belongs to, when it belongs to one.
    """

    kind: str
    path: Path
    detail: str
    checkpoint: str | None = None
    unit: int | str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} ({self.detail})"


@dataclass
class VerifyReport:
    """What :func:`verify` found: :attr:`problems`, one per file, and whether the store is whole."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        """No file is missing, damaged, foreign, misplaced or untraced (leftovers don't count)."""
        return not any(p.kind in RECOMPUTABLE or p.unit == "samples" for p in self.problems)

    def units(self) -> dict[str, list[int | str]]:
        """Checkpoint label -> units a repair recomputes (shard indices, and ``"routers"``)."""
        out: dict[str, list[int | str]] = {}
        for p in self.problems:
            if p.kind in RECOMPUTABLE and p.checkpoint is not None and p.unit is not None:
                units = out.setdefault(p.checkpoint, [])
                if p.unit not in units:
                    units.append(p.unit)
        return out

    def __str__(self) -> str:
        if not self.problems:
            return f"trace store {self.path}: {self.files_checked} files checked, all whole"
        return "\n".join(str(p) for p in self.problems)

    def to_frame(self) -> pl.DataFrame:
        """The problems as a table: kind, path, checkpoint, unit, detail."""
        return pl.DataFrame(
            {
                "kind": [p.kind for p in self.problems],
                "path": [str(p.path) for p in self.problems],
                "checkpoint": [p.checkpoint for p in self.problems],
                "unit": [None if p.unit is None else str(p.unit) for p in self.problems],
                "detail": [p.detail for p in self.problems],
            },
            schema={
                "kind": pl.String(),
                "path": pl.String(),
                "checkpoint": pl.String(),
                "unit": pl.String(),
                "detail": pl.String(),
            },
        )


def check_file(
    path: Path,
    record: Mapping[str, Any],
    *,
    store_id: str,
    table: str,
    checkpoint: str | None = None,
    shard: int | None = None,
    checksums: bool = True,
) -> tuple[str, str] | None:
    """``(kind, detail)`` of what is wrong with one listed file, or ``None`` when it is whole."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing", "listed in the manifest but not there"
    if size != record["size"]:
        return "damaged", f"{size} bytes where {record['size']} were written"
    if checksums and file_digest(path) != record["sha256"]:
        return "damaged", "its bytes differ from those written (SHA-256 mismatch)"
    try:
        meta = read_file_metadata(parquet_metadata(path))
    except Exception as exc:
        return "damaged", f"unreadable Parquet: {exc}"
    if meta.get("store_id") != store_id:
        other = meta.get("store_id")
        return "foreign", (
            f"a file of another trace store ({other})" if other else "not written by this store"
        )
    want = {"table": table}
    if checkpoint is not None:
        want["checkpoint"] = checkpoint
    if shard is not None:
        want["shard"] = str(shard)
    wrong = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
    if wrong:
        got = ", ".join(f"{k} {v!r}" for k, v in wrong.items())
        return "misplaced", f"a file of this store, but of {got}"
    return None


def verify(store: TraceStore, *, checksums: bool = True) -> VerifyReport:
    """Check every file of ``store`` (see the module docstring); see :meth:`TraceStore.verify`."""
    manifest = store.refresh().manifest
    root = store.path
    report = VerifyReport(root)
    store_id = store.store_id
    listed: set[Path] = {root / MANIFEST}

    def check(
        path: Path, record: Mapping[str, Any], table: str, label: str | None, unit: Any
    ) -> None:
        listed.add(path)
        report.files_checked += 1
        shard = unit if isinstance(unit, int) else None
        found = check_file(
            path,
            record,
            store_id=store_id,
            table=table,
            checkpoint=label,
            shard=shard,
            checksums=checksums,
        )
        if found is not None:
            kind, detail = found
            if unit == "samples":
                detail += (
                    "; samples cannot be recomputed from checkpoints: run the same "
                    "`grokviz trace` command, or `grokviz verify --repair --samples FILE`, with "
                    "the samples table this store was traced with"
                )
            report.problems.append(Problem(kind, path, detail, label, unit))

    for sample_set in manifest["sample_sets"]:
        check(root / sample_set["file"], sample_set, "samples", None, "samples")
    n_shards = len(manifest["shards"])
    for entry in store._entries():
        label, folder = entry["label"], root / entry["dir"]
        if entry.get("routers"):
            check(folder / ROUTERS_FILE, entry["routers"], "routers", label, "routers")
        else:
            path = folder / ROUTERS_FILE
            report.problems.append(
                Problem("untraced", path, "router table not written yet", label, "routers")
            )
        for shard in range(n_shards):
            part = entry["parts"].get(str(shard))
            if part is None:
                path = folder / part_name("losses", shard)
                report.problems.append(
                    Problem("untraced", path, f"shard {shard} not traced yet", label, shard)
                )
                continue
            for table in TABLES:
                check(folder / part_name(table, shard), part[table], table, label, shard)
    folders = {root / e["dir"] for e in manifest["checkpoints"].values()}
    report.problems += _unlisted(root, listed, folders, store_id)
    return report


_PART = re.compile(r"^(?:(?:losses|routing|token_routing)-\d{5}|routers)\.parquet$")


def _unlisted(root: Path, listed: set[Path], folders: set[Path], store_id: str) -> list[Problem]:
    """Files in the store folder that the manifest does not list."""
    problems = []
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path in listed or path.name == LOCK_FILE:
            continue
        if CLAIMS_DIR in path.relative_to(root).parts:
            continue  # claims of live processes; a dead one's is free and harmless
        if path.name.endswith(TMP_SUFFIX):
            problems.append(Problem("leftover", path, "temporary file of an interrupted write"))
            continue
        # named like a part, in a checkpoint folder: a unit an interrupted run did not finish
        ours = path.parent in folders and bool(_PART.match(path.name))
        if not ours and path.suffix == ".parquet":
            try:
                ours = read_file_metadata(parquet_metadata(path)).get("store_id") == store_id
            except Exception:
                ours = False
        if ours:
            problems.append(Problem("leftover", path, "a part an interrupted run did not finish"))
        else:
            problems.append(
                Problem("unexpected", path, "not written by this store; left untouched")
            )
    return problems
