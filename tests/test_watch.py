"""``grokviz watch``: which folders are checkpoints, when one is completely written, tracing and
resuming, and two real processes: a transformers Trainer writing checkpoints while ``grokviz
watch`` follows them.

The two-process test never sleeps for luck: the trainer waits, after saving each checkpoint,
until the watcher has traced it (so the watcher provably picks checkpoints up while training
runs), and the test waits for states (lines printed, files written) with generous time limits.
A live view in the test's process follows the store meanwhile, as a notebook would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import grokviz
from grokviz.errors import InputError, StoreMismatchError
from grokviz.monitor import LiveView, Watcher
from grokviz.monitor._watch import compile_pattern, folder_complete
from grokviz.testing import char_tokenizer, tiny_moe, tiny_samples

ROOT = Path(__file__).resolve().parents[1]


def _save(folder: Path, *, seed: int = 0, **kwargs: object) -> Path:
    tiny_moe(seed=seed).save_pretrained(folder, **kwargs)
    char_tokenizer().save_pretrained(folder)
    return folder


def _samples() -> pl.DataFrame:
    return tiny_samples(8, domains=("a", "b"))


# -- which folders, and when they are whole -------------------------------------------------------


def test_patterns_find_the_step_in_folder_names() -> None:
    default = compile_pattern(None)
    for name, step in [("checkpoint-500", "500"), ("step-000200", "000200"), ("global_step7", "7")]:
        match = default.fullmatch(name)
        assert match is not None and match["step"] == step
    assert default.fullmatch("checkpoint-500.tmp") is None
    assert compile_pattern("epoch1-it{step}").fullmatch("epoch1-it40")["step"] == "40"
    assert compile_pattern(r"save_(\d+)").fullmatch("save_9")["step"] == "9"
    with pytest.raises(InputError, match="must say where the step number is"):
        compile_pattern(r"(a)_(\d+)")
    with pytest.raises(InputError, match="not a regular expression"):
        compile_pattern("ckpt_(")


def test_a_folder_is_whole_only_with_config_and_every_weight_byte(tmp_path: Path) -> None:
    whole = _save(tmp_path / "whole")
    assert folder_complete(whole)

    no_config = Path(shutil.copytree(whole, tmp_path / "no-config"))
    (no_config / "config.json").unlink()
    assert not folder_complete(no_config)

    short = Path(shutil.copytree(whole, tmp_path / "short"))
    weights = short / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # still being written
    assert not folder_complete(short)

    sharded = _save(tmp_path / "sharded", max_shard_size="60KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and folder_complete(sharded)
    (sharded / shards[-1]).unlink()  # the last shard not written yet
    assert not folder_complete(sharded)

    temp = Path(shutil.copytree(whole, tmp_path / "temp"))
    (temp / "optimizer.pt.tmp").write_bytes(b"half")
    assert not folder_complete(temp)


def test_a_checkpoint_is_ready_after_it_settles_or_at_once_with_trainer_state(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _save(run / "step-000002")
    watcher = Watcher(run, _samples(), tmp_path / "store", settle=0)
    assert watcher.ready() == []  # first look only starts its settle time
    assert [c.label for c in watcher.ready()] == ["step-000002"]
    # a Trainer checkpoint is whole as soon as trainer_state.json is there
    trainer = _save(run / "checkpoint-4")
    (trainer / "trainer_state.json").write_text("{}")
    assert [(c.label, c.step) for c in watcher.ready()] == [
        ("step-000002", 2),
        ("checkpoint-4", 4),
    ]
    # a folder that changes starts over
    slow = Watcher(run, _samples(), tmp_path / "store", settle=3600)
    assert [c.label for c in slow.ready()] == ["checkpoint-4"]
    assert [c.label for c in slow.ready()] == ["checkpoint-4"]  # step-2 waits an hour


def test_poll_traces_new_checkpoints_once_and_a_new_watcher_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (2, 4):
        _save(run / f"step-{step:06d}", seed=step)
    store = tmp_path / "store"
    watcher = Watcher(run, _samples(), store, settle=0)
    assert watcher.poll() == []
    assert [o.step for o in watcher.poll()] == [2, 4]
    assert watcher.poll() == []
    _save(run / "step-000006", seed=6)
    watcher.ready()
    assert [o.step for o in watcher.poll()] == [6]
    traced = grokviz.TraceStore.open(store)
    assert traced.checkpoints()["checkpoint"].to_list() == [
        "step-000002",
        "step-000004",
        "step-000006",
    ]
    assert traced.verify().ok
    manifest = (store / "manifest.json").read_bytes()
    again = Watcher(run, _samples(), store, settle=0)
    assert again.poll() == [] and again.poll() == []  # nothing to trace
    assert (store / "manifest.json").read_bytes() == manifest
    assert [o.step for o in again.live.update()] == []
    assert sorted(o.step for o in again.live.observations.values()) == [2, 4, 6]
    # the same name with other weights (a new run into the same folder) is refused
    shutil.rmtree(run / "step-000004")
    _save(run / "step-000004", seed=99)
    with pytest.raises(StoreMismatchError, match="not the one trace store"):
        Watcher(run, _samples(), store, settle=0).poll()


def test_a_checkpoint_removed_before_it_is_traced_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    gone = _save(run / "step-000002")
    (gone / "trainer_state.json").write_text("{}")
    watcher = Watcher(run, _samples(), tmp_path / "store", settle=0)
    import grokviz.tracing

    real = grokviz.tracing.trace

    def rotate_then_trace(checkpoint: object, *args: object, **kwargs: object) -> object:
        shutil.rmtree(gone)  # the Trainer's save_total_limit deleting it just now
        return real(checkpoint, *args, **kwargs)

    monkeypatch.setattr(grokviz, "trace", rotate_then_trace)
    with pytest.warns(UserWarning, match="removed before it could be traced"):
        assert watcher.poll() == []


# -- two processes ----------------------------------------------------------------------------------

_TRAINER = """
import json, sys, time
from pathlib import Path
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from grokviz.testing import char_tokenizer, tiny_moe

