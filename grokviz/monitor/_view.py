"""One observation of a store, seen as a trace source of its own, for :func:`grokviz.analyze`.

The live metrics are computed by :func:`grokviz.analyze` itself, so that a value the monitor
logs during training is the value the same definitions give after it, and every metric and
control that ``analyze`` learns to compute reaches the monitor without a second
implementation. ``analyze`` reads any :class:`~grokviz.metrics.analyze.TraceSource`; the view
below shows it one checkpoint of a store and a chosen set of its samples, optionally under other
group names (the ``domain`` column is what ``analyze`` groups by).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

__all__ = ["ObservationView"]


class ObservationView:
    """One checkpoint of a store, restricted to some of its samples, served from memory.

    Parameters
    ----------
    checkpoint
        That checkpoint's row of ``TraceStore.checkpoints()``.
    samples
        The samples to show (``schema.SAMPLES`` columns and any extra ones).
    losses
        The checkpoint's losses.
    weights, weight_ids
        The checkpoint's ``[N, L, K]`` routing weights and the sample id of each row.
    routers
        Its ``[L, K, d]`` router weight rows, or ``None`` when it has none.
    groups
        ``{sample_id: name}``: shown as the samples' ``domain``, so that ``analyze``'s
        ``"domain"`` groups are these; default: the samples' own domains.
    """

    def __init__(
        self,
        checkpoint: pl.DataFrame,
        samples: pl.DataFrame,
        *,
        losses: pl.DataFrame,
        weights: np.ndarray,
        weight_ids: Sequence[str],
        routers: np.ndarray | None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        if groups is not None:
            mapped = pl.col("sample_id").replace_strict(dict(groups), return_dtype=pl.String())
            samples = samples.with_columns(domain=mapped)
        chosen = samples["sample_id"].implode()
        self._checkpoint = checkpoint
        self._samples = samples
        self._losses = losses.filter(pl.col("sample_id").is_in(chosen))
        self._weights = weights
        self._row = {sid: i for i, sid in enumerate(weight_ids)}
        self._routers = routers

    def checkpoints(self) -> pl.DataFrame:
        return self._checkpoint

    def samples(self) -> pl.DataFrame:
        return self._samples

    def losses(self) -> pl.DataFrame:
        return self._losses

    def routing_array(
        self, checkpoint: str, *, sample_ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        ids = self._samples["sample_id"].to_list() if sample_ids is None else list(sample_ids)
        got = [s for s in ids if s in self._row]
        rows = np.fromiter((self._row[s] for s in got), dtype=np.int64, count=len(got))
        return self._weights[rows], got

    def router_array(self, checkpoint: str) -> np.ndarray:
        if self._routers is None:
            msg = f"checkpoint {checkpoint!r} has no router weights"
            raise KeyError(msg)
        return self._routers
