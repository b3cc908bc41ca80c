"""The probe set: a fixed sample of the training data, the same at every observation.

The paper's metrics need no test data: they are computed on training samples. A monitor runs the
same probe set through the model at every observation, so its losses and pathways form a series
over training. :func:`probe_set` draws it from a samples table, stratified by domain (each domain
keeps its own series), with a seed, so a resumed run draws the same probe again.

Only training samples may be probed: a row whose ``split`` is ``test`` or ``val`` is refused,
because a monitor that looked at test data would no longer be a test-free signal.

Examples
--------
>>> from grokviz.testing import tiny_samples
>>> probe = probe_set(tiny_samples(12, domains=("a", "b")), per_domain=4)
>>> probe.group_by("domain").len().sort("domain").rows()
[('a', 4), ('b', 4)]
"""

from __future__ import annotations

import hashlib

import polars as pl

from grokviz.errors import InputError
from grokviz.store import check_samples

__all__ = ["DEFAULT_PER_DOMAIN", "probe_set"]

DEFAULT_PER_DOMAIN = 32
"""Probe samples per domain by default: enough for a mean pairwise distance over 496 pairs and
a memorized fraction in steps of 3 %, small enough that an observation costs a few forward
passes (see ``benchmarks/monitor_overhead.py``)."""


def probe_set(
    samples: object,
    *,
    per_domain: int | None = DEFAULT_PER_DOMAIN,
    seed: int = 0,
) -> pl.DataFrame:
    """Draw the probe set: up to ``per_domain`` training samples of each domain.

    Parameters
    ----------
    samples
        A ``schema.SAMPLES`` table (polars, pandas or pyarrow) of training samples; a ``split``
        other than ``train`` is refused. Extra columns (such as ``control``) are kept.
    per_domain
        Samples per domain; a domain with fewer keeps all of its samples. ``None`` keeps
        every sample.
    seed
        Which samples are drawn; the same seed and table give the same probe set.

    Returns
    -------
    pl.DataFrame
        The probe samples, in the order of ``samples``.

    Raises
    ------
    InputError
        Some samples are not training samples, or ``per_domain`` is below 2 (a pairwise
        distance needs two samples).

    Examples
    --------
    >>> from grokviz.testing import tiny_samples
    >>> probe_set(tiny_samples(5), per_domain=None).height
    5
    """
    frame = check_samples(samples)
    other = frame.filter(pl.col("split") != "train")
    if other.height:
        splits = sorted(set(other["split"].to_list()))
        msg = (
            f"{other.height} probe sample(s) are not training samples (split {splits}, e.g. "
            f"{other['sample_id'][0]!r}); the monitor watches generalization without test data, "
            'so give it training samples only, e.g. samples.filter(pl.col("split") == "train")'
        )
        raise InputError(msg)
    if per_domain is None:
        return frame
    if per_domain < 2:
        msg = f"per_domain must be at least 2 (a pathway distance needs two samples), got {per_domain}"
        raise InputError(msg)
    # Order each domain by a seeded SHA-256 of the sample id (not polars' hash, which may change
    # between versions), so the draw depends neither on the table's order nor on the library,
    # and a sample added later does not change which others are drawn.
    keys = [hashlib.sha256(f"{seed}\x1f{sid}".encode()).hexdigest() for sid in frame["sample_id"]]
    indexed = frame.with_row_index("_row").with_columns(_key=pl.Series(keys, dtype=pl.String()))
    chosen = (
        indexed.sort("_key")
        .group_by("domain", maintain_order=True)
        .head(per_domain)
        .sort("_row")
        .drop("_row", "_key")
    )
    return chosen
