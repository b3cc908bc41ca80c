"""When each sample is memorized (training) or generalized (test): grokking onsets (DESIGN.md §1).

Memorization onset ``t*_i`` of a training sample: the earliest checkpoint from which, at every
later checkpoint ``t`` too, its loss is at most ``eps`` and within ``delta`` of its loss at the last
checkpoint ``T``. Generalization onset ``t#_j`` of a test sample: the earliest checkpoint from which
it stays (almost always) correct. Samples sharing an onset form a group, ``"Pretrain@<step>"`` or
``"Test@<step>"``; pairing those groups gives the grokking delay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, InputError

__all__ = [
    "MemorizationSummary",
    "generalization_onsets",
    "group_steps",
    "memorization_onsets",
    "memorization_suffix",
    "memorization_summary",
]

_ONSET_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "domain": pl.String(),
    "eps": pl.Float64(),
    "onset_step": pl.Int64(),
    "onset_checkpoint": pl.String(),
    "group": pl.String(),
}
# How each domain's eps came about: given by the user, calibrated into the target range, or the
# closest grid value to a target no grid value reaches.
_EPS_SOURCE: dict[str, pl.DataType] = {"eps_source": pl.String(), "before_last": pl.Boolean()}


def _wide(
    frame: pl.DataFrame, value: str, *, name: str
) -> tuple[np.ndarray, list[str], list[str], list[int]]:
    """Pivot ``frame`` to ``[samples, checkpoints]`` in step order; missing cells are NaN."""
    if frame.height == 0:
        msg = f"the {name} table is empty; trace or evaluate at least one checkpoint first"
        raise EmptyInputError(msg)
    ckpts = frame.select("checkpoint", "step").unique().sort("step", "checkpoint")
    dup = ckpts.group_by("checkpoint").len().filter(pl.col("len") > 1)
    if dup.height:
        msg = (
            f"checkpoint label(s) {dup['checkpoint'].to_list()} appear with several steps in the "
            f"{name} table; give each checkpoint one step"
        )
        raise InputError(msg)
    labels = ckpts["checkpoint"].to_list()
    steps = ckpts["step"].to_list()
    ids = frame["sample_id"].unique(maintain_order=True).sort().to_list()
    col = {c: j for j, c in enumerate(labels)}
    row = {s: i for i, s in enumerate(ids)}
    out = np.full((len(ids), len(labels)), np.nan)
    r = np.fromiter((row[s] for s in frame["sample_id"]), dtype=np.int64, count=frame.height)
    c = np.fromiter((col[s] for s in frame["checkpoint"]), dtype=np.int64, count=frame.height)
    out[r, c] = frame[value].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return out, ids, labels, steps


def _suffix_all(ok: np.ndarray) -> np.ndarray:
    """``out[i, t]`` is True when ``ok[i, t:]`` are all True."""
    return np.flip(np.logical_and.accumulate(np.flip(ok, axis=1), axis=1), axis=1)


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True per row, -1 where none."""
    first = mask.argmax(axis=1)
    return np.where(mask.any(axis=1), first, -1)


def memorization_suffix(losses: np.ndarray, *, eps: float, delta: float = 0.05) -> np.ndarray:
    """Memorization onset index per sample from a ``[samples, checkpoints]`` loss matrix.

    Parameters
    ----------
    losses
        Losses in checkpoint (step) order; NaN (not traced) never counts as memorized.
    eps, delta
        Loss ceiling and allowed distance from the last checkpoint's loss.

    Returns
    -------
    Integer array: the index of the onset checkpoint, or -1 when never memorized.

    Examples
    --------
    >>> import numpy as np
    >>> memorization_suffix(np.array([[3.0, 1.0, 0.5, 0.52], [3.0, 2.0, 2.0, 2.0]]), eps=1.0)
    array([ 2, -1])
    """
    losses = np.asarray(losses, dtype=np.float64)
    last = losses[:, -1:]
    with np.errstate(invalid="ignore"):
        ok = (losses <= eps) & (np.abs(losses - last) <= delta)
    return _first_true(_suffix_all(ok))


