"""Exact edit distances: both backends against a plain dynamic-programming reference."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grokviz.errors import EmptyInputError
from grokviz.metrics import _myers, distance
from grokviz.metrics.distance import (
    Backend,
    DistanceEstimate,
    cross_distances,
    mean_cross_distance,
    mean_pairwise_distance,
    pair_distances,
    pairwise_distances,
    per_layer_mean_distance,
)
from grokviz.pathways import encode, select_experts

BACKENDS: tuple[Backend, ...] = ("torch", "rapidfuzz")


def reference(a: list[int], b: list[int]) -> int:
    """Wagner-Fischer: unit-cost insert, delete, substitute."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def reference_matrix(a: list, b: list) -> np.ndarray:
    return np.array([[reference(x, y) for y in b] for x in a], dtype=np.int64).reshape(
        len(a), len(b)
    )


# Sets of sequences over a random alphabet (1 symbol: long carry chains; up to 70: more than 64),
# lengths from empty across the 62-bit word boundaries up to 200.
sequence_sets = st.integers(1, 70).flatmap(
    lambda sigma: st.lists(
        st.lists(st.integers(0, sigma - 1), max_size=200), min_size=1, max_size=5
    )
)


@settings(max_examples=200, deadline=None)
@given(seqs=sequence_sets)
def test_backends_equal_reference(seqs: list[list[int]]) -> None:
    expected = reference_matrix(seqs, seqs)
    for backend in BACKENDS:
        got = pairwise_distances(seqs, backend=backend)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n", [61, 62, 63, 123, 124, 125, 186, 187, 250])
def test_word_boundaries_and_similar_sequences(n: int) -> None:
    # Near-identical sequences keep VP mostly ones, so additions carry across many words.
    rng = np.random.default_rng(n)
    base = rng.integers(0, 3, n)
    seqs = [base, base.copy(), np.delete(base, n // 2), np.insert(base, 0, 2), base[::-1].copy()]
    seqs[1][rng.integers(0, n, 3)] = 1
    seqs.append(np.zeros(n, dtype=np.int64))
    seqs.append(np.zeros(0, dtype=np.int64))
    as_lists = [s.tolist() for s in seqs]
    expected = reference_matrix(as_lists, as_lists)
    for backend in BACKENDS:
        np.testing.assert_array_equal(pairwise_distances(seqs, backend=backend), expected)


@pytest.mark.slow
def test_compiled_torch_step_equals_reference() -> None:
    # The step torch.compile fuses on a GPU; compiled here for the CPU (about a minute or two).
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    seqs = [rng.integers(0, 4, rng.integers(0, 150)).tolist() for _ in range(10)]
    seqs += [[], [1] * 130, [1] * 129 + [2]]
    kernel = distance._Myers(
        distance._as_seqs(seqs), torch.device("cpu"), chunk_pairs=16, kind="compile"
    )
    i, j = np.triu_indices(len(seqs), 1)
    expected = reference_matrix(seqs, seqs)[i, j]
    np.testing.assert_array_equal(kernel(i, j), expected)


_TRITON_CHECK = """
import numpy as np, torch
from grokviz.metrics import _myers, distance
from tests.test_distance import reference_matrix
rng = np.random.default_rng(12)
seqs = [rng.integers(0, 4, rng.integers(0, 140)).tolist() for _ in range(8)]
seqs += [[], [1] * 124, [1] * 123 + [2], [0] * 62]
kernel = distance._Myers(distance._as_seqs(seqs), torch.device("cpu"), 40, kind="triton")
i, j = np.triu_indices(len(seqs), 1)
# the kernel itself, not __call__, which would fall back to eager mode on an error
np.testing.assert_array_equal(kernel._forced("triton", i, j), reference_matrix(seqs, seqs)[i, j])
assert _myers._triton_ok(torch.device("cpu"))  # the self-check CUDA runs do first
print("ok")
"""


@pytest.mark.slow
def test_triton_kernel_equals_reference() -> None:
    # The fused kernel CUDA runs use, here through Triton's CPU interpreter (slow: numpy). A
    # fresh process, because TRITON_INTERPRET must be set before anything imports triton.
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _TRITON_CHECK], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_edge_sizes() -> None:
    for backend in BACKENDS:
        assert pairwise_distances([], backend=backend).shape == (0, 0)
        assert pairwise_distances([[1, 2]], backend=backend).tolist() == [[0]]
        assert cross_distances([], [[1]], backend=backend).shape == (0, 1)
        assert pair_distances([[1]], np.zeros((0, 2), dtype=int), backend=backend).shape == (0,)


def test_torch_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 5, rng.integers(0, 140)).tolist() for _ in range(12)]
    expected = reference_matrix(seqs, seqs)
    for chunk in (1, 7, 1000):
        got = pairwise_distances(seqs, backend="torch", chunk_pairs=chunk)
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=100, deadline=None)
@given(a=sequence_sets, b=sequence_sets)
def test_cross_distances_equal_reference(a: list[list[int]], b: list[list[int]]) -> None:
    expected = reference_matrix(a, b)
    for backend in BACKENDS:
        np.testing.assert_array_equal(cross_distances(a, b, backend=backend), expected)