out, store = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)

class Data(torch.utils.data.Dataset):
    def __init__(self):
        self.ids = torch.randint(4, 100, (32, 12), generator=torch.Generator().manual_seed(0))
    def __len__(self):
        return len(self.ids)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}

class WaitForTheWatcher(TrainerCallback):
    # After each save, wait until the watcher has traced that checkpoint: training can then not
    # finish before the watcher picked its checkpoints up, whatever the machine's load.
    def on_save(self, args, state, control, **kwargs):
        label = f"checkpoint-{state.global_step}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                entry = json.loads((store / "manifest.json").read_text())["checkpoints"].get(label)
            except (OSError, ValueError):
                entry = None
            if entry and entry["parts"] and entry["routers"]:
                print(f"trainer: the watcher traced {label}", flush=True)
                return
            time.sleep(0.05)
        sys.exit(f"trainer: the watcher did not trace {label} within 300 s")

args = TrainingArguments(output_dir=str(out), max_steps=6, save_steps=2, save_only_model=True,
                         per_device_train_batch_size=4, learning_rate=1e-2, report_to=[],
                         use_cpu=True, disable_tqdm=True, logging_steps=100, seed=0)
trainer = Trainer(model=tiny_moe().train(), args=args, train_dataset=Data(),
                  processing_class=char_tokenizer(), callbacks=[WaitForTheWatcher()])
trainer.train()
print("trainer: done", flush=True)
"""


class _Lines:
    """The lines a process prints, collected by a thread, waited for by content."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, ok: Callable[[list[str]], bool], *, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: ok(self.lines), timeout=timeout):
                pytest.fail(f"gave up waiting for {what}; got {self.lines[-20:]}")


def _grokviz(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokviz", *args]


def test_watch_follows_checkpoints_a_separate_trainer_process_writes(tmp_path: Path) -> None:
    run, store = tmp_path / "run", tmp_path / "store"
    samples = tmp_path / "samples.parquet"
    _samples().write_parquet(samples)
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(_TRAINER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = _grokviz(
        "watch", str(run), "--samples", str(samples), "--out", str(store),
        "--interval", "0.2", "--settle", "0.5", "--metrics-out", str(tmp_path / "live.csv"),
    )  # fmt: skip
    watch = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # a live view in this process follows the store the watcher writes
    view = LiveView(store, diagram=True).follow(interval=0.2)
    seen: list[tuple[int, list[int], list[str]]] = []
    view.live.subscribe(
        lambda o: seen.append(
            (id(view.timeline), view.timeline.steps, list(view.diagram.checkpoints))
        )
    )
    try:
        watched = _Lines(watch)
        watched.wait_for(lambda ls: any("watching" in x for x in ls), timeout=300, what="start")
        trainer = subprocess.run(
            [sys.executable, str(script), str(run), str(store)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert trainer.returncode == 0, trainer.stdout + trainer.stderr
        traced = [line for line in trainer.stdout.splitlines() if "the watcher traced" in line]
        assert traced == [f"trainer: the watcher traced checkpoint-{s}" for s in (2, 4, 6)]
        watched.wait_for(
            lambda ls: any(x.startswith("checkpoint-6 (step 6):") for x in ls),
            timeout=300,
            what="the last observation",
        )
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=120) == 130
        deadline = time.monotonic() + 120
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        view.stop()
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    # the same Timeline and diagram grew by one checkpoint per observation
    labels = ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert [(steps, names) for _, steps, names in seen] == [
        ([2], labels[:1]),
        ([2, 4], labels[:2]),
        ([2, 4, 6], labels),
    ]
    assert len({ident for ident, _, _ in seen}) == 1
    watched.wait_for(lambda ls: any("run the same command again" in x for x in ls), timeout=30,
                     what="the resume hint")  # fmt: skip
    observed = [x.split(" ")[0] for x in watched.lines if x.startswith("checkpoint-")]
    assert observed == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    live = pl.read_csv(tmp_path / "live.csv")
    assert sorted(set(live["step"])) == [2, 4, 6]

    # resumed: nothing left to trace, the store is untouched and whole
    manifest = (store / "manifest.json").read_bytes()
    again = subprocess.run(
        [*command, "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [x for x in again.stdout.splitlines() if x.startswith("checkpoint-")]
    assert (store / "manifest.json").read_bytes() == manifest
    checked = subprocess.run(
        _grokviz("verify", str(store)), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ckpts = grokviz.TraceStore.open(store).checkpoints()
    assert ckpts["checkpoint"].to_list() == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert ckpts["step"].to_list() == [2, 4, 6]


def test_watch_reports_bad_arguments_in_one_line(tmp_path: Path) -> None:
    samples = tmp_path / "samples.parquet"
    _samples().write_parquet(samples)
    result = subprocess.run(
        _grokviz("watch", str(tmp_path / "run"), "--samples", str(samples), "--out",
                 str(tmp_path / "s"), "--pattern", "(a)(b)", "--once"),
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "must say where the step number is" in lines[0]
