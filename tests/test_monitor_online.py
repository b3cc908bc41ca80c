"""The online memorization criterion against a plain reference, its relation to the paper's
criterion, and the live metrics of a store as its checkpoints arrive."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import grokviz
from grokviz.errors import InputError
from grokviz.metrics import memorization_onsets
from grokviz.monitor import LiveMetrics, OnlineCriterion

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "samples" / "toy" / "trace"


def _reference(losses: list[float], *, eps: float, delta: float, window: int) -> tuple[bool, int]:
    """The online criterion of one sample at the last observation, spelled out with loops."""
    n = len(losses)
    latest = losses[-1]
    onset = -1
    for start in range(n):  # the earliest start from which every observation qualifies
        if all(not math.isnan(v) and v <= eps and abs(v - latest) <= delta for v in losses[start:]):
            onset = start
            break
    return onset >= 0 and n - onset >= window, onset


def _random_losses(rng: np.random.Generator, n_samples: int, n_obs: int) -> np.ndarray:
    # falling, noisy curves that settle at different levels, some with a late jump and a NaN
    t = np.arange(n_obs)
    floor = rng.uniform(0.1, 2.5, size=(n_samples, 1))
    curves = floor + 3.0 * np.exp(-t / rng.uniform(0.5, 3, size=(n_samples, 1)))
    curves += rng.normal(0, 0.01, size=curves.shape)
    jump = rng.random(n_samples) < 0.2
    curves[jump, n_obs // 2 :] += 0.3
    curves[rng.random(curves.shape) < 0.02] = np.nan
    return curves


@pytest.mark.parametrize("window", [2, 3, 5])
def test_online_criterion_matches_the_definition_at_every_observation(window: int) -> None:
    rng = np.random.default_rng(window)
    losses = _random_losses(rng, 40, 12)
    crit = OnlineCriterion(eps=1.5, delta=0.05, window=window)
    seen_memorized = 0
    for n in range(1, losses.shape[1] + 1):
        state = crit.evaluate(losses[:, :n], ["d"] * losses.shape[0])
        for i in range(losses.shape[0]):
            memorized, onset = _reference(list(losses[i, :n]), eps=1.5, delta=0.05, window=window)
            assert state.memorized[i] == memorized, (n, i)
            assert state.onset[i] == onset, (n, i)
        seen_memorized += int(state.memorized.sum())
    assert seen_memorized > 0  # the curves do settle below eps


def test_at_the_end_of_a_run_the_online_set_is_the_papers_memorized_set() -> None:
    rng = np.random.default_rng(0)
    losses = _random_losses(rng, 60, 10)
    ids = [f"s{i:02d}" for i in range(60)]
    steps = [100 * (j + 1) for j in range(10)]
    frame = pl.DataFrame(
        {
            "checkpoint": [f"c{j}" for i in range(60) for j in range(10)],
            "step": [steps[j] for i in range(60) for j in range(10)],
            "sample_id": [ids[i] for i in range(60) for j in range(10)],
            "loss": losses.reshape(-1),
            "n_tokens": 5,
        }
    ).with_columns(pl.col("loss").fill_nan(None))
    for eps in (0.8, 1.5, 2.2):
        paper = memorization_onsets(frame, eps=eps, delta=0.05).sort("sample_id")
        state = OnlineCriterion(eps=eps, window=2).evaluate(losses, ["all"] * 60)
        online_steps = [steps[o] if o >= 0 else None for o in state.onset]
        assert online_steps == paper["onset_step"].to_list()  # the same onsets
        before_last = (paper["onset_step"] < steps[-1]).fill_null(False).to_list()
        assert state.memorized.tolist() == before_last  # the set analyze() works on
        wider = OnlineCriterion(eps=eps, window=4).evaluate(losses, ["all"] * 60)
        assert set(np.flatnonzero(wider.memorized)) <= set(np.flatnonzero(state.memorized))


def test_calibrated_eps_is_the_smallest_grid_value_in_the_target_per_domain() -> None:
    rng = np.random.default_rng(1)
    losses = _random_losses(rng, 80, 8)
    domains = ["a"] * 40 + ["b"] * 40
    losses[40:] += 1.0  # domain b sits a nat higher: it needs a larger eps
    crit = OnlineCriterion(window=3)
    state = crit.evaluate(losses, domains)
    for name, rows in (("a", slice(0, 40)), ("b", slice(40, 80))):
        eps = float(state.eps[rows][0])
        part = losses[rows]

        def fraction(e: float, part: np.ndarray = part) -> float:
            got = [_reference(list(r), eps=e, delta=0.05, window=3)[0] for r in part]
            return float(np.mean(got))

        assert 0.20 <= fraction(eps) <= 0.25, name
        below = round(eps - 0.1, 10)
        assert below <= 0 or not 0.20 <= fraction(below) <= 0.25, name
    assert state.eps[40] > state.eps[0]
    fixed = OnlineCriterion(eps={"a": 1.0}, window=3).evaluate(losses, domains)
    assert fixed.eps[0] == 1.0 and fixed.eps[40] == state.eps[40]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 1}, "window must be at least 2"),
        ({"delta": -0.1}, "delta must be"),
        ({"eps": 0.0}, "eps must be positive"),
        ({"eps": {"a": float("inf")}}, "eps must be positive"),
        ({"target": (0.5, 0.2)}, "target must be"),
    ],
)
def test_bad_criterion_settings_say_what_is_wrong(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        OnlineCriterion(**kwargs)


# -- live metrics of a store ------------------------------------------------------------------------


def _partial_copy(tmp_path: Path, keep: int, only: int | None = None) -> Path:
    """The shipped trace with only its first ``keep`` checkpoints listed, as a writer would
    leave it part way through; adding the others back makes them arrive. ``only``: the run's
    first, last and evenly spaced checkpoints in between, this many in all, stand for the run."""
    import json

    store = tmp_path / "trace"
    shutil.copytree(SHIPPED, store)
    manifest = json.loads((store / "manifest.json").read_text())
    entries = sorted(manifest["checkpoints"].items(), key=lambda kv: kv[1]["step"])
    if only is not None:
        picks = np.unique(np.linspace(0, len(entries) - 1, only).round().astype(int))
        entries = [entries[i] for i in picks]
    held = dict(entries[keep:])
    manifest["checkpoints"] = dict(entries[:keep])
    (store / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "held.json").write_text(json.dumps(held))
    return store


def _release(tmp_path: Path, n: int) -> None:
    import json

    store = tmp_path / "trace"
    manifest = json.loads((store / "manifest.json").read_text())
    held = json.loads((tmp_path / "held.json").read_text())
    for label in list(held)[:n]:
        manifest["checkpoints"][label] = held.pop(label)
    (store / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "held.json").write_text(json.dumps(held))


def test_live_metrics_follow_a_store_as_its_checkpoints_arrive(tmp_path: Path) -> None:
    # Three of the run's checkpoints (each costs seconds of all-pair distances, twice here).
    store = _partial_copy(tmp_path, keep=2, only=3)
    live = LiveMetrics(store, criterion=OnlineCriterion(eps=2.0, delta=0.3, window=2), n_boot=0)
    seen: list[int] = []
    live.subscribe(lambda obs: seen.append(obs.step))
    first = live.update()
    assert [o.step for o in first] == seen
    assert len(first) == 2 and live.update() == []  # nothing new
    _release(tmp_path, 1)
    second = live.update()
    assert len(second) == 1 and seen == sorted(seen) and len(seen) == 3
    # each observation's memorized set is the criterion over the observations up to it
    full = grokviz.TraceStore.open(store)
    samples = full.samples().filter(pl.col("split") == "train")
    losses = full.losses().sort("step")
    ids = samples["sample_id"].to_list()
    wide = losses.pivot(on="step", index="sample_id", values="loss")
    wide = pl.DataFrame({"sample_id": ids}).join(wide, on="sample_id", how="left")
    matrix = wide.drop("sample_id").to_numpy().astype(float)
    for k, step in enumerate(seen):
        state = OnlineCriterion(eps=2.0, delta=0.3, window=2).evaluate(
            matrix[:, : k + 1], samples["domain"].to_list()
        )
        got = live.memorization.filter(pl.col("step") == step).sort("sample_id")
        expected = dict(zip(ids, state.memorized.tolist(), strict=True))
        assert got["memorized"].to_list() == [expected[s] for s in got["sample_id"]]
    # the probe rows are what analyze gives for every sample at that checkpoint
    posthoc = grokviz.analyze(
        store,
        eps=1.0,
        memorized_only=False,
        groups=["global"],
        n_boot=0,
        n_pairs=None,  # every pair, as the live metrics compute them
        progress=False,
    )
    probe = live.metrics.filter(pl.col("group") == "probe")
    joined = probe.join(posthoc, on=["step", "metric"], suffix="_posthoc")
    assert joined.height == probe.height > 0
    assert np.allclose(joined["value"], joined["value_posthoc"], rtol=1e-12, atol=0)
    groups = set(live.metrics["group"])
    assert {"probe", "memorized", "probe:add", "memorized:add"} <= groups
    assert any(g.startswith("Pretrain@") for g in groups)


def test_scalars_name_every_set_and_domain_for_any_logger(tmp_path: Path) -> None:
    store = _partial_copy(tmp_path, keep=2, only=2)  # the run's first and last checkpoints
    live = LiveMetrics(store, criterion=OnlineCriterion(eps=2.0, delta=0.3, window=2), n_boot=0)
    last = live.update()[-1]
    scalars = last.scalars()
    mem = last.memorization
    real = mem.filter(~pl.col("control").fill_null(False))  # a control group is counted apart
    assert 0 < real.height < mem.height  # the shipped run has one (random answers)
    assert scalars["grokviz/memorized/count"] == real["memorized"].sum()
    assert scalars["grokviz/memorized/fraction"] == pytest.approx(real["memorized"].mean())
    add = mem.filter(pl.col("domain") == "add")
    assert scalars["grokviz/memorized/add/fraction"] == pytest.approx(add["memorized"].mean())
    assert scalars["grokviz/memorized/add/eps"] == 2.0
    assert "grokviz/probe/add/distance" in scalars
    assert not [k for k in scalars if "Pretrain" in k or "@" in k or ":" in k]


def test_a_folder_that_is_no_store_yet_is_simply_empty(tmp_path: Path) -> None:
    live = LiveMetrics(tmp_path / "not-yet")
    assert live.update() == [] and live.store is None
    assert live.metrics.height == 0 and live.memorization.height == 0