def test_inputs_strings_packed_and_large_symbols_agree() -> None:
    words = ["kitten", "sitting", "", "mitten", "ünïcödé", "k"]
    expected = reference_matrix([list(w) for w in words], [list(w) for w in words])
    big = [[ord(c) * 1000 for c in w] for w in words]  # symbols past the direct alphabet
    for backend in BACKENDS:
        np.testing.assert_array_equal(pairwise_distances(words, backend=backend), expected)
        np.testing.assert_array_equal(pairwise_distances(big, backend=backend), expected)
        # the same symbols spelled as characters and as code points
        mixed = cross_distances(words, [[ord(c) for c in w] for w in words], backend=backend)
        np.testing.assert_array_equal(mixed, expected)


def test_pair_distances_agree_with_matrix() -> None:
    rng = np.random.default_rng(5)
    seqs = [rng.integers(0, 9, rng.integers(0, 90)).tolist() for _ in range(15)]
    pairs = rng.integers(0, 15, size=(60, 2))
    for backend in BACKENDS:
        matrix = pairwise_distances(seqs, backend=backend)
        assert (matrix == matrix.T).all() and (np.diag(matrix) == 0).all()
        np.testing.assert_array_equal(
            pair_distances(seqs, pairs, backend=backend), matrix[pairs[:, 0], pairs[:, 1]]
        )
    with pytest.raises(IndexError, match="pair indices"):
        pair_distances(seqs, np.array([[0, 15]]))


@pytest.mark.parametrize("n", [2, 3, 4, 7, 50, 1001])
def test_triangle_pair_numbering_matches_numpy(n: int) -> None:
    i, j = distance._triangle_pairs(n, np.arange(n * (n - 1) // 2))
    ti, tj = np.triu_indices(n, 1)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(j, tj)


def _paper_like(n: int, seed: int, *, layers: int = 4, experts: int = 16) -> list:
    rng = np.random.default_rng(seed)
    return select_experts(rng.dirichlet(np.full(experts, 0.3), size=(n, layers)), tau=0.7)


def test_exact_mean_equals_upper_triangle_mean() -> None:
    packed = encode(_paper_like(40, 0), num_experts=16)
    matrix = reference_matrix(
        *[[s[:n].tolist() for s, n in zip(packed.symbols, packed.lengths, strict=True)]] * 2
    )
    expected = matrix[np.triu_indices(40, 1)].mean()
    for backend in BACKENDS:
        est = mean_pairwise_distance(packed, backend=backend)
        assert est.exact and est.n_pairs == 40 * 39 // 2
        assert est.value == pytest.approx(expected, abs=1e-12)
        assert est.ci_low == est.ci_high == est.value
        # asking for as many pairs as exist is the exact mean too
        assert mean_pairwise_distance(packed, n_pairs=10_000, backend=backend) == est


def test_sampled_mean_interval_contains_exact_value() -> None:
    packed = encode(_paper_like(300, 1, layers=6), num_experts=16)
    exact = mean_pairwise_distance(packed, backend="rapidfuzz").value
    est = mean_pairwise_distance(packed, n_pairs=2000, seed=0, backend="rapidfuzz")
    assert not est.exact and est.n_pairs == 2000
    assert est.ci_low < exact < est.ci_high
    assert est.ci_high - est.ci_low < 0.05 * exact  # and it is informative
    # the sample is the same pairs in both backends, so the estimates agree exactly
    assert mean_pairwise_distance(packed, n_pairs=300, seed=4, backend="torch") == (
        mean_pairwise_distance(packed, n_pairs=300, seed=4, backend="rapidfuzz")
    )


def test_mean_cross_distance() -> None:
    a, b = [[1, 2, 3], [1, 2], []], [[2, 3], [4, 4, 4, 4]]
    expected = reference_matrix(a, b).mean()
    for backend in BACKENDS:
        est = mean_cross_distance(a, b, backend=backend)
        assert est == DistanceEstimate(expected, expected, expected, 6, True)
    sampled = mean_cross_distance(a, b, n_pairs=4, backend="rapidfuzz")
    assert sampled.n_pairs == 4 and not sampled.exact
    assert sampled.ci_low <= sampled.value <= sampled.ci_high
    with pytest.raises(EmptyInputError):
        mean_cross_distance(a, [])


def test_too_few_pathways() -> None:
    with pytest.raises(EmptyInputError, match="at least 2"):
        mean_pairwise_distance([[1, 2]])
    with pytest.raises(ValueError, match="n_pairs"):
        mean_pairwise_distance([[1], [2]], n_pairs=1)


def test_per_layer_mean_distance() -> None:
    paths = _paper_like(12, 2, layers=3)
    means = per_layer_mean_distance(paths, backend="rapidfuzz")
    assert means.shape == (3,)
    for layer in range(3):
        lists = [p[layer].tolist() for p in paths]
        assert means[layer] == pytest.approx(
            reference_matrix(lists, lists)[np.triu_indices(12, 1)].mean()
        )
    estimates = per_layer_mean_distance(paths, backend="torch", estimates=True)
    assert [e.value for e in estimates] == pytest.approx(means.tolist())
    frame = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(12) for _ in range(3)],
            "layer": [0, 1, 2] * 12,
            "experts": [p[layer].tolist() for p in paths for layer in range(3)],
        }
    )
    np.testing.assert_allclose(per_layer_mean_distance(frame, backend="rapidfuzz"), means)


