"""The toy runs: tasks, tokenizer, deterministic training, loadable checkpoints, the shipped run."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grokviz.schema import ACCURACY, SAMPLE_ACCURACY, SAMPLES
from grokviz.toy.arithmetic.tasks import OPERATIONS, encode, equation, make_samples, make_tokenizer
from grokviz.toy.arithmetic.train import PRESETS, ToyConfig, ToyRun, checkpoint_steps, train

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "samples" / "toy"


# --- tasks -------------------------------------------------------------------------------------


def test_answers_satisfy_the_operation_they_name() -> None:
    p = 11
    frame = make_samples(p=p, operations=list(OPERATIONS), train_fraction=0.5)
    for name, a, b, c in frame.select("domain", "a", "b", "answer").iter_rows():
        # checked by the defining property, not by the rule under test
        if name == "add":
            assert (c - b) % p == a
        elif name == "sub":
            assert (c + b) % p == a
        elif name == "mul":
            assert c == sum(a for _ in range(b)) % p
        elif name == "div":
            assert b != 0 and (c * b) % p == a
        elif name == "sqsum":
            assert c == (a**2 + b**2) % p
        elif name == "cubic":
            assert c == (a**3 + a * b) % p
    a0, b0, domain0 = frame.select("a", "b", "domain").row(0)
    assert frame["text"][0] == equation(int(a0), int(b0), str(domain0), p=p)


def test_split_sizes_follow_each_operations_fraction_and_the_seed() -> None:
    frame = make_samples(p=13, operations=["add", "div"], train_fraction={"add": 0.25, "div": 0.5})
    counts = dict(frame.filter(pl.col("split") == "train").group_by("domain").len().iter_rows())
    assert counts == {"add": round(0.25 * 169), "div": round(0.5 * 13 * 12)}
    assert frame["sample_id"].is_unique().all()
    assert list(SAMPLES) == frame.columns[:4]
    again = make_samples(p=13, operations=["add", "div"], train_fraction={"add": 0.25, "div": 0.5})
    assert again.equals(frame)
    other = make_samples(p=13, operations=["add", "div"], train_fraction=0.5, seed=1)

    def train_ids(f: pl.DataFrame) -> set[str]:
        return set(
            f.filter((pl.col("domain") == "div") & (pl.col("split") == "train"))["sample_id"]
        )

    assert train_ids(other) != train_ids(frame)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"p": 12}, "prime"), ({"operations": ["pow"]}, "unknown"), ({"train_fraction": 1.0}, "0, 1")],
)
def test_bad_task_arguments_say_what_to_do(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_samples(**{"p": 7, "operations": ["add"], **kwargs})


def test_tokenizer_saves_loads_offline_and_matches_fast_encoding(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    ops = ["add", "sqsum"]
    frame = make_samples(p=7, operations=ops)
    make_tokenizer(p=7, operations=ops).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    ids = tok(frame["text"].to_list())["input_ids"]
    assert ids == encode(frame, p=7, operations=ops).tolist()
    assert tok.decode(ids[0], skip_special_tokens=True) == frame["text"][0]
    assert tok.convert_ids_to_tokens(ids[0])[0] == "<bos>"


def test_checkpoint_schedule_is_log_spaced_and_ends_at_the_last_step() -> None:
    steps = checkpoint_steps(3000, n=12, every=25)
    assert steps[0] == 25 and steps[-1] == 3000 and len(steps) <= 12
    assert all(s % 25 == 0 for s in steps)
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert gaps == sorted(gaps)  # spacing grows


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ToyRun, ToyRun]:
    config = PRESETS["tiny"]
    first = train(config, tmp_path_factory.mktemp("a"), progress=False)
    second = train(config, tmp_path_factory.mktemp("b"), progress=False)
    return first, second


def test_same_seed_same_run(tiny_runs: tuple[ToyRun, ToyRun]) -> None:
    first, second = tiny_runs
    assert first.log.equals(second.log)
    assert first.accuracy.equals(second.accuracy)
    assert first.sample_accuracy.equals(second.sample_accuracy)
    for a, b in zip(first.checkpoints, second.checkpoints, strict=True):
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_run_folder_round_trips_and_tables_follow_the_schemas(
    tiny_runs: tuple[ToyRun, ToyRun],
) -> None:
    run = tiny_runs[0]
    loaded = ToyRun.load(run.out)
    assert loaded.config == run.config
    assert loaded.accuracy.equals(run.accuracy)
    assert [c.name for c in loaded.checkpoints] == ["step-000002", "step-000004", "step-000006"]
    assert dict(loaded.accuracy.schema) == {k: v for k, v in ACCURACY.items()}
    assert dict(loaded.sample_accuracy.schema) == {k: v for k, v in SAMPLE_ACCURACY.items()}
    test_ids = set(run.samples.filter(pl.col("split") == "test")["sample_id"])
    assert set(loaded.sample_accuracy["sample_id"]) == test_ids
    assert (
        ToyConfig.from_json(json.loads((run.out / "run.json").read_text())["config"]) == run.config
    )


def _recomputed_accuracy(folder: Path, samples: pl.DataFrame) -> dict[str, float]:
    """Test accuracy per domain from plain transformers calls on the sample text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    test = samples.filter(pl.col("split") == "test")
    prompts = [t.rsplit(" ", 1)[0] for t in test["text"]]
    answers = [tok.convert_tokens_to_ids(t.rsplit(" ", 1)[1]) for t in test["text"]]
    with torch.no_grad():
        ids = torch.tensor(tok(prompts)["input_ids"])
        predicted = model(input_ids=ids).logits[:, -1].argmax(-1)
    correct = (predicted == torch.tensor(answers)).numpy()
    frame = test.select("domain").with_columns(correct=pl.Series(correct))
    return dict(frame.group_by("domain").agg(pl.col("correct").mean()).iter_rows())


