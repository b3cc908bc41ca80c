"""What the controls say about a one-pass run, in sentences chosen by the numbers.

The LM report's controls section shows :func:`grokviz.validate`'s tables; this module says in
words what they show for the question that matters: does any real domain's pathway metric change
at *that domain's* time, and does the control domain's not? It also uses what makes this toy's
accuracy unlike the arithmetic toy's: test accuracy is not monotone in training time. Where a
domain's accuracy falls back after a peak (:func:`accuracy_dips`), a metric that only drifts with
training time keeps moving the same way, while one that follows accuracy turns back with it
(:func:`dip_moves`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from grokviz.toy.shared.markdown import _PAPER_SIGN, _fmt


def accuracy_dips(
    accuracy: pl.DataFrame, tasks: Sequence[str], *, n_test: int, min_fall: float = 0.1
) -> pl.DataFrame:
    """Per task, the largest fall of test accuracy from an earlier peak, if it is a real one.

    A fall counts when it is at least ``min_fall`` and at least three standard errors of the
    difference of two accuracies over ``n_test`` prompts (so sampling noise alone rarely makes
    one). Columns: ``task, peak_step, peak, trough_step, trough, fall, back_step`` (the first
    later checkpoint at or above the peak again; None if none), ``half_step`` (the first step at
    which accuracy covered half its rise from the first checkpoint to its maximum) and
    ``sustained_half_step`` (the first step from which it stays there). Tasks without such a
    fall are left out.

    Examples
    --------
    >>> acc = pl.DataFrame({"step": [0, 10, 20, 30, 40], "task": "a",
    ...     "accuracy": [0.0, 0.4, 0.1, 0.3, 0.6]})
    >>> accuracy_dips(acc, ["a"], n_test=300).select(
    ...     "peak_step", "trough_step", "back_step", "half_step", "sustained_half_step").row(0)
    (10, 20, 40, 10, 30)
    """
    rows = []
    for task in tasks:
        part = accuracy.filter(pl.col("task") == task).sort("step")
        if part.height < 3:
            continue
        steps, acc = part["step"].to_numpy(), part["accuracy"].to_numpy().astype(np.float64)
        running = np.maximum.accumulate(acc)
        j = int(np.argmax(running - acc))
        fall = float(running[j] - acc[j])
        i = int(np.flatnonzero(acc[: j + 1] == running[j])[0])
        p = min(max(float(acc[i]), 1e-9), 1 - 1e-9)
        se = math.sqrt(2 * p * (1 - p) / max(n_test, 1))
        if fall < max(min_fall, 3 * se):
            continue
        back = np.flatnonzero(acc[j:] >= acc[i])
        half = acc[0] + 0.5 * (acc.max() - acc[0])
        above = acc >= half
        stays = np.flip(np.cumprod(np.flip(above))).astype(bool)
        rows.append(
            {
                "task": task,
                "peak_step": int(steps[i]),
                "peak": float(acc[i]),
                "trough_step": int(steps[j]),
                "trough": float(acc[j]),
                "fall": fall,
                "back_step": int(steps[j + back[0]]) if back.size else None,
                "half_step": int(steps[np.flatnonzero(above)[0]]),
                "sustained_half_step": int(steps[np.flatnonzero(stays)[0]]),
            }
        )
    schema = {
        "task": pl.String(),
        "peak_step": pl.Int64(),
        "peak": pl.Float64(),
        "trough_step": pl.Int64(),
        "trough": pl.Float64(),
        "fall": pl.Float64(),
        "back_step": pl.Int64(),
        "half_step": pl.Int64(),
        "sustained_half_step": pl.Int64(),
    }
    return pl.DataFrame(rows, schema=schema)


def dip_moves(metrics: pl.DataFrame, dips: pl.DataFrame, metric: str) -> pl.DataFrame:
    """For each dip, how ``metric`` of the task's group moved from the peak to the trough.

    ``turns`` is True when it moved the way the paper's sign says it moves as accuracy *falls*
    (distance up, consistency down): a metric that follows accuracy turns back with it, one that
    only drifts with training time does not. Columns: ``task, at_peak, at_trough, change, turns``.

    Examples
    --------
    >>> dips = pl.DataFrame({"task": ["a"], "peak_step": [10], "trough_step": [20]})
    >>> m = pl.DataFrame({"step": [10, 20], "group": "a", "metric": "distance",
    ...     "value": [5.0, 6.0]})
    >>> dip_moves(m, dips, "distance")["turns"].to_list()
    [True]
    """
    sign = _PAPER_SIGN[metric]
    rows = []
    for task, peak, trough in dips.select("task", "peak_step", "trough_step").iter_rows():
        part = metrics.filter((pl.col("group") == task) & (pl.col("metric") == metric))
        values = dict(part.select("step", "value").iter_rows())
        if peak not in values or trough not in values:
            continue
        change = float(values[trough] - values[peak])
        rows.append(
            {
                "task": task,
                "at_peak": float(values[peak]),
                "at_trough": float(values[trough]),
                "change": change,
                "turns": bool(sign * change < 0),
            }
        )
    schema = {
        "task": pl.String(),
        "at_peak": pl.Float64(),
        "at_trough": pl.Float64(),
        "change": pl.Float64(),
        "turns": pl.Boolean(),
    }
    return pl.DataFrame(rows, schema=schema)


def _names(items: Sequence[str]) -> str:
    return ", ".join(f"`{x}`" for x in items) if items else "none"


def _step(value: Any) -> str:
    return _fmt(value, ".0f")


def _one_time(timing: pl.DataFrame, rises: dict[str, float], first_step: int | None) -> str:
    """A sentence when the domains' half-change steps bunch together far more tightly than their
    half-rise steps: then the metric changes once for all, and the timing check only says whose
    half-rise happens to lie nearest that moment. ``first_step`` is the first checkpoint after
    step 0: a change before it is routing leaving its initialisation."""
    changes = [x for x in timing["half_change"].to_list() if x is not None and math.isfinite(x)]
    if len(changes) < 2 or len(rises) < 2:
        return ""
    spread, rise_spread = max(changes) - min(changes), max(rises.values()) - min(rises.values())
    if spread >= 0.25 * rise_spread:
        return ""
    lo, hi = _step(min(changes)), _step(max(changes))
    when = f"at step {lo}" if lo == hi else f"within steps {lo}–{hi}"
    if first_step is not None and max(changes) < first_step:
        when += (
            f", before the first checkpoint after step 0 (step {first_step}), while routing "
            "leaves its initialisation,"
        )
    return (
        f" It covers half its change {when} in every domain while the domains' half-rises "
        f"spread over {_step(min(rises.values()))}–{_step(max(rises.values()))}: it changes once "
        "for all domains, so passing the timing check only says whose half-rise lies nearest "
        "that moment."
    )


def bottom_line(validation: Any, domains: Sequence[str]) -> str:
    """One sentence: in which real domains each pathway metric tracks its own domain's
    generalization by all the checks, and whether the control's drifts."""
    v = validation.verdicts
    cells, flagged = [], []
    for metric in _PAPER_SIGN:
        real = v.filter((pl.col("metric") == metric) & pl.col("group").is_in(list(domains)))
        if not real.height:
            continue
        tracking = real.filter(pl.col("tracks").fill_null(False))["group"].to_list()
        cells.append(
            f"{metric} in {len(tracking)} of {len(domains)} real domains ({_names(tracking)})"
        )
        control = v.filter((pl.col("metric") == metric) & pl.col("control"))
        if control["flagged"].fill_null(False).any():
            flagged.append(metric)
    if not cells:
        return "No pathway metric could be computed for a real domain."
    controls = _names(validation.controls)
    text = (
        "In short, a pathway metric passes all three checks (it tracks its own domain's "
        "generalization) for " + "; ".join(cells) + ". "
    )
    if flagged:
        text += (
            f"The control {controls}'s {' and '.join(flagged)} change by at least half the "
            "real domains' median change without any generalization, so on this run "
            + ("neither metric" if len(flagged) > 1 else f"{flagged[0]}")
            + " can be read as a sign of generalization alone."
        )
    elif validation.controls:
        text += f"The control {controls}'s metrics do not drift."
    return text


