"""The LM toy: one pass of pretraining a tiny OLMoE on a generated multi-domain corpus.

Closer to the paper's setting than the arithmetic toy: every training document is seen once.

- :mod:`~grokviz.toy.lm.corpus`: the documents of each domain and their held-out test tasks;
- :mod:`~grokviz.toy.lm.train`: the config (:class:`LMConfig`, :data:`PRESETS`) and the
  one-pass trainer (:func:`train_lm`), which writes a run folder;
- :mod:`~grokviz.toy.lm.analysis`, :mod:`~grokviz.toy.lm.controls` and
  :mod:`~grokviz.toy.lm.report`: the analysis of a traced run with its controls, what they show
  in words, and its Markdown report.

Importing this package does not import torch.
"""

from __future__ import annotations

from grokviz.toy.lm.analysis import analyze_lm
from grokviz.toy.lm.corpus import DOMAINS, make_corpus
from grokviz.toy.lm.report import write_lm_report
from grokviz.toy.lm.train import PRESETS, LMConfig, LMRun, train_lm

__all__ = [
    "DOMAINS",
    "PRESETS",
    "LMConfig",
    "LMRun",
    "analyze_lm",
    "make_corpus",
    "train_lm",
    "write_lm_report",
]
