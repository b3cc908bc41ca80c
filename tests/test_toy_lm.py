"""The one-pass toy LM: a corpus whose answers are right, one pass, loadable checkpoints, analysis."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from grokviz.schema import ACCURACY, SAMPLE_ACCURACY, SAMPLES, conform
from grokviz.toy.lm.corpus import (
    CONTROL_DOMAINS,
    DOMAINS,
    MAX_TOKENS,
    arithmetic_document,
    code_document,
    encode,
    make_corpus,
    make_tokenizer,
    vocabulary,
)
from grokviz.toy.lm.report import timing_table
from grokviz.toy.lm.train import PRESETS, LMConfig, LMRun, train_lm
from grokviz.toy.runs import trace_run
from grokviz.toy.shared import loop as loop_module

TINY = PRESETS["tiny"]


# --- corpus ------------------------------------------------------------------------------------


def _solve(text: str) -> tuple[str, Any]:
    """Recompute a document's answer from its words alone: (kind, answer)."""
    words = text.split()
    m = re.fullmatch(r"(\w+) has (\d+) \w+ and (?:gets (\d+) more|loses (\d+)) so (\w+) has", text)
    if m:
        assert m.group(1) == m.group(5)  # the same person throughout
        a = int(m.group(2))
        return "arithmetic", a + int(m.group(3)) if m.group(3) else a - int(m.group(4))
    if "print" in words:
        env: dict[str, int] = {}
        for statement in text.split(" ; "):
            tokens = statement.split()
            if tokens[0] == "print":
                assert tokens[2] == "->"
                return "code", env[tokens[1]]
            name, eq, *expr = tokens
            assert eq == "="
            value = env[expr[0]] if expr[0] in env else int(expr[0])
            if len(expr) == 3:
                value = value + int(expr[2]) if expr[1] == "+" else value - int(expr[2])
            env[name] = value
    m = re.fullmatch(r"(p\d+) lives in (c\d+) so (p\d+) is in", text)
    if m:
        assert m.group(1) == m.group(3)
        return "composed", m.group(2)
    m = re.fullmatch(r"r(\d+) with r(\d+) gives", text)
    if m:
        return "random", (int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(c\d+) is in", text)
    assert m, f"unparsed document {text!r}"
    return "atomic", m.group(1)


def test_corpus_is_deterministic_and_seeded() -> None:
    a = make_corpus(n_train=50, n_val=5, n_test=10, seed=3)
    assert a.equals(make_corpus(n_train=50, n_val=5, n_test=10, seed=3))
    assert not a.equals(make_corpus(n_train=50, n_val=5, n_test=10, seed=4))
    assert list(SAMPLES) == a.columns[:4]
    assert a["sample_id"].is_unique().all()
    counts = dict(a.group_by("split").len().iter_rows())
    assert counts == {"train": 200, "val": 20, "test": 40}  # 4 domains
    assert a.filter(pl.col("control"))["domain"].unique().to_list() == ["random"]
    # leaving the control out changes none of the other domains' documents
    three = make_corpus(n_train=50, n_val=5, n_test=10, seed=3, domains=DOMAINS[:3])
    assert three.drop("control").equals(a.filter(~pl.col("control")).drop("control"))


def test_answers_are_correct_by_construction() -> None:
    corpus = make_corpus(n_train=400, n_val=20, n_test=60, seed=1)
    country: dict[str, str] = {}
    composed: list[tuple[str, str]] = []
    random_answer: dict[tuple[int, int], str] = {}
    for domain, prompt, answer, text in corpus.select(
        "domain", "prompt", "answer", "text"
    ).iter_rows():
        assert text == f"{prompt} {answer}"
        kind, value = _solve(prompt)
        if kind in ("arithmetic", "code"):
            assert kind == domain
            assert answer == str(value) and value >= 0
        elif kind == "random":
            assert domain == "random" and re.fullmatch(r"q\d", answer)
            assert random_answer.setdefault(value, answer) == answer  # one answer per pair
        else:
            assert domain == "facts"
            if kind == "atomic":
                assert country.setdefault(value, answer) == answer  # one country per city
            else:
                composed.append((value, answer))
    # composed facts (training and test alike) agree with the atomic facts of training
    for city, answer in composed:
        assert country.get(city, answer) == answer
    # the control's answers follow no rule: many different answers for one first operand
    by_first: dict[int, set[str]] = {}
    for (x, _), answer in random_answer.items():
        by_first.setdefault(x, set()).add(answer)
    assert max(len(v) for v in by_first.values()) >= 4


def test_test_answers_are_never_taught_but_facts_stay_answerable() -> None:
    corpus = make_corpus(n_train=2000, n_test=100, seed=0)
    train = corpus.filter(pl.col("split") == "train")
    test = corpus.filter(pl.col("split") == "test")
    assert not set(test["text"]) & set(train["text"])

    def problem(text: str) -> tuple[int, ...]:
        nums = [int(w) for w in text.split() if w.isdigit()]
        return (int("loses" in text or " - " in text), *nums[:2])

    for domain in ("arithmetic", "code"):
        # no (operation, a, b) of a test prompt occurs in either domain's training documents
        seen = {problem(t) for t in train.filter(pl.col("domain") != "facts")["text"]}
        held = {problem(t) for t in test.filter(pl.col("domain") == domain)["text"]}
        assert held and not held & seen
    facts_train = train.filter(pl.col("domain") == "facts")["prompt"].to_list()
    applied = {_solve(p)[1] for p in facts_train if _solve(p)[0] == "composed"}
    stated = {_solve(p)[1] for p in facts_train if _solve(p)[0] == "atomic"}
    test_cities = {_solve(p)[1] for p in test.filter(pl.col("domain") == "facts")["prompt"]}
    assert test_cities and not test_cities & applied
    assert test_cities <= stated  # every test city's country is in the training documents
    pairs = lambda split: {  # noqa: E731
        _solve(p)[1] for p in corpus.filter(split=split, domain="random")["prompt"]
    }
    assert pairs("test") and not pairs("test") & pairs("train")


def test_tokenizer_saves_loads_offline_and_matches_fast_encoding(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    texts = make_corpus(n_train=30, n_test=5, seed=2)["text"].to_list()
    make_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    fast = encode(texts)
    for row, text in zip(fast.tolist(), texts, strict=True):
        ids = tok(text).input_ids
        assert ids == [i for i in row if i != tok.pad_token_id]
        assert tok.convert_ids_to_tokens(ids)[0] == "<bos>"
        assert len(ids) <= MAX_TOKENS
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert tok.unk_token_id not in ids


def test_documents_refuse_a_sum_without_a_non_negative_answer() -> None:
    assert code_document(("a", "b"), "sub", 4, 4) == "a = 4 ; b = a - 4 ; print b -> 0"
    for make in (
        lambda op, a, b: arithmetic_document("ana", "pens", op, a, b),
        lambda op, a, b: code_document(("x", "y"), op, a, b),
    ):
        with pytest.raises(ValueError, match="b <= a; got op='sub', a=2, b=5"):
            make("sub", 2, 5)
        with pytest.raises(ValueError, match=r"op must be 'add' or 'sub'.*op='mul'"):
            make("mul", 2, 3)


def test_word_tokenizer_needs_the_special_tokens() -> None:
    from grokviz.toy.shared.tokenizer import word_tokenizer

    with pytest.raises(ValueError, match=r"lacks the special tokens \['<eos>', '<unk>'\]"):
        word_tokenizer({"<pad>": 0, "<bos>": 1, "ana": 2}, model_max_length=4)


# --- the loop both trainers share ----------------------------------------------------------------


def test_deterministic_block_restores_threads_and_kernels_even_on_error() -> None:
    import torch

    from grokviz.toy.shared.loop import deterministic

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    inside = []
    with pytest.raises(RuntimeError, match="stop"), deterministic(before[0] + 1):
        inside.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        raise RuntimeError("stop")
    assert inside == [(before[0] + 1, True)]
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_log_rows_average_each_domain_and_split() -> None:
    import numpy as np
    import torch

    from grokviz.toy.shared.loop import Scores, log_rows

    rng = np.random.default_rng(0)
    n = 60
    samples = pl.DataFrame(
        {"domain": rng.choice(["b", "a"], n), "split": rng.choice(["train", "val", "test"], n)}
    )
    loss, answer, correct = rng.random(n), rng.random(n), rng.random(n) > 0.5
    scores = Scores(torch.tensor(loss), torch.tensor(answer), torch.tensor(correct))
    rows = log_rows(7, samples, scores)
    assert rows.columns == ["step", "domain", "split", "loss", "answer_loss", "accuracy"]
    groups = sorted(set(zip(samples["domain"], samples["split"], strict=True)))
    assert rows.select("domain", "split").rows() == groups
    for step, domain, split, mean_loss, mean_answer, accuracy in rows.iter_rows():
        part = (samples["domain"] == domain).to_numpy() & (samples["split"] == split).to_numpy()
        assert step == 7
        assert mean_loss == pytest.approx(loss[part].mean())
        assert mean_answer == pytest.approx(answer[part].mean())
        assert accuracy == pytest.approx(correct[part].mean())


def test_padded_documents_score_as_each_document_alone() -> None:
    """The evaluation of right-padded chunks equals a plain per-document log-softmax."""
    import torch

    from grokviz.toy.lm.train import _score_documents
    from grokviz.toy.shared.loop import score
    from grokviz.toy.shared.model import build_model, olmoe_config

    texts = make_corpus(n_train=3, n_val=1, n_test=2, seed=0)["text"].to_list()
    ids = encode(texts)
    assert len({int((row != 0).sum()) for row in ids}) > 2  # lengths differ: padding matters
    config = olmoe_config(TINY.model, vocab_size=len(vocabulary()))
    config.max_position_embeddings = MAX_TOKENS
    model = build_model(config, seed=0).train()
    got = score(model, ids, _score_documents, batch_size=4)
    assert model.training  # scoring switches to eval mode and back
    model.eval()
    for i, row in enumerate(ids):
        doc = row[row != 0]
        with torch.no_grad():
            logits = model(input_ids=doc[None, :-1]).logits[0].float()
        nll = -torch.log_softmax(logits, -1)[torch.arange(len(doc) - 1), doc[1:]]
        assert got.loss[i].item() == pytest.approx(nll.mean().item(), rel=1e-5)
        assert got.answer_loss[i].item() == pytest.approx(nll[-1].item(), rel=1e-5)
        assert bool(got.correct[i]) == (logits[-1].argmax().item() == doc[-1].item())


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LMRun, list[Any]]]:
    """The tiny run, and every batch of input ids the model was trained on."""
    batches: list[Any] = []
    build = loop_module.build_model

    def spying_build(config: Any, *, seed: int) -> Any:
        model = build(config, seed=seed)

        def record(module: Any, args: Any, kwargs: Any) -> None:
            if module.training:
                batches.append(kwargs["input_ids"].clone())

        model.register_forward_pre_hook(record, with_kwargs=True)
        return model

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop_module, "build_model", spying_build)
        run = train_lm(TINY, tmp_path_factory.mktemp("lm") / "run", progress=False)
    yield run, batches


