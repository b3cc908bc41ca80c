"""Pathway metrics, grokking onsets and the statistics that validate them.

``analyze(store)`` is the one call: it turns a trace store into the ``metrics`` table (distance,
consistency, complexity, loss, entropy per checkpoint and group). The pieces are public too:

- :mod:`~grokviz.metrics.distance`: pathway edit distances (torch and rapidfuzz backends);
- :mod:`~grokviz.metrics.consistency`: pathway consistency / complexity and routing entropy;
- :mod:`~grokviz.metrics.onsets`: memorization and generalization onsets and groups;
- :mod:`~grokviz.metrics.pairing`: pairing training with test groups, the grokking delay;
- :mod:`~grokviz.metrics.stats`: correlation with accuracy, fits, bootstrap and null bands.

``import grokviz.metrics`` does not import torch; the functions load it when called.
"""

from __future__ import annotations

# Eager on purpose: `analyze` and `consistency` are both a submodule and a function, and binding
# the functions here at import time keeps `grokviz.metrics.consistency` the function whatever is
# imported later. These modules import only numpy and polars at the top; torch, scipy and
# sentence-transformers load inside the functions that need them.
from grokviz.metrics.analyze import analyze
from grokviz.metrics.consistency import complexity, consistency, routing_entropy
from grokviz.metrics.onsets import generalization_onsets, memorization_onsets
from grokviz.metrics.pairing import embed_texts, group_similarity, pair_groups
from grokviz.metrics.stats import bootstrap_mean, correlate, fit_stats, null_band, shuffle_routing

__all__ = [
    "analyze",
    "bootstrap_mean",
    "complexity",
    "consistency",
    "correlate",
    "embed_texts",
    "fit_stats",
    "generalization_onsets",
    "group_similarity",
    "memorization_onsets",
    "null_band",
    "pair_groups",
    "routing_entropy",
    "shuffle_routing",
]
