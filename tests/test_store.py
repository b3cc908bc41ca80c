"""The trace store: round trips, resuming, identity checks and damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from grokviz import schema  # noqa: E402
from grokviz.errors import CheckpointNotFoundError, EmptyInputError, TraceStoreError  # noqa: E402
from grokviz.store import TraceStore  # noqa: E402
from grokviz.testing import char_tokenizer, tiny_moe  # noqa: E402
from grokviz.tracing import iter_trace, list_checkpoints, router_weight_rows, trace  # noqa: E402

STEPS = (100, 200, 300)
N_LAYERS = 2
N_EXPERTS = 8


def make_samples(n: int = 7, *, start: int = 0) -> pl.DataFrame:
    ids = [f"s{i:02d}" for i in range(start, start + n)]
    texts = [("memorize " * (1 + i % 4)) + f"then generalize #{i}" for i in range(start, start + n)]
    return pl.DataFrame(
        {"sample_id": ids, "text": texts, "domain": ["toy"] * n, "split": ["train"] * n}
    )


def save_run(folder: Path, steps=STEPS, *, seed: int = 0) -> Path:
    """Save tiny OLMoE checkpoints as ``folder/step-000100/`` ... with a char tokenizer."""
    tok = char_tokenizer()
    for i, step in enumerate(steps):
        out = folder / f"step-{step:06d}"
        tiny_moe("olmoe", seed=seed + i).save_pretrained(out)
        tok.save_pretrained(out)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_run(tmp_path_factory.mktemp("run"))


def _parts(store: Path) -> dict[str, int]:
    """mtime_ns of every Parquet part, keyed by its path relative to the store."""
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*-0*.parquet")}


def test_store_round_trip(run: Path, tmp_path: Path) -> None:
    samples = make_samples()
    store = trace(run, samples, tmp_path / "store", shard_size=3, select=["s01"], progress=False)
    assert isinstance(store, TraceStore)
    reopened = TraceStore.open(tmp_path / "store")

    ckpts = reopened.checkpoints()
    assert ckpts["checkpoint"].to_list() == [f"step-{s:06d}" for s in STEPS]
    assert ckpts["step"].to_list() == list(STEPS)
    assert ckpts["num_layers"].to_list() == [N_LAYERS] * 3
    assert ckpts["num_experts"].to_list() == [N_EXPERTS] * 3
    assert (ckpts["parts_done"] == 3).all()
    assert ckpts["sha"].null_count() == 0 and ckpts["sha"].n_unique() == 3
    for col, dtype in schema.CHECKPOINTS.items():
        assert ckpts.schema[col] == dtype
    assert reopened.samples().equals(samples)

    losses = reopened.losses()
    routing = reopened.routing()
    tokens = reopened.token_routing()
    assert dict(losses.schema) == schema.LOSSES
    assert dict(routing.schema) == schema.ROUTING
    assert dict(tokens.schema) == schema.TOKEN_ROUTING
    assert losses.height == 3 * samples.height
    assert routing.height == 3 * samples.height * N_LAYERS
    assert set(tokens["sample_id"].unique()) == {"s01"}
    lazy = reopened.routing(lazy=True)
    assert isinstance(lazy, pl.LazyFrame)
    assert (
        lazy.collect()
        .sort("checkpoint", "sample_id", "layer")
        .equals(routing.sort("checkpoint", "sample_id", "layer"))
    )

    # the store holds what iter_trace yields for the same checkpoint
    ckpt = list_checkpoints(run)[1]
    direct = list(iter_trace(ckpt, samples, device="cpu", progress=False))
    direct_losses = pl.concat([b.losses for b in direct]).sort("sample_id")
    stored = losses.filter(pl.col("checkpoint") == ckpt.label).sort("sample_id")
    np.testing.assert_allclose(stored["loss"].to_numpy(), direct_losses["loss"].to_numpy())

    g, ids = reopened.routing_array(ckpt.label)
    assert ids == samples["sample_id"].to_list()
    assert g.shape == (samples.height, N_LAYERS, N_EXPERTS) and g.dtype == np.float32
    direct_routing = pl.concat([b.routing for b in direct])
    for n, sid in enumerate(ids):
        rows = direct_routing.filter(pl.col("sample_id") == sid).sort("layer")
        # batches differ (shards vs whole set): equal up to float rounding
        want = np.asarray(rows["weights"].to_list(), np.float32)
        np.testing.assert_allclose(g[n], want, rtol=1e-5, atol=1e-7)
    sub, sub_ids = reopened.routing_array(ckpt.label, sample_ids=["s04", "s00"])
    assert sub_ids == ["s04", "s00"]
    np.testing.assert_array_equal(sub, g[[4, 0]])
    with pytest.raises(KeyError, match="nope"):
        reopened.routing_array(ckpt.label, sample_ids=["nope"])

    from grokviz.tracing import load_model

    model, _ = load_model(ckpt)
    np.testing.assert_array_equal(
        reopened.router_array(ckpt.label), router_weight_rows(model).numpy()
    )
    routers = reopened.routers()
    assert dict(routers.schema) == schema.ROUTERS
    assert routers.height == 3 * N_LAYERS * N_EXPERTS


def test_manifest_records_params_and_model(run: Path, tmp_path: Path) -> None:
    trace(run, make_samples(4), tmp_path, max_length=64, shard_size=2, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["params"]["max_length"] == 64
    assert manifest["shards"] == [[0, 2], [2, 4]]
    entry = manifest["checkpoints"]["step-000200"]
    assert entry["step"] == 200 and entry["parts"] == [0, 1]
    assert entry["model"]["model_type"] == "olmoe"
    assert entry["model"]["num_layers"] == N_LAYERS and entry["model"]["top_k"] == 2
    assert not list(tmp_path.rglob("*.grokviz-tmp"))


def test_open_missing_store_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(TraceStoreError, match="grokviz trace"):
        TraceStore.open(tmp_path / "nowhere")
    with pytest.raises(TraceStoreError, match="manifest"):
        TraceStore.open(tmp_path)


def test_empty_samples_raise(run: Path, tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError):
        trace(run, make_samples().clear(), tmp_path, progress=False)


def test_corrupt_part_is_named_and_recomputed(run: Path, tmp_path: Path) -> None:
    samples = make_samples(4)
    trace(run, samples, tmp_path, shard_size=2, progress=False)
    before = TraceStore.open(tmp_path).routing().sort("checkpoint", "sample_id", "layer")
    part = tmp_path / "step-000200" / "routing-00001.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    store = TraceStore.open(tmp_path)
    with pytest.raises(TraceStoreError, match=r"routing-00001\.parquet.*re-run `grokviz trace`"):
        store.routing()
    with pytest.raises(TraceStoreError, match=r"routing-00001\.parquet"):
        store.routing(lazy=True)
    assert store.losses().height == 3 * 4  # other tables still read

    part.unlink()  # as the message says: delete it and re-run
    mtimes = _parts(tmp_path)
    trace(run, samples, tmp_path, shard_size=2, progress=False)
    after = _parts(tmp_path)
    changed = {k for k in after if after[k] != mtimes.get(k)}
    assert changed == {
        f"step-000200/{t}-00001.parquet" for t in ("losses", "routing", "token_routing")
    }
    again = TraceStore.open(tmp_path).routing().sort("checkpoint", "sample_id", "layer")
    assert again.equals(before)


def test_resume_computes_only_missing_parts(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(7)
    real_write = TraceStore._write_part
    calls: list[tuple[str, int]] = []

    def interrupted(self, label, shard, frames):
        if len(calls) == 4:
            # a part half-written when the run died: on disk, but not in the manifest
            entry = self.manifest["checkpoints"][label]
            (self.path / entry["dir"] / f"routing-{shard:05d}.parquet").write_bytes(b"partial")
            raise KeyboardInterrupt
        calls.append((label, shard))
        real_write(self, label, shard, frames)

    monkeypatch.setattr(TraceStore, "_write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trace(run, samples, tmp_path, shard_size=3, progress=False)
    first = list(calls)
    assert first == [("step-000100", 0), ("step-000100", 1), ("step-000100", 2), ("step-000200", 0)]
    mtimes = _parts(tmp_path)

    calls.clear()

    def counted(self, label, shard, frames):
        calls.append((label, shard))
        real_write(self, label, shard, frames)

    monkeypatch.setattr(TraceStore, "_write_part", counted)
    store = trace(run, samples, tmp_path, shard_size=3, progress=False)
    assert sorted(calls) == [("step-000200", 1), ("step-000200", 2)] + [
        ("step-000300", s) for s in range(3)
    ]
    after = _parts(tmp_path)
    assert all(after[k] == v for k, v in mtimes.items() if k != "step-000200/routing-00001.parquet")

    routing = store.routing()
    keys = routing.select("checkpoint", "sample_id", "layer")
    assert keys.height == 3 * 7 * N_LAYERS
    assert keys.is_unique().all()
    assert store.losses().select("checkpoint", "sample_id").is_unique().all()

    # a third run has nothing to do
    calls.clear()
    trace(run, samples, tmp_path, shard_size=3, progress=False)
    assert calls == []


def test_other_weights_under_the_same_label_raise(run: Path, tmp_path: Path) -> None:
    other = save_run(tmp_path / "other", steps=(100,), seed=50)
    store = tmp_path / "store"
    trace(run / "step-000100", make_samples(3), store, progress=False)
    with pytest.raises(TraceStoreError, match=r"step-000100.*never mix"):
        trace(other / "step-000100", make_samples(3), store, progress=False)
    assert TraceStore.open(store).losses().height == 3  # nothing was added


def test_other_params_raise(run: Path, tmp_path: Path) -> None:
    trace(run / "step-000100", make_samples(3), tmp_path, max_length=64, progress=False)
    with pytest.raises(TraceStoreError, match=r"max_length=64.*new folder"):
        trace(run / "step-000100", make_samples(3), tmp_path, max_length=32, progress=False)
    with pytest.raises(TraceStoreError, match="select"):
        trace(run, make_samples(3), tmp_path, max_length=64, select=["s00"], progress=False)


def test_changed_samples_raise_and_new_samples_append(run: Path, tmp_path: Path) -> None:
    ckpt = run / "step-000100"
    trace(ckpt, make_samples(3), tmp_path, shard_size=2, progress=False)
    changed = make_samples(3).with_columns(
        pl.when(pl.col("sample_id") == "s01").then(pl.lit("other")).otherwise("text").alias("text")
    )
    with pytest.raises(TraceStoreError, match="s01"):
        trace(ckpt, changed, tmp_path, progress=False)
    with pytest.raises(TraceStoreError, match="lacks"):
        trace(ckpt, make_samples(2), tmp_path, progress=False)

    mtimes = _parts(tmp_path)
    more = pl.concat([make_samples(2, start=3), make_samples(3)])  # order does not matter
    store = trace(ckpt, more, tmp_path, shard_size=2, progress=False)
    assert store.manifest["shards"] == [[0, 2], [2, 3], [3, 5]]
    assert store.samples()["sample_id"].to_list() == ["s00", "s01", "s02", "s03", "s04"]
    assert all(_parts(tmp_path)[k] == v for k, v in mtimes.items())
    assert sorted(store.losses()["sample_id"].to_list()) == ["s00", "s01", "s02", "s03", "s04"]


def test_a_second_writer_is_refused(run: Path, tmp_path: Path) -> None:
    trace(run / "step-000100", make_samples(2), tmp_path, progress=False)
    store = TraceStore.open(tmp_path)
    with store._lock(), pytest.raises(TraceStoreError, match="another process"):
        trace(run / "step-000100", make_samples(2), tmp_path, progress=False)


def test_iter_trace_from_a_checkpoint_folder(run: Path) -> None:
    batches = list(iter_trace(run / "step-000200", make_samples(3), device="cpu", progress=False))
    losses = pl.concat([b.losses for b in batches])
    assert set(losses["checkpoint"]) == {"step-000200"}
    assert set(losses["step"]) == {200}
    with pytest.raises(ValueError, match="holds 3 checkpoints"):
        iter_trace(run, make_samples(3), progress=False)


def test_missing_checkpoint_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="nope"):
        trace(tmp_path / "nope", make_samples(2), tmp_path / "store", progress=False)