def test_checkpoints_load_with_plain_transformers_and_reproduce_the_accuracy_table(
    tiny_runs: tuple[ToyRun, ToyRun],
) -> None:
    run = tiny_runs[0]
    last = run.checkpoints[-1]
    expected = dict(
        run.accuracy.filter((pl.col("step") == 6) & (pl.col("task") != "all"))
        .select("task", "accuracy")
        .iter_rows()
    )
    assert _recomputed_accuracy(last, run.samples) == pytest.approx(expected, abs=1e-9)


def test_checkpoints_load_with_grokviz_load_model(tiny_runs: tuple[ToyRun, ToyRun]) -> None:
    checkpoints = pytest.importorskip("grokviz.tracing")
    model, tokenizer = checkpoints.load_model(tiny_runs[0].checkpoints[0])
    assert model.config.model_type == "olmoe"
    assert tokenizer("1 + 2 = 3")["input_ids"][0] == tokenizer.bos_token_id


def test_logged_loss_is_what_the_tracer_measures(tiny_runs: tuple[ToyRun, ToyRun]) -> None:
    trace = pytest.importorskip("grokviz.tracing")
    run = tiny_runs[0]
    folder = run.checkpoints[-1]
    batches = list(trace.iter_trace(str(folder), run.samples.select(list(SAMPLES)), progress=False))
    traced = pl.concat([b.losses for b in batches]).join(
        run.samples.select("sample_id", "domain", "split"), on="sample_id"
    )
    means = traced.group_by("domain", "split").agg(pl.col("loss").mean().alias("traced"))
    logged = run.log.filter(pl.col("step") == 6).join(means, on=["domain", "split"])
    assert logged.height == run.log.filter(pl.col("step") == 6).height
    assert logged["loss"].to_list() == pytest.approx(logged["traced"].to_list(), abs=1e-4)


def test_full_prompt_weight_trains_on_the_mean_token_loss() -> None:
    import torch

    from grokviz.toy.arithmetic.train import _objective

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    batch = torch.randint(0, 11, (3, 6))
    token_nll = -torch.log_softmax(logits, -1).gather(2, batch[:, 1:, None])[..., 0]
    assert _objective(logits, batch, 1.0).item() == pytest.approx(token_nll.mean().item())
    assert _objective(logits, batch, 0.0).item() == pytest.approx(token_nll[:, -1].mean().item())


def test_learning_rate_warms_up_holds_then_decays_linearly_to_zero() -> None:
    import torch

    from grokviz.toy.arithmetic.train import lr_factor

    config = ToyConfig(warmup=10, decay=(300, 500), steps=600, checkpoints=(600,))
    factors = [lr_factor(config, s) for s in range(600)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert set(factors[9:301]) == {1.0}
    assert factors[400] == pytest.approx(0.5) and factors[500:] == [0.0] * 100
    assert all(b < a for a, b in itertools.pairwise(factors[300:501]))
    # the trainer's scheduler applies it to the update after each step
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(config, s))
    seen = []
    for _ in range(450):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([2.0 * f for f in factors[:450]])
    constant = ToyConfig(warmup=10, decay=None, steps=600, checkpoints=(600,))
    assert {lr_factor(constant, s) for s in range(9, 600)} == {1.0}


