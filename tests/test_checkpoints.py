"""Finding, identifying and loading checkpoints: local runs saved with save_pretrained, and a
hub repository whose API calls are replaced by fakes (no network in tests)."""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import huggingface_hub
import polars as pl
import pytest
import torch
from huggingface_hub.hf_api import GitRefInfo, GitRefs

from grokviz.errors import CheckpointNotFoundError, NotMoEError, UnsafeCheckpointError
from grokviz.schema import CHECKPOINTS
from grokviz.testing import char_tokenizer, tiny_dense, tiny_moe
from grokviz.tracing import (
    SUPPORTED_ARCHITECTURES,
    Checkpoint,
    checkpoints_frame,
    list_checkpoints,
    load_model,
    parse_step,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("step5000-tokens20B", (5000, 20_000_000_000)),
        ("stage1-step310000-tokens1300B", (310000, 1_300_000_000_000)),
        ("step-000100", (100, None)),
        ("checkpoint-500", (500, None)),
        ("global_step42", (42, None)),
        ("step10-tokens2.5T", (10, 2_500_000_000_000)),
        ("step7-tokens300M", (7, 300_000_000)),
        ("step7-tokens64K", (7, 64_000)),
        ("tokens1000", (None, 1000)),
        ("main", (None, None)),
        ("v1.0", (None, None)),
    ],
)
def test_parse_step(name, expected):
    assert parse_step(name) == expected


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with two tiny OLMoE checkpoints, saved out of order on purpose."""
    root = tmp_path_factory.mktemp("run")
    tokenizer = char_tokenizer()
    for step, seed in [(200, 2), (100, 1)]:
        folder = root / f"step-{step:06d}"
        tiny_moe("olmoe", seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    (root / "notes").mkdir()  # not a checkpoint: no config.json
    return root


def test_list_local_run_in_step_order(run):
    checkpoints = list_checkpoints(run)
    assert [c.label for c in checkpoints] == ["step-000100", "step-000200"]
    assert [c.step for c in checkpoints] == [100, 200]
    assert all(c.is_local and c.revision is None for c in checkpoints)
    assert checkpoints[0].source == str(run / "step-000100")
    only = list_checkpoints(run, revisions=["step-000200"])
    assert [c.step for c in only] == [200]
    single = list_checkpoints(run / "step-000200")
    assert [c.label for c in single] == ["step-000200"]


def test_list_local_missing_revision(run):
    with pytest.raises(CheckpointNotFoundError, match=r"step-000300.*step-000100"):
        list_checkpoints(run, revisions=["step-000300"])


def test_missing_folder_errors(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no-such-run"):
        list_checkpoints(tmp_path / "no-such-run")
    with pytest.raises(CheckpointNotFoundError, match=r"config\.json"):
        list_checkpoints(tmp_path)  # exists but holds no checkpoints
    with pytest.raises(CheckpointNotFoundError, match="no-such-run"):
        load_model(tmp_path / "no-such-run")


@pytest.mark.parametrize(
    ("device", "accelerate", "direct"),
    [("cpu", True, False), ("cuda:0", True, True), ("cuda", False, False)],
)
def test_load_model_reads_weights_straight_onto_an_accelerator(run, device, accelerate, direct):
    """Off the CPU and with accelerate installed, transformers gets ``device_map`` so a large
    checkpoint never lands on the CPU first; otherwise the model loads there and moves."""
    import importlib.util

    from transformers import AutoModelForCausalLM

    first = list_checkpoints(run)[0]
    real_find_spec = importlib.util.find_spec
    real_load = AutoModelForCausalLM.from_pretrained
    seen: dict[str, object] = {}

    def find_spec(name: str, package: str | None = None) -> object:
        if name == "accelerate":
            return object() if accelerate else None
        return real_find_spec(name, package)

    def from_pretrained(location: str, **kwargs: object) -> object:
        seen.update(kwargs)
        kwargs.pop("device_map", None)  # no accelerator here: load on the CPU instead
        return real_load(location, **kwargs)

    with (
        mock.patch.object(importlib.util, "find_spec", find_spec),
        mock.patch.object(AutoModelForCausalLM, "from_pretrained", from_pretrained),
        mock.patch.object(torch.nn.Module, "to", lambda self, *a, **k: self),
    ):
        model, _ = load_model(first, device=device)
    assert seen.get("device_map") == (device if direct else None)
    assert model.config.model_type == "olmoe"


def test_load_local_checkpoints(run):
    first, second = list_checkpoints(run)
    model, tokenizer = load_model(first)
    assert not model.training
    assert model.config.model_type == "olmoe"
    reference = tiny_moe("olmoe", seed=1)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)
    assert tokenizer("ab").input_ids == char_tokenizer()("ab").input_ids
    other, _ = load_model(str(second.source), dtype="bfloat16")
    assert other.dtype == torch.bfloat16
    assert not torch.equal(
        other.model.layers[0].mlp.gate.weight.float(),
        model.model.layers[0].mlp.gate.weight.bfloat16().float(),
    )


def test_tokenizer_from_the_run_folder(tmp_path):
    char_tokenizer().save_pretrained(tmp_path)
    tiny_moe("olmoe").save_pretrained(tmp_path / "step-000001")
    _, tokenizer = load_model(tmp_path / "step-000001")
    assert tokenizer("xy").input_ids == char_tokenizer()("xy").input_ids


def test_identity_tracks_the_weights(run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(run / "step-000100", folder)
    checkpoint = Checkpoint(str(folder))
    first = checkpoint.identity()
    assert first == {"source": str(folder), "revision": None, "sha": first["sha"]}
    assert len(first["sha"] or "") == 64
    assert checkpoint.identity() == first  # stable
    assert Checkpoint(str(run / "step-000100")).identity()["sha"] == first["sha"]  # same bytes
    assert Checkpoint(str(run / "step-000200")).identity()["sha"] != first["sha"]
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert checkpoint.identity()["sha"] == first["sha"]  # only the weights count

    model = tiny_moe("olmoe", seed=1)
    with torch.no_grad():
        model.model.layers[1].mlp.gate.weight[3, 4] += 1e-3  # one parameter changes
    model.save_pretrained(folder)
    assert checkpoint.identity()["sha"] != first["sha"]


def test_identity_of_large_files_samples_them(tmp_path, monkeypatch):
    """Above the full-hash limit, a change in a sampled block still changes the hash."""
    import grokviz.tracing._checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "_FULL_HASH_LIMIT", 1024)
    monkeypatch.setattr(checkpoints, "_BLOCK", 16)
    data = bytearray(range(256)) * 40
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(bytes(data))
    before = Checkpoint(str(tmp_path)).identity()["sha"]
    data[-1] ^= 0xFF  # the last block is always sampled
    weights.write_bytes(bytes(data))
    assert Checkpoint(str(tmp_path)).identity()["sha"] != before


def test_checkpoints_frame(run):
    checkpoints = list_checkpoints(run)
    frame = checkpoints_frame(checkpoints)
    assert frame.schema == pl.Schema(CHECKPOINTS)
    assert frame["checkpoint"].to_list() == ["step-000100", "step-000200"]
    assert frame["step"].to_list() == [100, 200]
    assert frame["revision"].to_list() == [None, None]
    assert frame["sha"].to_list() == [c.identity()["sha"] for c in checkpoints]
    assert frame["sha"].n_unique() == 2


def test_dense_model_is_refused(tmp_path):
    tiny_dense().save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(NotMoEError, match="llama") as excinfo:
        load_model(tmp_path)
    assert all(name in str(excinfo.value) for name in SUPPORTED_ARCHITECTURES)


def test_pickle_only_folder_needs_opt_in(tmp_path):
    model = tiny_moe("olmoe", seed=5)
    model.save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle=True"):
        load_model(tmp_path)
    loaded, _ = load_model(tmp_path, allow_pickle=True)
    torch.testing.assert_close(
        loaded.model.layers[0].mlp.gate.weight, model.model.layers[0].mlp.gate.weight
    )


# --- hub, with huggingface_hub's network calls replaced ---------------------------------------

REPO = "allenai/OLMoE-1B-7B-0924"
SHAS = {"main": "a" * 40, "step5000-tokens20B": "b" * 40, "step10000-tokens41B": "c" * 40}


def _refs(repo_id, **kwargs):
    assert repo_id == REPO
    branches = [GitRefInfo(name=n, ref=f"refs/heads/{n}", target_commit=s) for n, s in SHAS.items()]
    return GitRefs(branches=list(reversed(branches)), converts=[], tags=[])


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "list_repo_refs", _refs)


def test_list_hub_branches(fake_hub):
    checkpoints = list_checkpoints(REPO)
    assert [c.revision for c in checkpoints] == [
        "step5000-tokens20B",
        "step10000-tokens41B",
        "main",
    ]
    assert [c.step for c in checkpoints] == [5000, 10000, None]
    assert [c.tokens for c in checkpoints] == [20 * 10**9, 41 * 10**9, None]
    assert not any(c.is_local for c in checkpoints)
    assert checkpoints[0].identity() == {
        "source": REPO,
        "revision": "step5000-tokens20B",
        "sha": "b" * 40,
    }
    frame = checkpoints_frame(checkpoints)
    assert frame["sha"].to_list() == ["b" * 40, "c" * 40, "a" * 40]


def test_hub_identity_looks_up_the_commit(fake_hub):
    assert Checkpoint(REPO, revision="step10000-tokens41B").identity()["sha"] == "c" * 40


def test_unknown_hub_revision_lists_available(fake_hub, monkeypatch):
    with pytest.raises(CheckpointNotFoundError, match=r"step9-tokens1B.*step5000-tokens20B"):
        list_checkpoints(REPO, revisions=["step9-tokens1B"])

    def missing_revision(repo_id, *, revision=None, **kwargs):
        raise huggingface_hub.errors.RevisionNotFoundError("404", response=mock.MagicMock())

    monkeypatch.setattr(huggingface_hub, "list_repo_files", missing_revision)
    with pytest.raises(CheckpointNotFoundError, match=r"step9-tokens1B.*step5000-tokens20B"):
        load_model(f"{REPO}@step9-tokens1B")


def test_unknown_hub_repository(monkeypatch):
    def missing(repo_id, **kwargs):
        raise huggingface_hub.errors.RepositoryNotFoundError("404", response=mock.MagicMock())

    monkeypatch.setattr(huggingface_hub, "list_repo_refs", missing)
    with pytest.raises(CheckpointNotFoundError, match="no/such-repo"):
        list_checkpoints("no/such-repo")


def test_hub_load_pins_the_listed_commit_and_refuses_pickle(fake_hub, monkeypatch, run):
    seen: dict[str, object] = {}

    def files(repo_id, *, revision=None, **kwargs):
        seen["files_revision"] = revision
        return ["config.json", "pytorch_model.bin"]

    monkeypatch.setattr(huggingface_hub, "list_repo_files", files)
    checkpoint = list_checkpoints(REPO, revisions=["step5000-tokens20B"])[0]
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle=True"):
        load_model(checkpoint)
    assert seen["files_revision"] == "b" * 40

    # With safetensors on the "hub", transformers is asked for the pinned commit; serve it the
    # local run's folder so the rest of the load is real.
    monkeypatch.setattr(
        huggingface_hub, "list_repo_files", lambda *a, **k: ["config.json", "model.safetensors"]
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    real_model, real_tokenizer = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained

    def model_from(location, **kwargs):
        seen["model"] = (location, kwargs.get("revision"), kwargs.get("use_safetensors"))
        kwargs.pop("revision")
        return real_model(run / "step-000100", **kwargs)

    def tokenizer_from(location, **kwargs):
        kwargs.pop("revision")
        return real_tokenizer(run / "step-000100", **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", model_from)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tokenizer_from)
    model, _ = load_model(checkpoint)
    assert seen["model"] == (REPO, "b" * 40, True)
    assert model.config.model_type == "olmoe"


def test_missing_tokenizer_is_reported(tmp_path):
    tiny_moe("olmoe").save_pretrained(tmp_path / "step-000001")
    with pytest.raises(CheckpointNotFoundError, match="tokenizer"):
        load_model(tmp_path / "step-000001")


def test_checkpoint_reads_step_from_its_name():
    assert Checkpoint("runs/x/step-000300").step == 300
    hub = Checkpoint(REPO, revision="step5000-tokens20B")
    assert (hub.step, hub.tokens, hub.label) == (5000, 20 * 10**9, "step5000-tokens20B")
    explicit = Checkpoint("runs/x/final", step=900, label="end")
    assert (explicit.step, explicit.tokens, explicit.label) == (900, None, "end")
