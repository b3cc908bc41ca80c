"""Tiny OLMoE-architecture runs on modular arithmetic that memorize first and generalize later.

A newcomer without a GPU or the model hub sees grokking in minutes::

    python -m grokviz.toy train --out runs/toy     # checkpoints + accuracy tables (or grokviz.toy.train.train)
    python -m grokviz.toy trace --run runs/toy     # routing + losses into runs/toy/trace
    python -m grokviz.toy report --run runs/toy    # docs/toy_results.md

The shipped run lives in ``data/samples/toy``. Modules: :mod:`~grokviz.toy.tasks` (equations,
tokenizer), :mod:`~grokviz.toy.model` (configs, checkpoints), :mod:`~grokviz.toy.train` (the
trainer), :mod:`~grokviz.toy.report` (tracing and the written result).

A second toy is closer to the paper's setting: one pass of pretraining over a generated
multi-domain corpus (``python -m grokviz.toy lm --out runs/lm``): :mod:`~grokviz.toy.corpus`
(documents and test tasks), :mod:`~grokviz.toy.lm` (the one-pass trainer),
:mod:`~grokviz.toy.lm_report` (its written result). Both trainers share
:mod:`~grokviz.toy._loop`. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grokviz._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "OPERATIONS": "grokviz.toy.tasks",
    "make_samples": "grokviz.toy.tasks",
    "make_tokenizer": "grokviz.toy.tasks",
    "ModelSpec": "grokviz.toy.model",
    "load_checkpoint": "grokviz.toy.model",
    "PRESETS": "grokviz.toy.train",
    "ToyConfig": "grokviz.toy.train",
    "ToyRun": "grokviz.toy.train",
    "trace_run": "grokviz.toy.report",
    "write_report": "grokviz.toy.report",
    "make_corpus": "grokviz.toy.corpus",
    "LMConfig": "grokviz.toy.lm",
    "LMRun": "grokviz.toy.lm",
    "train_lm": "grokviz.toy.lm",
    "trace_lm": "grokviz.toy.lm",
    "write_lm_report": "grokviz.toy.lm_report",
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
    "trace_lm",
    "trace_run",
    "train_lm",
    "write_lm_report",
    "write_report",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.toy.corpus import make_corpus
    from grokviz.toy.lm import LMConfig, LMRun, trace_lm, train_lm
    from grokviz.toy.lm_report import write_lm_report
    from grokviz.toy.model import ModelSpec, load_checkpoint
    from grokviz.toy.report import trace_run, write_report
    from grokviz.toy.tasks import OPERATIONS, make_samples, make_tokenizer
    from grokviz.toy.train import PRESETS, ToyConfig, ToyRun


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
