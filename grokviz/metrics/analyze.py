"""The one call: a trace store in, the ``metrics`` table out (DESIGN.md §1-2).

:func:`analyze` finds which training samples are memorized (from the store's losses), groups them
(globally, per domain, per memorization onset), and for every checkpoint computes each group's mean
pairwise pathway distance, pathway consistency and complexity, training loss and routing entropy,
with confidence intervals. :func:`~grokviz.metrics.correlate` then checks the series against
accuracy.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

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
        raise ValueError(msg)
    return kinds


def _select(
    onsets: pl.DataFrame, *, memorized_only: bool, last_step: int, kinds: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """The samples to analyze and each group's members (sample ids)."""
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
    members: dict[str, list[str]] = {}
    if "global" in kinds:
        members["global"] = ids
    if "domain" in kinds:
        for (domain,), part in chosen.group_by(["domain"], maintain_order=True):
            members[str(domain)] = part["sample_id"].to_list()
    if "memorization" in kinds:
        grouped = chosen.filter(pl.col("group").is_not_null()).sort("onset_step")
        for (group,), part in grouped.group_by(["group"], maintain_order=True):
            members[str(group)] = part["sample_id"].to_list()
    return ids, members


def _row(ckpt: str, step: int, group: str, metric: str, v: float, lo: float, hi: float) -> dict:
    nan_to_none = {"ci_low": None if np.isnan(lo) else lo, "ci_high": None if np.isnan(hi) else hi}
    return {"checkpoint": ckpt, "step": step, "group": group, "metric": metric, "value": v} | (
        nan_to_none
    )


