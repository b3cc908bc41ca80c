"""Inputs round-trip exactly, and analysis says so when what it was given is incomplete."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")

from _runs import make_samples, save_run

from grokviz.cli import read_table
from grokviz.errors import InputError, TraceStoreError
from grokviz.metrics import analyze
from grokviz.store import TraceStore, check_samples
from grokviz.tracing import trace

IDS = ["007", "7", "0x1F", "1e3", "a b", "é"]


def _samples(ids: list[str] = IDS) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {"sample_id": ids, "text": [f"text {i}" for i in range(n)], "domain": "d", "split": "train"}
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_sample_ids_round_trip_exactly_from_files(tmp_path: Path, suffix: str) -> None:
    """CSV ids such as "007" used to come back as the integer 7."""
    path = tmp_path / f"samples{suffix}"
    frame = _samples()
    {".parquet": frame.write_parquet, ".csv": frame.write_csv, ".jsonl": frame.write_ndjson}[
        suffix
    ](path)
    read = check_samples(read_table(path, what="samples"))
    assert read["sample_id"].to_list() == IDS


def test_sample_ids_round_trip_from_pandas_and_pyarrow() -> None:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    frame = _samples()
    assert check_samples(frame.to_pandas())["sample_id"].to_list() == IDS
    assert check_samples(pa.table(frame.to_dict(as_series=False)))["sample_id"].to_list() == IDS
    ints = pd.DataFrame({"sample_id": [7, 8], "text": ["a", "b"], "domain": "d", "split": "test"})
    assert check_samples(ints)["sample_id"].to_list() == ["7", "8"]
    floats = ints.assign(sample_id=[7.0, 8.0])
    with pytest.raises(InputError, match="floating-point"):
        check_samples(floats)


def test_a_store_keeps_the_ids_it_was_given(tmp_path: Path) -> None:
    run = save_run(tmp_path / "run", steps=(100,))
    csv = tmp_path / "s.csv"
    _samples().write_csv(csv)
    store = trace(run, read_table(csv, what="samples"), tmp_path / "store", progress=False)
    assert store.samples()["sample_id"].to_list() == IDS
    assert sorted(store.losses()["sample_id"].to_list()) == sorted(IDS)


def test_a_write_that_fails_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from grokviz.store import _files

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files.os, "fsync", full)
    with pytest.raises(TraceStoreError, match=r"part\.parquet.*No space.*finished parts are kept"):
        _files.write_bytes(tmp_path / "part.parquet", b"data")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# -- analysis says what it was not given ------------------------------------------------------


@pytest.fixture(scope="module")
def partial_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("partial")
    run = save_run(folder / "run")
    store = folder / "store"
    trace(run, make_samples(6), store, shard_size=3, progress=False)
    # forget one part of the last checkpoint, as an interrupted run leaves it
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["checkpoints"]["step-000300"]["parts"]["1"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store


def test_analyze_says_which_checkpoints_are_partly_traced(partial_store: Path) -> None:
    with pytest.warns(UserWarning, match=r"step-000300 \(1 of 2 parts\).*same `grokviz trace`"):
        metrics = analyze(partial_store, memorized_only=False, progress=False, n_boot=0)
    assert set(metrics["step"]) == {100, 200, 300}


def test_analyze_says_when_accuracy_names_checkpoints_the_store_lacks(tmp_path: Path) -> None:
    run = save_run(tmp_path / "run", steps=(100, 200))
    store = trace(run, make_samples(4), tmp_path / "store", progress=False)
    accuracy = pl.DataFrame(
        {
            "checkpoint": ["step-000100", "step-000200", "step-000900"],
            "step": [100, 200, 900],
            "task": "toy",
            "accuracy": [0.1, 0.2, 0.9],
        }
    )
    with pytest.warns(UserWarning, match=r"lacks \(\['step-000900'\]\)"):
        analyze(store, accuracy=accuracy, memorized_only=False, progress=False, n_boot=0)


def test_analyze_leaves_out_non_finite_samples_and_says_so(tmp_path: Path) -> None:
    import torch

    from grokviz.testing import char_tokenizer, tiny_moe
    from grokviz.tracing import Checkpoint

    samples = make_samples(4)
    store = tmp_path / "store"
    for step, broken in ((1, False), (2, True)):
        model = tiny_moe(seed=step)
        if broken:
            with torch.no_grad():
                model.model.embed_tokens.weight[:] = float("nan")
        checkpoint = Checkpoint("live", label=f"step-{step}", step=step)
        with pytest.warns(UserWarning) if broken else _no_warning():
            trace(
                model,
                samples,
                store,
                tokenizer=char_tokenizer(),
                checkpoint=checkpoint,
                progress=False,
            )
    with pytest.warns(UserWarning, match=r"non-finite.*left out"):
        metrics = analyze(store, memorized_only=False, progress=False, n_boot=0)
    assert metrics.filter(pl.col("step") == 2).height == 0  # every sample was left out there
    assert metrics.filter(pl.col("step") == 1)["value"].is_finite().all()


def test_analyze_refuses_a_store_whose_router_table_is_damaged(
    partial_store: Path, tmp_path: Path
) -> None:
    """Metrics used to warn and silently drop consistency for such a checkpoint."""
    copy = Path(shutil.copytree(partial_store, tmp_path / "copy"))
    (copy / "step-000100" / "routers.parquet").unlink()
    with pytest.raises(TraceStoreError, match=r"routers\.parquet.*grokviz verify"):
        analyze(copy, memorized_only=False, progress=False, n_boot=0)


class _no_warning:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def test_reading_and_verifying_a_store_writes_nothing(partial_store: Path, tmp_path: Path) -> None:
    """A colleague's store, read-only to us, must be readable: reading never locks or writes."""
    copy = Path(shutil.copytree(partial_store, tmp_path / "copy"))
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    store = TraceStore.open(copy)
    store.losses(), store.routing(), store.samples(), store.verify()
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before
