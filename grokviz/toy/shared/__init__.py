"""What both toys share: the model and its checkpoints, the training loop and run folder, the
word-level tokenizer, tracing a run, and the pieces of the Markdown reports.

- :mod:`~grokviz.toy.shared.model`: :class:`ModelSpec`, the ``OlmoeConfig`` it builds, saving and
  loading checkpoints;
- :mod:`~grokviz.toy.shared.loop`: the training loop both trainers run, and :class:`Run`, an
  opened run folder;
- :mod:`~grokviz.toy.shared.tokenizer`: the word-level tokenizer;
- :mod:`~grokviz.toy.shared.tracing`: tracing an opened run into a trace store;
- :mod:`~grokviz.toy.shared.curves` and :mod:`~grokviz.toy.shared.markdown`: reading a run's
  curves and writing the reports' tables.
"""

from __future__ import annotations

from grokviz.toy.shared.loop import Run, run_kind
from grokviz.toy.shared.model import ModelSpec, load_checkpoint

__all__ = ["ModelSpec", "Run", "load_checkpoint", "run_kind"]
