"""The monitor in real training frameworks on a tiny MoE: a transformers Trainer reporting to
TensorBoard, W&B (offline) and MLflow (a local file store), a Lightning run with the same three
loggers, and grokviz's own toy trainer. Each test reads back what was logged from the files, and
checks that training with the monitor gives the weights training without it gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
from _logged import mlflow_metrics, tensorboard_scalars, wandb_history

from grokviz.monitor import Monitor, OnlineCriterion
from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples

EVERY = 3
STEPS = 7


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_loggers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every reporter writes under ``tmp_path``; nothing talks to a network."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-root"))
    monkeypatch.setenv("WANDB_PROJECT", "grokviz-test")
    # MLflow 3 keeps its file store in maintenance mode and asks for this to use it
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    (tmp_path / "wandb-root").mkdir()
    return tmp_path


def _monitor(folder: Path) -> Monitor:
    return Monitor(
        tiny_samples(8, domains=("a", "b")),
        folder,
        tokenizer=char_tokenizer(),
        every=EVERY,
        criterion=OnlineCriterion(eps=5.0, window=2),
        on_error="raise",
    )


class _Batches(torch.utils.data.Dataset):
    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(4, 100, (64, 12), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _model() -> Any:
    # attention dropout and router jitter draw random numbers in training, so a monitor that
    # moved the RNG would change the weights
    return tiny_moe("mixtral", seed=0, attention_dropout=0.1, router_jitter_noise=0.1).train()


def _expected_steps() -> list[int]:
    return [s for s in range(STEPS + 1) if s % EVERY == 0]


# -- transformers -----------------------------------------------------------------------------


def _hf_train(out: Path, *, monitor: Monitor | None, report_to: list[str]) -> Any:
    from transformers import Trainer, TrainingArguments

    from grokviz.monitor import TransformersCallback

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=2,
        save_strategy="no",
        report_to=report_to,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=_model(), args=args, train_dataset=_Batches())
    if monitor is not None:
        trainer.add_callback(TransformersCallback(monitor, trainer))
    trainer.train()
    return trainer


def test_trainer_metrics_reach_tensorboard_wandb_and_mlflow_and_weights_stay_the_same(
    offline_loggers: Path,
) -> None:
    tmp = offline_loggers
    monitor = _monitor(tmp / "monitor")
    trainer = _hf_train(tmp / "hf", monitor=monitor, report_to=["tensorboard", "wandb", "mlflow"])
    import wandb

    wandb.finish()  # the Trainer leaves its W&B run open; finishing it flushes the run file
    steps = _expected_steps()
    assert monitor.store.checkpoints()["step"].to_list() == steps
    expected = {step: monitor.live.observations[f"step-{step:06d}"].scalars() for step in steps}
    key = "grokviz/probe/distance"
    want = {step: expected[step][key] for step in steps}

    logged = [e for e in trainer.state.log_history if key in e]
    assert {e["step"]: e[key] for e in logged} == want

    # the Trainer's TensorBoard and W&B reporters put train/ before every key
    tb = tensorboard_scalars(tmp / "tb")
    assert tb[f"train/{key}"] == pytest.approx(want)  # TensorBoard stores float32
    assert tb["train/grokviz/memorized/a/fraction"].keys() == set(steps)

    wb = wandb_history(tmp / "wandb-root")
    assert wb[f"train/{key}"] == want

    ml = mlflow_metrics(tmp / "mlruns")
    assert ml[key] == want
    assert ml["grokviz/probe/loss"] == {s: expected[s]["grokviz/probe/loss"] for s in steps}

    without = _hf_train(tmp / "hf-plain", monitor=None, report_to=[])
    a, b = trainer.model.state_dict(), without.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_trainer_callback_without_its_trainer_is_refused(tmp_path: Path) -> None:
    from grokviz.errors import InputError
    from grokviz.monitor import TransformersCallback

    with pytest.raises(InputError, match="the transformers Trainer it is added to"):
        TransformersCallback(_monitor(tmp_path / "m"), None)


# -- Lightning --------------------------------------------------------------------------------


def _lightning_train(
    tmp: Path, *, monitor: Monitor | None, loggers: list[Any] | bool
) -> torch.nn.Module:
    import lightning.pytorch as L

    from grokviz.monitor import LightningCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lm = _model()

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Any:
            return self.lm(**batch).loss

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    L.seed_everything(0, verbose=False)
    module = Module()
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[LightningCallback(monitor)] if monitor is not None else [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=str(tmp),
    )
    data = torch.utils.data.DataLoader(_Batches(), batch_size=4, shuffle=True)
    trainer.fit(module, data)
    return module


def test_lightning_metrics_reach_its_loggers_and_weights_stay_the_same(
    offline_loggers: Path,
) -> None:
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    tmp = offline_loggers
    monitor = _monitor(tmp / "monitor")
    loggers = [
        TensorBoardLogger(str(tmp / "tb")),
        WandbLogger(project="grokviz-test", save_dir=str(tmp / "wandb-root"), offline=True),
        MLFlowLogger(experiment_name="grokviz-test", tracking_uri=(tmp / "mlruns").as_uri()),
    ]
    module = _lightning_train(tmp / "pl", monitor=monitor, loggers=loggers)
    import wandb

    wandb.finish()
    steps = _expected_steps()
    assert monitor.store.checkpoints()["step"].to_list() == steps
    key = "grokviz/probe/consistency"
    want = {s: monitor.live.observations[f"step-{s:06d}"].scalars()[key] for s in steps}
    assert tensorboard_scalars(tmp / "tb")[key] == pytest.approx(want)
    assert wandb_history(tmp / "wandb-root")[key] == want
    assert mlflow_metrics(tmp / "mlruns")[key] == want

    plain = _lightning_train(tmp / "pl-plain", monitor=None, loggers=False)
    a, b = module.state_dict(), plain.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- grokviz's toy trainer --------------------------------------------------------------------


def test_the_toy_trainer_takes_the_monitor_and_trains_the_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from grokviz.toy.arithmetic import PRESETS, train, with_overrides
    from grokviz.toy.arithmetic.tasks import make_tokenizer
    from grokviz.toy.arithmetic.train import config_samples

    config = with_overrides(PRESETS["tiny"], steps=8, checkpoints=(4, 8))
    samples, _ = config_samples(config)
    monitor = Monitor(
        samples.filter(pl.col("split") == "train"),
        tmp_path / "monitor",
        tokenizer=make_tokenizer(p=config.p, operations=config.operations),
        every=2,
        per_domain=6,
        criterion=OnlineCriterion(eps=5.0, window=2),
        on_error="raise",
    )
    monitored = train(config, tmp_path / "with", progress=False, on_step=monitor.observe)
    plain = train(config, tmp_path / "without", progress=False)
    for a, b in zip(monitored.checkpoints, plain.checkpoints, strict=True):
        left = load_file(a / "model.safetensors")
        right = load_file(b / "model.safetensors")
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
    assert monitor.store.checkpoints()["step"].to_list() == [0, 2, 4, 6, 8]
    assert set(monitor.metrics["group"]) >= {"probe", "probe:add", "probe:sub"}