def test_a_run_written_before_the_decay_existed_loads_with_a_constant_rate() -> None:
    written = ToyConfig().to_json()
    del written["decay"]
    assert ToyRun.config_from_json(written).decay is None
    assert ToyRun.config_from_json(ToyConfig().to_json()) == ToyConfig()


@pytest.mark.parametrize("decay", [(500, 300), (400, 400), (-1, 10)])
def test_a_decay_that_ends_before_it_starts_is_refused(decay: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="0 <= start < end"):
        ToyConfig(decay=decay)


def test_a_shorter_run_keeps_the_checkpoints_inside_it_and_ends_on_one() -> None:
    from grokviz.toy.arithmetic.train import with_steps

    full = PRESETS["default"]
    short = with_steps(full, 1200)
    assert short.schedule() == [s for s in full.schedule() if s < 1200] + [1200]
    assert short.decay == full.decay and short.lr == full.lr
    longer = with_steps(full, full.steps + 500)
    assert longer.schedule() == [*full.schedule(), full.steps + 500]
    log_spaced = ToyConfig(checkpoints=(), steps=1000, decay=None)
    assert with_steps(log_spaced, 400).schedule()[-1] == 400
    with pytest.raises(ValueError, match="at least 1"):
        with_steps(full, 0)


def test_cli_trains_the_tiny_preset(tmp_path: Path) -> None:
    from grokviz.toy.__main__ import main

    assert (
        main(["train", "--preset", "tiny", "--out", str(tmp_path), "--quiet", "--steps", "4"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-000002",
        "step-000004",
    ]


# --- the shipped run ---------------------------------------------------------------------------

shipped = pytest.mark.skipif(not (SHIPPED / "run.json").is_file(), reason="no shipped toy run")


def _trained_checkpoints(folder: Path) -> list[str]:
    """The checkpoints a run trained (run.json); the shipped copy keeps the weights of a few."""
    return list(json.loads((folder / "run.json").read_text())["checkpoints"])


@shipped
def test_shipped_run_memorizes_first_and_its_groups_rise_at_different_times() -> None:
    """The shape of the shipped run, read from its dense log: every group memorizes (train
    accuracy 0.9) while its test accuracy is far below; the real groups' test accuracy passes
    0.5 thousands of steps apart, one of them passes 0.9; the random-answer control memorizes
    and its test accuracy never leaves chance (1/p)."""
    from grokviz.toy.arithmetic.analysis import log_delays

    run = ToyRun.load(SHIPPED)
    assert run.config == PRESETS["default"]  # `train --out …` with no options reproduces it
    assert 10 <= len(_trained_checkpoints(SHIPPED)) <= 16
    spec = run.config.model
    assert spec.num_layers >= 4 and spec.num_experts >= 8 * spec.top_k  # the paper's regime
    delays = log_delays(run.log, train_level=0.9, test_level=0.5)
    assert sorted(delays["domain"]) == sorted(run.config.operations)
    for domain, memorized, _, _, test_then in delays.iter_rows():
        assert memorized is not None and test_then < 0.6, domain
    real = delays.filter(pl.col("domain") != "random")
    halfway = [s for s in real["generalized_step"] if s is not None]
    assert len(halfway) >= 2 and max(halfway) - min(halfway) >= 2000, real
    test = run.log.filter(pl.col("split") == "test")
    assert test.filter(pl.col("step") == run.config.steps)["accuracy"].max() >= 0.9
    control = test.filter(pl.col("domain") == "random")["accuracy"]
    assert control.max() <= 3 / run.config.p, control


# Retraining the shipped config is checked on a short prefix in make test and in full only on
# request. Training is bit-identical only on the same CPU with the same threads
# (test_same_seed_same_run): another instruction set (AVX2 vs AVX-512) or BLAS sums in another
# order, and the runs drift apart like any chaotic trajectory, slowly at first and then fast once
# a top-1 routing choice flips. Measured with another summation order (1 thread against the
# shipped 2): the largest relative change of an answer loss was 4.9e-7 at step 50 and 0.037 at
# step 100 (accuracy 0 and 0.073). So the prefix ends at step 50, where the tolerances below
# leave a margin of 10,000 for the order of the sums while a changed recipe (rate, decay, router,
# layout, data: another code version moved the losses by 0.05 there) still fails.
RETRAIN_STEPS = 50
CROSS_MACHINE_TOLERANCE = {"loss": 0.005, "accuracy": 0.021}
"""Largest allowed |retrained - shipped| at the prefix's evaluations (steps 0 and 50): answer
loss relative, accuracy absolute (0.021: two answers of a 96-sample validation split)."""
FULL_RETRAIN_TOLERANCE = 0.15
"""Accuracy drift allowed at every checkpoint of a full retrain on another machine (opt-in)."""


def _log_drift(expected: pl.DataFrame, got: pl.DataFrame) -> dict[str, float]:
    keys = ["step", "domain", "split"]
    both = expected.join(got, on=keys, how="full", suffix="_retrained", coalesce=True)
    assert both.height == expected.height == got.height, both
    loss = (
        (both["answer_loss"] - both["answer_loss_retrained"]).abs() / both["answer_loss"].abs()
    ).max()
    accuracy = (both["accuracy"] - both["accuracy_retrained"]).abs().max()
    assert isinstance(loss, float) and isinstance(accuracy, float), both
    return {"loss": loss, "accuracy": accuracy}


@shipped
def test_the_documented_config_retrains_to_the_shipped_curves(tmp_path: Path) -> None:
    """The shipped run's own config, retrained for its first RETRAIN_STEPS steps on *this*
    machine, lands within CROSS_MACHINE_TOLERANCE of the shipped training log (answer-token loss
    and accuracy per operation and split at every evaluation). Evaluation and saving do not touch
    the training trajectory, so a shorter run follows the shipped one step for step."""
    from grokviz.toy.arithmetic.train import with_steps

    run = ToyRun.load(SHIPPED)
    again = train(with_steps(run.config, RETRAIN_STEPS), tmp_path, progress=False)
    steps = sorted(again.log["step"].unique())
    assert len(steps) >= 2 and steps[-1] == RETRAIN_STEPS
    columns = ["step", "domain", "split", "answer_loss", "accuracy"]
    expected = run.log.filter(pl.col("step").is_in(steps)).select(columns)
    drift = _log_drift(expected, again.log.select(columns))
    for name, tolerance in CROSS_MACHINE_TOLERANCE.items():
        assert drift[name] <= tolerance, (name, drift)
    # already memorizing: every group's answer loss lower on its training pairs than its test
    last = again.log.filter(pl.col("step") == RETRAIN_STEPS).pivot(
        on="split", index="domain", values="answer_loss"
    )
    assert (last["train"] < last["test"]).all(), last


@shipped
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GROKVIZ_FULL_RETRAIN") != "1",
    reason="the full retrain takes ~10 min on 2 cores; set GROKVIZ_FULL_RETRAIN=1",
)
def test_the_documented_config_retrains_in_full(tmp_path: Path) -> None:
    """The whole documented run, retrained: every checkpoint's test accuracy per operation
    within FULL_RETRAIN_TOLERANCE of the shipped table (bit-identical on the machine that made
    it, with the same threads)."""
    run = ToyRun.load(SHIPPED)
    again = train(run.config, tmp_path, progress=False)
    keys = ["step", "task"]
    both = run.accuracy.join(again.accuracy, on=keys, how="full", suffix="_retrained")
    assert both.height == run.accuracy.height == again.accuracy.height
    worst = (both["accuracy"] - both["accuracy_retrained"]).abs().max()
    assert isinstance(worst, float) and worst <= FULL_RETRAIN_TOLERANCE, both.sort(keys)


@shipped
def test_shipped_checkpoints_load_offline_and_match_their_accuracy_table() -> None:
    run = ToyRun.load(SHIPPED)
    last = run.checkpoints[-1]
    step = int(last.name.split("-")[1])
    expected = dict(
        run.accuracy.filter((pl.col("step") == step) & (pl.col("task") != "all"))
        .select("task", "accuracy")
        .iter_rows()
    )
    assert _recomputed_accuracy(last, run.samples) == pytest.approx(expected, abs=1e-9)
    total = sum(f.stat().st_size for c in run.checkpoints for f in c.iterdir())
    assert total <= 15 * 2**20


# --- report helpers ------------------------------------------------------------------------------


def test_delays_run_from_first_memorization_to_first_generalization() -> None:
    from grokviz.toy.arithmetic.analysis import log_delays

    train = [0.1, 0.5, 0.96, 0.9, 1.0, 1.0]  # reaches 0.95 at step 20 (a dip later is allowed)
    test = [0.0, 0.1, 0.2, 0.3, 0.95, 0.92]  # reaches 0.9 at step 40
    steps = [0, 10, 20, 30, 40, 50]
    log = pl.DataFrame(
        {
            "step": steps * 2,
            "domain": "add",
            "split": ["train"] * 6 + ["test"] * 6,
            "accuracy": train + test,
        }
    )
    assert log_delays(log).row(0) == ("add", 20, 40, 20, 0.2)
    never = log.with_columns(pl.col("accuracy") * 0.5)
    assert log_delays(never).row(0) == ("add", None, None, None, None)


def test_rise_starts_at_the_last_checkpoint_of_the_early_plateau() -> None:
    from grokviz.toy.shared.curves import _rise_step

    acc = pl.DataFrame(
        {"step": [1, 2, 3, 4, 5, 6], "task": "add", "accuracy": [0.02, 0.05, 0.03, 0.3, 0.8, 1.0]}
    )
    assert _rise_step(acc, "add") == 3


@shipped
def test_shipped_trace_covers_every_checkpoint_and_sample() -> None:
    store_mod = pytest.importorskip("grokviz.store")
    run = ToyRun.load(SHIPPED)
    store = store_mod.TraceStore.open(SHIPPED / "trace")
    trained = _trained_checkpoints(SHIPPED)
    assert store.checkpoints()["checkpoint"].to_list() == trained
    assert {c.name for c in run.checkpoints} <= set(trained)  # the weights of a few are shipped
    assert set(store.samples()["sample_id"]) == set(run.samples["sample_id"])
    losses = store.losses()
    assert losses.height == len(trained) * run.samples.height
    # the control flag is in the store, so analyze() keeps the control out of "global"
    flags = store.samples().join(run.samples, on="sample_id").select("control", "control_right")
    assert flags["control"].equals(flags["control_right"], check_names=False)
    assert flags["control"].any()


def test_run_loaders_say_which_run_a_folder_holds(tmp_path: Path) -> None:
    from grokviz.toy.lm.train import LMRun

    with pytest.raises(FileNotFoundError, match=r"python -m grokviz\.toy train --out"):
        ToyRun.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m grokviz\.toy train --toy lm --out"):
        LMRun.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"kind": "lm", "config": {}, "seconds": 1}))
    with pytest.raises(ValueError, match=r"kind 'lm', not 'arithmetic'.*LMRun"):
        ToyRun.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"config": {}, "seconds": 1}))  # no kind: toy
    with pytest.raises(ValueError, match=r"kind 'arithmetic', not 'lm'.*ToyRun"):
        LMRun.load(tmp_path)


