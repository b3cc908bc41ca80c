"""Two toys that grok on a CPU, with the paper's routing regime, and what they share.

A newcomer without a GPU or the model hub sees memorization turn into generalization in minutes::

    python -m grokviz.toy train --out runs/toy                  # the arithmetic toy (shipped)
    python -m grokviz.toy trace --run runs/toy                  # routing + losses -> runs/toy/trace
    python -m grokviz.toy report --run runs/toy                 # docs/toy_results.md
    python -m grokviz.toy train --toy lm --out runs/lm --report docs/toy_lm.md

- :mod:`grokviz.toy.arithmetic`: modular arithmetic, one group per operation plus a
  random-answer control group; the run shipped in ``data/samples/toy``;
- :mod:`grokviz.toy.lm`: one-pass pretraining on a generated multi-domain corpus, with
  random-answer documents as its control;
- :mod:`grokviz.toy.shared`: the model, training loop, tokenizer, tracing and report pieces
  both use; :mod:`grokviz.toy.runs` opens, traces and reports a run folder of either kind.

Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grokviz._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "OPERATIONS": "grokviz.toy.arithmetic.tasks",
    "make_samples": "grokviz.toy.arithmetic.tasks",
    "make_tokenizer": "grokviz.toy.arithmetic.tasks",
    "PRESETS": "grokviz.toy.arithmetic.train",
    "ToyConfig": "grokviz.toy.arithmetic.train",
    "ToyRun": "grokviz.toy.arithmetic.train",
    "train": "grokviz.toy.arithmetic.train",
    "write_report": "grokviz.toy.arithmetic.report",
    "make_corpus": "grokviz.toy.lm.corpus",
    "LMConfig": "grokviz.toy.lm.train",
    "LMRun": "grokviz.toy.lm.train",
    "train_lm": "grokviz.toy.lm.train",
    "write_lm_report": "grokviz.toy.lm.report",
    "ModelSpec": "grokviz.toy.shared.model",
    "load_checkpoint": "grokviz.toy.shared.model",
    "open_run": "grokviz.toy.runs",
    "trace_run": "grokviz.toy.runs",
    "write_run_report": "grokviz.toy.runs",
}

__all__ = [
    "OPERATIONS",
    "PRESETS",
    "LMConfig",
    "LMRun",
    "ModelSpec",
    "ToyConfig",
    "ToyRun",
    "load_checkpoint",
    "make_corpus",
    "make_samples",
    "make_tokenizer",
    "open_run",
    "trace_run",
    "train",
    "train_lm",
    "write_lm_report",
    "write_report",
    "write_run_report",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.toy.arithmetic.report import write_report
    from grokviz.toy.arithmetic.tasks import OPERATIONS, make_samples, make_tokenizer
    from grokviz.toy.arithmetic.train import PRESETS, ToyConfig, ToyRun, train
    from grokviz.toy.lm.corpus import make_corpus
    from grokviz.toy.lm.report import write_lm_report
    from grokviz.toy.lm.train import LMConfig, LMRun, train_lm
    from grokviz.toy.runs import open_run, trace_run, write_run_report
    from grokviz.toy.shared.model import ModelSpec, load_checkpoint


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
