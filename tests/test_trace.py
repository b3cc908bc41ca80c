"""Tracing: losses and routing weights of tiny random MoE models against transformers itself."""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from grokviz import schema  # noqa: E402
from grokviz.errors import EmptyInputError, NotMoEError  # noqa: E402
from grokviz.testing import char_tokenizer, tiny_dense, tiny_moe  # noqa: E402
from grokviz.tracing import TraceBatch, iter_trace  # noqa: E402

TEXTS = {
    "short": "hi",
    "one": "",  # only the BOS token: routing defined, nothing to predict
    "mid": "the quick brown fox",
    "long": "jumps over the lazy dog, again and again!",
    "num": "3 + 4 = 7",
    "mixed": "Grokking: memorize, then generalize.",
}
MODEL_TYPES = ["olmoe", "mixtral", "qwen2_moe", "qwen3_moe"]


def _samples(texts: dict[str, str] = TEXTS) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {
            "sample_id": list(texts),
            "text": list(texts.values()),
            "domain": ["toy"] * n,
            "split": ["train"] * n,
        }
    )


def _run(model, samples, tokenizer=None, **kwargs) -> dict[str, pl.DataFrame]:
    batches = list(
        iter_trace(
            model, samples, tokenizer=tokenizer or char_tokenizer(), progress=False, **kwargs
        )
    )
    assert all(isinstance(b, TraceBatch) for b in batches)
    return {
        name: pl.concat([getattr(b, name) for b in batches])
        for name in ("losses", "routing", "token_routing")
    }


def _reference(model, tokenizer, text: str, *, max_length: int = 512):
    """The sample traced alone by transformers: its loss and per-layer mean softmax weights."""
    ids = tokenizer(text)["input_ids"][:max_length]
    x = torch.tensor([ids])
    with torch.no_grad():
        loss = model(x, labels=x).loss.item() if len(ids) > 1 else float("nan")
        out = model(x, output_router_logits=True)
    probs = [torch.softmax(logits.float(), dim=-1) for logits in out.router_logits]
    g = np.stack([p.mean(0).numpy() for p in probs])  # [L, K]: every token is real
    return ids, loss, g, probs


