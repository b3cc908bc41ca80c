"""Doctest set-up: every module's ``Examples`` run in ``make test`` (``pytest --doctest-modules grokviz``).

Examples read like a user's session in a clone of the repository: they may use these names
without building them, the way polars' examples use a ``df``:

- ``store``: the shipped toy run's trace store (``data/samples/toy/trace``);
- ``samples``: its samples table; ``accuracy``: its accuracy table.

They run from the repository root, offline, on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle torch threads sleep instead of spinning: on a busy shared machine spinning threads burn
# the cores the working ones need (the toy's 2-thread training ran several times slower). The
# results are the same; only the waiting changes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent
SHIPPED = ROOT / "data" / "samples" / "toy"


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    if not isinstance(request.node, pytest.DoctestItem):
        return
    namespace: dict[str, Any] = request.getfixturevalue("doctest_namespace")
    import polars as pl

    from grokviz.store import TraceStore

    namespace.setdefault("pl", pl)
    namespace.setdefault("store", TraceStore.open(SHIPPED / "trace"))
    namespace.setdefault("samples", pl.read_parquet(SHIPPED / "samples.parquet"))
    namespace.setdefault("accuracy", pl.read_parquet(SHIPPED / "accuracy.parquet"))
    request.getfixturevalue("monkeypatch").chdir(ROOT)
