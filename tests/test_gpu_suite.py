"""Issue 18's GPU suite in its CPU-sized ``--small`` mode, and the scripts that carry it to a GPU.

The suite's figures are timings and are not judged here (no timed tests); what is checked is that
every row runs the code the GPU run will run and that its exactness checks hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("stringzillas")
    out = tmp_path_factory.mktemp("suite") / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--small", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict = json.loads(out.read_text())
    results["stdout"] = done.stdout
    return results


def test_small_suite_runs_every_row(small_run: dict) -> None:
    assert small_run["mode"] == "small"
    assert list(small_run["rows"]) == ["distance", "tracing", "analyze", "laptop"]
    for name, row in small_run["rows"].items():
        assert "error" not in row, (name, row)
    # every figure is printed beside its baseline and their ratio
    for words in ("baseline rapidfuzz", "ratio rapidfuzz/grokviz", "baseline StringZilla"):
        assert words in small_run["stdout"]
    assert "ratio traced/bare time" in small_run["stdout"]


def test_small_suite_distances_are_exact(small_run: dict) -> None:
    row = small_run["rows"]["distance"]
    assert row["kernel"] == "eager" and row["device"] == "cpu"
    assert row["whole_matrix_equal"] and not row["rapidfuzz_extrapolated"]
    assert row["check_rapidfuzz"] == {"pairs_checked": 3600, "mismatches": 0, "exact": True}
    assert row["check_stringzilla"]["exact"] and row["stringzilla_equals_grokviz"]
    assert row["ratio_vs_rapidfuzz"] > 0 and row["ratio_vs_stringzilla"] > 0


def test_small_suite_traces_and_analyzes(small_run: dict) -> None:
    tracing = small_run["rows"]["tracing"]
    assert tracing["routing_rows_ok"] and tracing["dtype"] == "bfloat16"
    assert tracing["config"]["num_hidden_layers"] == 2 and tracing["seq_len"] == 64
    assert tracing["bare_tokens_per_s"] > 0 and tracing["traced_tokens_per_s"] > 0
    analyzed = small_run["rows"]["analyze"]
    # the default samples the large group and stays within its stated interval of exact
    assert analyzed["sampled_values"] >= 1
    assert analyzed["interval_holds_exact"] == analyzed["sampled_values"]
    assert analyzed["max_relative_error"] < 0.005
    laptop = small_run["rows"]["laptop"]
    assert laptop["sampled_values"] >= 1 and laptop["old_default_pairs"] > 0
    assert laptop["ratio_old_over_default"] > 0


def test_full_tracing_config_is_olmoe_1b_7b() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_suite import _olmoe_config
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    config = _olmoe_config(small=False)
    assert (config.num_hidden_layers, config.num_experts, config.num_experts_per_tok) == (16, 64, 8)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (2048, 1024, 50_304)


def test_prepare_recompresses_wheels_without_changing_them(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    try:
        from prepare import recompress
    finally:
        sys.path.remove(str(ROOT / "benchmarks" / "gpu"))
    info = "demo-1.0.dist-info"
    files = {
        "demo/__init__.py": b"x = 1\n" * 500,
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/RECORD": b"demo/__init__.py,,\n",
    }
    src = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    (tmp_path / "lzma").mkdir()
    lzma = tmp_path / "lzma" / src.name
    recompress(src, lzma)
    with zipfile.ZipFile(lzma) as z:
        assert {i.filename: z.read(i) for i in z.infolist()} == files
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_LZMA}
    # pip installs it like any other wheel
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), str(lzma)], check=True, capture_output=True)
    assert (target / "demo" / "__init__.py").read_bytes() == files["demo/__init__.py"]


def test_run_script_says_what_to_do_without_wheels(tmp_path: Path) -> None:
    script = tmp_path / "benchmarks" / "gpu" / "run.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu" / "run.sh", script)
    done = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "run 'python benchmarks/gpu/prepare.py' here first" in done.stderr