# --- the control group, the layouts, and the report's analysis -----------------------------------


def test_the_random_control_is_a_fixed_table_that_no_rule_explains() -> None:
    from grokviz.toy.arithmetic.tasks import random_answer

    p = 11
    frame = make_samples(p=p, operations=["add", "random"], train_fraction=0.5)
    control = frame.filter(pl.col("domain") == "random")
    assert control["control"].all() and not frame.filter(pl.col("domain") == "add")["control"].any()
    # the same answers whatever the seed of the split: one table per modulus
    other = make_samples(p=p, operations=["random"], train_fraction=0.5, seed=5)
    both = control.join(other, on="sample_id", suffix="_other")
    assert both.height == control.height and (both["answer"] == both["answer_other"]).all()
    # no operation of the others reproduces the table, and the answers are spread out
    for name in ("add", "sub", "mul"):
        rule = OPERATIONS[name].rule
        hits = sum(rule(a, b, p) == c for a, b, c in control.select("a", "b", "answer").iter_rows())
        assert hits < control.height / 4, name
    assert control["answer"].n_unique() >= p - 2
    assert random_answer(3, 4, p) == control.filter(a=3, b=4)["answer"][0]


def test_prefix_layout_puts_the_operation_first_and_encodes_like_the_tokenizer(
    tmp_path: Path,
) -> None:
    from transformers import AutoTokenizer

    ops = ["add", "random"]
    frame = make_samples(p=7, operations=ops, layout="prefix")
    assert frame.filter(domain="add", a=3, b=5)["text"][0] == "+ 3 5 = 1"
    make_tokenizer(p=7, operations=ops).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    ids = tok(frame["text"].to_list())["input_ids"]
    assert ids == encode(frame, p=7, operations=ops, layout="prefix").tolist()
    with pytest.raises(ValueError, match="layout"):
        make_samples(p=7, operations=ops, layout="postfix")