def _choose_eps(
    losses: np.ndarray, *, delta: float, target: tuple[float, float], grid_step: float
) -> tuple[float, bool]:
    """Smallest grid eps whose memorized-before-T fraction lies in ``target``, and True; else
    the closest one and False (ties keep the smaller eps)."""
    lo, hi = target
    n_ckpt = losses.shape[1]
    finite = losses[np.isfinite(losses)]
    top = float(finite.max()) if finite.size else grid_step
    n_grid = max(1, math.ceil(top / grid_step) + 1)
    best_eps, best_gap = grid_step, math.inf
    for k in range(1, n_grid + 1):
        eps = round(k * grid_step, 10)
        onset = memorization_suffix(losses, eps=eps, delta=delta)
        frac = float(np.mean((onset >= 0) & (onset < n_ckpt - 1)))
        if lo <= frac <= hi:
            return eps, True
        gap = lo - frac if frac < lo else frac - hi
        if gap < best_gap:  # strict: ties keep the smaller eps
            best_eps, best_gap = eps, gap
    return best_eps, False


def memorization_onsets(
    losses: pl.DataFrame,
    samples: pl.DataFrame | None = None,
    *,
    eps: float | dict[str, float] | None = None,
    delta: float = 0.05,
    target: tuple[float, float] = (0.20, 0.25),
    grid_step: float = 0.1,
    split: str | None = "train",
) -> pl.DataFrame:
    """Memorization onset of every training sample, and its group ``"Pretrain@<step>"``.

    Sample ``i`` is memorized from checkpoint ``t*`` when at ``t*`` and every later checkpoint its
    loss is ``<= eps`` and within ``delta`` of its loss at the last checkpoint ``T``. A sample not
    traced at some checkpoint does not count as memorized there.

    Parameters
    ----------
    losses
        A losses table (:data:`grokviz.schema.LOSSES`).
    samples
        A samples table (:data:`grokviz.schema.SAMPLES`) giving each sample's domain (and split).
        Without it every sample is in domain ``"all"``.
    eps
        Loss ceiling; a float, a ``{domain: eps}`` dict, or None to choose it per domain: the
        smallest multiple of ``grid_step`` for which the fraction of the domain's samples
        memorized *before* ``T`` (onset earlier than the last checkpoint) lies in ``target``.
        When none does, the closest is used; the ``eps_source`` column says so, and
        :func:`memorization_summary` shows it.
    delta
        Allowed distance from the final loss (paper: 0.05).
    target
        Fraction range for the automatic eps (paper: 20-25%).
    grid_step
        Step of the eps search (paper: 0.1).
    split
        Keep only samples of this split when ``samples`` has a ``split`` column; None keeps all.

    Returns
    -------
    pl.DataFrame
        One row per sample: ``sample_id, domain, eps, onset_step, onset_checkpoint, group,
        eps_source, before_last``; ``onset_*`` and ``group`` are null for samples never
        memorized. ``eps_source`` is ``"given"``, ``"calibrated"`` (in the target range) or
        ``"closest"`` (no grid value reaches the target; the closest one is used);
        ``before_last`` is True for samples memorized before the last checkpoint, the ones
        the paper analyzes.

    Examples
    --------
    >>> import polars as pl
    >>> losses = pl.DataFrame({
    ...     "checkpoint": ["a", "b", "c"] * 2, "step": [1, 2, 3] * 2,
    ...     "sample_id": ["x"] * 3 + ["y"] * 3, "loss": [2.0, 0.3, 0.31, 2.0, 2.0, 0.2],
    ...     "n_tokens": [5] * 6})
    >>> memorization_onsets(losses, eps=0.5)["group"].to_list()
    ['Pretrain@2', 'Pretrain@3']
    """
    losses = schema.conform(losses, schema.LOSSES, name="losses")
    domains = _domains(losses["sample_id"], samples, split=split)
    losses = losses.filter(pl.col("sample_id").is_in(domains["sample_id"].implode()))
    if losses.height == 0:
        msg = f"no losses of {split!r} samples; pass split=None to use every sample"
        raise EmptyInputError(msg)
    if delta < 0:
        msg = f"delta must be >= 0, got {delta}"
        raise InputError(msg)
    matrix, ids, labels, steps = _wide(losses, "loss", name="losses")
    dom_of = dict(zip(domains["sample_id"], domains["domain"], strict=True))
    dom = np.array([dom_of[s] for s in ids], dtype=object)

    parts = []
    for d in sorted(set(dom.tolist())):
        rows = np.flatnonzero(dom == d)
        sub = matrix[rows]
        if isinstance(eps, dict):
            if d not in eps:
                msg = f"eps has no value for domain {d!r}; it has {sorted(eps)}"
                raise KeyError(msg)
            e, source = float(eps[d]), "given"
        elif eps is None:
            e, met = _choose_eps(sub, delta=delta, target=target, grid_step=grid_step)
            source = "calibrated" if met else "closest"
        else:
            e, source = float(eps), "given"
        onset = memorization_suffix(sub, eps=e, delta=delta)
        step = [steps[j] if j >= 0 else None for j in onset]
        parts.append(
            pl.DataFrame(
                {
                    "sample_id": [ids[i] for i in rows],
                    "domain": [d] * len(rows),
                    "eps": [e] * len(rows),
                    "onset_step": step,
                    "onset_checkpoint": [labels[j] if j >= 0 else None for j in onset],
                    "group": [f"Pretrain@{s}" if s is not None else None for s in step],
                    "eps_source": [source] * len(rows),
                    "before_last": [0 <= j < len(steps) - 1 for j in onset],
                },
                schema=_ONSET_SCHEMA | _EPS_SOURCE,
            )
        )
    return pl.concat(parts).sort("domain", "sample_id")


