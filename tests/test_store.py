"""The trace store: round trips, resuming, identity checks, and damage found and repaired."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from _runs import N_EXPERTS, N_LAYERS, STEPS, make_samples, part_mtimes, save_run, store_rows  # noqa: E402

from grokviz import schema  # noqa: E402
from grokviz.errors import (  # noqa: E402
    CheckpointNotFoundError,
    EmptyInputError,
    InputError,
    NotAStoreError,
    StoreDamagedError,
    StoreMismatchError,
    TraceStoreError,
    UnknownSampleError,
)
from grokviz.store import StoreWriter, TraceStore  # noqa: E402
from grokviz.tracing import (  # noqa: E402
    iter_trace,
    list_checkpoints,
    load_model,
    repair,
    router_weight_rows,
    trace,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def traced(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished store of the run over 4 samples in shards of 2 (copy it before damaging it)."""
    out = tmp_path_factory.mktemp("traced") / "store"
    trace(run, make_samples(4), out, shard_size=2, progress=False)
    return out


def _copy(store: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(store, tmp_path / "copy"))


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
    assert (ckpts["parts_done"] == 3).all() and (ckpts["samples_done"] == 7).all()
    assert ckpts["sha"].null_count() == 0 and ckpts["sha"].n_unique() == 3
    for col, dtype in schema.CHECKPOINTS.items():
        assert ckpts.schema[col] == dtype
    assert reopened.samples().equals(samples)

    losses = reopened.losses()
    routing = reopened.routing()
    tokens = reopened.token_routing()
    assert dict(losses.schema) == {**schema.LOSSES, **schema.TRACE_FLAGS}
    assert dict(routing.schema) == schema.ROUTING
    assert dict(tokens.schema) == schema.TOKEN_ROUTING
    assert losses.height == 3 * samples.height and not losses["nonfinite"].any()
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
    with pytest.raises(UnknownSampleError, match=r"not in trace store.*nope"):
        reopened.routing_array(ckpt.label, sample_ids=["nope"])

    model, _ = load_model(ckpt)
    np.testing.assert_array_equal(
        reopened.router_array(ckpt.label), router_weight_rows(model).numpy()
    )
    routers = reopened.routers()
    assert dict(routers.schema) == schema.ROUTERS
    assert routers.height == 3 * N_LAYERS * N_EXPERTS
    assert reopened.verify().ok


def test_manifest_records_identity_checksums_params_and_model(traced: Path) -> None:
    manifest = json.loads((traced / "manifest.json").read_text())
    assert manifest["version"] == 2 and len(manifest["store_id"]) == 32
    assert manifest["params"]["max_length"] == 512
    assert manifest["shards"] == [[0, 2], [2, 4]]
    assert manifest["series"]["num_experts"] == N_EXPERTS
    entry = manifest["checkpoints"]["step-000200"]
    assert entry["step"] == 200 and sorted(entry["parts"]) == ["0", "1"]
    assert entry["model"]["model_type"] == "olmoe" and entry["model"]["vocab_size"] == 128
    assert entry["model"]["num_layers"] == N_LAYERS and entry["model"]["top_k"] == 2
    record = entry["parts"]["1"]["routing"]
    part = traced / "step-000200" / "routing-00001.parquet"
    assert record["size"] == part.stat().st_size and record["rows"] == 2 * N_LAYERS
    meta = pl.read_parquet_metadata(part)
    assert meta["grokviz.store_id"] == manifest["store_id"]
    assert (meta["grokviz.checkpoint"], meta["grokviz.shard"]) == ("step-000200", "1")
    assert not list(traced.rglob("*.grokviz-tmp"))


def test_open_missing_store_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotAStoreError, match="grokviz trace"):
        TraceStore.open(tmp_path / "nowhere")
    with pytest.raises(NotAStoreError, match="manifest"):
        TraceStore.open(tmp_path)


