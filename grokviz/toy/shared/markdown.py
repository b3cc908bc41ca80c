"""The Markdown both toy reports are made of: number cells, tables, and the kept findings.

:mod:`grokviz.toy.arithmetic.report` and :mod:`grokviz.toy.lm.report` render their numbers with these
helpers, so a value looks the same in both: ``–`` for a missing or non-finite number, correlations
as ``+0.93``, correlation tables with one ``Pearson / Spearman`` cell per group and metric. A
report ends with :data:`FINDINGS_MARKER`; :func:`_write_with_findings` keeps the hand-written
discussion below it when the numbers are regenerated.

Examples
--------
>>> _fmt(-0.9312), _fmt(None), _fmt(float("nan"))
('-0.93', '–', '–')
>>> print(_frame_md(pl.DataFrame({"domain": ["add"], "step": [750.0]}), int_floats=True))
| domain | step |
|---|---|
| add | 750 |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

_PAPER_SIGN = {"distance": -1, "consistency": +1}
"""The sign of each pathway metric's correlation with test accuracy in the paper's Table 1."""

_METRIC_NAMES = {
    "distance": "avg pathway distance",
    "consistency": "pathway consistency",
    "loss": "training loss",
    "val_loss": "validation loss",
    "entropy": "routing entropy",
}
"""Column titles of the metrics of Table 1, in the reports' column order."""


def _label(group: str, controls: Sequence[str]) -> str:
    """A group's name as the reports show it: a negative control's marked ``(control)``."""
    return f"{group} (control)" if group in controls else group


FINDINGS_MARKER = "<!-- findings -->"
"""Where a report keeps a hand-written discussion when it regenerates the numbers."""


def _fmt(value: Any, spec: str = "+.2f") -> str:
    """``value`` formatted with ``spec``; ``–`` for None, NaN or an infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _frame_md(frame: pl.DataFrame, spec: str = ".2f", *, int_floats: bool = False) -> str:
    """``frame`` as a Markdown table: floats formatted with ``spec``, None as ``–``.

    With ``int_floats``, a whole float of at least 1 is written as an integer (a median step:
    ``750`` rather than ``750.00``); the first toy's report does so, the LM report does not.
    """

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if int_floats and math.isfinite(value) and value.is_integer() and abs(value) >= 1:
                return str(int(value))
            return _fmt(value, spec)
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|---" * frame.width + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def _corr_md(
    table: pl.DataFrame, groups: Sequence[str], metrics: Sequence[str] | None = None
) -> str:
    """Correlation rows (group, metric, pearson_r, spearman_r) as a Markdown table: a row per
    group, a ``Pearson / Spearman`` cell per metric (default: every metric of Table 1)."""
    names = list(_METRIC_NAMES) if metrics is None else list(metrics)
    head = "| group | " + " | ".join(f"{_METRIC_NAMES.get(m, m)} (P / S)" for m in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for group in groups:
        cells = []
        for metric in names:
            row = table.filter((pl.col("group") == group) & (pl.col("metric") == metric))
            if row.height:
                cells.append(f"{_fmt(row['pearson_r'][0])} / {_fmt(row['spearman_r'][0])}")
            else:
                cells.append("–")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_with_findings(
    path: Path, text: str, *, findings: str | None = None, end: str = ""
) -> Path:
    """Write the report ``text`` to ``path``, with findings below its :data:`FINDINGS_MARKER`.

    ``findings`` (Markdown) goes below the marker, followed by ``end``; by default the discussion
    already in ``path`` below the marker is kept, so regenerating the numbers does not drop it.
    Without findings the marker stays bare.
    """
    if findings is None and path.is_file():
        old = path.read_text()
        if FINDINGS_MARKER in old:
            findings = old.split(FINDINGS_MARKER, 1)[1].strip()
    if findings:
        text = text.replace(FINDINGS_MARKER, f"{FINDINGS_MARKER}\n\n{findings}{end}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
