"""A small Ray cluster on this machine for the Ray tests, and the gate its workers pass through.

The cluster (:func:`start`) has 2 CPUs, listens on loopback only, has no dashboard, a small object
store and no usage reports. Its worker processes run :func:`install` at start-up (Ray's
``worker_process_setup_hook``): it wraps ``StoreWriter.write_part`` so that the tests can stop one
worker at a known point, a gate, instead of hoping to catch it at the right moment:

- the test writes ``armed`` (a number N) into the gates folder; the first worker process to reach
  its (N+1)-th ``write_part`` takes the gate (``taken``, created exclusively), writes ``ready``
  (its pid and the unit, while it holds the unit's claim with the unit computed but not
  written), and waits until the test creates ``go`` or kills it;
- every part any worker writes is appended to ``written.log`` (pid, checkpoint, shard), so a test
  can tell which process wrote each unit, and that none was written twice.

Why the extra ``PYTHONPATH`` entry for the cluster's processes (:data:`STUB`): the test
environment has jupyterlab, whose ``jsonschema[format-nongpl]`` brings ``rfc3987-syntax``; importing
it builds an Earley grammar, 3-4 CPU-seconds in every process that imports Ray. On a loaded 2-core
machine Ray's own agents then miss the raylet's 15-second start-up deadline and the cluster never
starts. The stub makes that optional module absent (jsonschema then skips IRI format checks,
which Ray does not use); nothing of grokviz runs differently.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
STUB = HERE / "_ray_stub"
GATES_ENV = "GROKVIZ_TEST_GATES"
# Ray's switch for "this is a one-machine cluster": every address it uses is 127.0.0.1.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def cluster_env() -> dict[str, str]:
    """Environment variables the cluster's processes (and drivers that join it) start with."""
    path = os.pathsep.join([str(STUB), str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**LOOPBACK, "PYTHONPATH": path.rstrip(os.pathsep)}


def runtime_env(gates: Path) -> dict[str, Any]:
    """The job's runtime environment: the gate in every worker, reading ``gates``."""
    return {
        "worker_process_setup_hook": "_ray_cluster.install",
        "env_vars": {GATES_ENV: str(gates)},
    }


@contextlib.contextmanager
def start(gates: Path, *, attempts: int = 3) -> Iterator[Any]:
    """Start the test cluster with this process as its first driver; stop it after the block."""
    import ray

    saved = {k: os.environ.get(k) for k in cluster_env()}
    os.environ.update(cluster_env())  # the cluster's processes inherit these at start-up
    try:
        for attempt in range(attempts):
            try:
                ray.init(
                    num_cpus=2,
                    include_dashboard=False,
                    object_store_memory=80 * 2**20,
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env=runtime_env(gates),
                )
                break
            except Exception:  # Ray says "timed out during startup" as a bare Exception
                ray.shutdown()
                if attempt == attempts - 1:
                    raise
    finally:
        for key, value in saved.items():
            if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER":  # this driver keeps using loopback
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)


def reset(gates: Path, *, after: int | None = None) -> None:
    """Empty the gates folder; with ``after``, arm the gate after that many writes."""
    gates.mkdir(parents=True, exist_ok=True)
    for name in ("armed", "taken", "ready", "go", "written.log"):
        with contextlib.suppress(FileNotFoundError):
            (gates / name).unlink()
    if after is not None:
        (gates / "armed").write_text(str(after))


def written(gates: Path) -> list[tuple[int, str, int]]:
    """``(pid, checkpoint, shard)`` of every part written since :func:`reset`."""
    log = gates / "written.log"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line]
    return [(r["pid"], r["label"], r["shard"]) for r in rows]


def install() -> None:
    """Ray's worker_process_setup_hook: put the gate around ``StoreWriter.write_part``."""
    folder = os.environ.get(GATES_ENV)
    if not folder:
        return
    from grokviz.store import StoreWriter

    gates = Path(folder)
    real = StoreWriter.write_part
    count = [0]

    def write_part(self: Any, label: str, shard: int, frames: Any, **kwargs: Any) -> None:
        armed = gates / "armed"
        if armed.exists() and count[0] == int(armed.read_text() or 0):
            try:
                fd = os.open(gates / "taken", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # another process has the gate
            else:
                os.close(fd)
                note = {"pid": os.getpid(), "label": label, "shard": shard}
                (gates / "ready.tmp").write_text(json.dumps(note))
                os.replace(gates / "ready.tmp", gates / "ready")
                while not (gates / "go").exists():
                    time.sleep(0.01)
        count[0] += 1
        real(self, label, shard, frames, **kwargs)
        line = json.dumps({"pid": os.getpid(), "label": label, "shard": shard}) + "\n"
        with open(gates / "written.log", "a") as log:  # one short append: atomic
            log.write(line)

    StoreWriter.write_part = write_part  # type: ignore[method-assign]
