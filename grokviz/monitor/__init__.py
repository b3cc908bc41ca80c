"""Monitor generalization while a model trains, from training data alone.

Add a :class:`Monitor` to a training run: every ``every`` optimizer steps it runs a fixed probe
set of training samples through the model (eval mode, no gradients, then everything put back,
so training is bit-identical with and without it), records the routing and losses in a trace
store as one checkpoint per observation, and keeps the pathway metrics up to date:

- a plain loop: ``scalars = monitor.observe(model, step)`` after each optimizer step;
- ``transformers``: ``trainer.add_callback(TransformersCallback(monitor, trainer))``; the metrics
  reach every ``report_to`` reporter;
- Lightning: ``L.Trainer(callbacks=[LightningCallback(monitor)])``; the metrics reach every
  Lightning logger;
- checkpoints another job writes: ``grokviz watch CHECKPOINT_DIR --samples S --out STORE``
  (:func:`watch`).

The pieces: :func:`probe_set` (training samples only, stratified by domain),
:class:`OnlineCriterion` (which samples count as memorized *now*, the paper's criterion with the
latest observation standing in for the final checkpoint), :class:`LiveMetrics` (follows any
store, also one another process writes, for views and loggers), :class:`Observation` and
:class:`LiveView` (a Timeline and a PathwayDiagram that grow in place as observations arrive,
from this kernel's training loop or from another process).
After the run, ``grokviz.analyze(monitor.store)`` applies the paper's own criterion.

``import grokviz.monitor`` imports neither torch, transformers nor Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grokviz._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DEFAULT_EVERY": "grokviz.monitor._monitor",
    "DEFAULT_PER_DOMAIN": "grokviz.monitor._probe",
    "LightningCallback": "grokviz.monitor._lightning",
    "LiveMetrics": "grokviz.monitor._live",
    "LiveView": "grokviz.monitor._live_view",
    "Monitor": "grokviz.monitor._monitor",
    "Observation": "grokviz.monitor._live",
    "OnlineCriterion": "grokviz.monitor._online",
    "TransformersCallback": "grokviz.monitor._transformers",
    "Watcher": "grokviz.monitor._watch",
    "probe_set": "grokviz.monitor._probe",
    "watch": "grokviz.monitor._watch",
}

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_PER_DOMAIN",
    "LightningCallback",
    "LiveMetrics",
    "LiveView",
    "Monitor",
    "Observation",
    "OnlineCriterion",
    "TransformersCallback",
    "Watcher",
    "probe_set",
    "watch",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.monitor._lightning import LightningCallback
    from grokviz.monitor._live import LiveMetrics, Observation
    from grokviz.monitor._live_view import LiveView
    from grokviz.monitor._monitor import DEFAULT_EVERY, Monitor
    from grokviz.monitor._online import OnlineCriterion
    from grokviz.monitor._probe import DEFAULT_PER_DOMAIN, probe_set
    from grokviz.monitor._transformers import TransformersCallback
    from grokviz.monitor._watch import Watcher, watch

__getattr__, __dir__ = lazy_exports(
    __name__,
    _EXPORTS,
    extras={"lightning": "monitor", "pytorch_lightning": "monitor"},
)