def test_answer_losses_are_recorded_for_every_training_sample(
    tiny_runs: tuple[ToyRun, ToyRun],
) -> None:
    import torch

    from grokviz.toy.arithmetic.analysis import answer_losses
    from grokviz.toy.shared.model import load_checkpoint

    run = tiny_runs[0]
    recorded = run.answer_losses
    assert recorded is not None
    train_ids = set(run.samples.filter(pl.col("split") == "train")["sample_id"])
    assert recorded.height == len(run.checkpoints) * len(train_ids)
    assert set(recorded["sample_id"]) == train_ids
    # the answer token's NLL, from plain transformers calls on the sample text
    model, tok = load_checkpoint(run.checkpoints[-1])
    last = recorded.filter(pl.col("step") == 6).sort("sample_id")
    texts = run.samples.filter(pl.col("split") == "train").sort("sample_id")["text"].to_list()
    with torch.no_grad():
        ids = torch.tensor(tok(texts)["input_ids"])
        logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits[:, -1].double(), -1)
        nll = -logp[torch.arange(len(ids)), ids[:, -1]]
    assert last["loss"].to_list() == pytest.approx(nll.tolist(), abs=1e-4)
    # a run without the file computes the same losses from its checkpoints
    bare = ToyRun.load(run.out)
    bare.answer_losses = None
    again = answer_losses(bare).sort("step", "sample_id")
    assert again["loss"].to_list() == pytest.approx(
        recorded.sort("step", "sample_id")["loss"].to_list(), abs=1e-5
    )


