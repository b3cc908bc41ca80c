"""Memorization and generalization onsets, against brute-force definitions written here."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from grokviz.errors import EmptyInputError
from grokviz.metrics import generalization_onsets, memorization_onsets
from grokviz.metrics.onsets import group_steps, memorization_suffix

STEPS = [0, 100, 200, 300, 400]


def _losses(matrix: np.ndarray, ids: list[str]) -> pl.DataFrame:
    rows = [
        {
            "checkpoint": f"ck{s}",
            "step": s,
            "sample_id": sid,
            "loss": float(matrix[i, j]),
            "n_tokens": 8,
        }
        for i, sid in enumerate(ids)
        for j, s in enumerate(STEPS)
    ]
    return pl.DataFrame(rows)


def _brute_onset(row: np.ndarray, eps: float, delta: float) -> int:
    last = row[-1]
    for t in range(len(row)):
        if all(row[u] <= eps and abs(row[u] - last) <= delta for u in range(t, len(row))):
            return t
    return -1


def test_suffix_matches_brute_force_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    m = np.abs(rng.normal(1.0, 0.6, size=(200, 5)))
    m[:, 3:] = m[:, 3:4] + rng.normal(0, 0.03, size=(200, 2))  # many flat tails
    for eps in (0.5, 1.0, 1.5):
        got = memorization_suffix(m, eps=eps, delta=0.05)
        expected = [_brute_onset(r, eps, 0.05) for r in m]
        assert got.tolist() == expected


def test_memorization_groups_and_columns() -> None:
    m = np.array(
        [
            [3.0, 1.0, 0.40, 0.41, 0.40],  # memorized from 200
            [3.0, 0.3, 0.90, 0.31, 0.30],  # dips early, breaks, memorized from 300
            [3.0, 3.0, 3.00, 3.00, 3.00],  # never
            [3.0, 0.2, 0.20, 0.20, 0.50],  # last loss still <= eps: from 400 only (delta)
        ]
    )
    ids = ["a", "b", "c", "d"]
    samples = pl.DataFrame({"sample_id": ids, "text": "t", "domain": "math", "split": "train"})
    out = memorization_onsets(_losses(m, ids), samples, eps=0.6)
    assert out.columns == [
        *("sample_id", "domain", "eps", "onset_step", "onset_checkpoint", "group"),
        *("eps_source", "before_last"),
    ]
    assert out["onset_step"].to_list() == [200, 300, None, 400]
    assert out["before_last"].to_list() == [True, True, False, False]  # 400 is the last
    assert out["onset_checkpoint"].to_list() == ["ck200", "ck300", None, "ck400"]
    assert out["group"].to_list() == ["Pretrain@200", "Pretrain@300", None, "Pretrain@400"]
    assert out["eps"].to_list() == [0.6] * 4


def test_missing_loss_never_counts_as_memorized() -> None:
    m = np.full((2, 5), 0.1)
    frame = _losses(m, ["a", "b"]).filter((pl.col("step") != 300) | (pl.col("sample_id") != "a"))
    assert memorization_onsets(frame, eps=1.0)["onset_step"].to_list() == [400, 0]


def test_auto_eps_lands_in_target_range_per_domain() -> None:
    rng = np.random.default_rng(1)
    ids, domains, rows = [], [], []
    for domain, scale in (("code", 1.0), ("qa", 3.0)):
        for i in range(100):
            final = scale * rng.uniform(0.2, 1.0)
            curve = np.array([5.0 * scale, 3.0 * scale, final, final, final])
            rows.append(curve)
            ids.append(f"{domain}{i}")
            domains.append(domain)
    m = np.stack(rows)
    samples = pl.DataFrame({"sample_id": ids, "text": "t", "domain": domains, "split": "train"})
    out = memorization_onsets(_losses(m, ids), samples)
    for domain in ("code", "qa"):
        part = out.filter(pl.col("domain") == domain)
        eps = part["eps"][0]
        frac = float((part["onset_step"] < 400).fill_null(False).cast(pl.Float64).mean())  # type: ignore[arg-type]
        assert 0.20 <= frac <= 0.25
        # it is the smallest such eps on the 0.1 grid: one step lower misses the range
        mask = np.array([d == domain for d in domains])
        lower = memorization_suffix(m[mask], eps=round(eps - 0.1, 10), delta=0.05)
        assert np.mean((lower >= 0) & (lower < 4)) < 0.20
        assert round(eps * 10) == pytest.approx(eps * 10)
    assert (
        out.filter(pl.col("domain") == "qa")["eps"][0]
        > out.filter(pl.col("domain") == "code")["eps"][0]
    )


def test_auto_eps_takes_closest_when_range_is_unreachable_and_says_so_without_warning() -> None:
    import warnings

    from grokviz.metrics import memorization_summary

    m = np.array([[2.0, 0.5, 0.5, 0.5, 0.5]] * 4)  # all samples memorize together: 0% or 100%
    ids = list("abcd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a newcomer's notebook prints no warning for this
        out = memorization_onsets(_losses(m, ids))
    assert out["eps"][0] == pytest.approx(0.1)  # 0% is 0.20 away, 100% is 0.75 away
    assert set(out["eps_source"]) == {"closest"}
    assert not out["before_last"].any()
    summary = memorization_summary(out)
    row = summary.table.row(0, named=True)
    assert (row["domain"], row["memorized"], row["samples"], row["fraction"]) == ("all", 0, 4, 0.0)
    assert "no value on the grid reaches it" in str(summary)
    assert "0 of its 4 training samples (0%)" in summary.to_markdown()


def test_memorization_summary_counts_what_analyze_analyzes() -> None:
    from grokviz.metrics import memorization_summary

    # domain x: 1 of 5 memorized before the last checkpoint at eps 0.1 (20 %, in range);
    # domain y: given eps; the control domain z says it is one
    rows = [[2.0, 0.05, 0.05, 0.05, 0.05]] + [[2.0, 2.0, 2.0, 2.0, 2.0]] * 4
    rows += [[2.0, 0.3, 0.3, 0.3, 0.3], [2.0, 2.0, 0.3, 0.3, 0.3], [2.0, 2.0, 2.0, 2.0, 2.0]]
    rows += [[2.0, 0.2, 0.2, 0.2, 0.2]]
    m = np.array(rows)
    ids = [f"x{i}" for i in range(5)] + ["y0", "y1", "y2"] + ["z0"]
    samples = pl.DataFrame(
        {
            "sample_id": ids,
            "text": "t",
            "domain": ["x"] * 5 + ["y"] * 3 + ["z"],
            "split": "train",
            "control": [False] * 8 + [True],
        }
    )
    onsets = memorization_onsets(_losses(m, ids), samples, eps={"x": 0.1, "y": 0.5, "z": 0.5})
    table = memorization_summary(onsets, samples).table
    assert table.select("domain", "memorized", "samples", "groups", "control").rows() == [
        ("x", 1, 5, 1, False),
        ("y", 2, 3, 2, False),
        ("z", 1, 1, 1, True),
    ]
    auto = memorization_summary(_losses(m, ids), samples)
    x = auto.table.filter(domain="x").row(0, named=True)
    assert (x["eps"], x["eps_source"], x["fraction"]) == (0.1, "calibrated", 0.2)
    assert "calibrated into the target range" in auto.sentences()[0]
    assert "z` (control)" in auto.to_markdown()


def test_split_filter_and_dict_eps() -> None:
    m = np.array([[1.0, 0.2, 0.2, 0.2, 0.2], [1.0, 0.2, 0.2, 0.2, 0.2]])
    samples = pl.DataFrame(
        {"sample_id": ["a", "b"], "text": "t", "domain": ["x", "x"], "split": ["train", "test"]}
    )
    out = memorization_onsets(_losses(m, ["a", "b"]), samples, eps={"x": 0.5})
    assert out["sample_id"].to_list() == ["a"]
    with pytest.raises(KeyError, match="no value for domain"):
        memorization_onsets(_losses(m, ["a", "b"]), samples, eps={"y": 0.5})
    with pytest.raises(EmptyInputError):
        memorization_onsets(_losses(m, ["a", "b"]).head(0), eps=0.5)


def _acc(matrix: list[list[int]]) -> pl.DataFrame:
    n = len(matrix[0])
    return pl.DataFrame(
        [
            {"checkpoint": f"ck{j}", "step": 10 * j, "sample_id": f"s{i}", "correct": bool(v)}
            for i, row in enumerate(matrix)
            for j, v in enumerate(row)
        ]
    ).filter(pl.col("step") < 10 * n)


def _brute_generalization(row: list[int]) -> int:
    for t in range(len(row)):
        window = row[t:]
        if row[t] and np.mean(window) > 0.8 and window.count(0) <= 1:
            return t
    return -1


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([0, 0, 1, 1, 1, 1, 1, 1], 2),
        ([0, 1, 1, 1, 1, 0, 1, 1], 1),  # one error in a window of 7: 6/7 > 0.8
        ([0, 1, 1, 0, 1, 1, 1, 1], 1),
        ([0, 0, 0, 1, 0, 1, 1, 1], 5),  # 1,0,1,1,1 is 0.8: not above 0.8
        ([1, 1, 1, 1, 1, 1, 1, 0], 0),  # error at the very end still tolerated in a long window
        ([0, 0, 0, 0, 0, 0, 1, 0], -1),
        ([0, 0, 0, 0, 0, 0, 0, 1], 7),  # correct at the last checkpoint only
        ([0, 0, 0, 0, 0, 0, 0, 0], -1),
        ([1, 0, 0, 1, 1, 1, 1, 1], 3),
    ],
)
def test_generalization_edge_cases(row: list[int], expected: int) -> None:
    assert _brute_generalization(row) == expected  # the reference agrees with the reading above
    out = generalization_onsets(_acc([row]))
    assert out["onset_step"][0] == (None if expected < 0 else 10 * expected)
    assert out["group"][0] == (None if expected < 0 else f"Test@{10 * expected}")


def test_generalization_random_against_brute_force() -> None:
    rng = np.random.default_rng(2)
    matrix = (rng.random((300, 9)) < np.linspace(0.2, 0.95, 9)).astype(int).tolist()
    out = generalization_onsets(_acc(matrix)).sort("sample_id")
    got = {r["sample_id"]: r["onset_step"] for r in out.iter_rows(named=True)}
    for i, row in enumerate(matrix):
        t = _brute_generalization(row)
        assert got[f"s{i}"] == (None if t < 0 else 10 * t)


def test_generalization_missing_evaluation_counts_as_error() -> None:
    acc = _acc([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    acc = acc.filter((pl.col("step") != 60) | (pl.col("sample_id") != "s0"))
    # s0 was not evaluated at the last checkpoint: one error, tolerated in the 7-long window
    assert generalization_onsets(acc)["onset_step"].to_list() == [0, 0]
    acc = acc.filter((pl.col("step") != 50) | (pl.col("sample_id") != "s0"))
    assert generalization_onsets(acc)["onset_step"].to_list() == [None, 0]


def test_generalization_uses_domains_from_samples() -> None:
    samples = pl.DataFrame(
        {"sample_id": ["s0", "s1"], "text": "t", "domain": ["a", "b"], "split": "test"}
    )
    out = generalization_onsets(_acc([[0, 1, 1], [1, 1, 1]]), samples)
    assert out["domain"].to_list() == ["a", "b"]


def test_group_steps() -> None:
    assert group_steps(["Pretrain@5", None, "Test@1200"]) == [5, None, 1200]


def test_checkpoint_with_two_steps_is_rejected() -> None:
    frame = _losses(np.ones((1, 5)), ["a"]).with_columns(pl.lit("same").alias("checkpoint"))
    with pytest.raises(ValueError, match="several steps"):
        memorization_onsets(frame, eps=1.0)