def _g(routing: pl.DataFrame, sample_id: str) -> np.ndarray:
    rows = routing.filter(pl.col("sample_id") == sample_id).sort("layer")
    return np.asarray(rows["weights"].to_list(), dtype=np.float32)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_losses_and_routing_match_transformers(model_type: str) -> None:
    model, tok = tiny_moe(model_type), char_tokenizer()
    got = _run(model, _samples(), batch_size=4)
    n_layers = model.config.num_hidden_layers
    n_experts = 8
    assert got["losses"].height == len(TEXTS)
    assert got["routing"].height == len(TEXTS) * n_layers
    for sid, text in TEXTS.items():
        ids, loss, g, _ = _reference(model, tok, text)
        row = got["losses"].filter(pl.col("sample_id") == sid)
        assert row["n_tokens"].item() == len(ids)
        if len(ids) > 1:
            assert row["loss"].item() == pytest.approx(loss, rel=1e-5, abs=1e-6)
        else:
            assert row["loss"].item() is None  # nothing to predict: null, not NaN
        weights = _g(got["routing"], sid)
        assert weights.shape == (n_layers, n_experts)
        np.testing.assert_allclose(weights, g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_tables_follow_the_schemas() -> None:
    got = _run(tiny_moe("olmoe"), _samples(), select=["num"])
    for name, table in [
        ("losses", {**schema.LOSSES, **schema.TRACE_FLAGS}),
        ("routing", schema.ROUTING),
        ("token_routing", schema.TOKEN_ROUTING),
    ]:
        assert dict(got[name].schema) == table, name
    assert got["losses"]["sample_id"].sort().to_list() == sorted(TEXTS)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("model_type", ["olmoe", "qwen2_moe"])
def test_padded_batch_equals_each_sample_alone(model_type: str, padding_side: str) -> None:
    model = tiny_moe(model_type)
    tok = char_tokenizer()
    tok.padding_side = padding_side
    alone = _run(model, _samples(), tok, batch_size=1)
    batched = _run(model, _samples(), tok, batch_size=len(TEXTS))
    a = alone["losses"].sort("sample_id")
    b = batched["losses"].sort("sample_id")
    assert a["n_tokens"].to_list() == b["n_tokens"].to_list()
    np.testing.assert_allclose(b["loss"].to_numpy(), a["loss"].to_numpy(), rtol=1e-5, atol=1e-6)
    for sid in TEXTS:
        np.testing.assert_allclose(
            _g(batched["routing"], sid), _g(alone["routing"], sid), rtol=1e-5, atol=1e-6
        )


def test_truncation_warns_once_and_traces_the_first_tokens() -> None:
    model, tok = tiny_moe("olmoe"), char_tokenizer()
    texts = {"a": "x" * 40, "b": "abcdefghijklmnop", "c": "tiny"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _run(model, _samples(texts), max_length=8)
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1
    assert "2 of 3 samples" in messages[0]
    losses = got["losses"].sort("sample_id")
    assert losses["n_tokens"].to_list() == [8, 8, 5]
    for sid, text in texts.items():
        _, loss, g, _ = _reference(model, tok, text, max_length=8)
        assert losses.filter(pl.col("sample_id") == sid)["loss"].item() == pytest.approx(loss)
        np.testing.assert_allclose(_g(got["routing"], sid), g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", ["olmoe", "mixtral"])
def test_selected_samples_get_token_rows(model_type: str) -> None:
    model, tok = tiny_moe(model_type), char_tokenizer()
    top_k = model.config.num_experts_per_tok
    got = _run(model, _samples(), select=["num", "mid"], batch_size=3)
    rows = got["token_routing"]
    assert set(rows["sample_id"].unique()) == {"num", "mid"}
    for sid in ("num", "mid"):
        ids, _, _, probs = _reference(model, tok, TEXTS[sid])
        mine = rows.filter(pl.col("sample_id") == sid).sort("token_index", "layer")
        assert mine.height == len(ids) * len(probs)
        tokens = mine.filter(pl.col("layer") == 0)
        assert tokens["token_index"].to_list() == list(range(len(ids)))
        assert "".join(tokens["token"].to_list()[1:]) == TEXTS[sid]  # after <bos>
        for layer, p in enumerate(probs):
            at = mine.filter(pl.col("layer") == layer)
            experts = np.asarray(at["experts"].to_list())
            weights = np.asarray(at["weights"].to_list())
            ref_w, ref_e = torch.topk(p, top_k, dim=-1)
            assert experts.shape == (len(ids), top_k)
            # the same experts (ties aside, in the model's order) with their full-softmax weights
            np.testing.assert_array_equal(np.sort(experts, 1), np.sort(ref_e.numpy(), 1))
            np.testing.assert_allclose(
                weights, np.take_along_axis(p.numpy(), experts, 1), rtol=1e-5, atol=1e-7
            )
            np.testing.assert_allclose(np.sort(weights, 1), np.sort(ref_w.numpy(), 1), rtol=1e-5)


def test_unselected_batches_have_empty_token_frames() -> None:
    batches = list(
        iter_trace(tiny_moe(), _samples(), tokenizer=char_tokenizer(), batch_size=2, progress=False)
    )
    assert [b.n_done for b in batches] == [2, 4, 6]
    assert all(b.n_total == len(TEXTS) for b in batches)
    assert all(b.token_routing.height == 0 for b in batches)
    assert dict(batches[0].token_routing.schema) == schema.TOKEN_ROUTING


def test_accepts_pyarrow_and_pandas_samples() -> None:
    model = tiny_moe()
    expected = _run(model, _samples())["losses"].sort("sample_id")
    frames: list[object] = [_samples().to_arrow()]
    with contextlib.suppress(ModuleNotFoundError):  # pandas is optional
        frames.append(_samples().to_pandas())
    for frame in frames:
        got = _run(model, frame)["losses"].sort("sample_id")
        np.testing.assert_allclose(got["loss"].to_numpy(), expected["loss"].to_numpy())


def test_empty_samples_raise() -> None:
    empty = _samples().clear()
    with pytest.raises(EmptyInputError, match="empty"):
        _run(tiny_moe(), empty)


def test_dense_model_raises_not_moe() -> None:
    with pytest.raises(NotMoEError, match="llama"):
        _run(tiny_dense(), _samples())


def test_loaded_model_needs_a_tokenizer() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        next(iter_trace(tiny_moe(), _samples(), progress=False))


def test_out_of_memory_halves_the_batch_and_continues(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_moe()
    expected = _run(model, _samples(), batch_size=6)
    forward = model.forward
    sizes: list[int] = []

    def flaky(*args, **kwargs):
        size = kwargs["input_ids"].shape[0]
        sizes.append(size)
        if size > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", flaky)
    with caplog.at_level(logging.WARNING, logger="grokviz.tracing"):
        got = _run(model, _samples(), batch_size=6)
    assert sizes[:2] == [6, 3]  # halved until it fits, then kept small
    assert max(sizes[1:]) == 3
    assert any("out of memory" in r.message for r in caplog.records)
    a, b = expected["losses"].sort("sample_id"), got["losses"].sort("sample_id")
    np.testing.assert_allclose(b["loss"].to_numpy(), a["loss"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert got["routing"].height == expected["routing"].height


def test_out_of_memory_on_one_sample_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_moe()

    def always(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(model, "forward", always)
    with pytest.raises(torch.OutOfMemoryError):
        _run(model, _samples(), batch_size=4)


def test_model_is_left_in_its_training_mode() -> None:
    model = tiny_moe().train()
    _run(model, _samples())
    assert model.training


def test_one_token_samples_have_null_loss_and_are_not_flagged() -> None:
    samples = pl.DataFrame(
        {"sample_id": ["one", "two"], "text": ["", "ab"], "domain": "x", "split": "train"}
    )
    got = _run(tiny_moe("olmoe"), samples)["losses"].sort("sample_id")
    # "" encodes to the BOS token alone: nothing to predict
    assert got["loss"].to_list()[0] is None and got["loss"][1] is not None
    assert got["nonfinite"].to_list() == [False, False]


def test_non_finite_outputs_are_flagged_not_stored_as_nulls(tmp_path) -> None:
    """A NaN model output stored every loss as null with exit 0 and no warning."""
    from grokviz.errors import NonFiniteError
    from grokviz.store import TraceStore
    from grokviz.tracing import Checkpoint, trace

    model = tiny_moe("olmoe")
    with torch.no_grad():
        model.model.embed_tokens.weight[5:] = float("nan")  # any text past <unk> goes NaN
    texts = {k: v for k, v in TEXTS.items() if v}  # every sample has tokens past BOS
    samples = _samples(texts)
    checkpoint = Checkpoint("broken", label="step-000001", step=1, sha="f" * 64)
    with pytest.warns(UserWarning, match=r"step-000001.*non-finite.*flagged"):
        store = trace(
            model,
            samples,
            tmp_path / "s",
            tokenizer=char_tokenizer(),
            checkpoint=checkpoint,
            progress=False,
        )
    losses = store.losses()
    assert losses["nonfinite"].all() and losses["loss"].null_count() == 0
    assert losses["loss"].is_nan().all()
    assert TraceStore.open(tmp_path / "s").checkpoints()["nonfinite"].to_list() == [len(texts)]
    with pytest.raises(NonFiniteError, match=r"step-000001.*nothing of the shard was written"):
        trace(
            model,
            samples,
            tmp_path / "e",
            tokenizer=char_tokenizer(),
            checkpoint=checkpoint,
            on_nonfinite="error",
            progress=False,
        )
    assert TraceStore.open(tmp_path / "e").checkpoints()["parts_done"].to_list() == [0]
