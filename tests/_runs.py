"""Tiny checkpoint series and sample tables the store and trace tests share."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from grokviz.testing import char_tokenizer, tiny_moe

STEPS = (100, 200, 300)
N_LAYERS = 2
N_EXPERTS = 8


def make_samples(n: int = 7, *, start: int = 0) -> pl.DataFrame:
    ids = [f"s{i:02d}" for i in range(start, start + n)]
    texts = [("memorize " * (1 + i % 4)) + f"then generalize #{i}" for i in range(start, start + n)]
    return pl.DataFrame(
        {"sample_id": ids, "text": texts, "domain": ["toy"] * n, "split": ["train"] * n}
    )


def save_run(folder: Path, steps=STEPS, *, seed: int = 0, **config) -> Path:
    """Save tiny OLMoE checkpoints as ``folder/step-000100/`` ... with a char tokenizer."""
    tok = char_tokenizer()
    for i, step in enumerate(steps):
        out = folder / f"step-{step:06d}"
        tiny_moe("olmoe", seed=seed + i, **config).save_pretrained(out)
        tok.save_pretrained(out)
    return folder


def part_mtimes(store: Path) -> dict[str, int]:
    """mtime_ns of every Parquet part, keyed by its path relative to the store."""
    return {
        str(p.relative_to(store)): p.stat().st_mtime_ns
        for p in store.rglob("*-[0-9][0-9][0-9][0-9][0-9].parquet")
    }


def store_rows(store_path: Path) -> dict[str, pl.DataFrame]:
    """A store's tables, sorted, for comparing two stores' contents."""
    from grokviz.store import TraceStore

    store = TraceStore.open(store_path)
    keys = {
        "losses": ["checkpoint", "sample_id"],
        "routing": ["checkpoint", "sample_id", "layer"],
        "token_routing": ["checkpoint", "sample_id", "token_index", "layer"],
        "routers": ["checkpoint", "layer", "expert"],
    }
    return {name: getattr(store, name)().sort(cols) for name, cols in keys.items()} | {
        "samples": store.samples()
    }
