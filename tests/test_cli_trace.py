"""`grokviz trace` on the command line: a store, clean errors, and surviving SIGINT and SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")

from _runs import N_LAYERS, make_samples, save_run

from grokviz.cli import main as cli_main
from grokviz.cli._trace import main
from grokviz.store import TraceStore
from grokviz.testing import char_tokenizer, tiny_dense

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
    return {
        str(p.relative_to(store)): p.stat().st_mtime_ns
        for p in store.rglob("*-[0-9][0-9][0-9][0-9][0-9].parquet")
    }


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


def _bad_inputs(tmp: Path, run: Path, samples: Path) -> dict[str, tuple[list[str], str]]:
    """Failures a user can cause, each with the words its one-line message must contain."""
    (tmp / "samples.txt").write_text("x")
    (tmp / "broken.csv").write_text("sample_id,text\n1,a,b,c\n2\n")
    pl.DataFrame({"sample_id": ["a"], "words": ["b"]}).write_parquet(tmp / "nocols.parquet")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("mine")
    truncated = tmp / "truncated" / "step-000100"
    shutil.copytree(run / "step-000100", truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    base = make_samples(3)
    base.with_columns(pl.lit(None, pl.String).alias("domain")).write_parquet(tmp / "nulls.parquet")
    base.with_columns(pl.lit("Train").alias("split")).write_parquet(tmp / "split.parquet")
    ok = ["--samples", str(samples), "--out", str(tmp / "store")]
    return {
        "missing file": ([str(run), "--samples", f"{tmp}/missing.parquet"], "missing.parquet"),
        "unknown suffix": ([str(run), "--samples", f"{tmp}/samples.txt"], ".parquet, .csv"),
        "folder as samples": ([str(run), "--samples", str(tmp)], "is a folder"),
        "malformed csv": ([str(run), "--samples", f"{tmp}/broken.csv"], "broken.csv"),
        "missing column": ([str(run), "--samples", f"{tmp}/nocols.parquet"], "lacks column"),
        "unknown revision": ([str(run), *ok, "--revisions", "step-999999"], "step-999999"),
        "damaged weights": ([str(truncated), *ok], "cannot load the model"),
        "no cuda": ([str(run), *ok, "--device", "cuda"], "no CUDA GPU"),
        "unknown device": ([str(run), *ok, "--device", "tpu9"], "unknown device"),
        "hub offline": (["someone/some-moe", *ok], "HF_HUB_OFFLINE"),
        "not a store": (
            [str(run), "--samples", str(samples), "--out", str(tmp / "mine")],
            "not a grokviz trace store",
        ),
        "unknown select": ([str(run), *ok, "--select", "s99"], "s99"),
        "batch size": ([str(run), *ok, "--batch-size", "0"], "batch_size"),
        "max length": ([str(run), *ok, "--max-length", "1"], "max_length"),
        "null domain": ([str(run), "--samples", f"{tmp}/nulls.parquet"], "null domain"),
        "odd split": ([str(run), "--samples", f"{tmp}/split.parquet"], "did you mean 'train'"),
        "unwritable out": (
            [str(run), "--samples", str(samples), "--out", "/proc/x"],
            "cannot create",
        ),
        "hub revision offline": (["someone/some-moe@step5", *ok], "HF_HUB_OFFLINE"),
    }


BAD_INPUTS = [
    "missing file",
    "unknown suffix",
    "folder as samples",
    "malformed csv",
    "missing column",
    "unknown revision",
    "damaged weights",
    "no cuda",
    "unknown device",
    "hub offline",
    "not a store",
    "unknown select",
    "batch size",
    "max length",
    "null domain",
    "odd split",
    "unwritable out",
    "hub revision offline",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_cli_errors_are_one_line_without_a_traceback(
    setup: tuple[Path, Path], tmp_path: Path, capsys, case: str
) -> None:
    run, samples = setup
    args, message = _bad_inputs(tmp_path, run, samples)[case]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "store")]
    assert cli_main(["trace", *args, "--no-progress"]) == 2
    captured = capsys.readouterr()
    # progress lines ("grokviz: ...") aside, the failure is one line
    err = [line for line in captured.err.strip().splitlines() if not line.startswith("grokviz: ")]
    assert len(err) == 1 and err[0].startswith("grokviz trace: error:"), captured.err
    assert message in err[0] and "Traceback" not in captured.err


def test_an_unexpected_failure_is_one_line_and_debug_shows_it(
    setup: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grokviz.tracing

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(grokviz.tracing, "trace", broken)
    run, samples = setup
    argv = ["trace", str(run), "--samples", str(samples), "--out", str(tmp_path / "s")]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected ZeroDivisionError: a bug" in err
    assert "--debug" in err and "Traceback" not in err
    assert cli_main([*argv, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_cli_dense_checkpoint_is_a_clean_error(tmp_path: Path, capsys) -> None:
    dense = tmp_path / "dense" / "step-000100"
    tiny_dense().save_pretrained(dense)
    char_tokenizer().save_pretrained(dense)
    samples = tmp_path / "samples.parquet"
    make_samples(2).write_parquet(samples)
    argv = [str(dense), "--samples", str(samples), "--out", str(tmp_path / "s"), "--no-progress"]
    assert cli_main(["trace", *argv]) == 2
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
        if n == 0:  # recorded when the run started, nothing traced yet: nothing to say
            continue
        said = f"all {n}" if n == N_SAMPLES else f"{n} of {N_SAMPLES}"
        assert any(f"{label}: {said} parts already traced" in r.message for r in caplog.records)
    after = _mtimes(store)
    for label, parts in done_before.items():
        for shard in parts:
            for table in ("losses", "routing", "token_routing"):
                name = f"{label}/{table}-{int(shard):05d}.parquet"
                assert after[name] == mtimes[name], f"{name} was recomputed"
    assert len(after) == 3 * total

    routing = TraceStore.open(store).routing()
    keys = routing.select("checkpoint", "sample_id", "layer")
    assert keys.height == len(STEPS) * N_SAMPLES * N_LAYERS
    assert keys.is_unique().all()
    assert not list(store.rglob("*.grokviz-tmp"))
