"""grokviz: see memorization turn into generalization inside Mixture-of-Experts language models.

The modules follow the data: :mod:`grokviz.checkpoints` -> :mod:`grokviz.trace` (whose
``trace()`` fills a :class:`TraceStore`) -> :mod:`grokviz.pathways` -> :mod:`grokviz.metrics` ->
:mod:`grokviz.widgets`. The top-level API is small and imported lazily, so ``import grokviz``
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
    "Checkpoint": "grokviz.checkpoints",
    "list_checkpoints": "grokviz.checkpoints",
    "load_model": "grokviz.checkpoints",
    "iter_trace": "grokviz.trace",
    "TraceStore": "grokviz.store",
    "analyze": "grokviz.metrics",
}

__all__ = [
    "Checkpoint",
    "TraceStore",
    "__version__",
    "analyze",
    "iter_trace",
    "list_checkpoints",
    "load_model",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.checkpoints import Checkpoint, list_checkpoints, load_model
    from grokviz.metrics.analyze import analyze
    from grokviz.store import TraceStore
    from grokviz.trace import iter_trace


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
