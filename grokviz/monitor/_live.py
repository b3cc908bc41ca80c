"""Live metrics of a trace store that is still being written: one :class:`Observation` per
checkpoint, as each is completely traced.

:class:`LiveMetrics` follows a store, whoever writes it: the in-process :class:`~grokviz.monitor.Monitor`,
``grokviz watch`` in another process, or ``grokviz trace``. :meth:`LiveMetrics.update` re-reads
the store (:meth:`~grokviz.TraceStore.refresh`), and for every checkpoint that is now complete
(every part and the router table written) evaluates the online memorization criterion over the
observations so far and computes the pathway metrics with :func:`grokviz.analyze`, on three
sample sets:

- ``probe`` and ``probe:<domain>``: every probe sample. The same samples at every observation,
  so this series is comparable over time;
- ``memorized`` and ``memorized:<domain>``: the probe samples that count as memorized at this
  observation (:class:`~grokviz.monitor.OnlineCriterion`); the paper computes its metrics on
  memorized samples only. The set changes as the run goes on;
- ``Pretrain@<step>``: memorized samples grouped by their online onset, the paper's groups.

Negative-control samples (``control = True`` in the samples) stay out of ``probe``,
``memorized`` and the onset groups, as in ``analyze``; their domain is a group of its own.

Views and loggers follow it through :meth:`LiveMetrics.subscribe` (called with each new
:class:`Observation`), :meth:`LiveMetrics.follow` (a polling loop for a store another process
writes) or the :attr:`~LiveMetrics.metrics` and :attr:`~LiveMetrics.memorization` frames.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import NotAStoreError
from grokviz.monitor._online import OnlineCriterion
from grokviz.monitor._view import ObservationView

__all__ = ["LiveMetrics", "Observation"]

logger = logging.getLogger("grokviz.monitor")

MEMORIZATION: dict[str, pl.DataType] = {
    "checkpoint": pl.String(),
    "step": pl.Int64(),
    "sample_id": pl.String(),
    "domain": pl.String(),
    "loss": pl.Float64(),
    "eps": pl.Float64(),
    "memorized": pl.Boolean(),
    "onset_step": pl.Int64(),  # null when the criterion has no onset at this observation
}
"""Schema of :attr:`LiveMetrics.memorization`: one row per observation and probe sample."""

_KEY_UNSAFE = re.compile(r"[^\w.\- /]")


def _key(text: str) -> str:
    # MLflow accepts only letters, digits, "_", "-", ".", " ", "/" (and ":") in metric names;
    # TensorBoard and W&B take those too, so one spelling reaches every reporter.
    return _KEY_UNSAFE.sub("_", text)


@dataclass(frozen=True)
class Observation:
    """The live metrics of one observed checkpoint.

    Attributes
    ----------
    checkpoint, step
        The checkpoint's label and training step.
    metrics
        Its metrics rows (``schema.METRICS`` columns, plus ``n_samples`` and ``control`` where
        :func:`grokviz.analyze` gives them), groups as in the module docstring.
    memorization
        One row per probe sample (:data:`MEMORIZATION`): its loss, the ``eps`` applied, whether
        it counts as memorized now, and its online onset.
    """

    checkpoint: str
    step: int
    metrics: pl.DataFrame
    memorization: pl.DataFrame

    def scalars(self, *, prefix: str = "grokviz") -> dict[str, float]:
        """Flat ``{name: value}`` for a logger (TensorBoard, W&B, MLflow, Lightning ...).

        Names are ``<prefix>/<set>[/<domain>]/<metric>`` for the ``probe`` and ``memorized``
        sets, plus ``<prefix>/memorized[/<domain>]/fraction`` and ``.../count`` and
        ``<prefix>/memorized/<domain>/eps``. Onset groups are left out: a new one appears with
        almost every observation, which would give a logger a new series each time.

        Examples
        --------
        >>> obs.scalars()["grokviz/probe/distance"]  # doctest: +SKIP
        12.5
        """
        out: dict[str, float] = {}
        for row in self.metrics.iter_rows(named=True):
            group, metric, value = row["group"], row["metric"], row["value"]
            if value is None or group.startswith("Pretrain@"):
                continue
            out[_key(f"{prefix}/{group.replace(':', '/')}/{metric}")] = float(value)
        mem = self.memorization
        if "control" in mem.columns:
            counted = mem.filter(~pl.col("control").fill_null(False))
        else:
            counted = mem
        n = counted.height
        k = int(counted["memorized"].sum())
        out[f"{prefix}/memorized/count"] = float(k)
        out[f"{prefix}/memorized/fraction"] = k / n if n else 0.0
        for (domain,), part in mem.group_by(["domain"], maintain_order=True):
            base = _key(f"{prefix}/memorized/{domain}")
            k = int(part["memorized"].sum())
            out[f"{base}/count"] = float(k)
            out[f"{base}/fraction"] = k / part.height
            eps = part["eps"].drop_nulls().drop_nans()
            if eps.len():
                out[f"{base}/eps"] = float(eps[0])
        return out


@dataclass
class _History:
    """Every processed observation's losses, in step order, aligned with the probe's order."""

    steps: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)

    def add(self, label: str, step: int, losses: np.ndarray) -> int:
        at = int(np.searchsorted(np.asarray(self.steps, dtype=np.int64), step, side="right"))
        self.steps.insert(at, step)
        self.labels.insert(at, label)
        self.losses.insert(at, losses)
        return at

    def matrix(self, upto: int) -> np.ndarray:
        return np.stack(self.losses[: upto + 1], axis=1)


class LiveMetrics:
    """Follow a trace store and keep its live metrics up to date.

    Parameters
    ----------
    store
        A :class:`~grokviz.TraceStore` or its folder; it may still be empty or be written
        by another process.
    criterion
        The online memorization criterion (default :class:`OnlineCriterion` ``()``).
    tau, top_k, unit, n_pairs, n_boot, seed, device
        Passed to :func:`grokviz.analyze` for every observation.
    onset_groups
        Also compute the ``Pretrain@<step>`` groups.

    Examples
    --------
    A monitor writes a store (here in this process; it could be another one):

    >>> import tempfile
    >>> from grokviz.monitor import Monitor
    >>> from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples
    >>> monitor = Monitor(tiny_samples(6), tempfile.mkdtemp() + "/live", tokenizer=char_tokenizer(),
    ...                   every=1)
    >>> for step in range(3):
    ...     _ = monitor.observe(tiny_moe(), step)

    A view follows it:

    >>> live = LiveMetrics(monitor.path, criterion=OnlineCriterion(eps=5.0, window=2))
    >>> [observation.step for observation in live.update()]  # every complete checkpoint
    [0, 1, 2]
    >>> live.update()  # nothing new since
    []
    >>> live.memorization.filter(pl.col("step") == 2)["memorized"].all()  # stable, below eps
    True
    """

    def __init__(
        self,
        store: Any,
        *,
        criterion: OnlineCriterion | None = None,
        tau: float = 0.7,
        top_k: int | None = None,
        unit: str = "expert",
        n_pairs: int | None = None,
        n_boot: int = 200,
        seed: int = 0,
        device: Any = None,
        onset_groups: bool = True,
    ) -> None:
        from pathlib import Path

        from grokviz.store import TraceStore

        self._path = store.path if isinstance(store, TraceStore) else Path(store)
        self._store: TraceStore | None = store if isinstance(store, TraceStore) else None
        self.criterion = criterion if criterion is not None else OnlineCriterion()
        self._analyze_kwargs: dict[str, Any] = {
            "tau": tau,
            "top_k": top_k,
            "unit": unit,
            "n_pairs": n_pairs,
            "n_boot": n_boot,
            "seed": seed,
            "device": device,
        }
        self.onset_groups = onset_groups
        self.observations: dict[str, Observation] = {}
        """Every processed observation by checkpoint label."""
        self._history = _History()
        self._samples: pl.DataFrame | None = None
        self._n_stored = -1
        self._ids: list[str] = []
        self._subscribers: list[Callable[[Observation], None]] = []
        self._metric_frames: list[pl.DataFrame] = []
        self._memorization_frames: list[pl.DataFrame] = []

    # -- the store ------------------------------------------------------------------------------

    @property
    def path(self) -> Any:
        """The store's folder (a :class:`~pathlib.Path`)."""
        return self._path

    @property
    def store(self) -> Any:
        """The :class:`~grokviz.TraceStore` followed (``None`` while its folder is no store)."""
        return self._store

    def _open(self) -> Any:
        from grokviz.store import TraceStore

        if self._store is None:
            try:
                self._store = TraceStore.open(self._path)
            except NotAStoreError:
                return None  # not created yet: its writer has not started
        else:
            self._store.refresh()
        return self._store

    def pending(self) -> list[str]:
        """Complete checkpoints of the store not processed yet, in step order."""
        store = self._open()
        if store is None:
            return []
        frame = store.checkpoints()
        entries = store.manifest["checkpoints"]
        done = frame.filter(pl.col("parts_done") == pl.col("parts_total"))
        return [
            label
            for label in done["checkpoint"].to_list()
            if label not in self.observations and entries[label].get("routers")
        ]

    # -- updating -------------------------------------------------------------------------------

    def update(self) -> list[Observation]:
        """Process every checkpoint completed since the last call; return their observations.

        Each new observation is also passed to every :meth:`subscribe` d callback.
        """
        new = []
        for label in self.pending():
            observation = self._process(label)
            new.append(observation)
            for callback in list(self._subscribers):
                callback(observation)
        return new

    def subscribe(self, callback: Callable[[Observation], None]) -> Callable[[], None]:
        """Call ``callback(observation)`` for each new observation; returns an unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def follow(
        self,
        *,
        interval: float = 1.0,
        until: Callable[[], bool] | None = None,
        timeout: float | None = None,
    ) -> Iterator[Observation]:
        """Yield observations as another process completes them, polling every ``interval`` s.

        Stops when ``until()`` is true (checked after each poll), after ``timeout`` seconds, or
        when the caller stops iterating (``KeyboardInterrupt`` stops it cleanly).
        """
        start = time.monotonic()
        while True:
            yield from self.update()
            if until is not None and until():
                yield from self.update()
                return
            if timeout is not None and time.monotonic() - start >= timeout:
                return
            time.sleep(interval)

    @property
    def metrics(self) -> pl.DataFrame:
        """Every observation's metrics rows so far, in step order."""
        if not self._metric_frames:
            return pl.DataFrame(schema=schema.METRICS)
        frame = pl.concat(self._metric_frames, how="diagonal_relaxed")
        return frame.sort("step", "group", "metric")

    @property
    def memorization(self) -> pl.DataFrame:
        """Who counted as memorized at each observation (:data:`MEMORIZATION` rows)."""
        if not self._memorization_frames:
            return pl.DataFrame(schema=MEMORIZATION)
        return pl.concat(self._memorization_frames, how="diagonal_relaxed").sort(
            "step", "sample_id"
        )

    # -- one observation ------------------------------------------------------------------------

    def _probe_samples(self, store: Any) -> pl.DataFrame:
        if self._n_stored != store.manifest["n_samples"]:
            self._n_stored = store.manifest["n_samples"]
            samples = store.samples()
            # training samples only, as analyze() judges memorization (a monitor's store holds
            # nothing else; a store of `grokviz trace` may hold test samples too)
            if (samples["split"] == "train").any():
                samples = samples.filter(pl.col("split") == "train")
            self._samples = samples
            self._history = self._realigned(samples)
        assert self._samples is not None
        return self._samples

    def _realigned(self, samples: pl.DataFrame) -> _History:
        """The history with rows for samples added to the store since (NaN where not traced)."""
        old = {sid: i for i, sid in enumerate(self._ids)}
        self._ids = samples["sample_id"].to_list()
        rows = np.array([old.get(sid, -1) for sid in self._ids], dtype=np.int64)
        history = _History()
        for label, step, losses in zip(
            self._history.labels, self._history.steps, self._history.losses, strict=True
        ):
            grown = np.where(rows >= 0, losses[np.maximum(rows, 0)], np.nan)
            history.add(label, step, grown)
        return history

    def _process(self, label: str) -> Observation:
        store = self._store
        assert store is not None
        samples = self._probe_samples(store)
        ckpt = store.checkpoints().filter(pl.col("checkpoint") == label)
        step = int(ckpt["step"][0]) if ckpt["step"][0] is not None else len(self._history.steps)
        losses = (
            store.losses(lazy=True)
            .filter(pl.col("checkpoint") == label)
            .collect()
            .pipe(schema.conform, schema.LOSSES, name="losses")
        )
        ids = samples["sample_id"].to_list()
        loss_of = dict(zip(losses["sample_id"], losses["loss"], strict=True))
        bad = set()
        if "nonfinite" in losses.columns:
            bad = set(losses.filter(pl.col("nonfinite").fill_null(False))["sample_id"])
        vector = np.array(
            [np.nan if s in bad or loss_of.get(s) is None else float(loss_of[s]) for s in ids]
        )
        at = self._history.add(label, step, vector)
        state = self.criterion.evaluate(self._history.matrix(at), samples["domain"].to_list())
        steps = np.asarray(self._history.steps[: at + 1], dtype=np.int64)
        memorization = pl.DataFrame(
            {
                "checkpoint": label,
                "step": step,
                "sample_id": ids,
                "domain": samples["domain"],
                "loss": vector,
                "eps": state.eps,
                "memorized": state.memorized,
                "onset_step": pl.Series(
                    [int(steps[o]) if o >= 0 else None for o in state.onset], dtype=pl.Int64()
                ),
            },
            schema_overrides=MEMORIZATION,
        ).with_columns(pl.col("loss").fill_nan(None))
        if "control" in samples.columns:
            memorization = memorization.with_columns(
                control=samples["control"].cast(pl.Boolean).fill_null(False)
            )
        metrics = self._metrics(store, label, ckpt, samples, losses, memorization)
        observation = Observation(label, step, metrics, memorization)
        self.observations[label] = observation
        self._metric_frames.append(metrics)
        self._memorization_frames.append(memorization)
        return observation

    def _metrics(
        self,
        store: Any,
        label: str,
        ckpt: pl.DataFrame,
        samples: pl.DataFrame,
        losses: pl.DataFrame,
        memorization: pl.DataFrame,
    ) -> pl.DataFrame:
        from grokviz.errors import StoreDamagedError

        weights, weight_ids = store.routing_array(label)
        try:
            routers = store.router_array(label)
        except StoreDamagedError:
            routers = None
        controls = set()
        if "control" in samples.columns:
            controls = set(samples.filter(pl.col("control").fill_null(False))["sample_id"])

        def view(chosen: pl.DataFrame, groups: dict[str, str] | None = None) -> ObservationView:
            return ObservationView(
                ckpt,
                chosen,
                losses=losses,
                weights=weights,
                weight_ids=weight_ids,
                routers=routers,
                groups=groups,
            )

        memorized_ids = memorization.filter(pl.col("memorized"))["sample_id"]
        memorized = samples.filter(pl.col("sample_id").is_in(memorized_ids.implode()))
        frames = [
            _prefixed(self._analyze(view(samples), ("global", "domain")), "probe"),
        ]
        if memorized.height:
            frames.append(
                _prefixed(self._analyze(view(memorized), ("global", "domain")), "memorized")
            )
        if self.onset_groups:
            onsets = memorization.filter(
                pl.col("memorized") & ~pl.col("sample_id").is_in(list(controls))
            )
            if onsets.height:
                names = {
                    sid: f"Pretrain@{onset}"
                    for sid, onset in onsets.select("sample_id", "onset_step").iter_rows()
                }
                chosen = samples.filter(pl.col("sample_id").is_in(list(names)))
                if "control" in chosen.columns:
                    chosen = chosen.drop("control")
                frames.append(self._analyze(view(chosen, names), ("domain",)))
        frame = pl.concat([f for f in frames if f.height], how="diagonal_relaxed")
        return frame.drop("replicates", strict=False).sort("group", "metric")

    def _analyze(self, view: ObservationView, groups: tuple[str, ...]) -> pl.DataFrame:
        from grokviz.metrics import analyze

        kwargs = dict(self._analyze_kwargs)
        # eps only picks memorized samples, which memorized_only=False does not use; a fixed
        # value spares analyze its calibration. analyze keeps per-sample resamples for later
        # statistics where it has them; a live observation has no use for them.
        kwargs["eps"] = 1.0
        if "replicates" in inspect.signature(analyze).parameters:
            kwargs["replicates"] = 0
        return analyze(
            view, memorized_only=False, groups=cast(Any, list(groups)), progress=False, **kwargs
        )


def _prefixed(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Rename ``analyze``'s groups: ``global`` -> ``name``, a domain ``d`` -> ``name:d``."""
    group = (
        pl.when(pl.col("group") == "global")
        .then(pl.lit(name))
        .otherwise(pl.lit(f"{name}:") + pl.col("group"))
    )
    return frame.with_columns(group=group)
