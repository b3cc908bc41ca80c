"""The on-disk trace store: a folder of Parquet parts and a manifest (see DESIGN.md §2).

Layout::

    STORE/
      manifest.json             format version, samples hash, tracing params, shards, checkpoints
      samples.parquet           the samples, in store order (shards are ranges of this order)
      <checkpoint>/             one folder per checkpoint label
        routers.parquet         schema.ROUTERS: router weight rows (expert embeddings)
        losses-00000.parquet    schema.LOSSES rows of shard 0
        routing-00000.parquet   schema.ROUTING rows of shard 0
        token_routing-00000.parquet

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``) and
the manifest is rewritten after each finished part, so an interrupted run never leaves a half
written file and only parts listed in the manifest are ever read. Files of a part that is not in
the manifest (an interrupted run) are overwritten when the part is computed again.

A store holds one sample set traced with one set of parameters (``max_length``, ``select``,
``dtype``). Re-tracing with a sample set that *adds* samples to the stored ones (same ids, same
texts) appends them as new shards; anything else needs a new store folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, TraceStoreError

FORMAT = "grokviz.trace-store"
VERSION = 1
MANIFEST = "manifest.json"
SAMPLES_FILE = "samples.parquet"
ROUTERS_FILE = "routers.parquet"
TABLES: dict[str, dict[str, pl.DataType]] = {
    "losses": schema.LOSSES,
    "routing": schema.ROUTING,
    "token_routing": schema.TOKEN_ROUTING,
}
_TMP_SUFFIX = ".grokviz-tmp"
_RERUN = "delete it and re-run `grokviz trace` with the same arguments, which recomputes it"


# ---------------------------------------------------------------------------------------------
# atomic files


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


# ---------------------------------------------------------------------------------------------
# samples


def samples_hash(samples: pl.DataFrame) -> str:
    """A hash of the (sample_id, text) pairs of ``samples``, independent of their order."""
    pairs = samples.select("sample_id", "text").sort("sample_id")
    digest = hashlib.sha256()
    for sid, text in pairs.iter_rows():
        digest.update(f"{sid}\x1f{text}\x1e".encode())
    return digest.hexdigest()


def check_samples(samples: object) -> pl.DataFrame:
    """Conform ``samples`` to ``schema.SAMPLES`` and check ids are unique and texts present."""
    frame = schema.conform(samples, schema.SAMPLES, name="samples")
    if frame.height == 0:
        msg = "the samples table is empty: pass at least one sample (columns sample_id, text, ...)"
        raise EmptyInputError(msg)
    nulls = frame.filter(pl.col("sample_id").is_null() | pl.col("text").is_null())
    if nulls.height:
        msg = f"{nulls.height} sample(s) have a null sample_id or text; drop or fill them first"
        raise ValueError(msg)
    dupes = frame.filter(pl.col("sample_id").is_duplicated())["sample_id"].unique().to_list()
    if dupes:
        msg = f"sample_id values must be unique; repeated: {sorted(dupes)[:5]}"
        raise ValueError(msg)
    return frame


def _folder_name(label: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "checkpoint"
    name, n = base, 1
    while name in taken or name in {SAMPLES_FILE, MANIFEST}:
        n += 1
        name = f"{base}-{n}"
    return name


def part_name(table: str, shard: int) -> str:
    """File name of the ``table`` part of ``shard``, e.g. ``routing-00003.parquet``."""
    return f"{table}-{shard:05d}.parquet"


# ---------------------------------------------------------------------------------------------
# the store


class TraceStore:
    """A trace store on disk: per-checkpoint losses, routing and router weights of a sample set.

    Open one with :meth:`TraceStore.open`; :func:`grokviz.trace` creates and fills them.

    Examples
    --------
    >>> store = TraceStore.open("traces/olmoe")  # doctest: +SKIP
    >>> store.checkpoints()["checkpoint"].to_list()  # doctest: +SKIP
    ['step-1000', 'step-2000']
    >>> g, ids = store.routing_array("step-2000")  # doctest: +SKIP
    >>> g.shape  # doctest: +SKIP
    (200, 16, 64)
    """

    path: Path
    manifest: dict[str, Any]

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._valid: set[tuple[str, int, int]] = set()

    def __repr__(self) -> str:
        n = len(self.manifest["checkpoints"])
        return (
            f"TraceStore({str(self.path)!r}, samples={self.manifest['n_samples']}, checkpoints={n})"
        )

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TraceStore:
        """Open the trace store in folder ``path``.

        Raises
        ------
        TraceStoreError
            The folder or its ``manifest.json`` is missing or unreadable.

        Examples
        --------
        >>> TraceStore.open("traces/olmoe")  # doctest: +SKIP
        TraceStore('traces/olmoe', samples=200, checkpoints=2)
        """
        folder = Path(path)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            what = "folder" if not folder.exists() else f"{MANIFEST} in folder"
            msg = (
                f"no trace store at {str(folder)!r}: the {what} does not exist. Create one with "
                f"`grokviz trace CHECKPOINTS --samples SAMPLES --out {folder}` "
                "or grokviz.trace.trace(checkpoints, samples, store)."
            )
            raise TraceStoreError(msg)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            msg = f"cannot read {manifest_path}: {exc}. The store is damaged; trace into a new folder."
            raise TraceStoreError(msg) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            msg = f"{manifest_path} is not a grokviz trace store manifest"
            raise TraceStoreError(msg)
        if manifest.get("version") != VERSION:
            msg = (
                f"{manifest_path} has trace store format version {manifest.get('version')!r}; "
                f"this grokviz reads version {VERSION}. Re-trace into a new folder or change grokviz."
            )
            raise TraceStoreError(msg)
        return cls(folder, manifest)

    # -- metadata -------------------------------------------------------------------------

    def _entries(self) -> list[dict[str, Any]]:
        entries = list(self.manifest["checkpoints"].values())
        # step order; checkpoints without a step last, then by label
        return sorted(entries, key=lambda e: (e["step"] is None, e["step"] or 0, e["label"]))

    def _entry(self, checkpoint: str) -> dict[str, Any]:
        entry = self.manifest["checkpoints"].get(checkpoint)
        if entry is None:
            known = [e["label"] for e in self._entries()]
            msg = f"checkpoint {checkpoint!r} is not in trace store {str(self.path)!r}; it has {known}"
            raise KeyError(msg)
        return entry

    @property
    def params(self) -> dict[str, Any]:
        """The tracing parameters every checkpoint of this store was traced with."""
        return dict(self.manifest["params"])

    def checkpoints(self) -> pl.DataFrame:
        """The store's checkpoints (``schema.CHECKPOINTS`` plus model columns), in step order.

        The extra columns are ``model_type``, ``num_layers`` (MoE layers), ``num_experts``,
        ``top_k``, ``parts_done`` and ``parts_total``.

        Examples
        --------
        >>> store.checkpoints().select("checkpoint", "step")  # doctest: +SKIP
        """
        rows = []
        n_shards = len(self.manifest["shards"])
        for e in self._entries():
            model = e.get("model") or {}
            rows.append(
                {
                    **{k: e[k] for k in ("step", "tokens", "source", "revision", "sha")},
                    "checkpoint": e["label"],
                    "model_type": model.get("model_type"),
                    "num_layers": model.get("num_layers"),
                    "num_experts": model.get("num_experts"),
                    "top_k": model.get("top_k"),
                    "parts_done": len(e["parts"]),
                    "parts_total": n_shards,
                }
            )
        extra = {
            "model_type": pl.String(),
            "num_layers": pl.Int32(),
            "num_experts": pl.Int32(),
            "top_k": pl.Int32(),
            "parts_done": pl.Int32(),
            "parts_total": pl.Int32(),
        }
        frame_schema = {**schema.CHECKPOINTS, **extra}
        return pl.DataFrame(rows, schema=frame_schema, orient="row")

    def samples(self) -> pl.DataFrame:
        """The store's samples (``schema.SAMPLES`` and any extra columns), in store order."""
        return self._read(self.path / SAMPLES_FILE, schema.SAMPLES, name="samples")

    # -- tables ---------------------------------------------------------------------------

    def _files(self, table: str, checkpoints: Sequence[str] | None = None) -> list[Path]:
        labels = [e["label"] for e in self._entries()] if checkpoints is None else checkpoints
        files = []
        for label in labels:
            entry = self._entry(label)
            if table == "routers":
                if entry.get("routers"):
                    files.append(self.path / entry["dir"] / ROUTERS_FILE)
                continue
            files += [self.path / entry["dir"] / part_name(table, s) for s in entry["parts"]]
        return files

    def _validate(self, file: Path) -> None:
        try:
            st = file.stat()
        except FileNotFoundError:
            msg = f"trace store part {file} is listed in the manifest but missing: re-run `grokviz trace` with the same arguments, which recomputes it"
            raise TraceStoreError(msg) from None
        key = (str(file), st.st_size, st.st_mtime_ns)
        if key in self._valid:
            return
        try:
            pl.read_parquet_schema(file)
        except Exception as exc:
            raise self._corrupt(file, exc) from exc
        self._valid.add(key)

    @staticmethod
    def _corrupt(file: Path, exc: BaseException) -> TraceStoreError:
        msg = f"trace store part {file} is corrupt ({exc}); {_RERUN}"
        return TraceStoreError(msg)

    def _read(
        self, file: Path, table_schema: Mapping[str, pl.DataType], *, name: str
    ) -> pl.DataFrame:
        self._validate(file)
        try:
            frame = pl.read_parquet(file)
        except Exception as exc:
            raise self._corrupt(file, exc) from exc
        return schema.conform(frame, table_schema, name=name)

    def _scan(
        self, table: str, table_schema: Mapping[str, pl.DataType], checkpoints: Sequence[str] | None
    ) -> pl.LazyFrame:
        files = self._files(table, checkpoints)
        if not files:
            return pl.LazyFrame(schema=dict(table_schema))
        for file in files:
            self._validate(file)
        return pl.scan_parquet(files)

    def _table(
        self,
        table: str,
        table_schema: Mapping[str, pl.DataType],
        *,
        lazy: bool,
        checkpoints: Sequence[str] | None = None,
    ) -> pl.DataFrame | pl.LazyFrame:
        frame = self._scan(table, table_schema, checkpoints)
        if lazy:
            return frame
        try:
            return frame.collect()
        except pl.exceptions.PolarsError as exc:
            # A part whose footer is fine but whose body is damaged: find it to name it.
            for file in self._files(table, checkpoints):
                try:
                    pl.read_parquet(file)
                except Exception as inner:
                    raise self._corrupt(file, inner) from exc
            raise

    @overload
    def losses(self, *, lazy: Literal[False] = ...) -> pl.DataFrame: ...
    @overload
    def losses(self, *, lazy: Literal[True]) -> pl.LazyFrame: ...
    def losses(self, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Per-sample losses of every finished part (``schema.LOSSES``).

        Parameters
        ----------
        lazy
            Return a ``pl.LazyFrame`` over the Parquet parts instead of reading them.

        Examples
        --------
        >>> store.losses().group_by("checkpoint").agg(pl.col("loss").mean())  # doctest: +SKIP
        """
        return self._table("losses", schema.LOSSES, lazy=lazy)

    @overload
    def routing(self, *, lazy: Literal[False] = ...) -> pl.DataFrame: ...
    @overload
    def routing(self, *, lazy: Literal[True]) -> pl.LazyFrame: ...
    def routing(self, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Per-sample, per-layer mean routing weights g_l(i) (``schema.ROUTING``).

        Examples
        --------
        >>> store.routing(lazy=True).filter(pl.col("layer") == 0).collect()  # doctest: +SKIP
        """
        return self._table("routing", schema.ROUTING, lazy=lazy)

    @overload
    def token_routing(self, *, lazy: Literal[False] = ...) -> pl.DataFrame: ...
    @overload
    def token_routing(self, *, lazy: Literal[True]) -> pl.LazyFrame: ...
    def token_routing(self, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Per-token top-k experts of the selected samples (``schema.TOKEN_ROUTING``).

        Examples
        --------
        >>> store.token_routing().filter(pl.col("sample_id") == "a")  # doctest: +SKIP
        """
        return self._table("token_routing", schema.TOKEN_ROUTING, lazy=lazy)

    @overload
    def routers(self, *, lazy: Literal[False] = ...) -> pl.DataFrame: ...
    @overload
    def routers(self, *, lazy: Literal[True]) -> pl.LazyFrame: ...
    def routers(self, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Router weight rows W_l[k] of every checkpoint (``schema.ROUTERS``).

        Examples
        --------
        >>> store.routers().filter(pl.col("layer") == 0).height  # doctest: +SKIP
        64
        """
        return self._table("routers", schema.ROUTERS, lazy=lazy)

    # -- arrays ---------------------------------------------------------------------------

    def routing_array(
        self, checkpoint: str, *, sample_ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """The routing weights of one checkpoint as a ``[N, L, K]`` float32 array.

        Parameters
        ----------
        checkpoint
            A checkpoint label of this store.
        sample_ids
            The samples to return, in this order; default: every traced sample, in store order.

        Returns
        -------
        (weights, sample_ids)
            ``weights[n, l]`` is g_l of sample ``sample_ids[n]``.

        Examples
        --------
        >>> g, ids = store.routing_array("step-2000", sample_ids=["a", "b"])  # doctest: +SKIP
        >>> g.sum(-1)  # every row sums to 1  # doctest: +SKIP
        """
        model = self._entry(checkpoint)["model"]
        n_layers, n_experts = int(model["num_layers"]), int(model["num_experts"])
        frame = self._table("routing", schema.ROUTING, lazy=True, checkpoints=[checkpoint])
        assert isinstance(frame, pl.LazyFrame)
        frame = frame.select("sample_id", "layer", "weights")
        if sample_ids is None:
            order = self.samples().select("sample_id").with_row_index("_order")
        else:
            ids = list(sample_ids)
            order = pl.DataFrame({"sample_id": ids}, schema={"sample_id": pl.String()})
            order = order.with_row_index("_order")
            frame = frame.filter(pl.col("sample_id").is_in(ids))
        got = frame.collect().join(order, on="sample_id", how="inner").sort("_order", "layer")
        counts = got.group_by("sample_id").len()
        if counts.height and (counts["len"].min() != n_layers or counts["len"].max() != n_layers):
            msg = f"routing of checkpoint {checkpoint!r} in {self.path} has an inconsistent number of layers per sample"
            raise TraceStoreError(msg)
        traced = got["sample_id"].unique(maintain_order=True).to_list()
        if sample_ids is not None and len(traced) != len(set(sample_ids)):
            missing = sorted(set(sample_ids) - set(traced))
            msg = (
                f"sample(s) {missing[:5]} have no routing for checkpoint {checkpoint!r} in "
                f"{self.path}: they are not in the store or their shard is not traced yet"
            )
            raise KeyError(msg)
        weights = got["weights"].list.to_array(n_experts).to_numpy()
        array = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1, n_layers, n_experts)
        return array, traced

    def router_array(self, checkpoint: str) -> np.ndarray:
        """The router weight rows of one checkpoint as a ``[L, K, d]`` float32 array.

        Examples
        --------
        >>> store.router_array("step-2000").shape  # doctest: +SKIP
        (16, 64, 2048)
        """
        entry = self._entry(checkpoint)
        if not entry.get("routers"):
            msg = f"checkpoint {checkpoint!r} has no router weights in {self.path} yet; re-run `grokviz trace`"
            raise TraceStoreError(msg)
        file = self.path / entry["dir"] / ROUTERS_FILE
        frame = self._read(file, schema.ROUTERS, name="routers").sort("layer", "expert")
        n_layers, n_experts = entry["model"]["num_layers"], entry["model"]["num_experts"]
        rows = frame["vector"].to_list()
        array = np.asarray(rows, dtype=np.float32)
        return array.reshape(n_layers, n_experts, -1)

    # -- writing (used by grokviz.trace) --------------------------------------------------

    @classmethod
    def _prepare(
        cls,
        path: str | os.PathLike[str],
        samples: pl.DataFrame,
        *,
        params: dict[str, Any],
        shard_size: int,
    ) -> TraceStore:
        """Create the store at ``path`` or open it for more tracing, checking it matches."""
        if shard_size < 1:
            msg = f"shard_size must be at least 1, got {shard_size}"
            raise ValueError(msg)
        folder = Path(path)
        digest = samples_hash(samples)
        if not (folder / MANIFEST).is_file():
            if folder.exists() and not folder.is_dir():
                msg = f"trace store path {str(folder)!r} exists and is not a folder; choose another --out"
                raise TraceStoreError(msg)
            folder.mkdir(parents=True, exist_ok=True)
            n = samples.height
            store = cls(
                folder,
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "samples_hash": digest,
                    "n_samples": n,
                    "params": params,
                    "shards": [[i, min(i + shard_size, n)] for i in range(0, n, shard_size)],
                    "checkpoints": {},
                },
            )
            write_parquet(folder / SAMPLES_FILE, samples)
            store._save()
            return store
        store = cls.open(folder)
        store._check_params(params)
        if store.manifest["samples_hash"] != digest:
            store._append_samples(samples, shard_size=shard_size)
        return store

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
