"""`grokviz verify STORE [--repair]`: one line per problem, and a repair that makes it whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from _runs import make_samples, save_run, store_rows

from grokviz.cli import main
from grokviz.store import TraceStore
from grokviz.tracing import trace


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("verify")
    run = save_run(folder / "run", steps=(100, 200))
    trace(run, make_samples(4), folder / "store", shard_size=2, progress=False)
    return folder / "store"


def test_a_whole_store_verifies(traced: Path, capsys) -> None:
    assert main(["verify", str(traced)]) == 0
    assert "all whole" in capsys.readouterr().out


def test_each_problem_is_one_line_and_repair_fixes_them(
    traced: Path, tmp_path: Path, capsys
) -> None:
    store = Path(shutil.copytree(traced, tmp_path / "store"))
    (store / "step-000100" / "routing-00001.parquet").unlink()
    losses = store / "step-000200" / "losses-00000.parquet"
    losses.write_bytes(losses.read_bytes()[:-10] + b"\0" * 10)
    (store / "step-000200" / ".x.grokviz-tmp").write_bytes(b"half")

    assert main(["verify", str(store)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["damaged", "leftover", "missing"]
    assert any("routing-00001.parquet" in line for line in lines)

    assert main(["verify", str(store), "--repair", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 unit(s) recomputed; every file is whole" in out
    assert TraceStore.open(store).verify().problems == []
    for table, frame in store_rows(store).items():
        assert frame.equals(store_rows(traced)[table]), table


def test_verify_of_a_folder_that_is_not_a_store_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grokviz verify: error: no trace store") and "\n" not in err
