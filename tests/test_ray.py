"""Tracing and analysis on a Ray cluster: the store equals a local trace's, a worker killed in the
middle of a unit loses nothing, a killed driver resumes, and failures say what they are.

One local cluster (2 CPUs, loopback only) serves the whole module. Deterministic by gates, not
timing: a worker stops inside ``write_part`` (its unit computed, its claim held, nothing written)
until the test kills it or lets it go (see ``_ray_cluster``), and the test waits only for states:
files, the manifest, processes gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

import _ray_cluster as cluster
from _runs import make_samples, save_run, store_rows

from grokviz.cli import main as cli_main
from grokviz.errors import DeviceError, NonFiniteError
from grokviz.metrics import analyze
from grokviz.store import TraceStore
from grokviz.tracing import trace

STEPS = (100, 200)
N = 6
SHARD = 2  # 3 shards per checkpoint: 6 parts and 2 router tables in all
PARTS = len(STEPS) * (N // SHARD)
TIMEOUT = 240  # seconds any one wait may take on a slow, shared machine


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, as each Ray worker does (results then match)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="module")
def ray_cluster(gates: Path) -> Iterator[Any]:
    with cluster.start(gates) as ray:
        yield ray


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ray")
    run = save_run(folder / "run", steps=STEPS)
    samples = folder / "samples.parquet"
    make_samples(N).write_parquet(samples)
    return run, samples


@pytest.fixture(scope="module")
def reference(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same work traced locally, in this process, with a worker's one torch thread."""
    run, samples = setup
    out = tmp_path_factory.mktemp("ref") / "store"
    with torch_threads(1):
        trace(run, pl.read_parquet(samples), out, shard_size=SHARD, progress=False)
    return out