def test_auto_backend_choice() -> None:
    torch = pytest.importorskip("torch")
    assert distance._resolve("auto", "cuda")[0] == "torch"
    assert distance._resolve("auto", "cpu")[0] == "rapidfuzz"
    expected = "torch" if torch.cuda.is_available() else "rapidfuzz"
    assert distance._resolve("auto", None)[0] == expected
    with pytest.raises(ValueError, match="CPU"):
        distance._resolve("rapidfuzz", "cuda")


def test_kernel_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.delenv("GROKVIZ_DISTANCE_KERNEL", raising=False)
    assert _myers._choose_kernel(torch.device("cpu"), 1e12) == "eager"
    monkeypatch.setattr(_myers, "_triton_ok", lambda device: False)
    assert _myers._choose_kernel(torch.device("cuda"), 1e12) == "compile"
    assert _myers._choose_kernel(torch.device("cuda"), 1e3) == "eager"
    monkeypatch.setattr(_myers, "_triton_ok", lambda device: True)
    assert _myers._choose_kernel(torch.device("cuda"), 1e3) == "triton"
    monkeypatch.setenv("GROKVIZ_DISTANCE_KERNEL", "compile")
    assert _myers._choose_kernel(torch.device("cpu"), 0) == "compile"


def test_distance_falls_as_routing_becomes_shared() -> None:
    # Each sample's router logits mix its own with a shared draw, rotating from own (alpha 0) to
    # shared (alpha 1). cos/sin weights keep the logits' distribution, so routing is not made
    # flatter on the way (a plain weight average would lengthen pathways and raise distances).
    rng = np.random.default_rng(7)
    n, layers, experts = 60, 6, 32
    own = rng.normal(0, 2.0, size=(n, layers, experts))
    common = rng.normal(0, 2.0, size=(1, layers, experts))
    means = []
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        angle = alpha * np.pi / 2
        logits = np.cos(angle) * own + np.sin(angle) * common
        weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        packed = encode(select_experts(weights, tau=0.7), num_experts=experts)
        means.append(mean_pairwise_distance(packed, backend="rapidfuzz").value)
    assert all(b < a for a, b in itertools.pairwise(means)), means
    assert means[-1] == 0.0


# --- the StringZilla backend (stringzillas-cpus in the dev extra; stringzillas-cuda on GPUs) ---


