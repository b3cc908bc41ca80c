"""The trace store's on-disk format: file names, format version and the identity of its samples.

:mod:`grokviz.store` reads stores in this format and :mod:`grokviz.store._writer` writes them;
both take the names from here (the layout is drawn in :mod:`grokviz.store`'s docstring). A store
holds one sample set: :func:`check_samples` vets a samples table before it is traced and
:func:`samples_hash` identifies the set, so a store can tell more of the same samples from others.

Examples
--------
>>> part_name("routing", 3)
'routing-00003.parquet'
"""

from __future__ import annotations

import hashlib
import re

import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError

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