def test_empty_samples_raise(run: Path, tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError):
        trace(run, make_samples().clear(), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()  # refused before anything was written


# -- never write where grokviz does not own the folder ---------------------------------------


def test_a_folder_with_the_users_files_is_refused_and_left_as_it_was(
    run: Path, tmp_path: Path
) -> None:
    """The issue's example: --out at a folder with the user's own samples.parquet overwrote it
    (3,813 rows became 10) and wrote into subfolders named like checkpoints."""
    mine = tmp_path / "work"
    (mine / "step-000100").mkdir(parents=True)
    make_samples(30).write_parquet(mine / "samples.parquet")
    (mine / "step-000100" / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    with pytest.raises(NotAStoreError, match=r"not a grokviz trace store.*samples\.parquet"):
        trace(run, make_samples(4), mine, progress=False)
    after = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in mine.iterdir()) == ["samples.parquet", "step-000100"]


def test_a_file_as_store_is_refused(run: Path, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("hello")
    with pytest.raises(NotAStoreError, match="is a file"):
        trace(run, make_samples(2), tmp_path / "x", progress=False)


def test_an_empty_folder_becomes_a_store(run: Path, tmp_path: Path) -> None:
    trace(run / "step-000100", make_samples(2), tmp_path, progress=False)
    assert TraceStore.open(tmp_path).verify().ok


def test_files_respect_the_umask(run: Path, tmp_path: Path) -> None:
    """Store files were written 0600 (mkstemp, never chmod): colleagues could not read them."""
    old = os.umask(0o002)
    try:
        trace(run / "step-000100", make_samples(2), tmp_path / "s", progress=False)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert files
    modes = {stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == {0o664}, {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}


# -- damage found anywhere, and recomputed ----------------------------------------------------


def test_damage_inside_a_part_is_found_by_its_checksum_and_recomputed(
    run: Path, traced: Path, tmp_path: Path
) -> None:
    """A damaged byte in the middle of a part (same size, valid footer) was never found."""
    store_path = _copy(traced, tmp_path)
    part = store_path / "step-000200" / "losses-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0xFF
    part.write_bytes(bytes(data))
    report = TraceStore.open(store_path).verify()
    assert [(p.kind, p.path.name, p.unit) for p in report.problems] == [
        ("damaged", "losses-00001.parquet", 1)
    ]
    assert "SHA-256" in report.problems[0].detail and not report.ok
    mtimes = part_mtimes(store_path)
    trace(run, make_samples(4), store_path, shard_size=2, progress=False)  # the same command
    changed = {k for k, v in part_mtimes(store_path).items() if v != mtimes[k]}
    assert changed == {
        f"step-000200/{t}-00001.parquet" for t in ("losses", "routing", "token_routing")
    }
    assert TraceStore.open(store_path).verify().ok
    assert store_rows(store_path)["losses"].equals(store_rows(traced)["losses"])


def test_a_truncated_part_is_named_with_advice_that_works(
    run: Path, traced: Path, tmp_path: Path
) -> None:
    store_path = _copy(traced, tmp_path)
    part = store_path / "step-000200" / "routing-00001.parquet"
    part.write_bytes(part.read_bytes()[:100])
    store = TraceStore.open(store_path)
    with pytest.raises(StoreDamagedError, match=r"routing-00001\.parquet.*grokviz verify"):
        store.routing()
    assert store.losses().height == 3 * 4  # other tables still read
    repair(store_path, progress=False)  # what the message says to run
    assert TraceStore.open(store_path).verify().ok
    assert store_rows(store_path)["routing"].equals(store_rows(traced)["routing"])


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_router_tables_are_recomputed(
    run: Path, traced: Path, tmp_path: Path, damage: str
) -> None:
    """A truncated or deleted routers.parquet was never recomputed, although the error said
    that deleting it and re-running would; metrics then silently lost consistency."""
    store_path = _copy(traced, tmp_path)
    routers = store_path / "step-000100" / "routers.parquet"
    if damage == "truncate":
        routers.write_bytes(routers.read_bytes()[:50])
    else:
        routers.unlink()
    with pytest.raises(StoreDamagedError, match="routers"):
        TraceStore.open(store_path).router_array("step-000100")
    trace(run, make_samples(4), store_path, shard_size=2, progress=False)
    assert TraceStore.open(store_path).verify().ok
    assert store_rows(store_path)["routers"].equals(store_rows(traced)["routers"])


def test_a_damaged_samples_file_is_restored_by_running_the_same_trace(
    run: Path, traced: Path, tmp_path: Path
) -> None:
    """A damaged samples.parquet made the store unrecoverable ("missing: re-run…" forever)."""
    store_path = _copy(traced, tmp_path)
    samples_file = store_path / "samples-000.parquet"
    samples_file.write_bytes(samples_file.read_bytes()[:-40])
    report = TraceStore.open(store_path).verify()
    assert [(p.kind, p.unit) for p in report.problems] == [("damaged", "samples")]
    assert "--samples" in report.problems[0].detail
    with pytest.raises(StoreDamagedError, match="samples table this store was traced with"):
        repair(store_path, progress=False)  # without the table: says what to pass
    with pytest.raises(StoreDamagedError, match="do not reproduce it"):
        trace(run, make_samples(4).reverse(), store_path, shard_size=2, progress=False)
    trace(run, make_samples(4), store_path, shard_size=2, progress=False)
    assert TraceStore.open(store_path).verify().ok
    assert TraceStore.open(store_path).samples().equals(make_samples(4))


def test_a_part_of_another_store_is_recognized_and_replaced(
    run: Path, traced: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    trace(run, make_samples(4), other, shard_size=2, progress=False)  # same data, another store
    store_path = _copy(traced, tmp_path)
    name = "step-000300/routing-00000.parquet"
    record = json.loads((store_path / "manifest.json").read_text())["checkpoints"]["step-000300"]
    shutil.copy(other / name, store_path / name)
    # a copy with the right size and bytes, but another store's: the manifest lies about it
    record["parts"]["0"]["routing"]["size"] = (store_path / name).stat().st_size
    from grokviz.store._files import file_digest

    record["parts"]["0"]["routing"]["sha256"] = file_digest(store_path / name)
    manifest = json.loads((store_path / "manifest.json").read_text())
    manifest["checkpoints"]["step-000300"] = record
    (store_path / "manifest.json").write_text(json.dumps(manifest))
    problems = TraceStore.open(store_path).verify().problems
    assert [(p.kind, p.unit) for p in problems] == [("foreign", 0)]
    assert TraceStore.open(other).store_id in problems[0].detail
    repair(store_path, progress=False)
    assert TraceStore.open(store_path).verify().ok


def test_a_part_moved_to_another_shard_is_misplaced(traced: Path, tmp_path: Path) -> None:
    store_path = _copy(traced, tmp_path)
    folder = store_path / "step-000100"
    manifest = json.loads((store_path / "manifest.json").read_text())
    parts = manifest["checkpoints"]["step-000100"]["parts"]
    shutil.copy(folder / "losses-00000.parquet", folder / "losses-00001.parquet")
    parts["1"]["losses"] = parts["0"]["losses"]
    (store_path / "manifest.json").write_text(json.dumps(manifest))
    problems = TraceStore.open(store_path).verify().problems
    assert [(p.kind, p.unit) for p in problems] == [("misplaced", 1)]
    assert "shard '0'" in problems[0].detail


def test_leftovers_of_an_interrupted_run_are_reported_and_removed(
    traced: Path, tmp_path: Path
) -> None:
    store_path = _copy(traced, tmp_path)
    (store_path / "step-000100" / ".losses-00000.parquet.abc.grokviz-tmp").write_bytes(b"x")
    (store_path / "notes.txt").write_text("a user's note")
    report = TraceStore.open(store_path).verify()
    assert sorted(p.kind for p in report.problems) == ["leftover", "unexpected"]
    assert report.ok  # neither needs a recompute
    repair(store_path, progress=False)
    assert (store_path / "notes.txt").read_text() == "a user's note"  # never touched
    assert [p.kind for p in TraceStore.open(store_path).verify().problems] == ["unexpected"]


# -- resuming ---------------------------------------------------------------------------------


def test_resume_computes_only_missing_parts(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(7)
    real_write = StoreWriter.write_part
    calls: list[tuple[str, int]] = []

    def interrupted(self, label, shard, frames, **kwargs):
        if len(calls) == 4:
            # a part half-written when the run died: on disk, but not in the manifest
            entry = self.store.manifest["checkpoints"][label]
            (self.path / entry["dir"] / f"routing-{shard:05d}.parquet").write_bytes(b"partial")
            raise KeyboardInterrupt
        calls.append((label, shard))
        real_write(self, label, shard, frames, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trace(run, samples, tmp_path, shard_size=3, progress=False)
    first = list(calls)
    assert first == [("step-000100", 0), ("step-000100", 1), ("step-000100", 2), ("step-000200", 0)]
    assert [p.kind for p in TraceStore.open(tmp_path).verify().problems].count("leftover") == 1
    mtimes = part_mtimes(tmp_path)

    calls.clear()

    def counted(self, label, shard, frames, **kwargs):
        calls.append((label, shard))
        real_write(self, label, shard, frames, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_part", counted)
    store = trace(run, samples, tmp_path, shard_size=3, progress=False)
    assert sorted(calls) == [("step-000200", 1), ("step-000200", 2)] + [
        ("step-000300", s) for s in range(3)
    ]
    after = part_mtimes(tmp_path)
    assert all(after[k] == v for k, v in mtimes.items() if k != "step-000200/routing-00001.parquet")

    routing = store.routing()
    keys = routing.select("checkpoint", "sample_id", "layer")
    assert keys.height == 3 * 7 * N_LAYERS
    assert keys.is_unique().all()
    assert store.losses().select("checkpoint", "sample_id").is_unique().all()
    assert store.verify().ok

    # a third run has nothing to do
    calls.clear()
    trace(run, samples, tmp_path, shard_size=3, progress=False)
    assert calls == []


# -- what may be added to a store ---------------------------------------------------------------


def test_other_weights_under_the_same_label_raise(run: Path, tmp_path: Path) -> None:
    other = save_run(tmp_path / "other", steps=(100,), seed=50)
    store = tmp_path / "store"
    trace(run / "step-000100", make_samples(3), store, progress=False)
    manifest = (store / "manifest.json").read_bytes()
    with pytest.raises(StoreMismatchError, match=r"step-000100.*never mix"):
        trace(other / "step-000100", make_samples(3), store, progress=False)
    assert TraceStore.open(store).losses().height == 3  # nothing was added
    assert (store / "manifest.json").read_bytes() == manifest


def test_other_params_raise_before_anything_is_written(run: Path, tmp_path: Path) -> None:
    trace(run / "step-000100", make_samples(3), tmp_path, max_length=64, progress=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(StoreMismatchError, match=r"max_length=64.*new folder"):
        trace(run / "step-000100", make_samples(5), tmp_path, max_length=32, progress=False)
    with pytest.raises(StoreMismatchError, match="select"):
        trace(run, make_samples(3), tmp_path, max_length=64, select=["s00"], progress=False)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_changed_samples_raise_and_new_samples_append(run: Path, tmp_path: Path) -> None:
    ckpt = run / "step-000100"
    trace(ckpt, make_samples(3), tmp_path, shard_size=2, progress=False)
    changed = make_samples(3).with_columns(
        pl.when(pl.col("sample_id") == "s01").then(pl.lit("other")).otherwise("text").alias("text")
    )
    with pytest.raises(StoreMismatchError, match="s01"):
        trace(ckpt, changed, tmp_path, progress=False)
    with pytest.raises(StoreMismatchError, match="lacks"):
        trace(ckpt, make_samples(2), tmp_path, progress=False)

    mtimes = part_mtimes(tmp_path)
    more = pl.concat([make_samples(2, start=3), make_samples(3)])  # order does not matter
    store = trace(ckpt, more, tmp_path, shard_size=2, progress=False)
    assert store.manifest["shards"] == [[0, 2], [2, 3], [3, 5]]
    assert [s["file"] for s in store.manifest["sample_sets"]] == [
        "samples-000.parquet",
        "samples-001.parquet",
    ]
    assert store.samples()["sample_id"].to_list() == ["s00", "s01", "s02", "s03", "s04"]
    assert all(part_mtimes(tmp_path)[k] == v for k, v in mtimes.items())
    assert sorted(store.losses()["sample_id"].to_list()) == ["s00", "s01", "s02", "s03", "s04"]
    assert store.verify().ok


def test_a_series_that_disagrees_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    save_run(mixed, steps=(100,))
    save_run(mixed, steps=(200,), num_experts=4)
    with pytest.raises(TraceStoreError, match=r"step-000200.*step-000100.*num_experts 4 vs 8"):
        trace(mixed, make_samples(2), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_a_checkpoint_outside_the_stored_series_is_refused(run: Path, tmp_path: Path) -> None:
    trace(run / "step-000100", make_samples(2), tmp_path / "s", progress=False)
    other = save_run(tmp_path / "other", steps=(400,), num_experts_per_tok=1)
    with pytest.raises(TraceStoreError, match="top_k 1 vs 2"):
        trace(other, make_samples(2), tmp_path / "s", progress=False)


def test_unknown_selected_samples_are_refused(run: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not in the samples table.*s99"):
        trace(run, make_samples(2), tmp_path / "s", select=["s01", "s99"], progress=False)


def test_iter_trace_from_a_checkpoint_folder(run: Path) -> None:
    batches = list(iter_trace(run / "step-000200", make_samples(3), device="cpu", progress=False))
    losses = pl.concat([b.losses for b in batches])
    assert set(losses["checkpoint"]) == {"step-000200"}
    assert set(losses["step"]) == {200}
    with pytest.raises(InputError, match="holds 3 checkpoints"):
        iter_trace(run, make_samples(3), progress=False)


def test_missing_checkpoint_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="nope"):
        trace(tmp_path / "nope", make_samples(2), tmp_path / "store", progress=False)
