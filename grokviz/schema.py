"""The table schemas every stage of grokviz reads and writes (see DESIGN.md §2).

Data flows one way: checkpoint -> trace -> trace store (Parquet) -> pathways -> metrics. Each table
is a polars frame with at least these columns and dtypes; :func:`conform` checks a frame against one
and casts compatible dtypes, so files written by one stage can be read by the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from grokviz.errors import InputError

SAMPLES: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "text": pl.String(),
    "domain": pl.String(),
    "split": pl.String(),  # train / test / val
}

CHECKPOINTS: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),  # a label, e.g. "step5000-tokens20B"
    "step": pl.Int64(),
    "tokens": pl.Int64(),  # null when unknown
    "source": pl.String(),  # local folder or hub repo id
    "revision": pl.String(),  # hub branch/tag, null for local folders
    "sha": pl.String(),  # commit hash or weights hash: traces of different weights never mix
}

LOSSES: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "sample_id": pl.String(),
    # mean token negative log-likelihood over real, predicted tokens; null for a one-token sample
    # (nothing to predict), NaN or inf when the model's output was not finite (see TRACE_FLAGS)
    "loss": pl.Float64(),
    "n_tokens": pl.Int32(),  # tokens the sample was traced with (after truncation)
}

# Columns a trace adds to the losses table (a losses table from elsewhere may lack them).
TRACE_FLAGS: dict[str, pl.DataType] = {
    # the model gave a non-finite loss or routing weights for this sample: its loss and weights
    # are stored as computed (NaN / inf), never as plain nulls, and analysis leaves it out
    "nonfinite": pl.Boolean(),
}

ROUTING: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "sample_id": pl.String(),
    "layer": pl.Int16(),  # index among the model's MoE layers, 0-based
    "weights": pl.List(
        pl.Float32()
    ),  # g_l(i): full-softmax weights averaged over real tokens, K values
}

TOKEN_ROUTING: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "sample_id": pl.String(),
    "token_index": pl.Int32(),
    "token": pl.String(),
    "layer": pl.Int16(),
    "experts": pl.List(pl.Int16()),  # the top-k experts the model used, in its order
    "weights": pl.List(pl.Float32()),  # their full-softmax weights
}

ROUTERS: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "layer": pl.Int16(),
    "expert": pl.Int16(),
    "vector": pl.List(pl.Float32()),  # W_l[k], the router's weight row (expert embedding)
}

ACCURACY: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "task": pl.String(),  # a task or domain name
    "accuracy": pl.Float64(),
}

SAMPLE_ACCURACY: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "sample_id": pl.String(),
    "correct": pl.Boolean(),
}

METRICS: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "group": pl.String(),  # "global", a domain, or "Pretrain@<step>"
    "metric": pl.String(),  # "distance", "consistency", "complexity", "loss", "entropy", ...
    "value": pl.Float64(),
    "ci_low": pl.Float64(),  # null when no interval was computed
    "ci_high": pl.Float64(),
}


def conform(frame: Any, schema: Mapping[str, pl.DataType], *, name: str) -> pl.DataFrame:
    """Return ``frame`` as a polars DataFrame with ``schema``'s columns cast to its dtypes.

    Accepts anything polars can read through the Arrow interface (pandas, pyarrow). Extra
    columns are kept. A missing column, or one that cannot be cast, raises an
    :class:`~grokviz.errors.InputError` (a ``ValueError``) that names it and the table.

    Examples
    --------
    >>> conform({"checkpoint": ["a"], "step": [1], "task": ["x"], "accuracy": [1]}, ACCURACY,
    ...         name="accuracy").schema["accuracy"]
    Float64
    """
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if not isinstance(frame, pl.DataFrame):
        try:
            frame = pl.DataFrame(frame)
        except Exception as exc:
            msg = f"cannot read the {name} table from a {type(frame).__name__}: {exc}"
            raise InputError(msg) from exc
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        msg = (
            f"the {name} table lacks column(s) {missing}; it has {frame.columns}. "
            f"Expected at least {list(schema)}."
        )
        raise InputError(msg)
    casts = [pl.col(c).cast(t) for c, t in schema.items() if frame.schema[c] != t]
    if not casts:
        return frame
    try:
        return frame.with_columns(casts)
    except pl.exceptions.PolarsError as exc:
        wrong = {c: str(frame.schema[c]) for c, t in schema.items() if frame.schema[c] != t}
        msg = f"the {name} table has column(s) of the wrong type {wrong}: {exc}"
        raise InputError(msg) from exc