def test_report_of_a_tiny_run_shows_the_controls_and_honest_counts(
    tiny_runs: tuple[ToyRun, ToyRun], tmp_path: Path
) -> None:
    import grokviz.toy.arithmetic.report as report
    from grokviz.metrics import memorization_onsets
    from grokviz.store import TraceStore
    from grokviz.toy.arithmetic.analysis import analyze_run
    from grokviz.toy.runs import trace_run

    run = tiny_runs[0]
    store = trace_run(run.out, store=tmp_path / "trace", progress=False)
    analysis = analyze_run(run.out, store=store, replicates=10, views=False, pair=False)
    assert analysis.controls == ["random"]
    # the global group's samples are the real groups' memorized samples, never the control's
    n = analysis.table1.filter(pl.col("metric") == "distance").select("group", "n_samples")
    memorized = analysis.sample_delays.select("domain", "memorized_before_T").iter_rows()
    real = sum(v for d, v in memorized if d != "random")
    assert dict(n.iter_rows())["global"] == real
    # and its accuracy is the share of the real groups' test prompts answered, not the trainer's
    # "all", which counts the control's prompts too
    tests = run.samples.filter(split="test", control=False).select("sample_id")
    answered = (
        run.sample_accuracy.join(tests, on="sample_id")
        .group_by("step")
        .agg(pl.col("correct").mean())
    )
    glob = analysis.accuracy.filter(task="global").join(answered, on="step")
    assert glob.height == analysis.accuracy["step"].n_unique() > 0
    assert np.allclose(glob["accuracy"], glob["correct"], atol=1e-9)
    # the share memorized is over all the domain's training samples, as memorization_onsets says
    onsets = memorization_onsets(TraceStore.open(store).losses(), run.samples)
    last = int(TraceStore.open(store).losses()["step"].max())
    for row in analysis.sample_delays.iter_rows(named=True):
        dom = onsets.filter(domain=row["domain"])
        memorized = int((dom["onset_step"] < last).fill_null(False).sum())
        assert row["memorized_before_T"] == memorized
        assert row["training_samples"] == dom.height
        assert row["share_memorized"] == pytest.approx(memorized / dom.height)
    text = report.render(analysis, run)
    for heading in (
        "## Which samples count as memorized",
        "## The controls: does a metric track each group's generalization, or only training time?",
        "## What the controls imply for the paper's Table 1",
        "random (control)",
    ):
        assert heading in text, heading
    answer = analyze_run(
        run.out, store=store, memorization="answer", replicates=0, views=False, pair=False
    )
    assert answer.memorization == "answer"
    assert "the answer token's loss alone" in report.render(answer, run)
    with pytest.raises(ValueError, match="memorization"):
        analyze_run(run.out, store=store, memorization="tokens")
