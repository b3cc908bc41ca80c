"""The training monitor: probe set, what an observation leaves untouched, the store it writes,
bit-identical training with and without it, resuming, and its errors."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

import grokviz
from grokviz.errors import InputError, NotAStoreError, NotMoEError, StoreMismatchError
from grokviz.monitor import Monitor, OnlineCriterion, probe_set
from grokviz.monitor._state import untouched
from grokviz.testing import char_tokenizer, tiny_dense, tiny_moe, tiny_samples
from grokviz.tracing import weights_hash


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Small models run faster on one intra-op thread, and a shared machine's other threads do
    # not then slow every matmul; the bit-identity checks compare runs made with the same count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _samples(n: int = 8) -> pl.DataFrame:
    return tiny_samples(n, domains=("a", "b"))


# -- probe set ------------------------------------------------------------------------------------


def test_probe_set_draws_per_domain_deterministically_whatever_the_row_order() -> None:
    samples = tiny_samples(40, domains=("a", "b", "c"))
    probe = probe_set(samples, per_domain=5, seed=3)
    assert probe.group_by("domain").len().sort("domain")["len"].to_list() == [5, 5, 5]
    shuffled = samples.sample(fraction=1.0, shuffle=True, seed=1)
    again = probe_set(shuffled, per_domain=5, seed=3)
    assert set(again["sample_id"]) == set(probe["sample_id"])
    assert set(probe_set(samples, per_domain=5, seed=4)["sample_id"]) != set(probe["sample_id"])
    # order of the table is kept; a small domain keeps all it has
    assert probe["sample_id"].to_list() == sorted(probe["sample_id"].to_list())
    assert probe_set(samples, per_domain=100).height == 40


def test_probe_set_refuses_test_data_and_too_small_sets() -> None:
    samples = _samples(6).with_columns(split=pl.Series(["train"] * 5 + ["test"]))
    with pytest.raises(InputError, match=r"not training samples.*without test data"):
        probe_set(samples)
    with pytest.raises(InputError, match="at least 2"):
        probe_set(_samples(6), per_domain=1)


# -- what an observation leaves untouched ---------------------------------------------------------


class _Counter(torch.nn.Module):
    """A module that keeps statistics the way MoE routers do: a buffer, a plain tensor attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("load", torch.zeros(4))
        self.calls = torch.zeros(1)
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.load += 1
        self.calls = self.calls + 1
        return self.lin(x)


def test_untouched_restores_rng_modes_buffers_statistics_threads_and_grad_mode() -> None:
    model = torch.nn.Sequential(_Counter(), torch.nn.Dropout(0.5)).train()
    model[1].eval()  # a user froze this one: it must stay in eval mode
    counter = model[0]
    load_object = counter.load
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    with untouched(model):
        model.eval()
        torch.set_grad_enabled(False)
        torch.set_num_threads(2)
        with torch.inference_mode():
            model(torch.rand(2, 4))
        counter.load = torch.full((4,), 9.0)  # replaced, not updated
        random.random()
        np.random.rand()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
    assert model[0].training and not model[1].training and model.training
    assert counter.load is load_object and torch.equal(counter.load, torch.zeros(4))
    assert torch.equal(counter.calls, torch.zeros(1))
    assert torch.is_grad_enabled() and torch.get_num_threads() == 1


def test_untouched_restores_even_when_the_block_raises() -> None:
    model = tiny_moe().train()
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"), untouched(model):
        model.eval()
        torch.rand(5)
        raise RuntimeError("boom")
    assert model.training and torch.equal(torch.get_rng_state(), before)


# -- observations and the store -------------------------------------------------------------------


def _monitor(tmp_path: Path, **kwargs: Any) -> Monitor:
    kwargs.setdefault("every", 5)
    kwargs.setdefault("on_error", "raise")
    kwargs.setdefault("criterion", OnlineCriterion(eps=4.0, window=2))
    return Monitor(_samples(), tmp_path / "monitor", tokenizer=char_tokenizer(), **kwargs)


