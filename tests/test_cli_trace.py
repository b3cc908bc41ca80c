"""`grokviz trace` on the command line: a store, clean errors, and surviving SIGINT and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")

from grokviz.cli._trace import main
from grokviz.store import TraceStore
from grokviz.testing import char_tokenizer, tiny_dense

sys.path.insert(0, str(Path(__file__).parent))
from test_store import N_LAYERS, make_samples, save_run

STEPS = (100, 200, 300)
N_SAMPLES = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    run = save_run(folder / "run", steps=STEPS)
    samples = folder / "samples.parquet"
    make_samples(N_SAMPLES).write_parquet(samples)
    return run, samples


def _finished(store: Path) -> dict[str, list[int]]:
    try:
        manifest = json.loads((store / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {label: e["parts"] for label, e in manifest["checkpoints"].items()}


def _mtimes(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*-0*.parquet")}


def test_cli_writes_a_store(setup: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    run, samples = setup
    csv = tmp_path / "samples.csv"
    pl.read_parquet(samples).head(4).write_csv(csv)
    out = tmp_path / "store"
    argv = [
        str(run),
        "--samples",
        str(csv),
        "--out",
        str(out),
        "--revisions",
        "step-000100,step-000300",
    ]
    argv += ["--select", "s01", "--max-length", "32", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    assert "2 of 2 checkpoint(s) complete" in capsys.readouterr().out
    store = TraceStore.open(out)
    assert store.checkpoints()["checkpoint"].to_list() == ["step-000100", "step-000300"]
    assert store.params["max_length"] == 32
    assert store.losses().height == 2 * 4
    assert set(store.token_routing()["sample_id"]) == {"s01"}


def test_cli_reads_jsonl(setup: tuple[Path, Path], tmp_path: Path) -> None:
    run, samples = setup
    jsonl = tmp_path / "samples.jsonl"
    pl.read_parquet(samples).head(2).write_ndjson(jsonl)
    argv = [str(run / "step-000200"), "--samples", str(jsonl), "--out", str(tmp_path / "s")]
    assert main([*argv, "--no-progress", "-q"]) == 0
    assert TraceStore.open(tmp_path / "s").routing().height == 2 * N_LAYERS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "{tmp}/missing.parquet"], "missing.parquet"),
        (["--samples", "{tmp}/samples.txt"], ".parquet, .csv, .jsonl"),
        (["--samples", "{samples}", "--revisions", "step-999999"], "step-999999"),
    ],
)
def test_cli_errors_are_one_line(
    setup: tuple[Path, Path], tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    run, samples = setup
    (tmp_path / "samples.txt").write_text("x")
    args = [a.format(tmp=tmp_path, samples=samples) for a in args]
    assert main([str(run), *args, "--out", str(tmp_path / "store"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grokviz trace: error:")
    assert message in err[0]


def test_cli_dense_checkpoint_is_a_clean_error(tmp_path: Path, capsys) -> None:
    dense = tmp_path / "dense" / "step-000100"
    tiny_dense().save_pretrained(dense)
    char_tokenizer().save_pretrained(dense)
    samples = tmp_path / "samples.parquet"
    make_samples(2).write_parquet(samples)
    argv = [str(dense), "--samples", str(samples), "--out", str(tmp_path / "s"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "llama" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_run_resumes_without_recomputing(
    setup: tuple[Path, Path], tmp_path: Path, sig: signal.Signals, caplog
) -> None:
    run, samples = setup
    store = tmp_path / "store"
    argv = [str(run), "--samples", str(samples), "--out", str(store), "--shard-size", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "grokviz", "trace", *argv, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 240
    try:
        while sum(map(len, _finished(store).values())) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no part finished in time"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = len(STEPS) * N_SAMPLES
    done_before = _finished(store)
    n_before = sum(map(len, done_before.values()))
    assert 1 <= n_before < total, "the run was not interrupted mid-way"
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in err and "run the same command again to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    mtimes = _mtimes(store)

    with caplog.at_level("INFO", logger="grokviz"):
        assert main([*argv, "--no-progress"]) == 0
    for label, parts in done_before.items():
        n = len(parts)
        said = f"all {n}" if n == N_SAMPLES else f"{n} of {N_SAMPLES}"
        assert any(f"{label}: {said} parts already traced" in r.message for r in caplog.records)
    after = _mtimes(store)
    for label, parts in done_before.items():
        for shard in parts:
            for table in ("losses", "routing", "token_routing"):
                name = f"{label}/{table}-{shard:05d}.parquet"
                assert after[name] == mtimes[name], f"{name} was recomputed"
    assert len(after) == 3 * total

    routing = TraceStore.open(store).routing()
    keys = routing.select("checkpoint", "sample_id", "layer")
    assert keys.height == len(STEPS) * N_SAMPLES * N_LAYERS
    assert keys.is_unique().all()
    assert not list(store.rglob("*.grokviz-tmp"))