def test_one_pass_trains_on_every_document_exactly_once(recorded: tuple[LMRun, list]) -> None:
    run, batches = recorded
    corpus = make_corpus(
        n_train=TINY.docs_per_domain, seed=TINY.seed, held_out=TINY.held_out
    ).filter(pl.col("split") == "train")
    expected = Counter(tuple(r) for r in encode(corpus["text"].to_list())[:, :-1].tolist())
    trained = Counter(tuple(r) for b in batches for r in b.tolist())
    assert trained == expected
    assert len(batches) == TINY.steps == -(-len(DOMAINS) * TINY.docs_per_domain // TINY.batch_size)
    assert all(len(b) <= TINY.batch_size for b in batches)
    # a tracked document's seen_step names the batch that held it
    tracked = run.samples.filter(pl.col("split") == "train")
    assert tracked.height == len(DOMAINS) * TINY.tracked_per_domain
    for text, step in tracked.select("text", "seen_step").iter_rows():
        row = tuple(encode([text])[0, :-1].tolist())
        assert row in {tuple(r) for r in batches[step - 1].tolist()}


def test_run_folder_layout_and_tables(recorded: tuple[LMRun, list]) -> None:
    run, _ = recorded
    meta = json.loads((run.out / "run.json").read_text())
    assert meta["kind"] == "lm"
    assert LMConfig.from_json(meta["config"]) == TINY
    names = [f"step-{s:06d}" for s in TINY.schedule()]
    assert [c.name for c in run.checkpoints] == names == meta["checkpoints"]
    for path in run.checkpoints:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
            p.name for p in path.iterdir()
        }
    conform(pl.read_parquet(run.out / "samples.parquet"), SAMPLES, name="samples")
    acc = conform(pl.read_parquet(run.out / "accuracy.parquet"), ACCURACY, name="accuracy")
    per = conform(run.sample_accuracy, SAMPLE_ACCURACY, name="sample_accuracy")
    assert set(acc["task"]) == {*DOMAINS, "all"}
    assert acc.height == len(names) * (len(DOMAINS) + 1)
    test_ids = run.samples.filter(pl.col("split") == "test")["sample_id"]
    assert per.height == len(names) * len(test_ids)
    # "all" is the mean of the per-sample table; each domain the mean of its samples
    joined = per.join(run.samples.select("sample_id", "domain"), on="sample_id")
    for step, domain, value in acc.select("step", "task", "accuracy").iter_rows():
        part = joined.filter(pl.col("step") == step)
        if domain != "all":
            part = part.filter(pl.col("domain") == domain)
        assert value == pytest.approx(part["correct"].mean())
    log = run.log
    assert set(log["split"]) == {"train", "val", "test"}
    assert set(log["step"]) >= set(TINY.schedule())
    again = LMRun.load(run.out)
    assert again.accuracy.equals(run.accuracy) and again.config == TINY


