"""The arithmetic toy: a tiny OLMoE that memorizes modular arithmetic first and generalizes later.

One data group per operation (``add``, ``sub``, ``mul``, ``div``) and a control group whose
answers are a fixed random table (``random``): it can be memorized and never generalizes.

- :mod:`~grokviz.toy.arithmetic.tasks`: the equations, their groups and the tokenizer;
- :mod:`~grokviz.toy.arithmetic.train`: the config (:class:`ToyConfig`, :data:`PRESETS`) and
  the trainer (:func:`train`), which writes a run folder;
- :mod:`~grokviz.toy.arithmetic.report`: the analysis of a traced run and its Markdown report.

Importing this package does not import torch.
"""

from __future__ import annotations

from grokviz.toy.arithmetic.analysis import analyze_run
from grokviz.toy.arithmetic.report import write_report
from grokviz.toy.arithmetic.tasks import OPERATIONS, make_samples, make_tokenizer
from grokviz.toy.arithmetic.train import (
    PRESETS,
    ToyConfig,
    ToyRun,
    train,
    with_steps,
)
from grokviz.toy.shared.loop import with_overrides

__all__ = [
    "OPERATIONS",
    "PRESETS",
    "ToyConfig",
    "ToyRun",
    "analyze_run",
    "make_samples",
    "make_tokenizer",
    "train",
    "with_overrides",
    "with_steps",
    "write_report",
]