def _domains(ids: pl.Series, samples: pl.DataFrame | None, *, split: str | None) -> pl.DataFrame:
    """``sample_id, domain`` of the samples to keep."""
    if samples is None:
        return pl.DataFrame({"sample_id": ids.unique().sort(), "domain": "all"})
    samples = pl.DataFrame(samples) if not isinstance(samples, pl.DataFrame) else samples
    for col in ("sample_id", "domain"):
        if col not in samples.columns:
            msg = f"the samples table lacks column {col!r}; it has {samples.columns}"
            raise InputError(msg)
    if split is not None and "split" in samples.columns:
        samples = samples.filter(pl.col("split") == split)
    out = samples.select(pl.col("sample_id").cast(pl.String), pl.col("domain").cast(pl.String))
    return out.with_columns(pl.col("domain").fill_null("all"))


def generalization_onsets(
    sample_accuracy: pl.DataFrame,
    samples: pl.DataFrame | None = None,
    *,
    min_accuracy: float = 0.8,
    max_errors: int = 1,
    split: str | None = "test",
) -> pl.DataFrame:
    """Generalization onset of every test sample, and its group ``"Test@<step>"``.

    The onset is the earliest checkpoint ``t`` such that, over the window of ``t`` and every later
    checkpoint: the sample is correct at ``t`` itself, its mean accuracy is strictly above
    ``min_accuracy``, and it has at most ``max_errors`` errors. A checkpoint where the sample was
    not evaluated (no row, or a null) counts as an error. So with the defaults a window of one
    or two checkpoints must be all correct, and a single error is tolerated only in a window of six
    or more (5/6 > 0.8). An onset at the last checkpoint (correct there only) is reported too;
    filter on ``onset_step`` to keep samples that generalized earlier.

    Parameters
    ----------
    sample_accuracy
        A per-sample accuracy table (:data:`grokviz.schema.SAMPLE_ACCURACY`).
    samples
        Optional samples table giving the domain (and split) of each sample.
    min_accuracy
        Mean accuracy the window must exceed (paper: 0.8).
    max_errors
        Errors allowed in the window (paper: 1).
    split
        Keep only samples of this split when ``samples`` has a ``split`` column.

    Returns
    -------
    pl.DataFrame
        ``sample_id, domain, onset_step, onset_checkpoint, group``; the last three null for
        samples that never stay correct.

    Examples
    --------
    >>> import polars as pl
    >>> acc = pl.DataFrame({"checkpoint": ["a", "b", "c"], "step": [1, 2, 3],
    ...     "sample_id": ["q"] * 3, "correct": [False, True, True]})
    >>> generalization_onsets(acc)["group"].to_list()
    ['Test@2']
    """
    acc = schema.conform(sample_accuracy, schema.SAMPLE_ACCURACY, name="sample accuracy")
    domains = _domains(acc["sample_id"], samples, split=split)
    acc = acc.filter(pl.col("sample_id").is_in(domains["sample_id"].implode()))
    matrix, ids, labels, steps = _wide(acc, "correct", name="sample accuracy")
    correct = np.nan_to_num(matrix, nan=0.0) > 0.5
    n = correct.shape[1]
    # suffix sums: correct and window length for each start t
    n_correct = np.flip(np.cumsum(np.flip(correct, axis=1), axis=1), axis=1)
    window = np.arange(n, 0, -1)[None, :]
    ok = correct & (n_correct / window > min_accuracy) & (window - n_correct <= max_errors)
    onset = _first_true(ok)
    dom_of = dict(zip(domains["sample_id"], domains["domain"], strict=True))
    step = [steps[j] if j >= 0 else None for j in onset]
    out = pl.DataFrame(
        {
            "sample_id": ids,
            "domain": [dom_of[s] for s in ids],
            "onset_step": step,
            "onset_checkpoint": [labels[j] if j >= 0 else None for j in onset],
            "group": [f"Test@{s}" if s is not None else None for s in step],
        },
        schema={k: v for k, v in _ONSET_SCHEMA.items() if k != "eps"},
    )
    return out.sort("domain", "sample_id")