def analyze(
    store: TraceStore | TraceSource | str | Path,
    *,
    accuracy: pl.DataFrame | None = None,
    tau: float = 0.7,
    top_k: int | None = None,
    unit: str = "expert",
    eps: float | dict[str, float] | None = None,
    delta: float = 0.05,
    memorized_only: bool = True,
    groups: GroupKind | Sequence[GroupKind] = _GROUP_KINDS,  # type: ignore[assignment]
    n_pairs: int | Literal["auto"] | None = "auto",
    layers: Sequence[int] | None = None,
    per_layer: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    device: Any = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
) -> pl.DataFrame:
    """Pathway metrics of every checkpoint and sample group of a trace store.

    Following the paper's protocol, the metrics are computed on *memorized* training samples only
    (``memorized_only=True``): samples whose loss is at most ``eps`` and within ``delta`` of its
    final value from some checkpoint before the last one on (see
    :func:`~grokviz.metrics.memorization_onsets`; ``eps=None`` calibrates it per domain so
    20-25% of samples qualify). The same samples are followed across all checkpoints.

    Metrics, per checkpoint and group:

    - ``distance``: mean pairwise edit distance between the samples' pathways (experts whose
      cumulative routing weight first exceeds ``tau``, or the ``top_k``), with its interval;
    - ``consistency`` / ``complexity``: mean pathway consistency and ``1 - consistency``, from
      the router weight rows (skipped with a warning when the store has none);
    - ``loss``: mean training loss; ``entropy``: mean routing entropy (the control);
    - ``distance@L<l>`` for each layer ``l`` when ``per_layer``.

    Groups: ``"global"`` (all analyzed samples), each domain, and each memorization group
    ``"Pretrain@<step>"``. A distance needs 2 samples, so groups of one sample have no distance
    rows. Intervals of means are percentile bootstraps over samples; the distance interval is
    the one :func:`~grokviz.metrics.distance.mean_pairwise_distance` gives (none when exact).
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
    n_boot
        Bootstrap resamples for the intervals of means; 0 gives no intervals.
    seed
        Seed of pair sampling and bootstrap.
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
        The metrics table (:data:`grokviz.schema.METRICS`), sorted by step, group, metric.

    Raises
    ------
    EmptyInputError
        When no sample is memorized (pass a larger ``eps`` or ``memorized_only=False``).

    Examples
    --------
    >>> import grokviz
    >>> from grokviz.data import sample_data_dir
    >>> store = grokviz.TraceStore.open(sample_data_dir() / "toy" / "trace")
    >>> metrics = grokviz.analyze(store, n_boot=0, progress=False)
    >>> distance = metrics.filter(metric="distance", group="global")
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
    # stores whose samples carry no "train" split (e.g. all unlabelled) count every sample
    split = (
        "train" if "split" not in samples.columns or (samples["split"] == "train").any() else None
    )
    onsets = memorization_onsets(losses, samples, eps=eps, delta=delta, split=split)
    last_step: int = losses["step"].max()  # type: ignore[assignment]
    ids, members = _select(onsets, memorized_only=memorized_only, last_step=last_step, kinds=kinds)
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
        n_distances = sum(r["metric"].startswith("distance") for r in rows)
        warnings.warn(_sampling_note(sampled, n_distances), SampledDistanceWarning, stacklevel=2)
    if accuracy is not None:
        acc = schema.conform(accuracy, schema.ACCURACY, name="accuracy")
        rows += [
            _row(r["checkpoint"], r["step"], r["task"], "accuracy", r["accuracy"], np.nan, np.nan)
            for r in acc.iter_rows(named=True)
        ]
    out = pl.DataFrame(rows, schema=schema.METRICS)
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
    loss_of: dict[str, float | None],
    skip: set[str],
    layer_idx: list[int] | None,
    tau: float,
    top_k: int | None,
    unit: str,
    n_pairs: int | Literal["auto"] | None,
    per_layer: bool,
    n_boot: int,
    seed: int,
    device: Any,
) -> tuple[list[dict], str | None, list[DistanceEstimate]]:
    """One checkpoint's metrics rows, why consistency is missing, and its sampled distances.

    The notes: a reason when the checkpoint has no router weights (else None), and the
    distance estimates among the rows that come from a sample of pairs (for the warning).

    The work :func:`analyze` does per checkpoint, on its own so that both engines run it: the
    local loop, and a Ray task per checkpoint (:mod:`grokviz.metrics._ray`). It depends only on
    its arguments, so a checkpoint's rows are the same whichever engine computed them.
    """
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
    entropy = routing_entropy(weights, device=device)

    rows: list[dict] = []
    sampled: list[DistanceEstimate] = []
    for group, sample_ids in members.items():
        idx = np.array([pos[s] for s in sample_ids if s in pos], dtype=np.int64)
        if idx.size == 0:
            continue
        means = {"entropy": entropy[idx]}
        if cons is not None:
            means["consistency"] = cons[idx]
            means["complexity"] = 1.0 - cons[idx]
        group_loss = [
            loss_of[s] for s in sample_ids if loss_of.get(s) is not None and s not in skip
        ]
        means["loss"] = np.asarray(group_loss, dtype=np.float64)
        for metric, values in means.items():
            if values.size:
                v, lo, hi = bootstrap_mean(values, n_boot=max(n_boot, 1), seed=seed)
                lo, hi = (lo, hi) if n_boot > 0 else (np.nan, np.nan)
                rows.append(_row(label, step, group, metric, v, lo, hi))
        if idx.size >= 2:
            rows += _distances(
                weights[idx],
                (label, step, group),
                tau=tau,
                top_k=top_k,
                unit=unit,
                n_pairs=n_pairs,
                per_layer=per_layer,
                layer_names=layer_idx or list(range(weights.shape[1])),
                seed=seed,
                device=device,
                sampled=sampled,
            )
    return rows, note, sampled


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
    *,
    tau: float,
    top_k: int | None,
    unit: str,
    n_pairs: int | Literal["auto"] | None,
    per_layer: bool,
    layer_names: list[int],
    seed: int,
    device: Any,
    sampled: list[DistanceEstimate],
) -> list[dict]:
    """Mean pairwise pathway distance of one group at one checkpoint (and per layer)."""
    from grokviz.metrics.distance import mean_pairwise_distance, per_layer_mean_distance
    from grokviz.pathways import encode, select_experts

    paths = select_experts(weights, tau=None if top_k is not None else tau, top_k=top_k)
    packed = encode(paths, unit=unit, num_experts=weights.shape[2])  # type: ignore[arg-type]
    estimates = [
        ("distance", mean_pairwise_distance(packed, n_pairs=n_pairs, seed=seed, device=device))
    ]
    if per_layer:
        layer_est = per_layer_mean_distance(
            paths, n_pairs=n_pairs, seed=seed, device=device, estimates=True
        )
        estimates += [
            (f"distance@L{name}", e) for name, e in zip(layer_names, layer_est, strict=True)
        ]
    rows = []
    for metric, est in estimates:
        lo, hi = (np.nan, np.nan) if est.exact else (float(est.ci_low), float(est.ci_high))
        rows.append(_row(*where, metric, float(est.value), lo, hi))
        if not est.exact:
            sampled.append(est)
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
