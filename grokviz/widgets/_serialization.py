"""What grokviz widgets send to the browser, and how (the front end decodes it in js/src/arrow.ts).

Tables cross the wire as uncompressed Arrow IPC streams and dense matrices as raw little-endian
numbers, both in ``traitlets.Bytes`` traits, never as JSON lists. Uncompressed because the
``apache-arrow`` JavaScript package cannot read compressed IPC buffers; the IPC framing adds only a
few hundred bytes of schema and padding to the column data.

The pathway table every view shares has one row per (checkpoint, sample, layer, selected expert):
``checkpoint`` (uint16 index into the widget's ``checkpoints``), ``sample`` (uint32 index into its
samples table), ``layer`` (uint16), ``expert`` (uint16) and ``weight`` (float32), rows of one
(checkpoint, sample, layer) in the pathway's rank order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "PATH_COLUMNS",
    "array_to_bytes",
    "ipc_to_table",
    "path_rows",
    "raw_nbytes",
    "routing_array",
    "table_to_ipc",
]

PATH_COLUMNS: dict[str, str] = {
    "checkpoint": "uint16",
    "sample": "uint32",
    "layer": "uint16",
    "expert": "uint16",
    "weight": "float32",
}


def table_to_ipc(columns: Mapping[str, Any] | pa.Table | pl.DataFrame) -> bytes:
    """Serialize columns to an Arrow IPC stream.

    Parameters
    ----------
    columns
        A mapping of column name to a numpy array (kept at its dtype) or a sequence of strings
        (sent as Arrow ``utf8``), a pyarrow Table, or a polars DataFrame. Polars' string views
        and large strings are cast to plain ``utf8``, which every apache-arrow JS version reads.

    Examples
    --------
    >>> import numpy as np
    >>> data = table_to_ipc({"sample": np.arange(3, dtype=np.uint32), "sample_id": ["a", "b", "c"]})
    >>> ipc_to_table(data).column("sample_id").to_pylist()
    ['a', 'b', 'c']
    """
    import pyarrow as pa

    if isinstance(columns, pl.DataFrame):
        table = columns.to_arrow()
    elif isinstance(columns, pa.Table):
        table = columns
    else:
        arrays = {}
        for name, values in columns.items():
            if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
                arrays[name] = pa.array(np.ascontiguousarray(values))
            else:
                arrays[name] = pa.array(
                    [None if v is None else str(v) for v in values], pa.string()
                )
        table = pa.table(arrays)
    fields = []
    for field in table.schema:
        if pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            fields.append(pa.field(field.name, pa.string()))
        else:
            fields.append(field)
    table = table.cast(pa.schema(fields))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def ipc_to_table(data: bytes) -> pa.Table:
    """Read an Arrow IPC stream written by :func:`table_to_ipc` (for tests and other views).

    Examples
    --------
    >>> ipc_to_table(table_to_ipc({"x": np.array([1.5], dtype=np.float32)})).num_rows
    1
    """
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def array_to_bytes(values: np.ndarray, dtype: str) -> bytes:
    """Raw little-endian bytes of ``values`` cast to ``dtype`` (C order), for typed-array traits.

    Examples
    --------
    >>> array_to_bytes(np.array([1, 256]), "uint16")
    b'\\x01\\x00\\x00\\x01'
    """
    return np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def raw_nbytes(columns: Mapping[str, Any]) -> int:
    """The size of the data itself, the baseline of the "wire <= 1.2x raw arrays" budget.

    Numeric arrays count their bytes; a string column counts its UTF-8 bytes plus one int32
    offset per string, the least any packed string array needs to tell where each string ends.

    Examples
    --------
    >>> raw_nbytes({"a": np.zeros(4, dtype=np.float32), "b": ["xy", "z"]})
    27
    """
    total = 0
    for values in columns.values():
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            total += values.nbytes
        else:
            total += sum(len(str(v).encode()) + 4 for v in values)
    return total


def routing_array(
    routing: pl.DataFrame, checkpoint: str, sample_ids: Sequence[str]
) -> tuple[np.ndarray, int]:
    """One checkpoint's routing weights as ``float32 [N, L, K]`` in ``sample_ids`` order.

    Returns the array and the number of layers. A sample or layer missing from the checkpoint
    raises a ``ValueError`` naming it, since a pathway with a hole would be drawn wrong.

    Examples
    --------
    >>> routing = pl.DataFrame({"checkpoint": ["c"] * 2, "step": [0, 0], "sample_id": ["a", "a"],
    ...                         "layer": [0, 1], "weights": [[0.9, 0.1], [0.2, 0.8]]})
    >>> routing_array(routing, "c", ["a"])[0].shape
    (1, 2, 2)
    """
    frame = routing.filter(pl.col("checkpoint") == checkpoint)
    if frame.height == 0:
        msg = f"the routing table has no rows for checkpoint {checkpoint!r}"
        raise EmptyInputError(msg)
    layers = sorted(frame["layer"].unique().to_list())
    n_layers = int(layers[-1]) + 1
    k = int(frame["weights"].list.len().max() or 0)  # type: ignore[arg-type]
    index = {sid: i for i, sid in enumerate(sample_ids)}
    frame = frame.filter(pl.col("sample_id").is_in(list(index)))
    expected = len(sample_ids) * n_layers
    if frame.height != expected:
        have = frame.group_by("sample_id").len().filter(pl.col("len") != n_layers)
        missing = sorted(set(sample_ids) - set(frame["sample_id"].to_list()))
        msg = (
            f"checkpoint {checkpoint!r} has {frame.height} routing rows for {len(sample_ids)} "
            f"samples x {n_layers} layers; samples missing entirely: {missing[:5]}, with a wrong "
            f"number of layers: {have['sample_id'].to_list()[:5]}. Trace every sample at every "
            "checkpoint, or pass `samples=` with the ones that were traced."
        )
        raise InputError(msg)
    rows = frame["sample_id"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    cols = frame["layer"].cast(pl.Int64).to_numpy()
    weights = np.asarray(frame["weights"].list.to_array(k).to_numpy(), dtype=np.float32)
    out = np.zeros((len(sample_ids), n_layers, k), dtype=np.float32)
    out[rows, cols] = weights
    return out, n_layers


def path_rows(
    weights: Mapping[int, np.ndarray], *, tau: float | None = 0.7, top_k: int | None = None
) -> dict[str, np.ndarray]:
    """The pathway table (see the module docstring) of several checkpoints' weights.

    Parameters
    ----------
    weights
        Checkpoint index -> routing weights ``[N, L, K]`` of that checkpoint.
    tau, top_k
        Expert selection, as in :func:`grokviz.pathways.select_experts`.

    Examples
    --------
    >>> g = np.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]])
    >>> rows = path_rows({3: g})
    >>> rows["checkpoint"].tolist(), rows["layer"].tolist(), rows["expert"].tolist()
    ([3, 3, 3], [0, 0, 1], [0, 1, 2])
    """
    from grokviz.pathways import select_experts

    parts: dict[str, list[np.ndarray]] = {name: [] for name in PATH_COLUMNS}
    for ckpt, w in sorted(weights.items()):
        n, n_layers, _ = w.shape
        selected = select_experts(w, tau=tau, top_k=top_k)
        counts = np.array([len(layer) for sample in selected for layer in sample], dtype=np.int64)
        flat = [layer for sample in selected for layer in sample]
        experts = np.concatenate(flat).astype(np.int64) if flat else np.zeros(0, np.int64)
        cells = np.repeat(np.arange(n * n_layers), counts)
        parts["checkpoint"].append(np.full(len(experts), ckpt))
        parts["sample"].append(cells // n_layers)
        parts["layer"].append(cells % n_layers)
        parts["expert"].append(experts)
        parts["weight"].append(w.reshape(n * n_layers, -1)[cells, experts])
    return {
        name: np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype=dtype)
        for name, dtype in PATH_COLUMNS.items()
    }


def conform_routing(routing: Any) -> pl.DataFrame:
    """A routing table (frame, Arrow-compatible object, trace store or its folder) in the ROUTING
    schema."""
    from grokviz.store import as_store

    routing = as_store(routing)
    if hasattr(routing, "routing") and callable(routing.routing):
        routing = routing.routing()
    return schema.conform(routing, schema.ROUTING, name="routing")


def traced_routing(routing: Any) -> pl.DataFrame:
    """:func:`conform_routing`, refusing a table without rows (nothing to draw)."""
    frame = conform_routing(routing)
    if frame.height == 0:
        msg = "the routing table is empty; trace some samples first (grokviz.trace)"
        raise EmptyInputError(msg)
    return frame


def store_samples(routing: Any) -> Any:
    """The samples table of a ``TraceStore`` (or store folder) given as routing, else None."""
    from grokviz.store import as_store

    routing = as_store(routing)
    if hasattr(routing, "samples") and callable(routing.samples):
        return routing.samples()
    return None
