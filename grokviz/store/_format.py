"""The trace store's on-disk format: its layout, file names, version, and the identity of its samples.

Layout (format version 2)::

    STORE/
      manifest.json                the index: store id, params, sample sets, shards, checkpoints,
                                   and the SHA-256, size and row count of every file below
      samples-000.parquet          the samples, in store order; each later call that adds samples
      samples-001.parquet          appends one more sample set (shards are ranges of this order)
      <checkpoint>/                one folder per checkpoint label
        routers.parquet            schema.ROUTERS: router weight rows (expert embeddings)
        losses-00000.parquet       schema.LOSSES rows of shard 0
        routing-00000.parquet      schema.ROUTING rows of shard 0
        token_routing-00000.parquet
      .grokviz-lock                held while the manifest is read and rewritten
      .grokviz-claims/             one file per unit a live process is tracing

Every Parquet file carries the store's id, its table, checkpoint and shard in its key-value
metadata (:func:`file_metadata`), so a file copied in from another store, or to another place in
this one, is recognized. A store holds one sample set (possibly extended) traced with one set of
parameters; :func:`check_samples` vets a samples table before it is traced.

Examples
--------
>>> part_name("routing", 3)
'routing-00003.parquet'
>>> samples_name(1)
'samples-001.parquet'
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, InputError

FORMAT = "grokviz.trace-store"
VERSION = 2
MANIFEST = "manifest.json"
ROUTERS_FILE = "routers.parquet"
LOCK_FILE = ".grokviz-lock"
CLAIMS_DIR = ".grokviz-claims"
TABLES: dict[str, dict[str, pl.DataType]] = {
    "losses": {**schema.LOSSES, **schema.TRACE_FLAGS},
    "routing": schema.ROUTING,
    "token_routing": schema.TOKEN_ROUTING,
}
SPLITS = ("train", "test", "val")  # what a sample is for: training, testing, validation
_META = "grokviz."  # prefix of the store's keys in Parquet key-value metadata
_SAMPLES = re.compile(r"^samples-\d{3,}\.parquet$")


def part_name(table: str, shard: int) -> str:
    """File name of the ``table`` part of ``shard``, e.g. ``routing-00003.parquet``."""
    return f"{table}-{shard:05d}.parquet"


def samples_name(index: int) -> str:
    """File name of sample set ``index``, e.g. ``samples-001.parquet``."""
    return f"samples-{index:03d}.parquet"


def is_samples_name(name: str) -> bool:
    """Whether ``name`` is a sample-set file name (``samples-NNN.parquet``)."""
    return bool(_SAMPLES.match(name))


def file_metadata(
    store_id: str, table: str, *, checkpoint: str | None = None, shard: int | None = None
) -> dict[str, str]:
    """The key-value metadata every Parquet file of a store carries."""
    meta = {f"{_META}store_id": store_id, f"{_META}table": table}
    if checkpoint is not None:
        meta[f"{_META}checkpoint"] = checkpoint
    if shard is not None:
        meta[f"{_META}shard"] = str(shard)
    return meta


def read_file_metadata(raw: dict[str, str]) -> dict[str, str]:
    """The store's own keys of a file's key-value metadata, without their prefix."""
    return {k.removeprefix(_META): v for k, v in raw.items() if k.startswith(_META)}


def samples_hash(samples: pl.DataFrame) -> str:
    """A hash of the (sample_id, text) pairs of ``samples``, independent of their order.

    Two tables with the same hash hold the same samples: a store traced from one can be resumed
    from the other.
    """
    pairs = samples.select("sample_id", "text").sort("sample_id")
    digest = hashlib.sha256()
    for sid, text in pairs.iter_rows():
        digest.update(f"{sid}\x1f{text}\x1e".encode())
    return digest.hexdigest()


def content_hash(samples: pl.DataFrame) -> str:
    """A hash of every row and column of ``samples`` in order: what a sample set file must hold.

    Used to restore a damaged sample-set file from the table a user passes again: the restored
    rows must give the hash recorded when the set was written.
    """
    digest = hashlib.sha256("\x1f".join(samples.columns).encode())
    for row in samples.iter_rows():
        digest.update(("\x1e" + "\x1f".join(_canonical(v) for v in row)).encode())
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return "\x00" if value is None else repr(value)


def check_samples(samples: object) -> pl.DataFrame:
    """Conform ``samples`` to ``schema.SAMPLES`` and check its ids are unique and texts present.

    Accepts a polars, pandas or pyarrow table. Integer sample ids become their decimal strings;
    floating-point ids are refused, since ``7.0`` and ``7`` would name different samples.

    Raises
    ------
    EmptyInputError
        The table has no rows.
    InputError
        A column is missing or null somewhere, a split is not one of ``train``, ``test``,
        ``val``, or ids repeat.

    Examples
    --------
    >>> check_samples({"sample_id": [7, 8], "text": ["a", "b"], "domain": "x", "split": "train"})[
    ...     "sample_id"
    ... ].to_list()
    ['7', '8']
    """
    frame = _as_frame(samples)
    ids = frame.schema.get("sample_id")
    if ids is not None and ids.is_float():
        msg = (
            "sample_id values are floating-point numbers, which do not name samples exactly "
            "(7.0 vs 7); give them as strings or integers, e.g. read a CSV with ids as strings"
        )
        raise InputError(msg)
    frame = schema.conform(frame, schema.SAMPLES, name="samples")
    if frame.height == 0:
        msg = "the samples table is empty: pass at least one sample (columns sample_id, text, ...)"
        raise EmptyInputError(msg)
    for column in schema.SAMPLES:
        n_null = frame[column].null_count()
        if n_null:
            advice = (
                "drop those rows first"
                if column in ("sample_id", "text")
                else f'fill it first, e.g. samples.with_columns(pl.col("{column}").fill_null("{"train" if column == "split" else "general"}"))'
            )
            msg = f"{n_null} sample(s) have a null {column}; {advice}"
            raise InputError(msg)
    odd = sorted(set(frame["split"].unique().to_list()) - set(SPLITS))
    if odd:
        hints = {o: o.strip().lower() for o in odd if o.strip().lower() in SPLITS}
        hint = f" (did you mean {', '.join(repr(v) for v in hints.values())}?)" if hints else ""
        msg = f"split must be one of {list(SPLITS)}; the samples have {odd[:5]}{hint}"
        raise InputError(msg)
    dupes = frame.filter(pl.col("sample_id").is_duplicated())["sample_id"].unique().to_list()
    if dupes:
        msg = f"sample_id values must be unique; repeated: {sorted(dupes)[:5]}"
        raise InputError(msg)
    return frame


def _as_frame(samples: Any) -> pl.DataFrame:
    if isinstance(samples, pl.LazyFrame):
        return samples.collect()
    if isinstance(samples, pl.DataFrame):
        return samples
    try:
        return pl.DataFrame(samples)
    except Exception as exc:
        msg = f"cannot read the samples table from a {type(samples).__name__}: {exc}"
        raise InputError(msg) from exc


def folder_name(label: str, taken: set[str]) -> str:
    """A folder name for checkpoint ``label``: filesystem-safe, unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "checkpoint"
    if is_samples_name(base) or base in {MANIFEST, LOCK_FILE, CLAIMS_DIR}:
        base = f"ckpt_{base}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