def _wait_for(what: str, check: Callable[[], bool], alive: Callable[[], bool] = lambda: True):
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert alive(), f"the driver ended while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _manifest(store: Path) -> dict[str, Any]:
    try:
        return json.loads((store / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"checkpoints": {}}


def _parts(store: Path) -> int:
    return sum(len(e["parts"]) for e in _manifest(store)["checkpoints"].values())


def _routers(store: Path) -> int:
    return sum(bool(e.get("routers")) for e in _manifest(store)["checkpoints"].values())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _same_store(got: Path, want: Path) -> None:
    a, b = store_rows(got), store_rows(want)
    for table in a:
        assert a[table].equals(b[table]), table
    assert TraceStore.open(got).verify().ok


def _argv(setup: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    run, samples = setup
    return [
        "trace",
        str(run),
        "--samples",
        str(samples),
        "--out",
        str(out),
        "--shard-size",
        str(SHARD),
        "--no-progress",
        *extra,
    ]


def test_trace_on_ray_equals_local_and_retries_a_killed_workers_unit(
    ray_cluster: Any, setup: tuple[Path, Path], reference: Path, gates: Path, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    cluster.reset(gates, after=0)  # the first part any worker writes is held at the gate
    result: list[int] = []
    driver = threading.Thread(
        target=lambda: result.append(cli_main(_argv(setup, out, "--ray", "--workers", "2")))
    )
    driver.start()
    try:
        _wait_for("a worker to hold a unit at the gate", (gates / "ready").exists, driver.is_alive)
        held = json.loads((gates / "ready").read_text())
        # the other worker traces every other unit, then the driver waits for the held one
        _wait_for(
            "the free units to be traced",
            lambda: _parts(out) == PARTS - 1 and _routers(out) == len(STEPS),
            driver.is_alive,
        )
        assert not _gone(held["pid"]) and driver.is_alive()
        os.kill(held["pid"], signal.SIGKILL)
        driver.join(TIMEOUT)
    finally:
        if driver.is_alive():
            (gates / "go").write_text("")
            driver.join(TIMEOUT)
    assert result == [0]
    _same_store(out, reference)
    writes = cluster.written(gates)
    units = [(label, shard) for _, label, shard in writes]
    assert len(units) == len(set(units)) == PARTS, "every part written once"
    retried = [
        pid for pid, label, shard in writes if (label, shard) == (held["label"], held["shard"])
    ]
    assert retried and retried[0] != held["pid"], "the killed worker's unit was traced by another"
    assert held["pid"] not in {pid for pid, _, _ in writes}
    # a finished store: running again traces nothing and starts no worker
    assert cli_main(_argv(setup, out, "--ray")) == 0
    assert cluster.written(gates) == writes


DRIVER = r"""
import sys
import ray
sys.path.insert(0, sys.argv[1])
import _ray_cluster
ray.init(address=sys.argv[2], runtime_env=_ray_cluster.runtime_env(__import__("pathlib").Path(sys.argv[3])),
         log_to_driver=False, configure_logging=False)
from grokviz.cli import main
sys.exit(main(sys.argv[4:]))
"""


def test_rerun_after_the_driver_is_killed_resumes(
    ray_cluster: Any, setup: tuple[Path, Path], reference: Path, gates: Path, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    cluster.reset(gates, after=2)  # the one worker writes two parts, then stops at the gate
    address = ray_cluster.get_runtime_context().gcs_address
    argv = _argv(setup, out, "--ray", "--workers", "1")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(cluster.HERE), address, str(gates), *argv],
        env={**os.environ, **cluster.cluster_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            "the worker to reach the gate", (gates / "ready").exists, lambda: driver.poll() is None
        )
        worker = json.loads((gates / "ready").read_text())["pid"]
        assert _parts(out) == 2
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*-0000[0-9].parquet")}
        driver.send_signal(signal.SIGKILL)
        driver.wait(TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(TIMEOUT)
    assert driver.returncode == -signal.SIGKILL
    # Ray ends a dead driver's workers; the unit the worker held is free with it
    _wait_for("Ray to end the dead driver's worker", lambda: _gone(worker))
    assert _parts(out) == 2
    assert cli_main(_argv(setup, out, "--ray")) == 0
    _same_store(out, reference)
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was traced again"
    units = [(label, shard) for _, label, shard in cluster.written(gates)]
    assert len(units) == len(set(units)) == PARTS


def test_analyze_on_ray_equals_local(ray_cluster: Any, reference: Path, capsys) -> None:
    kwargs: dict[str, Any] = {"memorized_only": False, "n_boot": 50, "progress": False}
    with torch_threads(1):
        local = analyze(reference, **kwargs)
    on_ray = analyze(reference, engine="ray", **kwargs)
    assert local.height > 0
    assert on_ray.equals(local)
    with torch_threads(1):
        assert cli_main(["metrics", str(reference), "--all-samples", "--no-progress"]) == 0
    printed_local = capsys.readouterr().out
    assert cli_main(["metrics", str(reference), "--all-samples", "--no-progress", "--ray"]) == 0
    assert capsys.readouterr().out == printed_local


def test_devices_are_checked_against_the_cluster_before_anything_is_written(
    ray_cluster: Any, setup: tuple[Path, Path], reference: Path, tmp_path: Path
) -> None:
    run, samples = setup
    out = tmp_path / "store"
    with pytest.raises(DeviceError, match="0 GPU"):
        trace(run, pl.read_parquet(samples), out, engine="ray", gpus_per_worker=1)
    with pytest.raises(DeviceError, match="--gpus-per-worker 1"):
        trace(run, pl.read_parquet(samples), out, engine="ray", device="cuda")
    assert not out.exists()
    with pytest.raises(DeviceError, match="0 GPU"):
        analyze(reference, engine="ray", device="cuda", memorized_only=False, progress=False)


def test_a_workers_error_reaches_the_driver_as_itself(
    ray_cluster: Any, gates: Path, tmp_path: Path
) -> None:
    import torch

    from grokviz.testing import char_tokenizer, tiny_moe

    model = tiny_moe("olmoe", seed=3)
    with torch.no_grad():
        model.model.layers[0].mlp.gate.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "run" / "step-000100")
    char_tokenizer().save_pretrained(tmp_path / "run" / "step-000100")
    cluster.reset(gates)
    out = tmp_path / "store"
    with pytest.raises(NonFiniteError, match="nothing of the shard was written"):
        trace(
            tmp_path / "run",
            make_samples(2),
            out,
            engine="ray",
            workers=1,
            on_nonfinite="error",
            progress=False,
        )
    assert _parts(out) == 0
