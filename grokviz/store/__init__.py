"""The trace store: a folder of Parquet parts and a manifest that tracers fill and analysis reads.

- :class:`TraceStore` opens a store and reads its tables and arrays;
- :class:`StoreWriter` writes one, safely beside other writers (:func:`grokviz.trace`, the
  training monitor and Ray workers all write through it);
- :meth:`TraceStore.verify` checks every file and returns a :class:`VerifyReport` of
  :class:`Problem` s; :func:`grokviz.tracing.repair` recomputes what it found;
- :func:`as_store` is the one way in for routing data: a store's folder or the store itself
  gives a :class:`TraceStore`, a frame stays a frame.

The layout on disk is drawn in :mod:`grokviz.store._format`.
"""

from __future__ import annotations

from grokviz.store._format import check_samples
from grokviz.store._reader import TraceStore, as_store
from grokviz.store._verify import Problem, VerifyReport
from grokviz.store._writer import StoreWriter

__all__ = ["Problem", "StoreWriter", "TraceStore", "VerifyReport", "as_store", "check_samples"]
