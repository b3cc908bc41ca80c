"""The monitor in a ``transformers`` :class:`~transformers.Trainer` run.

:class:`TransformersCallback` observes the model after every ``monitor.every`` optimizer steps
(and at each checkpoint save) and hands the metrics to ``trainer.log``, which passes them to
every reporter the Trainer was configured with (``report_to``: TensorBoard, W&B, MLflow, ...)
and to ``trainer.state.log_history``. A callback is not given the Trainer, so this one is built
with it::

    trainer = Trainer(model=model, args=args, train_dataset=train)
    trainer.add_callback(TransformersCallback(monitor, trainer))
    trainer.train()

Only the main process observes; the others train on undisturbed.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from grokviz.errors import InputError
from grokviz.monitor._monitor import Monitor

__all__ = ["TransformersCallback"]


class TransformersCallback(TrainerCallback):
    """A :class:`transformers.TrainerCallback` that runs a :class:`~grokviz.monitor.Monitor`.

    Parameters
    ----------
    monitor
        The monitor (its ``every`` sets the frequency, its store receives the observations).
    trainer
        The :class:`~transformers.Trainer` it is added to: its ``log`` delivers the metrics.
    on_save
        Also observe at every checkpoint the Trainer saves.

    Examples
    --------
    >>> trainer.add_callback(TransformersCallback(monitor, trainer))  # doctest: +SKIP
    """

    def __init__(self, monitor: Monitor, trainer: Any, *, on_save: bool = True) -> None:
        if not isinstance(monitor, Monitor):
            msg = f"TransformersCallback needs a grokviz.monitor.Monitor, got {type(monitor).__name__}"
            raise InputError(msg)
        if not callable(getattr(trainer, "log", None)):
            msg = (
                f"TransformersCallback needs the transformers Trainer it is added to, got "
                f"{type(trainer).__name__}: trainer.add_callback(TransformersCallback(monitor, trainer))"
            )
            raise InputError(msg)
        self.monitor = monitor
        self.trainer = trainer
        self.on_save_checkpoints = on_save
        self._last: int | None = None

    def _observe(self, state: Any, model: Any, *, force: bool) -> None:
        step = int(state.global_step)
        if not state.is_world_process_zero or step == self._last:
            return
        tokens = getattr(state, "num_input_tokens_seen", None) or None
        scalars = self.monitor.observe(model, step, force=force, tokens=tokens)
        if scalars is None:
            return
        self._last = step
        self.trainer.log(dict(scalars))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from grokviz.tracing import moe_info

        model = kwargs.get("model")
        moe_info(model)  # a model without reachable routers fails now, not at the first step
        self._observe(state, model, force=False)  # step 0, or where a resumed run starts

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._observe(state, kwargs.get("model"), force=False)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.on_save_checkpoints:
            self._observe(state, kwargs.get("model"), force=True)