@settings(max_examples=100, deadline=None)
@given(seqs=sequence_sets)
def test_stringzilla_equals_reference(seqs: list[list[int]]) -> None:
    pytest.importorskip("stringzillas")
    expected = reference_matrix(seqs, seqs)
    got = pairwise_distances(seqs, backend="stringzilla", device="cpu")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    half = max(1, len(seqs) // 2)
    np.testing.assert_array_equal(
        cross_distances(seqs[:half], seqs, backend="stringzilla", device="cpu"),
        expected[:half],
    )


def test_stringzilla_paper_pathways_inputs_and_means() -> None:
    pytest.importorskip("stringzillas")
    packed = encode(_paper_like(60, 3, layers=16, experts=64), num_experts=64)
    expected = pairwise_distances(packed, backend="rapidfuzz")
    assert packed.lengths.min() > 124  # more than two 62-bit words per pattern, symbols 0..64
    np.testing.assert_array_equal(pairwise_distances(packed, backend="stringzilla"), expected)
    exact = mean_pairwise_distance(packed, backend="rapidfuzz")
    assert mean_pairwise_distance(packed, backend="stringzilla") == exact
    a, b = packed.to_strings()[:7], packed.to_strings()[7:20]
    assert mean_cross_distance(a, b, backend="stringzilla") == mean_cross_distance(
        a, b, backend="rapidfuzz"
    )
    words = ["kitten", "sitting", "", "ünïcödé"]
    big = [[ord(c) * 1000 for c in w] for w in words]  # renumbered to bytes
    ref = reference_matrix([list(w) for w in words], [list(w) for w in words])
    np.testing.assert_array_equal(pairwise_distances(words, backend="stringzilla"), ref)
    np.testing.assert_array_equal(pairwise_distances(big, backend="stringzilla"), ref)
    assert pairwise_distances([], backend="stringzilla").shape == (0, 0)


def test_stringzilla_refuses_what_it_cannot_do() -> None:
    pytest.importorskip("stringzillas")
    with pytest.raises(ValueError, match="at most 256 distinct symbols"):
        pairwise_distances([list(range(300)), [1]], backend="stringzilla")
    with pytest.raises(ValueError, match="not chosen pairs"):
        pair_distances([[1], [2]], np.array([[0, 1]]), backend="stringzilla")
    with pytest.raises(ValueError, match="not chosen pairs"):
        mean_pairwise_distance(
            [[i % 5, i % 3] for i in range(100)], n_pairs=50, backend="stringzilla"
        )
    with pytest.raises(ValueError, match="CPU or a CUDA GPU"):
        pairwise_distances([[1]], backend="stringzilla", device="mps")


def test_stringzilla_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_stringzilla(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("stringzilla"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_stringzilla)
    with pytest.raises(ImportError, match=r"grokviz\[stringzilla\]"):
        pairwise_distances([[1], [2]], backend="stringzilla", device="cpu")


# --- the torch backend's device-side pipeline ---


@pytest.mark.parametrize("n", [2, 3, 50, 1001, 4000])
def test_triangle_pairs_on_the_device_match_numpy(n: int) -> None:
    torch = pytest.importorskip("torch")
    k = np.arange(n * (n - 1) // 2)
    i, j = _myers._triangle_pairs_torch(n, torch.as_tensor(k))
    ti, tj = distance._triangle_pairs(n, k)
    np.testing.assert_array_equal(i.numpy(), ti)
    np.testing.assert_array_equal(j.numpy(), tj)


def test_all_pairs_matrix_and_sum_in_small_chunks() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    seqs = [rng.integers(0, 6, rng.integers(0, 130)).tolist() for _ in range(23)]
    expected = reference_matrix(seqs, seqs)
    for chunk in (1, 5, 64, 10_000):  # chunks that split rows, and one that holds them all
        kernel = distance._Myers(distance._as_seqs(seqs), torch.device("cpu"), chunk)
        np.testing.assert_array_equal(kernel.all_pairs(matrix=True), expected)
        assert kernel.all_pairs(matrix=False) == expected[np.triu_indices(23, 1)].sum()


# --- n_pairs="auto": exact where affordable, sampled otherwise ---


def test_auto_pairs_rule() -> None:
    # the paper's pathways (470 symbols, 8 words): exact up to 20,000 pairs, 20,000 above
    assert distance.auto_pairs([470] * 200, 19_900) is None
    assert distance.auto_pairs([470] * 201, 20_100) == 20_000
    assert distance.auto_pairs([470] * 10_000, 49_995_000) == 20_000
    # short pathways (one word): exact much further
    assert distance.auto_pairs([25] * 2_000, 1_999_000) is None
    assert distance.auto_pairs([25] * 3_000, 4_498_500) == 3_008_000
    # very long pathways: never fewer than 5,000 pairs, and all when that is all there are
    assert distance.auto_pairs([5_000] * 1_000, 499_500) == 5_000
    assert distance.auto_pairs([5_000] * 90, 4_005) is None


def test_auto_mean_is_exact_when_affordable_and_sampled_with_interval_otherwise() -> None:
    small = encode(_paper_like(60, 4), num_experts=16)  # short pathways: exact
    est = mean_pairwise_distance(small, n_pairs="auto", backend="rapidfuzz")
    assert est == mean_pairwise_distance(small, backend="rapidfuzz") and est.exact
    # the paper's size (16 layers x 64 experts, about 470 symbols): 210 of them are sampled
    weights = np.random.default_rng(5).dirichlet(np.full(64, 2.0), size=(210, 16))
    packed = encode(select_experts(weights, tau=0.7), num_experts=64)
    assert 440 < packed.lengths.mean() < 500
    est = mean_pairwise_distance(packed, n_pairs="auto", backend="rapidfuzz")
    expected_n = distance.auto_pairs(packed.lengths, 210 * 209 // 2)
    assert expected_n is not None and not est.exact and est.n_pairs == expected_n
    exact = mean_pairwise_distance(packed, backend="rapidfuzz").value
    assert est.ci_low < exact < est.ci_high
    with pytest.raises(ValueError, match="'auto', None or at least 2"):
        mean_pairwise_distance(packed, n_pairs="all")  # type: ignore[arg-type]
