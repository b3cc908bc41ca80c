"""Pathway construction: expert selection, the frame form, packing and the paper's strings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from grokviz import schema
from grokviz.errors import EmptyInputError
from grokviz.metrics.distance import Backend, pairwise_distances
from grokviz.pathways import (
    PackedPathways,
    encode,
    from_string,
    pathways,
    select_experts,
    to_string,
)

BACKENDS: tuple[Backend, ...] = ("torch", "rapidfuzz")


def reference_select(row: list[float], tau: float | None, top_k: int | None) -> list[int]:
    """Plain-Python expert selection: rank by weight desc (ties: lower id), keep until > tau."""
    ranked = sorted(range(len(row)), key=lambda k: (-row[k], k))
    if top_k is not None:
        return ranked[:top_k]
    assert tau is not None
    kept, total = [], 0.0
    for k in ranked:
        kept.append(k)
        total += row[k]
        if total > tau:
            break
    return kept


# Weights drawn from few distinct values so that ties are common.
weights_strategy = st.integers(1, 4).flatmap(
    lambda n_layers: st.integers(1, 9).flatmap(
        lambda k: st.lists(
            st.lists(
                st.lists(st.sampled_from([0, 1, 2, 3, 5, 8]), min_size=k, max_size=k).filter(
                    lambda r: sum(r) > 0
                ),
                min_size=n_layers,
                max_size=n_layers,
            ),
            min_size=1,
            max_size=4,
        )
    )
)


def _normalise(raw: list[list[list[int]]]) -> np.ndarray:
    w = np.array(raw, dtype=np.float64)
    return w / w.sum(axis=-1, keepdims=True)


@settings(max_examples=200, deadline=None)
@given(raw=weights_strategy, tau=st.sampled_from([0.3, 0.5, 0.7, 0.8, 1.0]))
def test_select_experts_threshold_matches_reference(raw: list, tau: float) -> None:
    w = _normalise(raw)
    got = select_experts(w, tau=tau)
    for i in range(w.shape[0]):
        for layer in range(w.shape[1]):
            expected = reference_select(w[i, layer].tolist(), tau, None)
            assert got[i][layer].tolist() == expected


@settings(max_examples=100, deadline=None)
@given(raw=weights_strategy, data=st.data())
def test_select_experts_top_k_matches_reference(raw: list, data: st.DataObject) -> None:
    w = _normalise(raw)
    top_k = data.draw(st.integers(1, w.shape[-1]))
    got = select_experts(w, tau=None, top_k=top_k)
    for i in range(w.shape[0]):
        for layer in range(w.shape[1]):
            assert got[i][layer].tolist() == reference_select(w[i, layer].tolist(), None, top_k)


def test_threshold_edge_is_strictly_exceeds() -> None:
    # .5 + .3 exceeds .7 and .75: two experts; .5 + .25 only reaches .75: a third is needed.
    w = np.array([[[0.5, 0.3, 0.2]], [[0.5, 0.25, 0.25]]])
    assert [p[0].tolist() for p in select_experts(w, tau=0.7)] == [[0, 1], [0, 1]]
    assert [p[0].tolist() for p in select_experts(w, tau=0.75)] == [[0, 1], [0, 1, 2]]
    # ties rank the lower expert id first
    tie = np.array([[[0.25, 0.5, 0.25]]])
    assert select_experts(tie, tau=0.6)[0][0].tolist() == [1, 0]


def test_select_experts_accepts_torch() -> None:
    torch = pytest.importorskip("torch")
    w = torch.softmax(torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(0)), -1)
    a = select_experts(w, tau=0.7)
    b = select_experts(w.numpy(), tau=0.7)
    assert [[x.tolist() for x in s] for s in a] == [[x.tolist() for x in s] for s in b]


@pytest.mark.parametrize(
    ("weights", "kwargs", "match"),
    [
        (np.ones((2, 3)), {}, "shape"),
        (np.full((1, 1, 2), 0.5), {"tau": 0.5, "top_k": 1}, "exactly one"),
        (np.full((1, 1, 2), 0.5), {"tau": None}, "exactly one"),
        (np.full((1, 1, 2), 0.5), {"tau": None, "top_k": 3}, "top_k"),
        (np.full((1, 1, 2), 0.5), {"tau": 1.5}, "tau"),
        (np.array([[[1.5, -0.5]]]), {}, "non-negative"),
        (np.array([[[np.nan, 1.0]]]), {}, "NaN"),
    ],
)
def test_select_experts_rejects_bad_input(weights: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_experts(weights, **kwargs)


def _routing_frame(w: np.ndarray, sample_ids: list[str], checkpoint: str = "c0") -> pl.DataFrame:
    n, n_layers, _ = w.shape
    return pl.DataFrame(
        {
            "checkpoint": [checkpoint] * (n * n_layers),
            "step": [10] * (n * n_layers),
            "sample_id": [s for s in sample_ids for _ in range(n_layers)],
            "layer": list(range(n_layers)) * n,
            "weights": [w[i, layer].tolist() for i in range(n) for layer in range(n_layers)],
        },
        schema=schema.ROUTING,
    )


def test_pathways_frame_matches_select_experts() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(8, 0.3), size=(5, 3)).astype(np.float32)
    frame = _routing_frame(w, [f"s{i}" for i in range(5)])
    out = pathways(frame, tau=0.7)
    assert out.columns == ["checkpoint", "step", "sample_id", "layer", "experts"]
    assert out.schema["experts"] == pl.List(pl.Int16())
    expected = select_experts(w.astype(np.float64), tau=0.7)
    assert out["experts"].to_list() == [e.tolist() for s in expected for e in s]
    top2 = pathways(frame, tau=None, top_k=2, layers=[0, 2])
    assert top2["layer"].to_list() == [0, 2] * 5
    assert all(len(e) == 2 for e in top2["experts"].to_list())


def test_encode_expert_unit_and_frame_order() -> None:
    packed = encode([[[3, 1], [5]], [[2], [0, 4, 6]]], num_experts=8)
    assert packed.alphabet_size == 9
    assert packed.lengths.tolist() == [4, 5]
    assert packed.symbols.tolist() == [[3, 1, 8, 5, -1], [2, 8, 0, 4, 6]]
    assert packed.symbols.dtype == np.int32 and len(packed) == 2
    # default K: one more than the largest id seen; a too-small K is refused
    assert encode([[[3, 1], [5]]]).symbols.tolist() == [[3, 1, 6, 5]]
    with pytest.raises(ValueError, match="num_experts"):
        encode([[[3, 1], [5]]], num_experts=4)
    with pytest.raises(EmptyInputError):
        encode([])
    # a frame: samples in first-appearance order, layers sorted, ids kept
    frame = pl.DataFrame(
        {
            "checkpoint": ["c"] * 4,
            "sample_id": ["b", "a", "b", "a"],
            "layer": [1, 1, 0, 0],
            "experts": [[5], [7], [3, 1], [2]],
        }
    )
    from_frame = encode(frame, num_experts=8)
    assert from_frame.sample_ids == ["b", "a"]
    assert from_frame.symbols.tolist() == [[3, 1, 8, 5], [2, 8, 7, -1]]
    two = pl.concat([frame, frame.with_columns(pl.lit("d").alias("checkpoint"))])
    with pytest.raises(ValueError, match="partition_by"):
        encode(two)
    with pytest.raises(ValueError, match="same layers"):
        encode(frame.filter(~((pl.col("sample_id") == "a") & (pl.col("layer") == 0))))


def test_to_strings_is_a_bijection() -> None:
    packed = PackedPathways(
        np.array([[0, 1, 0xD800, -1], [2, -1, -1, -1]], dtype=np.int32),
        np.array([3, 1], dtype=np.int32),
        alphabet_size=0xD801,
    )
    strings = packed.to_strings()
    assert [len(s) for s in strings] == [3, 1]
    assert len({*strings[0], *strings[1]}) == 4  # distinct symbols -> distinct characters
    assert strings[0][0] == chr(0x100)


layers_strategy = st.lists(
    st.lists(st.integers(0, 300), min_size=1, max_size=6), min_size=0, max_size=8
)


@settings(max_examples=200, deadline=None)
@given(layers=layers_strategy)
def test_string_round_trip(layers: list[list[int]]) -> None:
    assert from_string(to_string(layers)) == layers


def test_paper_string_form() -> None:
    assert to_string([[3, 1, 5], [9, 1]]) == "3,1,5-9,1"
    assert from_string("3,1,5-9,1") == [[3, 1, 5], [9, 1]]
    with pytest.raises(ValueError, match="not a pathway string"):
        from_string("3,,1")


@settings(max_examples=50, deadline=None)
@given(st.lists(layers_strategy.filter(bool), min_size=2, max_size=6))
def test_char_unit_distance_equals_rapidfuzz_on_paper_strings(paths: list) -> None:
    packed = encode(paths, unit="char")
    strings = [to_string(p) for p in paths]
    expected = np.array([[Levenshtein.distance(a, b) for b in strings] for a in strings])
    for backend in BACKENDS:
        got = pairwise_distances(packed, backend=backend)
        np.testing.assert_array_equal(got, expected)