def test_checkpoint_loads_with_plain_transformers_and_reproduces_accuracy(
    recorded: tuple[LMRun, list],
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, _ = recorded
    last = run.checkpoints[-1]
    model = AutoModelForCausalLM.from_pretrained(last, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(last, local_files_only=True)
    assert model.config.model_type == "olmoe"
    test = run.samples.filter(pl.col("split") == "test")
    got = {}
    with torch.no_grad():
        for sid, prompt, answer in test.select("sample_id", "prompt", "answer").iter_rows():
            ids = tok(prompt, return_tensors="pt").input_ids
            guess = model(input_ids=ids).logits[0, -1].argmax().item()
            got[sid] = guess == tok.convert_tokens_to_ids(answer)
    step = int(last.name.split("-")[1])
    stored = run.sample_accuracy.filter(pl.col("step") == step)
    assert dict(stored.select("sample_id", "correct").iter_rows()) == got


def test_same_seed_same_run(recorded: tuple[LMRun, list], tmp_path: Path) -> None:
    run, _ = recorded
    again = train_lm(TINY, tmp_path / "again", progress=False)
    assert again.accuracy.equals(run.accuracy)
    assert again.log.equals(run.log)
    assert again.samples.equals(run.samples)


def test_config_rejects_bad_values_and_schedules_one_pass() -> None:
    with pytest.raises(ValueError, match="tracked_per_domain"):
        LMConfig(docs_per_domain=10, tracked_per_domain=20)
    with pytest.raises(ValueError, match="spacing"):
        LMConfig(spacing="cubic")
    three = DOMAINS[:3]  # without the control domain
    config = LMConfig(
        docs_per_domain=1000, batch_size=64, n_checkpoints=4, spacing="linear", domains=three
    )
    assert config.steps == 47  # ceil(3000 / 64)
    assert LMConfig(docs_per_domain=1000, batch_size=64).steps == 63  # ceil(4000 / 64)
    assert config.schedule() == [0, 12, 24, 35, 47]
    log = LMConfig(
        docs_per_domain=20_000, batch_size=64, n_checkpoints=12, eval_every=25, domains=three
    )
    steps = log.schedule()
    assert steps[0] == 0 and steps[-1] == log.steps == 938
    assert all(s % 25 == 0 for s in steps[:-1]) and len(set(steps)) == len(steps)
    gaps = [b - a for a, b in itertools.pairwise(steps[1:])]
    assert gaps == sorted(gaps)  # denser early, sparser late


def test_default_run_is_in_the_papers_routing_regime_with_its_control() -> None:
    default = PRESETS["default"]
    assert default == LMConfig()
    # many experts per token choice (OLMoE: 64, top-8), routers free of weight decay
    assert (default.model.num_experts, default.model.top_k) == (16, 1)
    assert default.router_weight_decay == 0.0 and default.weight_decay > 0
    assert set(CONTROL_DOMAINS) <= set(default.domains)
    assert default.threads == 1


def test_timing_table_finds_settling_and_rise() -> None:
    steps = [0, 10, 20, 30, 40]
    train_loss = [5.0, 2.0, 1.1, 1.0, 1.0]
    test_acc = [0.0, 0.0, 0.1, 0.6, 0.9]
    log = pl.DataFrame(
        {
            "step": steps * 2,
            "domain": "d",
            "split": ["train"] * 5 + ["test"] * 5,
            "loss": train_loss + [3.0] * 5,
            "accuracy": [1.0] * 5 + test_acc,
        }
    )
    row = timing_table(log).row(0, named=True)
    # 10% of the 4.0 drop is 0.4: from step 20 on the loss stays within it
    assert row["loss_settled_step"] == 20
    assert row["test_half_step"] == 30 and row["test_90_step"] == 40
    assert row["test_max"] == 0.9


# --- tracing and analysis ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:domain .* no eps on the:UserWarning")
def test_trace_analyze_and_report_end_to_end(recorded: tuple[LMRun, list], tmp_path: Path) -> None:
    import grokviz
    from grokviz.metrics import correlate
    from grokviz.store import TraceStore
    from grokviz.toy.lm.report import analyze_lm, write_lm_report

    run, _ = recorded
    path = trace_run(run.out, store=tmp_path / "trace", progress=False)
    store = TraceStore.open(path)
    assert store.checkpoints()["step"].to_list() == TINY.schedule()
    # the tracer's per-sample loss and the trainer's evaluation agree (two implementations)
    traced = (
        store.losses()
        .join(run.samples.select("sample_id", "domain", "split"), on="sample_id")
        .group_by("step", "domain", "split")
        .agg(pl.col("loss").mean().alias("traced"))
    )
    both = traced.join(run.log, on=["step", "domain", "split"])
    assert both.height == len(TINY.schedule()) * len(DOMAINS) * 3
    assert both.select((pl.col("traced") - pl.col("loss")).abs().max()).item() < 1e-4

    metrics = grokviz.analyze(
        store, accuracy=run.accuracy, memorized_only=False, n_boot=0, progress=False
    )
    got = set(metrics.filter(pl.col("metric") == "distance")["group"])
    assert {*DOMAINS, "global"} <= got
    corr = correlate(metrics, run.accuracy)
    assert {"distance", "consistency", "loss"} <= set(corr["metric"])

    analysis = analyze_lm(run.out, store=path)
    fractions = analysis.onsets.select("memorized_before_T", "generalized_before_T")
    assert fractions.null_count().sum_horizontal().item() == 0
    assert fractions.select(pl.all().is_between(0.0, 1.0).all()).row(0) == (True, True)
    assert sorted(analysis.timing["domain"]) == sorted(DOMAINS)

    # the global group's accuracy is the real domains' mean: its documents hold no control
    real = [d for d in DOMAINS if d not in CONTROL_DOMAINS]
    last = run.accuracy.filter(pl.col("step") == max(TINY.schedule()))
    accs = dict(last.select("task", "accuracy").iter_rows())
    ours = dict(
        analysis.accuracy.filter(step=max(TINY.schedule())).select("task", "accuracy").rows()
    )
    assert ours["global"] == pytest.approx(sum(accs[d] for d in real) / len(real))
    assert {d: ours[d] for d in DOMAINS} == {d: accs[d] for d in DOMAINS}
    assert set(analysis.validation.controls) == set(CONTROL_DOMAINS)

    report = write_lm_report(run.out, tmp_path / "toy_lm.md", store=path)
    text = report.read_text()
    for domain in real:
        assert f"| {domain} |" in text
    for control in CONTROL_DOMAINS:
        assert f"| {control} (control) |" in text
    assert "## The controls: does a metric track" in text and "### What they show" in text
    # what the controls imply for Table 1, computed on this run: its tracking count is the
    # validation's own
    implied = text[text.index("## What the controls imply for the paper's Table 1") :]
    tracking = analysis.validation.verdicts.filter(metric="distance", tracks=True).height
    assert f"generalization in {tracking}" in implied.split("## The metrics themselves")[0]
    final_row = next(line for line in text.splitlines() if line.startswith(f"| {TINY.steps} |"))
    assert f"{accs['arithmetic']:.2f}" in final_row and f"{ours['global']:.2f}" in final_row


@pytest.mark.filterwarnings("ignore:domain .* no eps on the:UserWarning")
def test_cli_trains_traces_and_reports(tmp_path: Path) -> None:
    from grokviz.toy.__main__ import main

    out, report = tmp_path / "cli", tmp_path / "report.md"
    argv = ["train", "--toy", "lm", "--out", str(out), "--preset", "tiny", "--quiet", "--seed", "5"]
    assert main([*argv, "--report", str(report)]) == 0
    run = LMRun.load(out)
    assert run.config.seed == 5
    assert (out / "trace" / "manifest.json").is_file()
    assert "## Table 1 on the one-pass toy" in report.read_text()
    assert main(["train", "--toy", "lm", "--out", str(out), "--preset", "nope"]) == 2
    assert main(["train", "--toy", "lm", "--out", str(out), "--steps", "5"]) == 2


# --- the shared `trace` / `report` commands on an LM run -----------------------------------------


@pytest.mark.filterwarnings("ignore:domain .* no eps on the:UserWarning")
def test_trace_and_report_commands_read_the_run_kind(
    recorded: tuple[LMRun, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from grokviz.store import TraceStore
    from grokviz.toy.__main__ import main

    run, _ = recorded
    folder = tmp_path / "run"
    shutil.copytree(run.out, folder, ignore=shutil.ignore_patterns("trace"))
    monkeypatch.chdir(tmp_path)  # the report's default path is relative

    assert main(["trace", "--run", str(folder), "--token-samples", "1", "--quiet"]) == 0
    store = TraceStore.open(folder / "trace")
    assert store.checkpoints()["step"].to_list() == TINY.schedule()
    assert set(store.samples()["sample_id"]) == set(run.samples["sample_id"])
    # one document per domain and split keeps its per-token routing
    kept = run.samples.filter(
        pl.col("sample_id").is_in(store.token_routing()["sample_id"].implode())
    )
    assert kept.group_by("domain", "split").len()["len"].to_list() == [1] * (3 * len(DOMAINS))

    assert main(["report", "--run", str(folder)]) == 0
    text = (tmp_path / "docs" / "toy_lm.md").read_text()  # an LM run's default, not toy_results
    assert not (tmp_path / "docs" / "toy_results.md").exists()
    assert text.startswith("# A one-pass toy LM")
    last = run.accuracy.filter(pl.col("step") == TINY.steps)
    accs = dict(last.select("task", "accuracy").iter_rows())
    real = [d for d in DOMAINS if d not in CONTROL_DOMAINS]
    accs["global"] = sum(accs[d] for d in real) / len(real)  # the control left out
    final_row = next(line for line in text.splitlines() if line.startswith(f"| {TINY.steps} |"))
    cells = [c.strip() for c in final_row.strip("|").split("|")]
    assert cells[2 : 3 + len(DOMAINS)] == [f"{accs[t]:.2f}" for t in (*DOMAINS, "global")]

    out = tmp_path / "elsewhere.md"
    assert main(["report", "--run", str(folder), "--out", str(out)]) == 0
    assert out.read_text() == text


def test_trace_and_report_commands_keep_the_toy_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grokviz.toy.arithmetic.report as toy_report
    import grokviz.toy.runs as runs
    from grokviz.toy.__main__ import main

    # no run.json: the first toy's loader says what is missing and how to make it
    with pytest.raises(FileNotFoundError, match=r"no run\.json"):
        main(["trace", "--run", str(tmp_path / "empty"), "--quiet"])
    with pytest.raises(FileNotFoundError, match=r"no run\.json"):
        main(["report", "--run", str(tmp_path / "empty")])

    # a run.json without kind "lm" (the first toy's) goes to its tracer and report
    calls: list[tuple[str, Path, Any]] = []

    def recorder(name: str) -> Any:
        def call(run: Path, **kwargs: Any) -> Path:
            calls.append((name, run, kwargs))
            return run

        return call

    monkeypatch.setattr(runs, "trace_run", recorder("trace"))
    monkeypatch.setattr(toy_report, "write_report", recorder("report"))
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"config": {}, "seconds": 1.0}))
    assert main(["trace", "--run", str(folder), "--quiet"]) == 0
    assert main(["report", "--run", str(folder)]) == 0
    assert [(name, run) for name, run, _ in calls] == [("trace", folder), ("report", folder)]
    assert calls[1][2]["out"] == Path("docs/toy_results.md")