def own_time_sentences(
    validation: Any, domains: Sequence[str], *, first_step: int | None = None
) -> list[str]:
    """Per pathway metric: at whose time each real domain's metric changes, whether it does so
    beyond training time, and what the control domain's does.

    ``validation`` is the :class:`grokviz.metrics.Validation` of the run; ``domains`` the real
    domains (those without a metric, for want of memorized documents, are named as such);
    ``first_step`` the first checkpoint after step 0.
    """
    out = []
    timing, verdicts, corr = validation.timing, validation.verdicts, validation.correlations
    rises = {
        r["group"]: r["half_rise"]
        for r in timing.filter(~pl.col("group").is_in(validation.controls))
        .unique("group", maintain_order=True)
        .iter_rows(named=True)
        if r["half_rise"] is not None
    }
    for metric in _PAPER_SIGN:
        t = timing.filter(pl.col("metric") == metric)
        v = verdicts.filter(pl.col("metric") == metric)
        c = corr.filter(pl.col("metric") == metric)
        if not t.height:
            continue
        cells, on_time, beyond = [], [], []
        for d in domains:
            row = t.filter(pl.col("group") == d)
            if not row.height:
                continue
            r = row.row(0, named=True)
            interval = ""
            if r["half_change_low"] is not None and math.isfinite(r["half_change_low"]):
                interval = f" (95 % {_step(r['half_change_low'])} … {_step(r['half_change_high'])})"
            nearest = (
                min(rises, key=lambda g: abs(rises[g] - r["half_change"]))
                if rises and r["half_change"] is not None
                else None
            )
            cells.append(
                f"`{d}` at step {_step(r['half_change'])}{interval} against its half-rise at "
                f"{_step(r['half_rise'])}"
                + (f" (nearest: `{nearest}`'s)" if nearest is not None and nearest != d else "")
            )
            verdict = v.filter(pl.col("group") == d)
            if verdict.height and verdict["on_time"][0]:
                on_time.append(d)
            if verdict.height and verdict["beyond_time"][0]:
                beyond.append(d)
        without = [d for d in domains if not t.filter(pl.col("group") == d).height]
        text = f"**{metric}** covers half its change in " + "; in ".join(cells or ["no domain"])
        text += (
            f". It changes nearer its own domain's half-rise than any other's in "
            f"{len(on_time)} of {len(cells)} domains ({_names(on_time)}), and follows its own "
            f"domain's accuracy beyond training time (partial r with log step fixed, of the "
            f"paper's sign, interval excluding 0) in {len(beyond)} ({_names(beyond)})."
        )
        text += _one_time(t.filter(pl.col("group").is_in(list(domains))), rises, first_step)
        if without:
            text += f" No {metric} for {_names(without)}: none of its tracked documents met "
            text += "the memorization rule."
        for row in v.filter(pl.col("control")).iter_rows(named=True):
            cr = c.filter(pl.col("group") == row["group"])
            partial = cr["partial_real_mean"][0] if cr.height else None
            size = (
                "at least half"
                if row["change"] is not None
                and row["real_change"] is not None
                and row["change"] >= 0.5 * row["real_change"]
                else "less than half"
            )
            text += (
                f" The control `{row['group']}`, which never generalizes, changes by "
                f"{_fmt(row['change'], '.3g')}, {size} the real domains' median change "
                f"({_fmt(row['real_change'], '.3g')})"
                + (
                    ", and follows the real domains' mean accuracy beyond time"
                    if row["follows_real_mean"]
                    else f"; its partial r with the real domains' mean accuracy is "
                    f"{_fmt(partial)}, not beyond time"
                )
                + (
                    ": **the control drifts as a real domain does**"
                    if row["flagged"]
                    else ": the control does not drift"
                )
                + "."
            )
        out.append(text)
    return out


