"""grokviz: see memorization turn into generalization inside Mixture-of-Experts language models.

The packages follow the data: :mod:`grokviz.tracing` (checkpoints -> losses and routing;
:func:`trace` fills a :class:`TraceStore`) -> :mod:`grokviz.store` -> :mod:`grokviz.pathways` ->
:mod:`grokviz.metrics` -> :mod:`grokviz.widgets`. The top-level API is small and imported lazily, so ``import grokviz``
stays fast: torch, transformers and the widget stack load only when first used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from grokviz._lazy import lazy_exports

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Checkpoint": "grokviz.tracing",
    "list_checkpoints": "grokviz.tracing",
    "load_model": "grokviz.tracing",
    "iter_trace": "grokviz.tracing",
    "trace": "grokviz.tracing",
    "TraceStore": "grokviz.store",
    "analyze": "grokviz.metrics",
    "validate": "grokviz.metrics",
}

__all__ = [
    "Checkpoint",
    "TraceStore",
    "__version__",
    "analyze",
    "iter_trace",
    "list_checkpoints",
    "load_model",
    "trace",
    "validate",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.metrics.analyze import analyze
    from grokviz.metrics.validate import validate
    from grokviz.store import TraceStore
    from grokviz.tracing import Checkpoint, iter_trace, list_checkpoints, load_model, trace


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
