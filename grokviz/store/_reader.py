"""Reading a trace store: :class:`TraceStore` opens one and serves its tables and arrays.

Only files the manifest lists are ever read, so a part an interrupted run left half done is
invisible. Each file is checked cheaply as it is read: it must exist and have the size the
manifest recorded, so a truncated or replaced file is named rather than read as if whole. The
full check, every file's SHA-256 and the identity in its metadata, is :meth:`TraceStore.verify`'s
(see :mod:`grokviz.store._verify`); a trace that resumes a store runs it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import (
    NotAStoreError,
    StoreDamagedError,
    TraceStoreError,
    UnknownCheckpointError,
    UnknownSampleError,
)
from grokviz.store._format import FORMAT, MANIFEST, ROUTERS_FILE, VERSION, part_name

if TYPE_CHECKING:
    from grokviz.store._verify import VerifyReport


def repair_advice(path: Path) -> str:
    """What to run to repair the store at ``path`` (used at the end of every damage message)."""
    return (
        f"run `grokviz verify {str(path)!r} --repair` (or the same `grokviz trace` command "
        "again), which recomputes exactly the damaged parts"
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the store in ``folder``, checked for format and version."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        what = "folder does not exist" if not folder.exists() else f"folder has no {MANIFEST}"
        msg = (
            f"no trace store at {str(folder)!r}: the {what}. Create one with "
            f"`grokviz trace CHECKPOINTS --samples SAMPLES --out {folder}` or "
            "grokviz.trace(checkpoints, samples, store)."
        )
        raise NotAStoreError(msg)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        msg = (
            f"cannot read {manifest_path}: {exc}. The store's index is damaged; its parts cannot "
            "be told apart from a half-written run, so trace into a new folder."
        )
        raise StoreDamagedError(msg) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        msg = f"{manifest_path} is not a grokviz trace store manifest"
        raise NotAStoreError(msg)
    if manifest.get("version") != VERSION:
        msg = (
            f"{manifest_path} has trace store format version {manifest.get('version')!r}; this "
            f"grokviz reads version {VERSION}. Trace into a new folder with this grokviz."
        )
        raise TraceStoreError(msg)
    return manifest


class TraceStore:
    """A trace store on disk: per-checkpoint losses, routing and router weights of a sample set.

    Open one with :meth:`TraceStore.open`; :func:`grokviz.trace` creates and fills them, and
    :class:`~grokviz.store.StoreWriter` writes them for other tracers (a training monitor, a Ray
    worker). A store another process is still writing can be read at any time:
    :meth:`refresh` picks up what it has finished since.

    Examples
    --------
    >>> store = TraceStore.open("data/samples/toy/trace")
    >>> store.checkpoints()["checkpoint"].to_list()[:2]  # doctest: +ELLIPSIS
    ['step-...', 'step-...']
    >>> g, ids = store.routing_array(store.checkpoints()["checkpoint"][-1])
    >>> g.shape == (len(ids), store.manifest["series"]["num_layers"],
    ...             store.manifest["series"]["num_experts"])  # [samples, MoE layers, experts]
    True
    """

    path: Path
    manifest: dict[str, Any]

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._checked: set[tuple[str, int, int]] = set()

    def __repr__(self) -> str:
        n = len(self.manifest["checkpoints"])
        return (
            f"TraceStore({str(self.path)!r}, samples={self.manifest['n_samples']}, checkpoints={n})"
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TraceStore:
        """Open the trace store in folder ``path``.

        Raises
        ------
        NotAStoreError
            The folder or its ``manifest.json`` is missing, or is not a grokviz store's.
        StoreDamagedError
            The manifest cannot be read.

        Examples
        --------
        >>> TraceStore.open("data/samples/toy/trace")  # doctest: +ELLIPSIS
        TraceStore('data/samples/toy/trace', samples=..., checkpoints=...)
        """
        folder = Path(path)
        return cls(folder, read_manifest(folder))

    def refresh(self) -> TraceStore:
        """Re-read the manifest, to see what writers have finished since; returns ``self``."""
        self.manifest = read_manifest(self.path)
        return self

    # -- metadata -------------------------------------------------------------------------

    @property
    def store_id(self) -> str:
        """The store's identity, written into its manifest and into every one of its files."""
        return str(self.manifest["store_id"])

    @property
    def params(self) -> dict[str, Any]:
        """The tracing parameters every checkpoint of this store was traced with."""
        return dict(self.manifest["params"])

    def _entries(self) -> list[dict[str, Any]]:
        entries = list(self.manifest["checkpoints"].values())
        # step order; checkpoints without a step last, then by label
        return sorted(entries, key=lambda e: (e["step"] is None, e["step"] or 0, e["label"]))

    def _entry(self, checkpoint: str) -> dict[str, Any]:
        entry = self.manifest["checkpoints"].get(checkpoint)
        if entry is None:
            known = [e["label"] for e in self._entries()]
            msg = f"checkpoint {checkpoint!r} is not in trace store {str(self.path)!r}; it has {known}"
            raise UnknownCheckpointError(msg)
        return entry

    def checkpoints(self) -> pl.DataFrame:
        """The store's checkpoints (``schema.CHECKPOINTS`` plus model columns), in step order.

        The extra columns are ``model_type``, ``num_layers`` (MoE layers), ``num_experts``,
        ``top_k``, ``parts_done``, ``parts_total``, ``samples_done`` (samples in finished
        parts) and ``nonfinite`` (samples whose loss or routing was not finite).

        Examples
        --------
        >>> frame = store.checkpoints()
        >>> frame.columns[:6]
        ['checkpoint', 'step', 'tokens', 'source', 'revision', 'sha']
        >>> bool((frame["parts_done"] == frame["parts_total"]).all())  # every part traced
        True
        """
        rows = []
        shards = self.manifest["shards"]
        for e in self._entries():
            model = e.get("model") or {}
            parts = e["parts"]
            rows.append(
                {
                    **{k: e[k] for k in ("step", "tokens", "source", "revision", "sha")},
                    "checkpoint": e["label"],
                    "model_type": model.get("model_type"),
                    "num_layers": model.get("num_layers"),
                    "num_experts": model.get("num_experts"),
                    "top_k": model.get("top_k"),
                    "parts_done": len(parts),
                    "parts_total": len(shards),
                    "samples_done": sum(shards[int(s)][1] - shards[int(s)][0] for s in parts),
                    "nonfinite": sum(int(p.get("nonfinite", 0)) for p in parts.values()),
                }
            )
        extra = {
            "model_type": pl.String(),
            "num_layers": pl.Int32(),
            "num_experts": pl.Int32(),
            "top_k": pl.Int32(),
            "parts_done": pl.Int32(),
            "parts_total": pl.Int32(),
            "samples_done": pl.Int64(),
            "nonfinite": pl.Int64(),
        }
        return pl.DataFrame(rows, schema={**schema.CHECKPOINTS, **extra}, orient="row")

    def samples(self) -> pl.DataFrame:
        """The store's samples (``schema.SAMPLES`` and any extra columns), in store order.

        Examples
        --------
        >>> store.samples().columns[:4]
        ['sample_id', 'text', 'domain', 'split']
        """
        frames = []
        for sample_set in self.manifest["sample_sets"]:
            file = self.path / sample_set["file"]
            frames.append(self._read(file, sample_set, schema.SAMPLES, name="samples"))
        if not frames:
            return pl.DataFrame(schema=schema.SAMPLES)
        return pl.concat(frames, how="diagonal_relaxed")

    # -- files ------------------------------------------------------------------------------

    def _files(
        self, table: str, checkpoints: Sequence[str] | None = None
    ) -> list[tuple[Path, dict[str, Any]]]:
        """The files of ``table`` the manifest lists, with their records, in step order."""
        labels = [e["label"] for e in self._entries()] if checkpoints is None else checkpoints
        files = []
        for label in labels:
            entry = self._entry(label)
            folder = self.path / entry["dir"]
            if table == "routers":
                if entry.get("routers"):
                    files.append((folder / ROUTERS_FILE, entry["routers"]))
                continue
            for shard in sorted(entry["parts"], key=int):
                record = entry["parts"][shard][table]
                files.append((folder / part_name(table, int(shard)), record))
        return files

    def _check(self, file: Path, record: Mapping[str, Any]) -> None:
        """Cheap check before reading: the file exists with the size the manifest recorded."""
        try:
            st = file.stat()
        except FileNotFoundError:
            msg = f"trace store file {file} is listed in the manifest but missing; {repair_advice(self.path)}"
            raise StoreDamagedError(msg) from None
        key = (str(file), st.st_size, st.st_mtime_ns)
        if key in self._checked:
            return
        if st.st_size != record["size"]:
            msg = (
                f"trace store file {file} is damaged: {st.st_size} bytes where "
                f"{record['size']} were written; {repair_advice(self.path)}"
            )
            raise StoreDamagedError(msg)
        self._checked.add(key)

    def _damaged(self, file: Path, exc: BaseException) -> StoreDamagedError:
        msg = f"trace store file {file} is damaged ({exc}); {repair_advice(self.path)}"
        return StoreDamagedError(msg)

    def _read(
        self,
        file: Path,
        record: Mapping[str, Any],
        table_schema: Mapping[str, pl.DataType],
        *,
        name: str,
    ) -> pl.DataFrame:
        self._check(file, record)
        try:
            frame = pl.read_parquet(file)
        except Exception as exc:
            raise self._damaged(file, exc) from exc
        return schema.conform(frame, table_schema, name=name)

    def _table(
        self,
        table: str,
        table_schema: Mapping[str, pl.DataType],
        *,
        lazy: bool,
        checkpoints: Sequence[str] | None = None,
    ) -> pl.DataFrame | pl.LazyFrame:
        files = self._files(table, checkpoints)
        if not files:
            empty = pl.LazyFrame(schema=dict(table_schema))
            return empty if lazy else empty.collect()
        for file, record in files:
            self._check(file, record)
        frame = pl.scan_parquet([file for file, _ in files])
        if lazy:
            return frame
        try:
            return frame.collect()
        except pl.exceptions.PolarsError as exc:
            # A file of the right size whose bytes are damaged: find it, to name it.
            for file, _ in files:
                try:
                    pl.read_parquet(file)
                except Exception as inner:
                    raise self._damaged(file, inner) from exc
            raise

    # -- tables ---------------------------------------------------------------------------

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
        >>> mean = store.losses().group_by("checkpoint").agg(pl.col("loss").mean())
        >>> mean.height == store.checkpoints().height
        True
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
        >>> first = store.routing(lazy=True).select("weights").first().collect()
        >>> first["weights"].list.len().item() == store.manifest["series"]["num_experts"]
        True
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
        >>> store.token_routing().columns[:4]
        ['checkpoint', 'step', 'sample_id', 'token_index']
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
        >>> series = store.manifest["series"]
        >>> store.routers().height == store.checkpoints().height * series["num_layers"] * series[
        ...     "num_experts"]  # one row per checkpoint, layer and expert
        True
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

        Raises
        ------
        UnknownSampleError
            Some ``sample_ids`` are not in the store, or not traced yet at ``checkpoint``.

        Examples
        --------
        >>> last = store.checkpoints()["checkpoint"][-1]
        >>> g, ids = store.routing_array(last, sample_ids=["add-0-1", "add-0-2"])
        >>> ids, g.shape[0]
        (['add-0-1', 'add-0-2'], 2)
        >>> bool(np.allclose(g.sum(-1), 1, atol=1e-5))  # every row sums to 1
        True
        >>> store.routing_array(last, sample_ids=["nope"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        grokviz.errors.UnknownSampleError: 1 sample id(s) are not in trace store ...
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
        try:
            got = frame.collect()
        except pl.exceptions.PolarsError:
            self._table("routing", schema.ROUTING, lazy=False, checkpoints=[checkpoint])
            raise  # pragma: no cover - the line above names the damaged file
        got = got.join(order, on="sample_id", how="inner").sort("_order", "layer")
        counts = got.group_by("sample_id").len()
        if counts.height and (counts["len"].min() != n_layers or counts["len"].max() != n_layers):
            msg = (
                f"routing of checkpoint {checkpoint!r} in {self.path} has an inconsistent number "
                f"of layers per sample; {repair_advice(self.path)}"
            )
            raise StoreDamagedError(msg)
        traced = got["sample_id"].unique(maintain_order=True).to_list()
        if sample_ids is not None and len(traced) != len(set(sample_ids)):
            raise self._unknown(checkpoint, sorted(set(sample_ids) - set(traced)))
        weights = got["weights"].list.to_array(n_experts).to_numpy()
        array = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1, n_layers, n_experts)
        return array, traced

    def _unknown(self, checkpoint: str, missing: list[str]) -> UnknownSampleError:
        known = set(self.samples()["sample_id"])
        unknown = [s for s in missing if s not in known]
        if unknown:
            msg = (
                f"{len(unknown)} sample id(s) are not in trace store {str(self.path)!r}: "
                f"{unknown[:5]}; its samples are TraceStore.open(path).samples()"
            )
        else:
            msg = (
                f"{len(missing)} sample(s) are not traced yet at checkpoint {checkpoint!r} "
                f"(e.g. {missing[:5]}): its trace is partial; run the same `grokviz trace` "
                "command again to finish it"
            )
        return UnknownSampleError(msg)

    def router_array(self, checkpoint: str) -> np.ndarray:
        """The router weight rows of one checkpoint as a ``[L, K, d]`` float32 array.

        Examples
        --------
        >>> rows = store.router_array(store.checkpoints()["checkpoint"][-1])
        >>> rows.shape[:2] == (store.manifest["series"]["num_layers"],
        ...                    store.manifest["series"]["num_experts"])  # [L, K, d]
        True
        """
        entry = self._entry(checkpoint)
        if not entry.get("routers"):
            msg = (
                f"checkpoint {checkpoint!r} has no router weights in {self.path} yet; run the "
                "same `grokviz trace` command again to finish its trace"
            )
            raise StoreDamagedError(msg)
        file = self.path / entry["dir"] / ROUTERS_FILE
        frame = self._read(file, entry["routers"], schema.ROUTERS, name="routers")
        frame = frame.sort("layer", "expert")
        n_layers, n_experts = entry["model"]["num_layers"], entry["model"]["num_experts"]
        array = np.asarray(frame["vector"].to_list(), dtype=np.float32)
        return array.reshape(n_layers, n_experts, -1)

    # -- checking -----------------------------------------------------------------------------

    def verify(self, *, checksums: bool = True) -> VerifyReport:
        """Check every file of the store: present, whole, this store's own, and where it belongs.

        Parameters
        ----------
        checksums
            Compare each file's SHA-256 with the manifest's (reads every byte); ``False`` checks
            sizes and metadata only.

        Returns
        -------
        VerifyReport
            One :class:`~grokviz.store.Problem` per missing, damaged, foreign or partial file;
            ``report.ok`` when there are none. ``grokviz verify STORE --repair`` fixes them.

        Examples
        --------
        >>> store.verify().ok
        True
        """
        from grokviz.store._verify import verify

        return verify(self, checksums=checksums)


def as_store(source: Any) -> Any:
    """The one way in for routing data: a store folder (``str`` or path) or a
    :class:`TraceStore` gives a :class:`TraceStore`; anything else (a routing frame, a pandas or
    pyarrow table, an in-memory source) is returned as it is, for the caller to read.

    Examples
    --------
    >>> as_store("data/samples/toy/trace").store_id == store.store_id
    True
    """
    if isinstance(source, TraceStore):
        return source
    if isinstance(source, (str, os.PathLike)):
        return TraceStore.open(source)
    return source
