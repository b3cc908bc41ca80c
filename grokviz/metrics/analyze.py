"""The one call: a trace store in, the ``metrics`` table out (DESIGN.md §1-2).

:func:`analyze` finds which training samples are memorized (from the store's losses), groups them
(globally, per domain, per memorization onset; negative-control samples apart), and for every
checkpoint computes each group's mean pairwise pathway distance, pathway consistency and
complexity, training loss and routing entropy, with confidence intervals, the baselines of
:mod:`~grokviz.metrics.baselines`, and each value recomputed on resamples of the group's samples.
:func:`~grokviz.metrics.correlate` and :func:`~grokviz.metrics.validate` then check the series
against accuracy.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np
import polars as pl

from grokviz import schema
from grokviz.errors import EmptyInputError, InputError, StoreDamagedError, TraceStoreError
from grokviz.metrics.distance import DistanceEstimate, SampledDistanceWarning
from grokviz.metrics.onsets import memorization_onsets
from grokviz.metrics.stats import bootstrap_mean

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.store import TraceStore

__all__ = ["TraceSource", "analyze"]

GroupKind = Literal["memorization", "domain", "global"]
_GROUP_KINDS: tuple[str, ...] = ("global", "domain", "memorization")


class TraceSource(Protocol):
    """What :func:`analyze` reads; :class:`grokviz.TraceStore` is one.

    Any object with these methods works, e.g. a few frames held in memory.
    """

    def checkpoints(self) -> pl.DataFrame: ...  # schema.CHECKPOINTS, in step order

    def samples(self) -> pl.DataFrame: ...  # schema.SAMPLES

    def losses(self) -> pl.DataFrame: ...  # schema.LOSSES

    def routing_array(
        self, checkpoint: str, *, sample_ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]: ...  # [N, L, K] weights and their sample ids

    def router_array(self, checkpoint: str) -> np.ndarray: ...  # [L, K, d] router rows


def _open(store: Any) -> Any:
    from grokviz.store import as_store

    return as_store(store)


def _group_kinds(groups: str | Sequence[str]) -> list[str]:
    kinds = [groups] if isinstance(groups, str) else list(groups)
    bad = [g for g in kinds if g not in _GROUP_KINDS]
    if bad or not kinds:
        msg = f"groups must be some of {list(_GROUP_KINDS)}, got {groups!r}"
        raise InputError(msg)
    return kinds


def _select(
    onsets: pl.DataFrame,
    *,
    memorized_only: bool,
    last_step: int,
    kinds: list[str],
    controls: set[str],
) -> tuple[list[str], dict[str, list[str]]]:
    """The samples to analyze and each group's members (sample ids).

    ``controls`` are the ids of negative-control samples (random targets): they form their
    domain's group and stay out of ``global`` and the memorization groups, which stand for
    data the model can generalize on.
    """
    if memorized_only:
        chosen = onsets.filter(pl.col("onset_step") < last_step)
        if chosen.height == 0:
            eps = sorted(set(onsets["eps"].to_list()))
            msg = (
                f"none of the {onsets.height} training samples is memorized before the last "
                f"checkpoint (step {last_step}) with eps={eps}; pass a larger eps= or "
                "memorized_only=False"
            )
            raise EmptyInputError(msg)
    else:
        chosen = onsets
    ids = chosen["sample_id"].to_list()
    real = chosen.filter(~pl.col("sample_id").is_in(list(controls)))
    members: dict[str, list[str]] = {}
    if "global" in kinds and real.height:
        members["global"] = real["sample_id"].to_list()
    if "domain" in kinds:
        for (domain,), part in chosen.group_by(["domain"], maintain_order=True):
            members[str(domain)] = part["sample_id"].to_list()
    if "memorization" in kinds:
        grouped = real.filter(pl.col("group").is_not_null()).sort("onset_step")
        for (group,), part in grouped.group_by(["group"], maintain_order=True):
            members[str(group)] = part["sample_id"].to_list()
    return ids, members


def _control_ids(samples: pl.DataFrame) -> set[str]:
    """Ids of the samples marked ``control`` (random targets) in the samples table."""
    if "control" not in samples.columns:
        return set()
    flag = samples["control"]
    if flag.dtype != pl.Boolean:
        msg = (
            f"the samples table's 'control' column must be Boolean (True for samples whose "
            f"targets are random), got {flag.dtype}"
        )
        raise InputError(msg)
    return set(samples.filter(flag.fill_null(False))["sample_id"].cast(pl.String).to_list())


def _row(
    ckpt: str,
    step: int,
    group: str,
    metric: str,
    v: float,
    lo: float = np.nan,
    hi: float = np.nan,
    *,
    n: int | None = None,
    control: bool | None = None,
    reps: np.ndarray | None = None,
) -> dict:
    finite = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
    return {
        "checkpoint": ckpt,
        "step": step,
        "group": group,
        "metric": metric,
        "value": finite(v),
        "ci_low": finite(lo),
        "ci_high": finite(hi),
        "n_samples": n,
        "control": control,
        "replicates": None if reps is None else [finite(x) for x in reps.tolist()],
    }


_EXTRA_COLUMNS: dict[str, pl.DataType] = {
    "n_samples": pl.Int64(),
    "control": pl.Boolean(),
    "replicates": pl.List(pl.Float64()),
}
"""Columns :func:`analyze` adds to :data:`grokviz.schema.METRICS`."""


def _resample_counts(n: int, replicates: int, *, seed: int, group: str) -> np.ndarray:
    """``[replicates, n]`` multinomial counts: each row one resample (with replacement) of a
    group's ``n`` samples. Seeded by the group's name, so the same resample is used at every
    checkpoint and adding a group elsewhere does not change it."""
    rng = np.random.default_rng([seed, zlib.crc32(group.encode())])
    picks = rng.integers(0, n, size=(replicates, n))
    counts = np.zeros((replicates, n), dtype=np.float64)
    np.add.at(counts, (np.arange(replicates)[:, None], picks), 1.0)
    return counts


def analyze(
    store: TraceStore | TraceSource | str | Path,
    *,
    accuracy: pl.DataFrame | None = None,
    tau: float = 0.7,
    top_k: int | None = None,
    unit: str = "expert",
    eps: float | dict[str, float] | None = None,
    delta: float = 0.05,
    onsets: pl.DataFrame | None = None,
    memorized_only: bool = True,
    groups: GroupKind | Sequence[GroupKind] = _GROUP_KINDS,  # type: ignore[assignment]
    n_pairs: int | Literal["auto"] | None = "auto",
    layers: Sequence[int] | None = None,
    per_layer: bool = False,
    baselines: bool = True,
    n_null: int = 2,
    replicates: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
    device: Any = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
) -> pl.DataFrame:
    """Pathway metrics of every checkpoint and sample group of a trace store, with baselines.

    Following the paper's protocol, the metrics are computed on *memorized* training samples only
    (``memorized_only=True``): samples whose loss is at most ``eps`` and within ``delta`` of its
    final value from some checkpoint before the last one on (see
    :func:`~grokviz.metrics.memorization_onsets`; ``eps=None`` calibrates it per domain so
    20-25% of samples qualify, and :func:`~grokviz.metrics.memorization_summary` shows what was
    chosen). The same samples are followed across all checkpoints.

    Metrics, per checkpoint and group:

    - ``distance``: mean pairwise edit distance between the samples' pathways (experts whose
      cumulative routing weight first exceeds ``tau``, or the ``top_k``), with its interval;
    - ``consistency`` / ``complexity``: mean pathway consistency and ``1 - consistency``, from
      the router weight rows (skipped with a warning when the store has none);
    - ``loss``: mean training loss; ``entropy``: mean routing entropy (the paper's control);
    - with ``baselines`` (:mod:`~grokviz.metrics.baselines`): ``distance_null``, the mean
      distance of the same pairs under a length-matched permutation null, ``distance_ratio`` =
      ``distance / distance_null``, and ``consistency_uniform``, the consistency of uniform
      routing weights under the checkpoint's routers (the same for every group);
    - ``distance@L<l>`` for each layer ``l`` when ``per_layer``.

    Groups: ``"global"`` (all analyzed samples that are not negative controls), each domain,
    and each memorization group ``"Pretrain@<step>"`` (no controls either). Negative-control
    samples are those with ``control = True`` in the samples table (samples whose targets are
    random: they can be memorized, never generalized); their domain is a group like any other
    and its rows have ``control = True``. A distance needs 2 samples, so groups of one sample
    have no distance rows.

    Beside :data:`grokviz.schema.METRICS`' columns the frame has ``n_samples`` (the samples
    behind each value), ``control`` and ``replicates``: the value recomputed on ``replicates``
    resamples (with replacement) of the group's samples, the same resamples at every checkpoint,
    from which :func:`~grokviz.metrics.correlate` and :func:`~grokviz.metrics.validate` take
    intervals over samples. ``ci_low`` / ``ci_high`` of means are percentile bootstraps over
    samples (``n_boot``); the distance interval is the one
    :func:`~grokviz.metrics.distance.mean_pairwise_distance` gives (none when exact).
    By default a distance is exact where all pairs are affordable and estimated from a uniform
    sample of pairs otherwise (``n_pairs="auto"``); sampled values carry their 95 % interval
    and a :class:`~grokviz.metrics.distance.SampledDistanceWarning` says how many there are.

    Parameters
    ----------
    store
        A :class:`~grokviz.TraceStore`, its folder, or any :class:`TraceSource`.
    accuracy
        Optional accuracy table; when given, the metrics frame carries ``accuracy`` rows too
        (group = task), so one frame feeds plots and :func:`~grokviz.metrics.correlate`.
    tau, top_k
        Pathway construction: cumulative-weight threshold, or a fixed number of experts.
    unit
        Edit-distance symbol: ``"expert"`` (one id per symbol) or ``"char"`` (the paper's string).
    eps, delta
        Memorization thresholds (see :func:`~grokviz.metrics.memorization_onsets`).
    onsets
        Memorization onsets computed beforehand (:func:`~grokviz.metrics.memorization_onsets`,
        e.g. from another loss such as the answer token's); then ``eps`` and ``delta`` are not
        used.
    memorized_only
        Analyze memorized samples only (the paper); False analyzes every training sample.
    groups
        Which groupings to report: any of ``"global"``, ``"domain"``, ``"memorization"``.
    n_pairs
        Pairs per distance value. ``"auto"``: all pairs while that costs at most about 20,000
        pairs of the paper's 470-symbol pathways (a second or so on 2 CPU cores), else a
        uniform sample of that cost (:func:`~grokviz.metrics.distance.auto_pairs`; 10
        checkpoints x 10,000 samples then take minutes, not hours). An int samples that many
        pairs where a group has more; None computes every pair (exact; ~N^2/2 pairs per group).
    layers
        MoE layer indices to use (default all).
    per_layer
        Add ``distance@L<l>`` rows.
    baselines
        Add the ``distance_null``, ``distance_ratio`` and ``consistency_uniform`` rows.
    n_null
        Null draws averaged per pair for ``distance_null``.
    replicates
        Resamples of each group's samples kept per row (0: none, and no intervals over
        samples later).
    n_boot
        Bootstrap resamples for the intervals of means; 0 gives no intervals.
    seed
        Seed of pair sampling, the null draws and the resamples.
    device
        Torch device for distances and consistency (default: CPU / where tensors are).
    progress
        Show a progress bar over checkpoints.
    engine, ray_address
        ``"ray"`` computes each checkpoint as a task on a Ray cluster (``pip install
        "grokviz[ray]"``; ``ray_address`` as in :func:`grokviz.trace`), for series of many
        checkpoints; ``store`` must then be a store on a filesystem every node mounts. With
        ``device="cuda"`` each task takes one of the cluster's GPUs. Same rows either way.

    Returns
    -------
    pl.DataFrame
        The metrics table (:data:`grokviz.schema.METRICS` and the columns above), sorted by
        step, group, metric.

    Raises
    ------
    EmptyInputError
        When no sample is memorized (pass a larger ``eps`` or ``memorized_only=False``).

    Examples
    --------
    >>> import grokviz
    >>> metrics = grokviz.analyze(store, groups="domain", replicates=20, n_boot=0, progress=False)
    >>> sorted(metrics["metric"].unique())
    ['complexity', 'consistency', 'consistency_uniform', 'distance', 'distance_null', 'distance_ratio', 'entropy', 'loss']
    >>> row = metrics.filter(metric="distance_ratio", group="add").sort("step").row(-1, named=True)
    >>> 0 < row["value"] < 1.5, row["n_samples"] > 10, len(row["replicates"])
    (True, True, 20)
    >>> distance = metrics.filter(metric="distance", group="add")
    >>> distance.height == store.checkpoints().height  # one value per checkpoint
    True
    """
    from tqdm.auto import tqdm

    if engine not in ("local", "ray"):
        msg = f"engine must be 'local' or 'ray', got {engine!r}"
        raise InputError(msg)
    if engine == "ray":
        from grokviz._ray import import_ray

        import_ray()  # without Ray, say so (and the extra to install) before reading anything
    if device is not None and engine == "local":
        from grokviz.tracing import resolve_device

        device = resolve_device(device)  # a missing GPU is said before any work
    src = _open(store)
    kinds = _group_kinds(groups)
    if replicates < 0 or n_null < 1:
        msg = f"replicates must be >= 0 and n_null >= 1; got {replicates} and {n_null}"
        raise InputError(msg)
    ckpts = schema.conform(src.checkpoints(), schema.CHECKPOINTS, name="checkpoints").sort("step")
    if ckpts.height == 0:
        msg = "the trace store has no checkpoints; trace some first (grokviz trace)"
        raise EmptyInputError(msg)
    losses = schema.conform(src.losses(), schema.LOSSES, name="losses")
    _warn_partial(ckpts)
    nonfinite = _nonfinite(losses)
    if accuracy is not None:
        _warn_unknown_checkpoints(accuracy, ckpts)
    samples = src.samples()
    controls = _control_ids(samples)
    if onsets is None:
        # stores whose samples carry no "train" split (e.g. all unlabelled) count every sample
        has_train = "split" not in samples.columns or (samples["split"] == "train").any()
        split = "train" if has_train else None
        onsets = memorization_onsets(losses, samples, eps=eps, delta=delta, split=split)
    else:
        onsets = schema.conform(
            onsets,
            {"sample_id": pl.String(), "domain": pl.String(), "onset_step": pl.Int64()},
            name="onsets",
        )
        if "group" not in onsets.columns:
            onsets = onsets.with_columns(
                group=pl.format("Pretrain@{}", pl.col("onset_step")).cast(pl.String)
            )
        if "eps" not in onsets.columns:
            onsets = onsets.with_columns(eps=pl.lit(None, pl.Float64))
    last_step: int = losses["step"].max()  # type: ignore[assignment]
    ids, members = _select(
        onsets, memorized_only=memorized_only, last_step=last_step, kinds=kinds, controls=controls
    )
    is_control = {g: bool(m) and all(s in controls for s in m) for g, m in members.items()}
    counts = {
        g: _resample_counts(len(m), replicates, seed=seed, group=g)
        for g, m in members.items()
        if replicates
    }
    layer_idx = None if layers is None else list(layers)

    work = functools.partial(
        _checkpoint_rows,
        ids=ids,
        members=members,
        layer_idx=layer_idx,
        tau=tau,
        top_k=top_k,
        unit=unit,
        n_pairs=n_pairs,
        per_layer=per_layer,
        baselines=baselines,
        n_null=n_null,
        is_control=is_control,
        counts=counts,
        replicates=replicates,
        n_boot=n_boot,
        seed=seed,
    )
    if engine == "ray":  # the same work, one Ray task per checkpoint
        from grokviz.metrics._ray import map_checkpoints

        done = map_checkpoints(
            work,
            src,
            ckpts,
            losses,
            nonfinite,
            address=ray_address,
            device=device,
            progress=progress,
        )
    else:
        pairs = ckpts.select("checkpoint", "step").iter_rows()
        bar = tqdm(pairs, total=ckpts.height, disable=not progress, desc="ckpt")
        done = (
            work(
                src,
                c,
                int(s),
                loss_of=_losses_of(losses, c),
                skip=nonfinite.get(c, set()),
                device=device,
            )
            for c, s in bar
        )
    rows: list[dict] = []
    sampled: list[DistanceEstimate] = []  # distance values estimated from a sample of pairs
    no_routers = []
    for ckpt_rows, note, ckpt_sampled in done:
        rows += ckpt_rows
        sampled += ckpt_sampled
        no_routers += [note] if note else []
    if no_routers:
        warnings.warn(no_routers[0], stacklevel=2)
    if sampled:
        n_distances = sum(
            r["metric"] == "distance" or r["metric"].startswith("distance@") for r in rows
        )
        warnings.warn(_sampling_note(sampled, n_distances), SampledDistanceWarning, stacklevel=2)
    if accuracy is not None:
        acc = schema.conform(accuracy, schema.ACCURACY, name="accuracy")
        rows += [
            _row(r["checkpoint"], r["step"], r["task"], "accuracy", r["accuracy"])
            for r in acc.iter_rows(named=True)
        ]
    out = pl.DataFrame(rows, schema=schema.METRICS | _EXTRA_COLUMNS)
    return out.sort("step", "group", "metric")


def _losses_of(losses: pl.DataFrame, label: str) -> dict[str, float | None]:
    """sample_id -> loss at checkpoint ``label``."""
    part = losses.filter(pl.col("checkpoint") == label)
    return dict(zip(part["sample_id"], part["loss"], strict=True))


def _checkpoint_rows(
    src: Any,
    label: str,
    step: int,
    *,
    ids: list[str],
    members: dict[str, list[str]],
    is_control: dict[str, bool],
    counts: dict[str, np.ndarray],
    replicates: int,
    loss_of: dict[str, float | None],
    skip: set[str],
    layer_idx: list[int] | None,
    tau: float,
    top_k: int | None,
    unit: str,
    n_pairs: int | Literal["auto"] | None,
    per_layer: bool,
    baselines: bool,
    n_null: int,
    n_boot: int,
    seed: int,
    device: Any,
) -> tuple[list[dict], str | None, list[DistanceEstimate]]:
    """One checkpoint's metrics rows, why consistency is missing, and its sampled distances.

    The notes: a reason when the checkpoint has no router weights (else None), and the
    distance estimates among the rows that come from a sample of pairs (for the warning).

    The work :func:`analyze` does per checkpoint, on its own so that both engines run it: the
    local loop, and a Ray task per checkpoint (:mod:`grokviz.metrics._ray`). It depends only on
    its arguments (the resamples ``counts`` included), so a checkpoint's rows are the same
    whichever engine computed them.
    """
    from grokviz.metrics.baselines import uniform_consistency
    from grokviz.metrics.consistency import consistency as consistency_of
    from grokviz.metrics.consistency import routing_entropy

    try:
        weights, got = src.routing_array(label, sample_ids=ids)
    except KeyError:  # some samples not traced at this checkpoint: use those that are
        weights, got = src.routing_array(label)
    weights = np.asarray(weights)
    if layer_idx is not None:
        weights = weights[:, layer_idx, :]
    pos = {s: i for i, s in enumerate(got) if s not in skip}
    cons = None
    uniform = None
    note = None
    try:
        routers = np.asarray(src.router_array(label))
    except StoreDamagedError:
        raise  # a store that should have them: its message says how to repair it
    except (TraceStoreError, KeyError, FileNotFoundError) as exc:  # a source without routers
        note = (
            f"no router weights for checkpoint {label!r} ({exc}); "
            "consistency and complexity are skipped"
        )
    else:
        if layer_idx is not None:
            routers = routers[layer_idx]
        if weights.shape[1] >= 2:
            cons = consistency_of(weights, routers, device=device)
            if baselines:
                uniform = uniform_consistency(routers, device=device)
    entropy = routing_entropy(weights, device=device)

    rows: list[dict] = []
    sampled: list[DistanceEstimate] = []
    for group, sample_ids in members.items():
        here = [k for k, s in enumerate(sample_ids) if s in pos]
        if not here:
            continue
        idx = np.array([pos[sample_ids[k]] for k in here], dtype=np.int64)
        reps = counts[group][:, here] if replicates else None
        where: dict[str, Any] = {"n": len(here), "control": is_control[group]}
        means = {"entropy": (entropy[idx], reps)}
        if cons is not None:
            means["consistency"] = (cons[idx], reps)
            means["complexity"] = (1.0 - cons[idx], reps)
        has_loss = [
            k for k, s in enumerate(sample_ids) if loss_of.get(s) is not None and s not in skip
        ]
        loss_values = np.asarray([loss_of[sample_ids[k]] for k in has_loss], dtype=np.float64)
        means["loss"] = (loss_values, counts[group][:, has_loss] if replicates else None)
        for metric, (values, weights_) in means.items():
            if not values.size:
                continue
            v, lo, hi = bootstrap_mean(values, n_boot=max(n_boot, 1), seed=seed)
            lo, hi = (lo, hi) if n_boot > 0 else (np.nan, np.nan)
            rep = _weighted_means(values, weights_)
            n_here = {**where, "n": values.size}
            rows.append(_row(label, step, group, metric, v, lo, hi, **n_here, reps=rep))
        if uniform is not None:
            rows.append(_row(label, step, group, "consistency_uniform", uniform, **where))
        if idx.size >= 2:
            rows += _distances(
                weights[idx],
                (label, step, group),
                where,
                counts=reps,
                tau=tau,
                top_k=top_k,
                unit=unit,
                n_pairs=n_pairs,
                per_layer=per_layer,
                baselines=baselines,
                n_null=n_null,
                layer_names=layer_idx or list(range(weights.shape[1])),
                seed=seed,
                device=device,
                sampled=sampled,
            )
    return rows, note, sampled


def _weighted_means(values: np.ndarray, counts: np.ndarray | None) -> np.ndarray | None:
    """The mean of ``values`` under each row of resample ``counts`` (None without counts)."""
    if counts is None:
        return None
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts @ values / total, np.nan)


def _warn_partial(ckpts: pl.DataFrame) -> None:
    """Say which checkpoints are only partly traced (a store's checkpoints table tells)."""
    if not {"parts_done", "parts_total"} <= set(ckpts.columns):
        return
    partial = ckpts.filter(pl.col("parts_done") < pl.col("parts_total"))
    if partial.height == 0:
        return
    shown = ", ".join(
        f"{r['checkpoint']} ({r['parts_done']} of {r['parts_total']} parts)"
        for r in partial.head(3).iter_rows(named=True)
    )
    more = f" and {partial.height - 3} more" if partial.height > 3 else ""
    warnings.warn(
        f"{partial.height} checkpoint(s) are only partly traced: {shown}{more}; their metrics "
        "cover only the traced samples. Run the same `grokviz trace` command again to finish them.",
        stacklevel=3,
    )


def _nonfinite(losses: pl.DataFrame) -> dict[str, set[str]]:
    """Checkpoint -> samples whose trace was not finite (left out there), with one warning."""
    if "nonfinite" not in losses.columns:
        return {}
    bad = losses.filter(pl.col("nonfinite").fill_null(False))
    if bad.height == 0:
        return {}
    out: dict[str, set[str]] = {}
    for label, sid in bad.select("checkpoint", "sample_id").iter_rows():
        out.setdefault(label, set()).add(sid)
    warnings.warn(
        f"{bad.height} (checkpoint, sample) pair(s) in {len(out)} checkpoint(s) have non-finite "
        f"losses or routing weights (e.g. {sorted(out)[0]}: {sorted(out[sorted(out)[0]])[:3]}); "
        "those samples are left out of that checkpoint's metrics",
        stacklevel=3,
    )
    return out


def _warn_unknown_checkpoints(accuracy: Any, ckpts: pl.DataFrame) -> None:
    acc = schema.conform(accuracy, schema.ACCURACY, name="accuracy")
    unknown = sorted(set(acc["checkpoint"].to_list()) - set(ckpts["checkpoint"].to_list()))
    if unknown:
        warnings.warn(
            f"the accuracy table names {len(unknown)} checkpoint(s) the trace store lacks "
            f"({unknown[:5]}); their accuracy is kept, but there are no metrics to correlate "
            f"it with. The store has {ckpts['checkpoint'].to_list()[:5]}"
            + (" ..." if ckpts.height > 5 else ""),
            stacklevel=3,
        )


def _distances(
    weights: np.ndarray,
    where: tuple[str, int, str],
    extra: dict[str, Any],
    *,
    counts: np.ndarray | None,
    tau: float,
    top_k: int | None,
    unit: str,
    n_pairs: int | Literal["auto"] | None,
    per_layer: bool,
    baselines: bool,
    n_null: int,
    layer_names: list[int],
    seed: int,
    device: Any,
    sampled: list[DistanceEstimate],
) -> list[dict]:
    """Mean pairwise pathway distance of one group at one checkpoint, its null and per layer."""
    from grokviz.metrics._distance_backends import (
        _check_n_pairs,
        _n_pairs,
        _sample_size,
        _triangle_pairs,
    )
    from grokviz.metrics.baselines import null_pathways
    from grokviz.metrics.distance import _estimate, pair_distances, per_layer_mean_distance
    from grokviz.pathways import encode, select_experts

    n, k = weights.shape[0], weights.shape[2]
    symbol = cast(Literal["expert", "char"], unit)
    paths = select_experts(weights, tau=None if top_k is not None else tau, top_k=top_k)
    packed = encode(paths, unit=symbol, num_experts=k)
    null_rng = np.random.default_rng([seed, 1])
    nulls = [
        encode(
            null_pathways(weights, tau=tau, top_k=top_k, seed=null_rng),
            unit=symbol,
            num_experts=k,
        )
        for _ in range(n_null if baselines else 0)
    ]
    population = _n_pairs(n)
    _check_n_pairs(n_pairs)
    size = _sample_size(n_pairs, packed.lengths, population)
    chunks: Iterator[tuple[np.ndarray, np.ndarray]]
    if size is None:
        chunks = (
            _triangle_pairs(n, np.arange(start, min(start + (1 << 16), population)))
            for start in range(0, population, 1 << 16)
        )
    else:
        picked = np.random.default_rng(seed).choice(population, size=size, replace=False)
        chunks = iter([_triangle_pairs(n, picked)])
    d_all: list[np.ndarray] = []
    null_sum = 0.0
    n_rep = 0 if counts is None else counts.shape[0]
    rep_d, rep_null, rep_w = np.zeros(n_rep), np.zeros(n_rep), np.zeros(n_rep)
    for i, j in chunks:
        pairs = np.stack([i, j], axis=1)
        d = pair_distances(packed, pairs, device=device).astype(np.float64)
        d_all.append(d)
        nd = np.zeros_like(d)
        for p in nulls:
            nd += pair_distances(p, pairs, device=device)
        nd /= max(len(nulls), 1)
        null_sum += float(nd.sum())
        if counts is not None:
            w = counts[:, i] * counts[:, j]  # pair (i, j) counts once per copy of each sample
            rep_d += w @ d
            rep_null += w @ nd
            rep_w += w.sum(axis=1)
    d_cat = np.concatenate(d_all)
    est = _estimate(d_cat, population, 0.95)
    lo, hi = (np.nan, np.nan) if est.exact else (est.ci_low, est.ci_high)
    if not est.exact:
        sampled.append(est)
    reps = null_reps = None
    if counts is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = np.where(rep_w > 0, rep_d / rep_w, np.nan)
            null_reps = np.where(rep_w > 0, rep_null / rep_w, np.nan)
    rows = [_row(*where, "distance", est.value, lo, hi, **extra, reps=reps)]
    if nulls:
        null_value = null_sum / d_cat.size
        ratio_reps = None
        if reps is not None and null_reps is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio_reps = reps / null_reps
        rows += [
            _row(*where, "distance_null", null_value, **extra, reps=null_reps),
            _row(
                *where,
                "distance_ratio",
                est.value / null_value if null_value > 0 else np.nan,
                **extra,
                reps=ratio_reps,
            ),
        ]
    if per_layer:
        layer_est = per_layer_mean_distance(
            paths, n_pairs=n_pairs, seed=seed, device=device, estimates=True
        )
        for name, e in zip(layer_names, layer_est, strict=True):
            lo, hi = (np.nan, np.nan) if e.exact else (float(e.ci_low), float(e.ci_high))
            rows.append(_row(*where, f"distance@L{name}", float(e.value), lo, hi, **extra))
            if not e.exact:
                sampled.append(e)
    return rows


def _sampling_note(sampled: list[DistanceEstimate], n_distances: int) -> str:
    """One line saying which distance values are estimates and how far off they may be."""
    sizes = sorted({e.n_pairs for e in sampled})
    pairs = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"
    widest = max(
        ((e.ci_high - e.ci_low) / 2 / e.value for e in sampled if e.value > 0), default=0.0
    )
    return (
        f"{len(sampled)} of {n_distances} distance values are means of {pairs} uniformly "
        f"sampled pairs, not of all pairs; their 95% intervals are in ci_low/ci_high, the widest "
        f"+-{widest:.2%} of its value. Pass n_pairs=None for exact means over all pairs (slow "
        "on a CPU for large groups)."
    )
