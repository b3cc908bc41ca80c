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

Every file is written atomically (:mod:`grokviz.store._files`: temporary file in the same folder, fsync,
``os.replace``) and the manifest is rewritten after each finished part, so an interrupted run never
leaves a half written file and only parts listed in the manifest are ever read. Files of a part
that is not in the manifest (an interrupted run) are overwritten when the part is computed again.

A store holds one sample set traced with one set of parameters (``max_length``, ``select``,
``dtype``). Re-tracing with a sample set that *adds* samples to the stored ones (same ids, same
texts) appends them as new shards; anything else needs a new store folder.

This module holds :class:`TraceStore`'s opening and reading; the file names and sample-set
checks are in :mod:`grokviz.store._format`, and what the tracer calls to write a store in
:mod:`grokviz.store._writer` (a mixin of :class:`TraceStore`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import TraceStoreError
from grokviz.store._files import write_parquet
from grokviz.store._format import (
    FORMAT,
    MANIFEST,
    ROUTERS_FILE,
    SAMPLES_FILE,
    VERSION,
    part_name,
    samples_hash,
)
from grokviz.store._writer import _StoreWriter

_RERUN = "delete it and re-run `grokviz trace` with the same arguments, which recomputes it"


# ---------------------------------------------------------------------------------------------
# the store


class TraceStore(_StoreWriter):
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

    # -- opening for writing (grokviz.trace; the writing itself is in _StoreWriter) ---------

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
