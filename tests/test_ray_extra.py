"""Without Ray installed, the Ray engines say in one line which extra to install, and write nothing.

Ray is made unimportable in this process (``sys.modules["ray"] = None`` makes ``import ray``
raise ImportError), so this runs whether or not the test environment has Ray, and starts no
cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from _runs import make_samples, save_run

from grokviz.cli import main as cli_main
from grokviz.errors import MissingDependencyError
from grokviz.metrics import analyze
from grokviz.tracing import trace


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_run(tmp_path_factory.mktemp("run") / "run", steps=(100,))


def test_trace_without_ray_names_the_extra(no_ray: None, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(MissingDependencyError, match=r'pip install "grokviz\[ray\]"'):
        trace(run, make_samples(2), out, engine="ray")
    assert not out.exists()


def test_cli_without_ray_is_one_line(no_ray: None, run: Path, tmp_path: Path, capsys) -> None:
    samples = tmp_path / "samples.parquet"
    make_samples(2).write_parquet(samples)
    out = tmp_path / "store"
    argv = ["trace", str(run), "--samples", str(samples), "--out", str(out), "--ray"]
    assert cli_main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("grokviz trace: ") and 'pip install "grokviz[ray]"' in err[0]
    assert not out.exists()


def test_analyze_without_ray_names_the_extra(no_ray: None, tmp_path: Path) -> None:
    # the check comes first: the store is not even opened (this folder is none)
    with pytest.raises(MissingDependencyError, match=r"grokviz\[ray\]"):
        analyze(tmp_path / "nowhere", engine="ray")


def test_ray_options_without_ray_engine_are_refused(run: Path, tmp_path: Path, capsys) -> None:
    samples = tmp_path / "samples.parquet"
    make_samples(2).write_parquet(samples)
    argv = ["trace", str(run), "--samples", str(samples), "--out", str(tmp_path / "s")]
    assert cli_main([*argv, "--workers", "2", "--no-progress"]) == 2
    assert "--workers apply to --ray only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="gpus_per_worker apply to engine='ray' only"):
        trace(run, make_samples(2), tmp_path / "s", gpus_per_worker=1)
    assert not (tmp_path / "s").exists()


def test_object_storage_is_refused_for_a_ray_store(run: Path, tmp_path: Path) -> None:
    # refused before a cluster is looked for, and no local folder named "s3:" appears
    with pytest.raises(ValueError, match="object storage has neither the locks"):
        trace(run, make_samples(2), "s3://bucket/traces/olmoe", engine="ray")
    with pytest.raises(ValueError, match="object storage"):  # as the CLI passes it
        trace(run, make_samples(2), Path("gs://bucket/olmoe"), engine="ray")
    assert not Path("s3:").exists() and not Path("gs:").exists()