def group_steps(groups: Sequence[str | None]) -> list[int | None]:
    """The step in each ``"Pretrain@<step>"`` / ``"Test@<step>"`` label (None for None).

    Examples
    --------
    >>> group_steps(["Pretrain@120", None, "Test@5"])
    [120, None, 5]
    """
    return [None if g is None else int(g.rsplit("@", 1)[1]) for g in groups]


def _memorization_table(onsets: pl.DataFrame, samples: pl.DataFrame | None) -> pl.DataFrame:
    control = None
    if samples is not None and "control" in samples.columns:
        flagged = samples.filter(pl.col("control").fill_null(False))["sample_id"].cast(pl.String)
        control = pl.col("sample_id").is_in(flagged.implode())
    before = (
        pl.col("before_last")
        if "before_last" in onsets.columns
        else pl.col("onset_step").is_not_null()
    ).fill_null(False)
    agg = [
        pl.col("eps").first(),
        (pl.col("eps_source").first() if "eps_source" in onsets.columns else pl.lit("given")).alias(
            "eps_source"
        ),
        before.sum().alias("memorized"),
        pl.len().alias("samples"),
        before.mean().alias("fraction"),
        pl.col("group").filter(before).n_unique().alias("groups"),
        pl.col("onset_step").filter(before).min().alias("first_onset"),
        pl.col("onset_step").filter(before).max().alias("last_onset"),
    ]
    if control is not None:
        agg.append(control.all().alias("control"))
    table = onsets.group_by("domain").agg(agg).sort("domain")
    if control is None:
        table = table.with_columns(control=pl.lit(False))
    return table.with_columns(pl.col("memorized", "samples", "groups").cast(pl.Int64))


