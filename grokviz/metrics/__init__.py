"""Pathway metrics, grokking onsets and the statistics that validate them.

``analyze(store)`` is the one call: it turns a trace store into the ``metrics`` table (distance,
consistency, complexity, loss, entropy per checkpoint and group). The pieces are public too:

- :mod:`~grokviz.metrics.distance`: pathway edit distances (torch and rapidfuzz backends);
- :mod:`~grokviz.metrics.consistency`: pathway consistency / complexity and routing entropy;
- :mod:`~grokviz.metrics.onsets`: memorization and generalization onsets and groups;
- :mod:`~grokviz.metrics.pairing`: pairing training with test groups, the grokking delay;
- :mod:`~grokviz.metrics.stats`: correlation with accuracy, fits, bootstrap and null bands;
- :mod:`~grokviz.metrics.controls`: the controls that tell a metric tracking generalization from
  one drifting with training time (partial correlation given log step, timing of each group's
  change, bootstrap intervals over checkpoints and samples);
- :mod:`~grokviz.metrics.baselines`: a length-matched permutation null for distance and the
  uniform-weight baseline of consistency;
- :mod:`~grokviz.metrics.validate`: all controls in one report, :func:`validate`.

``import grokviz.metrics`` does not import torch; the functions load it when called.
"""

from __future__ import annotations

# Eager on purpose: `analyze` and `consistency` are both a submodule and a function, and binding
# the functions here at import time keeps `grokviz.metrics.consistency` the function whatever is
# imported later. These modules import only numpy and polars at the top; torch, scipy and
# sentence-transformers load inside the functions that need them.
from grokviz.metrics.analyze import analyze
from grokviz.metrics.baselines import null_distances, null_pathways, uniform_consistency
from grokviz.metrics.consistency import complexity, consistency, routing_entropy
from grokviz.metrics.controls import (
    correlation_intervals,
    cross_partial,
    half_step,
    partial_correlation,
    rise_step,
    timing,
)
from grokviz.metrics.onsets import (
    MemorizationSummary,
    generalization_onsets,
    memorization_onsets,
    memorization_summary,
)
from grokviz.metrics.pairing import embed_texts, group_similarity, pair_groups
from grokviz.metrics.stats import bootstrap_mean, correlate, fit_stats, null_band, shuffle_routing
from grokviz.metrics.validate import Validation, validate

__all__ = [
    "MemorizationSummary",
    "Validation",
    "analyze",
    "bootstrap_mean",
    "complexity",
    "consistency",
    "correlate",
    "correlation_intervals",
    "cross_partial",
    "embed_texts",
    "fit_stats",
    "generalization_onsets",
    "group_similarity",
    "half_step",
    "memorization_onsets",
    "memorization_summary",
    "null_band",
    "null_distances",
    "null_pathways",
    "pair_groups",
    "partial_correlation",
    "rise_step",
    "routing_entropy",
    "shuffle_routing",
    "timing",
    "uniform_consistency",
    "validate",
]
