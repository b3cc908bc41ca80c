"""Issue 18's suite: tracing and the metric functions at the paper's scale, against baselines.

Every row of the issue's table, each figure printed with its baseline (measured in the same run)
and their ratio, and written as JSON (``--json``, rewritten after every row so a run cut short
keeps what it measured):

- ``distance``: all-pairs pathway distance of N = 10,000 paper-shaped pathways (467 symbols) with
  grokviz's torch backend (the Triton kernel on CUDA), against ``rapidfuzz.process.cdist(...,
  workers=-1)`` on all the machine's cores (target: at least 20x faster) and StringZilla's
  ``LevenshteinDistances`` on the same device (target: at least 1x); grokviz's own StringZilla
  backend too. Exactness: every matrix against rapidfuzz on 100,000 sampled pairs, and whole
  where rapidfuzz computed the whole matrix. rapidfuzz's full matrix is timed when a first
  2,000-pathway matrix says it takes at most ``--rapidfuzz-budget`` seconds, else extrapolated
  from that matrix by pair count (marked so). On CUDA, the Triton kernel's block size is swept.
- ``tracing``: a random-weight OLMoE-1B-7B built from ``OlmoeConfig`` (16 layers, 64 experts,
  top-8, hidden 2048, vocabulary 50,304; no hub download) in bf16 on 512-token samples:
  :func:`grokviz.iter_trace` against a bare forward pass of the same batches (target: at most
  1.05x the time); tokens per second and peak device memory of both.
- ``analyze``: :func:`grokviz.analyze` end to end on the device, 10 checkpoints x 10,000
  samples (:class:`paper_scale.SyntheticRun`, in memory): the default (``n_pairs="auto"``) and
  every pair (``n_pairs=None``), and how far the default's distances are from the exact ones.
- ``laptop``: ``analyze_scale.py`` on 2 CPU cores: the default's time against the old default of
  every pair (extrapolated, as that script says).

``--small`` runs the same code on the CPU in under a minute (N = 100 pathways, a tiny OLMoE,
300 samples x 3 checkpoints, the laptop row's ``--quick``), so everything is debugged before a
GPU is spent on it. The prepared command for a bare GPU machine is ``benchmarks/gpu/run.sh``.

Run: ``python benchmarks/gpu_suite.py --json results.json`` (``--rows distance,tracing``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROWS = ("distance", "tracing", "analyze", "laptop")


def _now() -> float:
    return time.perf_counter()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _ratio(baseline: float, figure: float) -> float:
    return baseline / figure if figure > 0 else float("inf")


def _verdict(args: argparse.Namespace, met: bool) -> str:
    if args.small:
        return "not judged: --small runs on the CPU; the targets are for the GPU"
    return "met" if met else "NOT met"


def _say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------------------------
# distance


def _rapidfuzz_cdist(strings: list[str]) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    return np.asarray(
        process.cdist(strings, strings, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


def _rapidfuzz_pairs(strings: list[str], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    left, right = [strings[k] for k in i], [strings[k] for k in j]
    return np.asarray(
        process.cpdist(left, right, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


def _check_pairs(matrix: np.ndarray, strings: list[str], n_check: int) -> dict[str, Any]:
    """``matrix`` against rapidfuzz on ``n_check`` random pairs (all pairs if fewer)."""
    n = len(strings)
    rng = np.random.default_rng(42)
    if n * n <= n_check:
        i, j = (a.ravel() for a in np.indices((n, n)))
    else:
        i, j = rng.integers(0, n, n_check), rng.integers(0, n, n_check)
    expected = _rapidfuzz_pairs(strings, i, j)
    wrong = int((matrix[i, j] != expected).sum())
    return {"pairs_checked": len(i), "mismatches": wrong, "exact": wrong == 0}


def _stringzilla_engine(device: str) -> tuple[Any, Any, Any]:
    import stringzilla as sz
    import stringzillas as szs

    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        scope = szs.DeviceScope(gpu_device=index)
    else:
        scope = szs.DeviceScope()
    engine = szs.LevenshteinDistances(match=0, mismatch=1, open=1, extend=1, capabilities=scope)
    return sz, engine, scope


def distance_row(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from paper_scale import paper_pathways

    from grokviz.metrics import _myers
    from grokviz.metrics.distance import pairwise_distances

    device = args.device
    n = 60 if args.small else args.n
    from grokviz.metrics._distance_backends import _as_seqs, _strings, _sz_bytes

    paths = paper_pathways(n)
    # what grokviz's rapidfuzz backend hands rapidfuzz: one Latin-1 character per symbol, the
    # characters rapidfuzz matches through a table (its fastest input)
    (strings,) = _strings(_as_seqs(paths))
    n_pairs = n * (n - 1) // 2
    out: dict[str, Any] = {
        "n": n,
        "pairs": n_pairs,
        "mean_length": float(paths.lengths.mean()),
        "device": device,
    }
    _say(f"distance: N = {n:,} pathways of {paths.lengths.mean():.1f} symbols, {n_pairs:,} pairs")

    # grokviz, torch backend: a first small call compiles and self-checks the Triton kernel
    start = _now()
    pairwise_distances(paper_pathways(64, seed=1), backend="torch", device=device)
    out["warmup_s"] = _now() - start
    kernel = "eager"
    if device.startswith("cuda"):
        kernel = _myers._choose_kernel(torch.device(device), float(n_pairs) * 467)
    start = _now()
    ours = pairwise_distances(paths, backend="torch", device=device)
    t_ours = _now() - start
    out |= {"kernel": kernel, "grokviz_s": t_ours, "grokviz_pairs_per_s": n_pairs / t_ours}
    _say(
        f"  grokviz torch ({kernel} on {device}): {t_ours:9.3f} s  ({n_pairs / t_ours:,.0f} "
        f"pairs/s; first call {out['warmup_s']:.1f} s)"
    )

    # baseline 1: rapidfuzz on all CPU cores
    probe_n = min(n, 2000)
    probe_pairs = probe_n * (probe_n - 1) // 2
    start = _now()
    probe = _rapidfuzz_cdist(strings[:probe_n])
    t_probe = _now() - start
    projected = t_probe * n_pairs / probe_pairs
    if probe_n == n or projected <= args.rapidfuzz_budget:
        start = _now()
        full = probe if probe_n == n else _rapidfuzz_cdist(strings)
        t_rf = t_probe if probe_n == n else _now() - start
        whole = bool(np.array_equal(full, ours))
        out |= {"rapidfuzz_s": t_rf, "rapidfuzz_extrapolated": False, "whole_matrix_equal": whole}
        note = f"whole matrix equal: {whole}"
    else:
        t_rf = projected
        out |= {"rapidfuzz_s": t_rf, "rapidfuzz_extrapolated": True}
        out["probe_equal"] = bool(np.array_equal(probe, ours[:probe_n, :probe_n]))
        note = (
            f"extrapolated from {probe_n:,} pathways ({t_probe:.1f} s); that matrix equal: "
            f"{out['probe_equal']}"
        )
    out["rapidfuzz_cores"] = os.cpu_count()
    out["check_rapidfuzz"] = _check_pairs(ours, strings, args.check_pairs)
    ratio = _ratio(t_rf, t_ours)
    out |= {"ratio_vs_rapidfuzz": ratio, "target_vs_rapidfuzz": 20.0}
    verdict = lambda met: _verdict(args, met)  # noqa: E731
    _say(f"  baseline rapidfuzz cdist (workers=-1, {os.cpu_count()} CPUs): {t_rf:9.2f} s  ({note})")
    _say(
        f"  ratio rapidfuzz/grokviz: {ratio:8.2f}x  (target >= 20x: {verdict(ratio >= 20)}); "
        "exact on "
        f"{out['check_rapidfuzz']['pairs_checked']:,} pairs: {out['check_rapidfuzz']['exact']}"
    )

    # baseline 2: StringZilla's engine on the same device
    try:
        sz, engine, scope = _stringzilla_engine(device)
    except (ImportError, RuntimeError) as exc:
        out["stringzilla"] = f"not measured: {exc}"
        _say(f"  StringZilla: not measured ({exc})")
    else:
        (raw,) = _sz_bytes(_as_seqs(paths))
        engine(sz.Strs(raw[:64]), device=scope)  # warm-up: device context, kernels
        # like rapidfuzz: a first 2,000-string matrix, then the whole one if it fits the budget
        start = _now()
        probe_sz = np.asarray(engine(sz.Strs(raw[:probe_n]), device=scope))
        t_probe_sz = _now() - start
        projected_sz = t_probe_sz * n_pairs / probe_pairs
        whole_sz = probe_n == n or projected_sz <= args.rapidfuzz_budget
        if probe_n == n:
            sz_matrix, t_sz = probe_sz, t_probe_sz
        elif whole_sz:
            start = _now()
            sz_matrix = np.asarray(engine(sz.Strs(raw), device=scope))
            t_sz = _now() - start
        else:
            sz_matrix, t_sz = probe_sz, projected_sz
        sz_strings = strings if whole_sz else strings[:probe_n]
        ratio_sz = _ratio(t_sz, t_ours)
        out |= {
            "stringzilla_s": t_sz,
            "stringzilla_extrapolated": not whole_sz,
            "stringzilla_capabilities": str(engine.__capabilities__),
            "ratio_vs_stringzilla": ratio_sz,
            "target_vs_stringzilla": 1.0,
            "check_stringzilla": _check_pairs(
                sz_matrix.astype(np.int32), sz_strings, args.check_pairs
            ),
        }
        # grokviz's own stringzilla backend (bytes in, int32 out) where the engine was quick
        if whole_sz and t_sz <= args.rapidfuzz_budget / 4:
            start = _now()
            backend = pairwise_distances(paths, backend="stringzilla", device=device)
            out["stringzilla_backend_s"] = _now() - start
            out["stringzilla_equals_grokviz"] = bool(np.array_equal(backend, ours))
        note = "" if whole_sz else f" (extrapolated from {probe_n:,} strings, {t_probe_sz:.1f} s)"
        _say(
            f"  baseline StringZilla LevenshteinDistances ({device}): {t_sz:9.3f} s{note}; "
            f"grokviz's stringzilla backend {out.get('stringzilla_backend_s', float('nan')):.3f} s"
        )
        _say(
            f"  ratio StringZilla/grokviz: {ratio_sz:8.2f}x  (target >= 1x: "
            f"{verdict(ratio_sz >= 1)}); exact: {out['check_stringzilla']['exact']}, same "
            f"matrix as torch: {out.get('stringzilla_equals_grokviz', 'not run')}"
        )

    if device.startswith("cuda") and kernel == "triton" and not args.small and t_ours < 20:
        out["triton_block_sweep"] = _sweep_blocks(paths, device, ours)
    return out


def _sweep_blocks(paths: Any, device: str, expected: np.ndarray) -> dict[str, Any]:
    """The Triton kernel at other block sizes (pairs per program), for tuning; same results."""
    from paper_scale import paper_pathways

    from grokviz.metrics import _myers
    from grokviz.metrics.distance import pairwise_distances

    default, sweep = _myers._TRITON_BLOCK, {}
    try:
        for block in (64, 128, 256):
            _myers._TRITON_BLOCK = block
            pairwise_distances(
                paper_pathways(64, seed=2), backend="torch", device=device
            )  # compile
            start = _now()
            got = pairwise_distances(paths, backend="torch", device=device)
            seconds = _now() - start
            sweep[str(block)] = {"s": seconds, "equal": bool(np.array_equal(got, expected))}
            _say(f"  Triton BLOCK={block}: {seconds:.3f} s, equal: {sweep[str(block)]['equal']}")
    finally:
        _myers._TRITON_BLOCK = default
    return sweep


# ---------------------------------------------------------------------------------------------
# tracing


def _olmoe_config(small: bool) -> Any:
    from transformers import OlmoeConfig

    sizes = {
        "vocab_size": 50_304,
        "hidden_size": 2048,
        "intermediate_size": 1024,  # each expert's FFN width in OLMoE-1B-7B
        "num_hidden_layers": 16,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "num_experts": 64,
        "num_experts_per_tok": 8,
    }
    if small:
        sizes |= {
            "vocab_size": 1024,
            "hidden_size": 64,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "num_experts": 8,
            "num_experts_per_tok": 2,
        }
    return OlmoeConfig(max_position_embeddings=4096, pad_token_id=1, eos_token_id=2, **sizes)


def _id_tokenizer(vocab: int) -> Any:
    """Token ``t<id>`` is id ``<id>`` (ids from 3; 0-2 are special), so random ids pass unchanged.

    The special tokens are spelled so that none is a prefix of a ``t<id>`` word: special tokens
    are matched inside words before the text is split.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, "<eos>": 2} | {f"t{i}": i for i in range(3, vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )


def _peak(device: str, fn: Callable[[], Any]) -> float | None:
    """Peak device memory (GiB) allocated while ``fn`` runs; None off CUDA."""
    if not device.startswith("cuda"):
        fn()
        return None
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def tracing_row(args: argparse.Namespace) -> dict[str, Any]:
    import polars as pl
    import torch
    from transformers import AutoModelForCausalLM

    from grokviz import iter_trace

    device, small = args.device, args.small
    batch, n_batches, seq = (4, 2, 64) if small else (args.batch_size, args.batches, 512)
    repeats = 2 if small else args.repeats
    config = _olmoe_config(small)
    start = _now()
    torch.manual_seed(0)
    with torch.device(device):  # parameters are made and initialised where they run
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    _sync(device)
    built = _now() - start
    params = sum(p.numel() for p in model.parameters())
    experts = getattr(model.config, "_experts_implementation", None)
    _say(
        f"tracing: random OLMoE ({params / 1e9:.2f} B parameters, {config.num_hidden_layers} "
        f"layers x {config.num_experts} experts top-{config.num_experts_per_tok}, hidden "
        f"{config.hidden_size}, vocabulary {config.vocab_size:,}), bf16 on {device}, experts "
        f"kernel {experts}; {n_batches} batches of {batch} x {seq} tokens; built in {built:.1f} s"
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, size=(n_batches * batch, seq))
    texts = [" ".join(f"t{t}" for t in row) for row in ids]
    tokenizer = _id_tokenizer(config.vocab_size)
    assert tokenizer(texts[0])["input_ids"] == ids[0].tolist()
    sample_ids = [f"s{i:04d}" for i in range(len(texts))]
    samples = pl.DataFrame(
        {"sample_id": sample_ids, "text": texts, "domain": "random", "split": "train"}
    )
    batches = [
        torch.as_tensor(ids[b * batch : (b + 1) * batch], device=device) for b in range(n_batches)
    ]

    def bare() -> None:
        with torch.inference_mode():
            for input_ids in batches:
                model(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False
                )
        _sync(device)

    traced_rows: list[int] = []

    def traced() -> None:
        stream = iter_trace(
            model, samples, tokenizer=tokenizer, batch_size=batch, max_length=seq, progress=False
        )
        traced_rows.append(sum(b.routing.height for b in stream))
        _sync(device)

    peak_bare, peak_traced = _peak(device, bare), _peak(device, traced)  # also the warm-up
    bare_times, traced_times, ratios = [], [], []
    for _ in range(repeats):  # alternating, so a changing load hits both alike
        start = _now()
        bare()
        middle = _now()
        traced()
        end = _now()
        bare_times.append(middle - start)
        traced_times.append(end - middle)
        ratios.append((end - middle) / (middle - start))
    tokens = n_batches * batch * seq
    t_bare, t_traced = statistics.median(bare_times), statistics.median(traced_times)
    ratio = statistics.median(ratios)
    expected_rows = len(texts) * config.num_hidden_layers
    out = {
        "parameters": params,
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers")}
        | {"num_experts": config.num_experts, "top_k": config.num_experts_per_tok}
        | {"vocab_size": config.vocab_size, "experts_implementation": experts},
        "device": device,
        "dtype": "bfloat16",
        "batches": n_batches,
        "batch_size": batch,
        "seq_len": seq,
        "repeats": repeats,
        "bare_s": t_bare,
        "traced_s": t_traced,
        "bare_tokens_per_s": tokens / t_bare,
        "traced_tokens_per_s": tokens / t_traced,
        "ratio_traced_over_bare": ratio,
        "target": 1.05,
        "peak_gib_bare": peak_bare,
        "peak_gib_traced": peak_traced,
        "routing_rows_ok": all(r == expected_rows for r in traced_rows),
        "model_build_s": built,
    }
    memory = (
        f"; peak memory {peak_bare:.2f} GiB bare, {peak_traced:.2f} GiB traced"
        if peak_bare is not None and peak_traced is not None
        else "; peak memory: CUDA only"
    )
    _say(f"  baseline bare forward: {tokens / t_bare:12,.0f} tokens/s ({t_bare:.3f} s)")
    _say(f"  grokviz iter_trace:    {tokens / t_traced:12,.0f} tokens/s ({t_traced:.3f} s){memory}")
    _say(
        f"  ratio traced/bare time: {ratio:.3f} (median of {repeats} paired runs; target "
        f"<= 1.05: {_verdict(args, ratio <= 1.05)}); routing rows complete: "
        f"{out['routing_rows_ok']}"
    )
    return out


# ---------------------------------------------------------------------------------------------
# analyze on the device


def analyze_row(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    import polars as pl
    from paper_scale import SyntheticRun

    from grokviz import analyze

    # small: 1,000 samples leave about 210 memorized, enough for the global group to be sampled
    n, c = (1_000, 2) if args.small else (10_000, 10)
    start = _now()
    run = SyntheticRun(n, c, hidden=64 if args.small else 2048)
    built = _now() - start
    _say(
        f"analyze: {c} checkpoints x {n:,} samples (in-memory TraceSource, built in {built:.0f} s)"
    )
    out: dict[str, Any] = {"checkpoints": c, "samples": n, "device": args.device}
    frames = {}
    for label, n_pairs in (("default", "auto"), ("exact", None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = _now()
            frames[label] = analyze(run, n_pairs=n_pairs, device=args.device, progress=False)
            out[f"{label}_s"] = _now() - start
    pick = lambda f: f.filter(pl.col("metric") == "distance").sort("checkpoint", "group")  # noqa: E731
    default, exact = pick(frames["default"]), pick(frames["exact"])
    rel = (default["value"] - exact["value"]).abs() / exact["value"]
    inside = (default["ci_low"] <= exact["value"]) & (exact["value"] <= default["ci_high"])
    sampled = default["ci_low"].is_not_null()
    out |= {
        "distance_values": default.height,
        "sampled_values": int(sampled.sum()),
        "max_relative_error": float(rel.max() or 0.0),
        "interval_holds_exact": int(inside.filter(sampled).sum()),
    }
    _say(
        f"  analyze(device={args.device}) default n_pairs='auto': {out['default_s']:8.1f} s; "
        f"every pair (n_pairs=None): {out['exact_s']:8.1f} s (ratio {_ratio(out['exact_s'], out['default_s']):.2f}x)"
    )
    _say(
        f"  {out['sampled_values']} of {out['distance_values']} distances sampled; largest error "
        f"{out['max_relative_error']:.4%}; the interval held the exact value in "
        f"{out['interval_holds_exact']} of {out['sampled_values']}"
    )
    return out


# ---------------------------------------------------------------------------------------------
# the laptop row: analyze_scale.py on 2 cores


def laptop_row(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "laptop.json"
        cmd = [sys.executable, str(HERE / "analyze_scale.py"), "--cores", "2"]
        cmd += ["--exact-check", "none", "--coverage-seeds", "0", "--skip-all-samples"]
        cmd += ["--json", str(path)] + (["--quick"] if args.small else [])
        _say("laptop: " + " ".join(cmd[1:]))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            _say("  " + line)
        if done.returncode != 0:
            msg = f"analyze_scale.py failed ({done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)
        result: dict[str, Any] = json.loads(path.read_text())
    return result


# ---------------------------------------------------------------------------------------------


def _machine(device: str) -> dict[str, Any]:
    import grokviz

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "grokviz": str(Path(grokviz.__file__).parent),
    }
    for name in ("torch", "transformers", "triton", "rapidfuzz", "polars", "stringzilla"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:  # absent or broken: say so, measure the rest
            info[name] = f"unavailable ({type(exc).__name__})"
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true", help="the same code, CPU-sized")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"some of {','.join(ROWS)}")
    parser.add_argument("--json", type=Path, help="write the results here (after every row)")
    parser.add_argument("--device", default=None, help="default: cuda if present (cpu if --small)")
    parser.add_argument("--n", type=int, default=10_000, help="pathways of the distance row")
    parser.add_argument("--check-pairs", type=int, default=100_000)
    parser.add_argument("--rapidfuzz-budget", type=float, default=240.0, help="seconds")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.small else "cpu"
    results: dict[str, Any] = {
        "mode": "small" if args.small else "full",
        "machine": _machine(args.device),
        "rows": {},
    }
    _say(f"machine: {json.dumps(results['machine'])}")
    runners = {"distance": distance_row, "tracing": tracing_row}
    runners |= {"analyze": analyze_row, "laptop": laptop_row}
    failed = []
    for row in rows:
        start = _now()
        try:
            results["rows"][row] = runners[row](args) | {"row_s": _now() - start}
        except Exception as exc:  # one broken row must not cost the others' figures
            failed.append(row)
            results["rows"][row] = {"error": f"{type(exc).__name__}: {exc}"}
            _say(f"{row}: FAILED: {type(exc).__name__}: {exc}")
        _say(f"  ({row} row: {_now() - start:.1f} s)")
        gc.collect()  # the row's model and matrices, before the next row measures memory
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
