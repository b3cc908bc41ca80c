"""Several real processes tracing one store: they share its units, a dead one's units are taken
over, and an incompatible one is refused before it writes anything.

Made deterministic with gates, not timing: a child process traces with ``StoreWriter.write_part``
wrapped so that, holding the claim of its first unit, it announces itself and waits for the test
to open the gate. The test only ever waits for states (a file, the manifest), never sleeps for luck.
"""

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

from _runs import make_samples, save_run, store_rows

from grokviz.store import TraceStore
from grokviz.tracing import trace

STEPS = (100,)
N = 4  # samples, one per unit
TIMEOUT = 240  # seconds any one wait may take on a slow, shared machine

CHILD = r"""
import json, sys, time
from pathlib import Path
import polars as pl
from grokviz.store import StoreWriter
from grokviz.tracing import trace

run, store, gates, name, samples, gated, max_length = sys.argv[1:8]
gates = Path(gates)
real = StoreWriter.write_part
written = []

def write_part(self, label, shard, frames, **kwargs):
    if gated == "1" and not written:
        (gates / f"{name}.ready").write_text(f"{label} {shard}")
        while not (gates / f"{name}.go").exists():
            time.sleep(0.01)
    real(self, label, shard, frames, **kwargs)
    written.append([label, shard])

StoreWriter.write_part = write_part
trace(run, pl.read_parquet(samples), store, shard_size=1, max_length=int(max_length),
      progress=False)
(gates / f"{name}.done").write_text(json.dumps(written))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_run(tmp_path_factory.mktemp("run"), steps=STEPS)


def _start(
    run: Path,
    store: Path,
    gates: Path,
    name: str,
    samples: pl.DataFrame,
    *,
    gated: bool,
    max_length: int = 512,
) -> subprocess.Popen[str]:
    samples_file = gates / f"{name}.samples.parquet"
    samples.write_parquet(samples_file)
    argv = [str(run), str(store), str(gates), name, str(samples_file), str(int(gated))]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv, str(max_length)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(what: str, check, *procs: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                pytest.fail(f"a child died while waiting for {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _done_parts(store: Path) -> int:
    try:
        manifest = json.loads((store / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(len(e["parts"]) for e in manifest["checkpoints"].values())


def _finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err


def _units(gates: Path, name: str) -> list[tuple[str, int]]:
    return [tuple(u) for u in json.loads((gates / f"{name}.done").read_text())]


@pytest.fixture(scope="module")
def reference(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same work traced by one process."""
    out = tmp_path_factory.mktemp("ref") / "store"
    trace(run, make_samples(N), out, shard_size=1, progress=False)
    return out


def _same_store(got: Path, want: Path) -> None:
    a, b = store_rows(got), store_rows(want)
    for table in a:
        assert a[table].equals(b[table]), table
    assert TraceStore.open(got).verify().ok


def test_two_processes_share_the_units_of_one_store(
    run: Path, reference: Path, tmp_path: Path
) -> None:
    store, gates = tmp_path / "store", tmp_path
    first = _start(run, store, gates, "a", make_samples(N), gated=True)
    try:
        _wait_for("a to hold its first unit", (gates / "a.ready").exists, first)
        second = _start(run, store, gates, "b", make_samples(N), gated=False)
        total = len(STEPS) * N
        # b traces everything a does not hold, then waits for a's unit
        _wait_for("b to finish the free units", lambda: _done_parts(store) == total - 1, second)
        assert second.poll() is None, "b must wait for the unit a holds"
        (gates / "a.go").write_text("")
        _finish(first)
        _finish(second)
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    a, b = _units(gates, "a"), _units(gates, "b")
    label, shard = (gates / "a.ready").read_text().split()
    assert a == [(label, int(shard))]
    assert not set(a) & set(b), "no unit was traced twice"
    assert len(a) + len(b) == len(STEPS) * N
    _same_store(store, reference)


def test_samples_added_while_another_process_traces_are_traced_too(
    run: Path, tmp_path: Path
) -> None:
    """The issue's example: a second trace with new samples was refused *after* writing a new
    samples.parquet; the first then wrote its manifest and the new samples were never traced."""
    store, gates = tmp_path / "store", tmp_path
    first = _start(run, store, gates, "a", make_samples(3), gated=True)
    try:
        _wait_for("a to hold its first unit", (gates / "a.ready").exists, first)
        more = pl.concat([make_samples(3), make_samples(N - 3, start=3)])
        second = _start(run, store, gates, "b", more, gated=False)
        total = len(STEPS) * N
        _wait_for("b to finish the free units", lambda: _done_parts(store) == total - 1, second)
        (gates / "a.go").write_text("")
        _finish(first)
        _finish(second)
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    traced = TraceStore.open(store)
    assert traced.samples()["sample_id"].to_list() == [f"s{i:02d}" for i in range(N)]
    losses = traced.losses()
    assert losses.height == len(STEPS) * N
    assert losses.select("checkpoint", "sample_id").is_unique().all()
    assert traced.verify().ok
    # the second process's sample set was recorded, and only once
    assert [s["rows"] for s in traced.manifest["sample_sets"]] == [[0, 3], [3, N]]


def test_the_unit_of_a_killed_process_is_taken_over(
    run: Path, reference: Path, tmp_path: Path
) -> None:
    store, gates = tmp_path / "store", tmp_path
    first = _start(run, store, gates, "a", make_samples(N), gated=True)
    try:
        _wait_for("a to hold its first unit", (gates / "a.ready").exists, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert _done_parts(store) == 0
    trace(run, make_samples(N), store, shard_size=1, progress=False)  # a claim is free at once
    _same_store(store, reference)


def test_an_incompatible_process_is_refused_before_it_writes(
    run: Path, reference: Path, tmp_path: Path
) -> None:
    store, gates = tmp_path / "store", tmp_path
    first = _start(run, store, gates, "a", make_samples(N), gated=True)
    try:
        _wait_for("a to hold its first unit", (gates / "a.ready").exists, first)
        before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        other = _start(run, store, gates, "b", make_samples(N), gated=False, max_length=32)
        _, err = other.communicate(timeout=TIMEOUT)
        assert other.returncode != 0 and "max_length=512" in err
        after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        assert after == before, "the refused process wrote into the store"
        (gates / "a.go").write_text("")
        _finish(first)
    finally:
        if first.poll() is None:
            first.kill()
    _same_store(store, reference)


def test_a_ctrl_c_as_a_claim_is_released_never_closes_its_descriptor_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGINT lands right after a unit finishes, i.e. while its claim is released: a
    # KeyboardInterrupt just after the close must not leave the descriptor recorded, or the
    # claim's __del__ closes it again (EBADF at exit, or another file that got its number).
    from grokviz.store import _lock

    claim = _lock.Claim.acquire(tmp_path, "step-1.00000")
    assert claim is not None
    closed: list[int] = []
    real_close = os.close

    def close_then_interrupt(fd: int) -> None:
        real_close(fd)
        closed.append(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(_lock.os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        claim.release()
    monkeypatch.setattr(_lock.os, "close", real_close)
    claim.release()
    claim.__del__()
    assert len(closed) == 1
    assert _lock.Claim.acquire(tmp_path, "step-1.00000") is not None  # free again
