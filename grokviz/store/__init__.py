"""The trace store: a folder of Parquet parts and a manifest that a trace fills and analysis reads.

:class:`TraceStore` opens and reads one; :func:`grokviz.trace` creates and fills them.
"""

from __future__ import annotations

from grokviz.store._format import check_samples
from grokviz.store._reader import TraceStore

__all__ = ["TraceStore", "check_samples"]
