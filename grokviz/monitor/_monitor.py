"""The training monitor: every N optimizer steps, the probe set through the model being trained.

:class:`Monitor` is what the integrations (transformers, Lightning, a plain loop) share. An
observation at step ``s``:

1. saves everything the probe could change (:func:`~grokviz.monitor._state.untouched`);
2. traces the probe set with :func:`grokviz.trace` into the monitor's trace store as checkpoint
   ``step-<s>`` (source ``live:<run>``, identified by a SHA-256 of the live weights; no weights
   are written): eval mode, ``torch.inference_mode``, one forward pass per batch;
3. puts everything back, so the run continues exactly as it would have without the monitor;
4. brings the live metrics up to date from the store (:class:`~grokviz.monitor.LiveMetrics`) and
   returns the observation's scalars for a logger.

The store is an ordinary trace store: ``grokviz.analyze(monitor.store)`` applies the paper's
criterion to it after the run, ``grokviz verify`` checks it, the widgets read it, and a view in
another process can follow it while it grows.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from grokviz.errors import InputError, NotAStoreError, StoreMismatchError
from grokviz.monitor._live import LiveMetrics, Observation
from grokviz.monitor._online import OnlineCriterion
from grokviz.monitor._probe import DEFAULT_PER_DOMAIN, probe_set
from grokviz.monitor._state import check_observable, untouched

__all__ = ["DEFAULT_EVERY", "Monitor", "check_store"]

logger = logging.getLogger("grokviz.monitor")

DEFAULT_EVERY = 200
"""Observe every this many optimizer steps by default (see ``benchmarks/monitor_overhead.py``
for what it costs)."""

_FAILURES_BEFORE_STOP = 3


def _label(step: int) -> str:
    return f"step-{step:06d}"


class Monitor:
    """Watch pathway metrics of a model while it trains, from a probe set of training samples.

    Parameters
    ----------
    samples
        Training samples (``schema.SAMPLES``; polars, pandas or pyarrow). The probe set is drawn
        from them (:func:`~grokviz.monitor.probe_set`); pass ``per_domain=None`` to probe them
        all.
    store
        The monitor's trace store folder: created if missing; an existing one (a resumed run)
        must hold the same probe set, and its observations continue the series.
    tokenizer
        The model's tokenizer (the monitor works on a private copy, so the caller's is never
        changed by tokenizing the probe).
    every
        Observe when the optimizer step is a multiple of ``every`` (step 0 included).
    per_domain, seed
        Size and draw of the probe set.
    criterion
        The online memorization criterion (default :class:`~grokviz.monitor.OnlineCriterion`).
    run
        Names the run in each checkpoint's source, ``live:<run>`` (default: the store's name).
    max_length, batch_size
        Probe samples are truncated to ``max_length`` tokens and traced ``batch_size`` at a time.
    tau, top_k, unit, n_boot
        Passed to :func:`grokviz.analyze` for the live metrics.
    on_error
        ``"warn"`` (default): a failing observation is reported as a warning and training goes
        on; after 3 failures in a row the monitor stops observing. ``"raise"`` lets it raise.

    Examples
    --------
    >>> import tempfile
    >>> from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples
    >>> monitor = Monitor(tiny_samples(6), tempfile.mkdtemp() + "/monitor",
    ...                   tokenizer=char_tokenizer(), every=10)
    >>> model = tiny_moe()
    >>> monitor.observe(model, 5) is None  # not due
    True
    >>> scalars = monitor.observe(model, 10)
    >>> round(scalars["grokviz/probe/loss"], 3) == round(
    ...     monitor.store.losses()["loss"].mean(), 3)
    True
    """

    def __init__(
        self,
        samples: object,
        store: str | os.PathLike[str],
        *,
        tokenizer: Any,
        every: int = DEFAULT_EVERY,
        per_domain: int | None = DEFAULT_PER_DOMAIN,
        seed: int = 0,
        criterion: OnlineCriterion | None = None,
        run: str | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        tau: float = 0.7,
        top_k: int | None = None,
        unit: str = "expert",
        n_boot: int = 200,
        on_error: str = "warn",
    ) -> None:
        import copy

        if every < 1:
            msg = f"every must be a positive number of optimizer steps, got {every}"
            raise InputError(msg)
        if on_error not in ("warn", "raise"):
            msg = f"on_error must be 'warn' or 'raise', got {on_error!r}"
            raise InputError(msg)
        if tokenizer is None or not callable(tokenizer):
            msg = "Monitor needs the model's tokenizer: pass tokenizer=..."
            raise InputError(msg)
        self.path = Path(store)
        self.probe = probe_set(samples, per_domain=per_domain, seed=seed)
        check_store(self.path, self.probe)
        self.every = int(every)
        self.run = run or self.path.name
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.on_error = on_error
        # Tokenizing sets a fast tokenizer's truncation and padding state; the copy keeps that
        # away from the tokenizer the training run's own data pipeline uses.
        self._tokenizer = copy.deepcopy(tokenizer)
        self.live = LiveMetrics(
            self.path, criterion=criterion, tau=tau, top_k=top_k, unit=unit, n_boot=n_boot
        )
        """The live metrics, kept up to date from the store."""
        self.seconds: list[float] = []
        """Wall time of each observation (trace, store writes and metrics), in seconds."""
        self._failures = 0
        self.stopped = False
        """True once the monitor gave up after repeated failures (``on_error="warn"``)."""
        if self.path.exists():
            self.live.update()  # a resumed run: the observations so far continue the series

    # -- what the integrations call ---------------------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` is one to observe (a multiple of ``every``)."""
        return not self.stopped and step % self.every == 0 and _main_process()

    def observe(
        self, model: Any, step: int, *, force: bool = False, tokens: int | None = None
    ) -> dict[str, float] | None:
        """Observe ``model`` after optimizer step ``step``, if that step is due.

        Parameters
        ----------
        model
            The ``transformers`` MoE model being trained (unwrapped: not its DDP wrapper).
        step
            Optimizer steps done so far.
        force
            Observe even if ``step`` is not a multiple of ``every`` (e.g. at a checkpoint save).
        tokens
            Training tokens seen so far, recorded with the checkpoint when known.

        Returns
        -------
        dict or None
            The observation's scalars (:meth:`Observation.scalars`) for a logger; ``None``
            when the step is not due, on a process other than the main one, or when the
            observation failed under ``on_error="warn"``.
        """
        if not (force or self.due(step)) or self.stopped or not _main_process():
            return None
        label = _label(step)
        known = self.live.observations.get(label)
        start = time.perf_counter()
        try:
            observation = self._observe(model, step, tokens, known)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            self._failed(step, exc)
            return None
        self._failures = 0
        self.seconds.append(time.perf_counter() - start)
        return observation.scalars() if observation is not None else None

    def _observe(
        self, model: Any, step: int, tokens: int | None, known: Observation | None
    ) -> Observation | None:
        import grokviz
        from grokviz.tracing import Checkpoint, weights_hash

        check_observable(model)
        label = _label(step)
        with untouched(model):
            sha = weights_hash(model)
            if known is not None and self._sha(label) == sha:
                return known  # a resumed run observing a step again, with the same weights
            checkpoint = Checkpoint(
                source=f"live:{self.run}", label=label, step=step, tokens=tokens, sha=sha
            )
            try:
                grokviz.trace(
                    model,
                    self.probe,
                    self.path,
                    tokenizer=self._tokenizer,
                    checkpoint=checkpoint,
                    max_length=self.max_length,
                    batch_size=self.batch_size,
                    progress=False,
                )
            except StoreMismatchError as exc:
                msg = (
                    f"step {step} is already in the monitor's store {str(self.path)!r} with other "
                    f"weights ({exc}); a restarted run that diverged? This observation is "
                    "skipped: give a new run a new store."
                )
                raise StoreMismatchError(msg) from exc
            # inside the guard too: the metrics run torch code of their own
            self.live.update()
        return self.live.observations.get(label)

    def _sha(self, label: str) -> str | None:
        store = self.live.store
        entry = store.manifest["checkpoints"].get(label) if store is not None else None
        return None if entry is None else entry.get("sha")

    def _failed(self, step: int, exc: BaseException) -> None:
        self._failures += 1
        text = " ".join(str(exc).split())
        if self._failures >= _FAILURES_BEFORE_STOP:
            self.stopped = True
            tail = (
                f" The monitor failed {self._failures} times in a row and stops observing; "
                "training goes on."
            )
        else:
            tail = " Training goes on; the monitor tries again at the next due step."
        warnings.warn(
            f"grokviz monitor: the observation at step {step} failed ({type(exc).__name__}: "
            f"{text}).{tail}",
            stacklevel=3,
        )

    # -- results ----------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The monitor's :class:`~grokviz.TraceStore` (``None`` before the first observation)."""
        return self.live.store

    @property
    def metrics(self) -> pl.DataFrame:
        """The live metrics of every observation so far (see :class:`~grokviz.monitor.LiveMetrics`)."""
        return self.live.metrics

    @property
    def memorization(self) -> pl.DataFrame:
        """Which probe samples counted as memorized at each observation."""
        return self.live.memorization

    def analyze(self, **kwargs: Any) -> pl.DataFrame:
        """The post-hoc analysis of the monitor's store, with the paper's criterion
        (``grokviz.analyze(monitor.store, **kwargs)``): memorization judged against the last
        observation, the same samples followed at every observation."""
        from grokviz.metrics import analyze

        if self.store is None:
            msg = f"the monitor has observed nothing yet; its store {str(self.path)!r} is empty"
            raise InputError(msg)
        kwargs.setdefault("progress", False)
        return analyze(self.store, **kwargs)

    def __repr__(self) -> str:
        n = len(self.live.observations)
        return (
            f"Monitor({str(self.path)!r}, probe={self.probe.height} samples, every={self.every}, "
            f"observations={n})"
        )


