"""Pathway consistency, complexity and routing entropy against a separate numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokviz.metrics import complexity, consistency, routing_entropy
from grokviz.metrics.consistency import adjacent_cosines, routing_embeddings


def _reference_consistency(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Loop-by-loop transcription of DESIGN.md §1, one sample at a time, normalised by the
    largest cosine in size (the paper's maximum whenever that cosine is positive)."""
    n, n_layers, _ = g.shape
    out = np.empty(n)
    for i in range(n):
        emb = [sum(g[i, j, k] * w[j, k] for k in range(w.shape[1])) for j in range(n_layers)]
        cos = []
        for j in range(n_layers - 1):
            a, b = emb[j], emb[j + 1]
            denom = np.sqrt(a @ a) * np.sqrt(b @ b)
            cos.append(0.0 if denom == 0 else float(a @ b) / denom)
        m = max(abs(c) for c in cos)
        out[i] = sum(c / (m + 1e-8) for c in cos) / (n_layers - 1)
    return out


def _random(n=7, layers=4, k=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.dirichlet(np.ones(k), size=(n, layers))
    w = rng.normal(size=(layers, k, d))
    return g, w


def test_consistency_matches_reference() -> None:
    g, w = _random()
    np.testing.assert_allclose(consistency(g, w), _reference_consistency(g, w), rtol=1e-10)
    np.testing.assert_allclose(complexity(g, w), 1 - _reference_consistency(g, w), rtol=1e-10)


def test_torch_in_torch_out_float32() -> None:
    g, w = _random(seed=1)
    got = consistency(torch.tensor(g, dtype=torch.float32), torch.tensor(w, dtype=torch.float32))
    assert isinstance(got, torch.Tensor)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _reference_consistency(g, w), rtol=1e-4, atol=1e-5)


def test_numpy_in_numpy_out() -> None:
    g, w = _random(seed=2)
    assert isinstance(consistency(g, w), np.ndarray)
    assert isinstance(routing_entropy(g), np.ndarray)


def test_routing_embeddings_and_cosines() -> None:
    g, w = _random(n=3, layers=3, seed=3)
    emb = routing_embeddings(g, w)
    np.testing.assert_allclose(emb[1, 2], g[1, 2] @ w[2])
    cos = adjacent_cosines(g, w)
    a, b = emb[0, 0], emb[0, 1]
    assert cos.shape == (3, 2)
    assert cos[0, 0] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_identical_layers_are_fully_consistent() -> None:
    g, w = _random(layers=2, seed=4)
    w = np.stack([w[0]] * 4)
    g = np.repeat(g[:, :1], 4, axis=1)
    np.testing.assert_allclose(consistency(g, w), 1.0, atol=1e-7)


def test_more_erratic_transitions_are_less_consistent() -> None:
    # 3 layers of orthonormal experts: a path that flips expert at one boundary only
    w = np.stack([np.eye(4)] * 3)
    steady = np.array([[[0.7, 0.3, 0, 0]] * 3])
    erratic = np.array([[[0.7, 0.3, 0, 0], [0.7, 0.3, 0, 0], [0, 0, 0.3, 0.7]]])
    assert consistency(steady, w)[0] > consistency(erratic, w)[0]
    assert complexity(erratic, w)[0] == pytest.approx(0.5, abs=1e-7)  # cosines 1 and 0


def test_one_layer_is_a_clear_error() -> None:
    g, w = _random(layers=1)
    with pytest.raises(ValueError, match="at least 2 MoE layers"):
        consistency(g, w)


def test_shape_mismatch_is_a_clear_error() -> None:
    g, w = _random(layers=3)
    with pytest.raises(ValueError, match="same checkpoint"):
        consistency(g, w[:2])


def test_zero_vectors_give_zero_cosine_not_nan() -> None:
    g, w = _random(n=2, layers=3, seed=5)
    g[0, 1] = 0.0  # sample 0 has a zero routing embedding at layer 1
    got = consistency(g, w)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _reference_consistency(g, w), rtol=1e-10)
    g[1] = 0.0  # all cosines 0 -> consistency 0
    assert consistency(g, w)[1] == 0.0


def test_routing_entropy_against_scipy() -> None:
    from scipy.stats import entropy

    g, _ = _random(seed=6)
    g[0, 0] = np.eye(g.shape[2])[0]  # a one-hot layer: 0 log 0 counts as 0
    expected = np.array(
        [np.mean([entropy(g[i, j]) for j in range(g.shape[1])]) for i in range(len(g))]
    )
    np.testing.assert_allclose(routing_entropy(g), expected, rtol=1e-12)


def test_wide_and_narrow_router_rows_and_empty_input() -> None:
    for d in (2, 40):  # hidden size below and above the number of experts
        g, w = _random(n=5, layers=3, k=6, d=d, seed=d)
        np.testing.assert_allclose(consistency(g, w), _reference_consistency(g, w), rtol=1e-10)
    assert consistency(g[:0], w).shape == (0,)


def test_normalisation_is_the_papers_when_cosines_are_positive_and_bounded_otherwise() -> None:
    # 3 layers, 2-d router rows: embeddings at 0, 89 and 178 degrees give cosines
    # cos(89) ~ +0.017 and cos(89) again: all positive -> the paper's formula exactly.
    def rows(deg: float) -> np.ndarray:
        r = np.deg2rad(deg)
        return np.array([[np.cos(r), np.sin(r)], [np.cos(r), np.sin(r)]])

    g = np.full((1, 3, 2), 0.5)
    w = np.stack([rows(0), rows(89), rows(178)])
    cos = adjacent_cosines(g, w)[0]
    paper = float(np.mean(cos / (cos.max() + 1e-8)))
    assert consistency(g, w)[0] == pytest.approx(paper, rel=1e-12)
    # cosines +0.017 and -0.99: the paper's ratio is about -28; ours stays in [-1, 1]
    w = np.stack([rows(0), rows(89), rows(270)])
    cos = adjacent_cosines(g, w)[0]
    assert cos.max() > 0 > cos.min() and abs(cos.min()) > cos.max()
    assert float(np.mean(cos / (cos.max() + 1e-8))) < -10
    got = consistency(g, w)[0]
    assert -1.0 <= got <= 1.0
    assert got == pytest.approx(float(np.mean(cos / (np.abs(cos).max() + 1e-8))), rel=1e-12)
    g_many, w_many = _random(n=200, layers=5, seed=7)
    assert np.all(np.abs(consistency(g_many, w_many)) <= 1.0 + 1e-12)