@dataclass(frozen=True)
class MemorizationSummary:
    """What the memorization rule chose, per domain: shown as text, Markdown or HTML.

    Displaying it in a notebook renders :meth:`to_markdown`; ``print`` gives the same as text.
    """

    table: pl.DataFrame
    """One row per domain: ``domain, eps, eps_source, memorized, samples, fraction, groups,
    first_onset, last_onset, control``."""
    delta: float | None = None
    target: tuple[float, float] | None = None
    grid_step: float | None = None

    def sentences(self) -> list[str]:
        """One sentence per domain, saying how its eps was chosen and what it memorized."""
        out = []
        for row in self.table.iter_rows(named=True):
            name = f"`{row['domain']}`" + (" (control)" if row["control"] else "")
            how = {
                "given": "given",
                "calibrated": "calibrated into the target range",
                "closest": "closest to the target: no value on the grid reaches it",
            }.get(row["eps_source"], row["eps_source"])
            count = (
                f"{row['memorized']} of its {row['samples']} training samples "
                f"({row['fraction']:.0%}) memorized before the last checkpoint"
            )
            if row["memorized"]:
                count += (
                    f", in {row['groups']} group(s) from step {row['first_onset']} to "
                    f"{row['last_onset']}"
                )
            eps = "–" if row["eps"] is None else f"{row['eps']:g}"
            out.append(f"{name}: ε = {eps} ({how}); {count}.")
        return out

    def _header(self) -> str:
        parts = []
        if self.delta is not None:
            parts.append(f"δ = {self.delta:g}")
        if self.target is not None:
            lo, hi = self.target
            grid = f" on a {self.grid_step:g} grid" if self.grid_step else ""
            parts.append(
                f"ε chosen per domain{grid} so that {lo:.0%}–{hi:.0%} of its training samples "
                "are memorized before the last checkpoint, unless given"
            )
        rule = "; ".join(parts)
        return "Memorization" + (f" ({rule})" if rule else "") + ":"

    def to_markdown(self) -> str:
        """The summary as Markdown: a header line and one bullet per domain."""
        return "\n".join([self._header(), "", *(f"- {s}" for s in self.sentences())])

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return "\n".join([self._header(), *(f"  {s}" for s in self.sentences())]).replace("`", "")

    __repr__ = __str__


def memorization_summary(
    source: Any,
    samples: pl.DataFrame | None = None,
    *,
    eps: float | dict[str, float] | None = None,
    delta: float = 0.05,
    target: tuple[float, float] = (0.20, 0.25),
    grid_step: float = 0.1,
) -> MemorizationSummary:
    """What the memorization rule chose per domain: its ε, how, and how many samples qualify.

    :func:`grokviz.analyze` computes its metrics on the samples memorized before the last
    checkpoint, with ε chosen per domain unless given. This shows that choice: per domain the ε
    used, whether it was given, calibrated into the target range or only the closest grid value
    to a target none reaches, how many training samples count as memorized and in how many
    groups. Display it in a notebook, or ``print`` it.

    Parameters
    ----------
    source
        A trace store (or its folder): the onsets are computed as :func:`grokviz.analyze`
        computes them with the same ``eps``, ``delta``, ``target`` and ``grid_step``; or a
        losses table; or the onsets of :func:`memorization_onsets`.
    samples
        The samples table (domain, split, optional ``control``); read from the store when
        ``source`` is one.
    eps, delta, target, grid_step
        As for :func:`memorization_onsets`.

    Returns
    -------
    MemorizationSummary

    Examples
    --------
    >>> summary = memorization_summary(store)
    >>> summary.table.columns[:5]
    ['domain', 'eps', 'eps_source', 'memorized', 'samples']
    >>> print(summary)  # doctest: +ELLIPSIS
    Memorization (δ = 0.05; ε chosen per domain on a 0.1 grid ...
      add: ε = ...
    """
    if isinstance(source, pl.DataFrame) and "onset_step" in source.columns:
        onsets = source
    elif isinstance(source, pl.DataFrame):
        onsets = memorization_onsets(
            source, samples, eps=eps, delta=delta, target=target, grid_step=grid_step
        )
    else:
        if isinstance(source, str | Path):
            from grokviz.store import TraceStore

            source = TraceStore.open(source)
        samples = source.samples() if samples is None else samples
        assert samples is not None
        has_train = "split" not in samples.columns or (samples["split"] == "train").any()
        onsets = memorization_onsets(
            source.losses(),
            samples,
            eps=eps,
            delta=delta,
            target=target,
            grid_step=grid_step,
            split="train" if has_train else None,
        )
    return MemorizationSummary(
        _memorization_table(onsets, samples),
        delta=delta,
        target=target if eps is None else None,
        grid_step=grid_step if eps is None else None,
    )