def dip_sentences(
    accuracy: pl.DataFrame,
    metrics: pl.DataFrame,
    tasks: Sequence[str],
    *,
    n_test: int,
    controls: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """What the falls of test accuracy show: a lead sentence, then one per dip (where it is and
    what it does to the half-rise timing) and one on whether the pathway metrics turn back, and
    whether the ``controls`` groups' metrics, whose accuracy has no dip to follow, move the same
    way over the same steps."""
    dips = accuracy_dips(accuracy, tasks, n_test=n_test)
    if not dips.height:
        return (
            "Test accuracy does not fall back after a peak by more than sampling noise in any "
            "domain, so there is no dip to test the metrics on.",
            [],
        )
    lead = (
        f"Test accuracy here is not monotone in training time: it falls back after a peak in "
        f"{dips.height} of {len(tasks)} groups (by at least 0.1 and three standard errors of "
        f"the difference over {n_test} test prompts):"
    )
    out = []
    for r in dips.iter_rows(named=True):
        back = (
            f", back to {r['peak']:.2f} or more by step {r['back_step']}"
            if r["back_step"] is not None
            else ", and never back to it"
        )
        text = (
            f"`{r['task']}`: {r['peak']:.2f} at step {r['peak_step']} → {r['trough']:.2f} at "
            f"step {r['trough_step']}{back}."
        )
        if r["sustained_half_step"] != r["half_step"]:
            text += (
                f" Its accuracy first covers half its rise at step {r['half_step']} but stays "
                f"there only from step {r['sustained_half_step']}; the timing control goes by "
                "when a series stays past half its change, so an early peak that was lost "
                "again does not set it."
            )
        out.append(text)
    moves = {m: dip_moves(metrics, dips, m) for m in _PAPER_SIGN}
    parts = []
    for metric, frame in moves.items():
        if not frame.height:
            continue
        turned = frame.filter(pl.col("turns"))["task"].to_list()
        detail = ", ".join(
            f"`{t}` {a:.3g} → {b:.3g}"
            for t, a, b in frame.select("task", "at_peak", "at_trough").iter_rows()
        )
        part = (
            f"{metric} turns back with accuracy (moves as the paper's sign says it does when "
            f"accuracy falls) in {len(turned)} of {frame.height} dips ({detail})"
        )
        for control in controls:
            same = dip_moves(
                metrics, dips.with_columns(task=pl.lit(control)), metric
            )  # the control's metric over each dip's steps
            if same.height:
                part += (
                    f", and the control `{control}`'s {metric} moves that way over the same "
                    f"steps in {int(same['turns'].sum())} of {same.height}"
                )
        parts.append(part)
    if parts:
        out.append(
            "From peak to trough, "
            + "; ".join(parts)
            + ". A metric that only drifts with training time moves the same way through a "
            "fall as through a rise; one that follows accuracy turns back with it"
            + (
                ", and not in a domain whose accuracy does not fall (a control that moves alike "
                "says the whole model's routing changed at those steps, not one domain's "
                "generalization)"
                if controls
                else ""
            )
            + ". The partial correlations with log step fixed above weigh exactly these "
            "departures from the trend, over all checkpoints."
        )
    return lead, out