def test_an_observation_is_one_checkpoint_labelled_by_step_with_a_weights_hash(
    tmp_path: Path,
) -> None:
    monitor = _monitor(tmp_path, run="exp1")
    model = tiny_moe().train()
    assert monitor.observe(model, 3) is None  # not a multiple of every
    scalars = monitor.observe(model, 5)
    assert scalars is not None and model.training
    store = grokviz.TraceStore.open(tmp_path / "monitor")
    ckpt = store.checkpoints().row(0, named=True)
    assert (ckpt["checkpoint"], ckpt["step"], ckpt["source"]) == ("step-000005", 5, "live:exp1")
    assert ckpt["sha"] == weights_hash(model)
    assert ckpt["parts_done"] == ckpt["parts_total"]
    assert store.verify().ok
    # routing and losses only: no weights were written
    files = [p.name for p in (tmp_path / "monitor").rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".safetensors", ".bin", ".pt"))]
    # the scalars are the store's numbers
    losses = store.losses()
    assert scalars["grokviz/probe/loss"] == pytest.approx(losses["loss"].mean(), rel=1e-12)
    mean_a = losses.join(store.samples(), on="sample_id").filter(pl.col("domain") == "a")
    assert scalars["grokviz/probe/a/loss"] == pytest.approx(mean_a["loss"].mean(), rel=1e-12)
    assert {"grokviz/probe/distance", "grokviz/probe/consistency"} <= set(scalars)
    assert scalars["grokviz/memorized/fraction"] == 0.0  # one observation: window not full