def _main_process() -> bool:
    """False on a distributed run's other ranks: one process observes, the others train."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return True
    return int(dist.get_rank()) == 0


def check_store(path: Path, probe: pl.DataFrame) -> None:
    """Refuse, before training starts, a store the monitor could not write to."""
    from grokviz.store import TraceStore

    if path.exists() and not path.is_dir():
        msg = f"the monitor's store {str(path)!r} is a file; choose a folder"
        raise NotAStoreError(msg)
    if not path.is_dir() or not any(path.iterdir()):
        return
    try:
        store = TraceStore.open(path)
    except NotAStoreError:
        msg = (
            f"{str(path)!r} is not a grokviz trace store and is not empty; the monitor never "
            "writes into such a folder. Choose a new or empty folder for its store."
        )
        raise NotAStoreError(msg) from None
    stored = store.samples().select("sample_id", "text")
    if stored.height and not _same_samples(stored, probe):
        msg = (
            f"the monitor's store {str(path)!r} holds another probe set ({stored.height} "
            f"samples; this monitor draws {probe.height}): another run's, or other samples, "
            "per_domain or seed. Give this run a new store folder, or the same arguments."
        )
        raise StoreMismatchError(msg)


def _same_samples(stored: pl.DataFrame, probe: pl.DataFrame) -> bool:
    def pairs(frame: pl.DataFrame) -> Mapping[str, str]:
        return dict(frame.select("sample_id", "text").iter_rows())

    return pairs(stored) == pairs(probe)
