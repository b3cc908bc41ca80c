"""The monitor in a Lightning run.

:class:`LightningCallback` observes the MoE model inside the ``LightningModule`` after every
``monitor.every`` optimizer steps (``trainer.global_step``; gradient accumulation counts one
step per optimizer update) and at each checkpoint save, and sends the metrics to every logger
the Lightning ``Trainer`` has (``trainer.loggers``: TensorBoard, W&B, MLflow, CSV ...) at that
step::

    trainer = L.Trainer(logger=TensorBoardLogger("logs"), callbacks=[LightningCallback(monitor)])

Only global rank 0 observes. The callback is a ``lightning.pytorch`` callback (the ``lightning``
package); the older ``pytorch_lightning`` package has callbacks of its own type, used only when
``lightning`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grokviz.errors import InputError, NotMoEError
from grokviz.monitor._monitor import Monitor

try:
    from lightning.pytorch import Callback
except ModuleNotFoundError:  # pragma: no cover - the standalone package of older Lightning
    from pytorch_lightning import Callback  # type: ignore[assignment]

__all__ = ["LightningCallback"]


def _find_moe(module: Any) -> Any:
    """The first module (``module`` itself, or a submodule) whose routers grokviz reaches."""
    from grokviz.tracing import moe_info

    for candidate in module.modules():
        if getattr(candidate, "config", None) is None:
            continue
        try:
            moe_info(candidate)
        except NotMoEError:
            continue
        return candidate
    msg = (
        f"LightningCallback found no transformers MoE model inside {type(module).__name__}; "
        "pass model=lambda pl_module: pl_module.<attribute> to say which one to observe"
    )
    raise NotMoEError(msg)


class LightningCallback(Callback):
    """A Lightning callback that runs a :class:`~grokviz.monitor.Monitor`.

    Parameters
    ----------
    monitor
        The monitor (its ``every`` sets the frequency, its store receives the observations).
    model
        ``model(pl_module)`` returns the ``transformers`` MoE model to observe; default: the
        first submodule of the ``LightningModule`` that is one.
    on_save
        Also observe at every checkpoint Lightning saves.

    Examples
    --------
    >>> trainer = L.Trainer(callbacks=[LightningCallback(monitor)])  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        model: Callable[[Any], Any] | None = None,
        on_save: bool = True,
    ) -> None:
        if not isinstance(monitor, Monitor):
            msg = f"LightningCallback needs a grokviz.monitor.Monitor, got {type(monitor).__name__}"
            raise InputError(msg)
        self.monitor = monitor
        self._get_model = model
        self.on_save_checkpoints = on_save
        self._model: Any = None
        self._last: int | None = None

    def _target(self, pl_module: Any) -> Any:
        if self._model is None:
            if self._get_model is not None:
                self._model = self._get_model(pl_module)
            else:
                self._model = _find_moe(pl_module)
        return self._model

    def _observe(self, trainer: Any, pl_module: Any, *, force: bool) -> None:
        step = int(trainer.global_step)
        if not trainer.is_global_zero or step == self._last:
            return
        if not force and not self.monitor.due(step):
            return
        scalars = self.monitor.observe(self._target(pl_module), step, force=force)
        if scalars is None:
            return
        self._last = step
        for logger in trainer.loggers:
            logger.log_metrics(dict(scalars), step=step)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from grokviz.tracing import moe_info

        moe_info(self._target(pl_module))  # fails now, not at the first due step
        self._observe(trainer, pl_module, force=False)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._observe(trainer, pl_module, force=False)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Any) -> None:
        if self.on_save_checkpoints and trainer.state.fn == "fit":
            self._observe(trainer, pl_module, force=True)