def test_live_metrics_agree_with_analyze_on_the_same_store(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    model = tiny_moe().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ids = char_tokenizer()(["memorize then generalize"] * 2, return_tensors="pt")["input_ids"]
    for step in range(11):
        monitor.observe(model, step)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    live = monitor.metrics.filter(pl.col("group") == "probe").select("step", "metric", "value")
    posthoc = grokviz.analyze(
        monitor.store, eps=1.0, memorized_only=False, groups="global", n_boot=0, progress=False
    ).select("step", "metric", "value")
    joined = live.join(posthoc, on=["step", "metric"], suffix="_posthoc")
    assert joined.height == posthoc.height > 0
    assert np.allclose(joined["value"], joined["value_posthoc"], rtol=1e-12, atol=0)
    assert monitor.store.checkpoints()["step"].to_list() == [0, 5, 10]


def test_post_hoc_analysis_of_the_monitors_store_uses_the_papers_criterion(
    tmp_path: Path,
) -> None:
    monitor = _monitor(tmp_path, every=1)
    model = tiny_moe().train()
    for step in range(3):
        monitor.observe(model, step)
    paper = monitor.analyze(eps=10.0, n_boot=0)
    direct = grokviz.analyze(monitor.store, eps=10.0, n_boot=0, progress=False)
    assert paper.equals(direct)


def test_training_with_the_monitor_is_bit_identical_to_training_without(tmp_path: Path) -> None:
    """The trained weights, and the RNG afterwards, are the same with and without the monitor.

    The model draws random numbers in training (Mixtral's router jitter, attention dropout), and
    a hook draws more whenever the model runs in eval mode, as a careless probe would. The
    control run shows that those eval-mode draws do change training when nothing restores them,
    so the comparison can fail.
    """

    def train(tmp: Path | None, *, eval_forward: bool = False) -> tuple[dict, torch.Tensor]:
        torch.manual_seed(0)
        model = tiny_moe("mixtral", seed=1, router_jitter_noise=0.2, attention_dropout=0.2).train()

        def draw_in_eval(module: Any, args: Any, out: Any) -> None:
            if not module.training:
                torch.rand(7)

        model.model.layers[0].register_forward_hook(draw_in_eval)
        monitor = None
        if tmp is not None:
            monitor = Monitor(
                _samples(), tmp / "monitor", tokenizer=char_tokenizer(), every=3, on_error="raise"
            )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for step in range(8):
            if monitor is not None:
                monitor.observe(model, step)
            elif eval_forward and step % 3 == 0:
                model.eval()
                with torch.no_grad():
                    model(input_ids=torch.tensor([[1, 5, 6]]))
                model.train()
            batch = torch.randint(4, 100, (4, 12))
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return state, torch.get_rng_state()

    without, rng_without = train(None)
    with_monitor, rng_with = train(tmp_path)
    assert with_monitor.keys() == without.keys()
    assert all(torch.equal(with_monitor[k], without[k]) for k in without)
    assert torch.equal(rng_with, rng_without)
    assert grokviz.TraceStore.open(tmp_path / "monitor").checkpoints()["step"].to_list() == [
        0,
        3,
        6,
    ]
    perturbed, _ = train(None, eval_forward=True)
    assert not all(torch.equal(perturbed[k], without[k]) for k in without)


def test_the_monitor_never_changes_the_callers_tokenizer(tmp_path: Path) -> None:
    tokenizer = char_tokenizer()
    before = (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding)
    monitor = Monitor(_samples(), tmp_path / "m", tokenizer=tokenizer, every=1, max_length=8)
    monitor.observe(tiny_moe(), 0)
    after = (tokenizer.backend_tokenizer.truncation, tokenizer.backend_tokenizer.padding)
    assert after == before
    # tokenizing would have changed it: the monitor tokenized a copy
    tokenizer(["x"], truncation=True, max_length=8)
    assert tokenizer.backend_tokenizer.truncation != before[0]


# -- resuming -------------------------------------------------------------------------------------


def test_a_resumed_run_continues_the_series_and_skips_steps_it_has(tmp_path: Path) -> None:
    model = tiny_moe().train()
    first = _monitor(tmp_path)
    first.observe(model, 0)
    first.observe(model, 5)
    again = _monitor(tmp_path)  # a new process opening the same store
    assert sorted(again.live.observations) == ["step-000000", "step-000005"]
    assert again.observe(model, 5) == first.observe(model, 5)  # same weights: nothing traced
    again.observe(model, 10)
    assert again.store.checkpoints()["step"].to_list() == [0, 5, 10]
    # the online criterion saw all three observations
    assert again.memorization["step"].unique().sort().to_list() == [0, 5, 10]


def test_a_step_already_stored_with_other_weights_is_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    _monitor(tmp_path).observe(tiny_moe(seed=0), 5)
    monitor = _monitor(tmp_path, on_error="warn")
    with pytest.warns(
        UserWarning, match=r"step 5 is already in the monitor's store.*other weights"
    ):
        assert monitor.observe(tiny_moe(seed=1), 5) is None
    strict = _monitor(tmp_path)
    with pytest.raises(StoreMismatchError, match="new run a new store"):
        strict.observe(tiny_moe(seed=1), 5)


# -- errors ---------------------------------------------------------------------------------------


def test_bad_arguments_and_stores_are_refused_before_training_starts(tmp_path: Path) -> None:
    tok = char_tokenizer()
    with pytest.raises(InputError, match="every must be a positive"):
        Monitor(_samples(), tmp_path / "a", tokenizer=tok, every=0)
    with pytest.raises(InputError, match="on_error"):
        Monitor(_samples(), tmp_path / "a", tokenizer=tok, on_error="ignore")
    with pytest.raises(InputError, match="tokenizer"):
        Monitor(_samples(), tmp_path / "a", tokenizer=None)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NotAStoreError, match="never writes into such a folder"):
        Monitor(_samples(), foreign, tokenizer=tok)
    assert (foreign / "notes.txt").read_text() == "keep me"
    _monitor(tmp_path).observe(tiny_moe(), 0)
    with pytest.raises(StoreMismatchError, match="another probe set"):
        Monitor(_samples(12), tmp_path / "monitor", tokenizer=tok)


def test_a_failing_observation_warns_and_training_goes_on_until_it_gives_up(
    tmp_path: Path,
) -> None:
    monitor = _monitor(tmp_path, on_error="warn", every=1)
    dense = tiny_dense()
    for step in range(3):
        with pytest.warns(UserWarning, match=f"observation at step {step} failed.*NotMoEError"):
            assert monitor.observe(dense, step) is None
    assert monitor.stopped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert monitor.observe(tiny_moe(), 3) is None  # stopped: no more attempts, no warning
    with pytest.raises(NotMoEError):
        _monitor(tmp_path / "strict").observe(dense, 0)
