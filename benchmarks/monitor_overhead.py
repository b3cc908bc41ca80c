"""What does the training monitor cost a training run, in time and in memory?

Baseline: the same training run without the monitor, in the same run of this script. Two
trainers, each at the monitor's defaults (``every=200`` optimizer steps, 32 probe samples per
domain, batch 32):

- ``toy``: grokviz's own toy trainer (``grokviz.toy.arithmetic``, the shipped config run for
  ``--toy-steps`` steps, with its evaluations and checkpoint saves, on ``--threads`` threads),
  ``on_step=monitor.observe``;
- ``trainer``: a small OLMoE (hidden 64, 2 layers x 4 experts, top-2) under the transformers
  ``Trainer`` on random 64-token sequences, batch 8, with a
  :class:`~grokviz.monitor.TransformersCallback`; its probe is 4 domains x 32 short texts.

Every run is a fresh subprocess (so peak memory is the run's own), and the rounds interleave the
two variants in ABBA order, so a loaded machine slows both alike. Printed per trainer:

- ``ratio``: median over rounds of (time with) / (time without) of the same round: the figure
  the target (at most 1.03x) is about;
- ``median step``: the median wall time between two steps, with over without; the few
  observation steps and the machine's worst spells drop out of a median, so this says whether
  the steps themselves got slower;
- ``monitor share``: the time spent inside ``Monitor.observe`` over the baseline's training
  time, which noise elsewhere in the run cannot inflate; ``steady state``: the same for one
  observation (the median one, the first pays for the store's creation) per ``every`` steps,
  i.e. what a long run pays;
- peak resident memory of the process with and without, and their difference (what the
  monitor adds: its imports, the probe's forward pass, the live metrics).

A run of ``N`` steps observes at steps 0, 200, ..., so a short run observes more often per
step than a long one; the steady-state figure corrects for that. Run::

    nice -n 10 python benchmarks/monitor_overhead.py              # ~10 min on a loaded 2-core CPU
    python benchmarks/monitor_overhead.py --which trainer --rounds 4 --trainer-steps 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 1.03


def _toy(steps: int, monitored: bool, folder: Path, threads: int) -> dict[str, Any]:
    import polars as pl

    from grokviz.monitor import Monitor
    from grokviz.toy.arithmetic import PRESETS, train, with_overrides, with_steps
    from grokviz.toy.arithmetic.tasks import make_tokenizer
    from grokviz.toy.arithmetic.train import config_samples

    config = with_overrides(with_steps(PRESETS["default"], steps), threads=threads)
    monitor = None
    if monitored:
        samples, _ = config_samples(config)
        monitor = Monitor(
            samples.filter(pl.col("split") == "train"),
            folder / "monitor",
            tokenizer=make_tokenizer(p=config.p, operations=config.operations),
        )
    clock = _Clock()

    def on_step(model: Any, step: int) -> None:
        if monitor is not None:
            monitor.observe(model, step)
        clock.tick()

    start = time.perf_counter()
    train(config, folder / "run", progress=False, on_step=on_step)
    return _result(time.perf_counter() - start, monitor, clock)


class _Random:
    """Random 64-token sequences: a language-model batch of the right shape."""

    def __init__(self, n: int, vocab: int) -> None:
        import torch

        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(4, vocab, (n, 64), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(steps: int, monitored: bool, folder: Path, threads: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from grokviz.monitor import Monitor, TransformersCallback
    from grokviz.testing import char_tokenizer, tiny_config, tiny_samples

    torch.set_num_threads(threads)
    tokenizer = char_tokenizer()
    config = tiny_config(
        "olmoe",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
        vocab_size=len(tokenizer),
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).train()
    args = TrainingArguments(
        output_dir=str(folder / "run"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        save_strategy="no",
        report_to=[],
        logging_steps=10**9,
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    clock = _Clock()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_Random(8 * steps, len(tokenizer)),
        callbacks=[clock.callback()],
    )
    monitor = None
    if monitored:
        monitor = Monitor(
            tiny_samples(256, domains=("a", "b", "c", "d")), folder / "monitor", tokenizer=tokenizer
        )
        trainer.add_callback(TransformersCallback(monitor, trainer))
    start = time.perf_counter()
    trainer.train()
    return _result(time.perf_counter() - start, monitor, clock)


class _Clock:
    """Wall time between consecutive steps; its median leaves out the few observation steps
    and the machine's worst spells, so it shows whether the steps themselves got slower."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def tick(self) -> None:
        self.times.append(time.perf_counter())

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class Tick(TrainerCallback):  # added first, so it ticks before the monitor observes
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.tick()

        return Tick()

    def median_ms(self) -> float:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return 1000 * statistics.median(gaps) if gaps else float("nan")


def _result(seconds: float, monitor: Any, clock: _Clock) -> dict[str, Any]:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "seconds": seconds,
        "step_ms": clock.median_ms(),
        "peak_mib": peak_kib / 1024,
        "observe_s": list(monitor.seconds) if monitor is not None else [],
        "probe": monitor.probe.height if monitor is not None else 0,
        "every": monitor.every if monitor is not None else None,
    }


def _child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="grokviz-monitor-bench-") as tmp:
        if args.child == "toy":
            result = _toy(args.toy_steps, args.monitored, Path(tmp), args.threads)
        else:
            result = _trainer(args.trainer_steps, args.monitored, Path(tmp), args.threads)
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(which: str, monitored: bool, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        which,
        "--toy-steps",
        str(args.toy_steps),
        "--trainer-steps",
        str(args.trainer_steps),
        "--threads",
        str(args.threads),
    ]
    if monitored:
        command.append("--monitored")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{which} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _report(which: str, steps: int, runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    base = [a["seconds"] for a, _ in runs]
    with_ = [b["seconds"] for _, b in runs]
    ratios = [b / a for a, b in zip(base, with_, strict=True)]
    observe = [sum(b["observe_s"]) for _, b in runs]
    share = [o / a for o, a in zip(observe, base, strict=True)]
    per_obs = statistics.median(s for _, b in runs for s in b["observe_s"][1:] or b["observe_s"])
    every, probe = runs[0][1]["every"], runs[0][1]["probe"]
    per_step = statistics.median(base) / steps
    steady = 1 + per_obs / (every * per_step)
    step_ratio = [b["step_ms"] / a["step_ms"] for a, b in runs]
    peak_a = statistics.median(a["peak_mib"] for a, _ in runs)
    peak_b = statistics.median(b["peak_mib"] for _, b in runs)
    n_obs = len(runs[0][1]["observe_s"])
    print(f"\n== {which}: {steps} steps, {n_obs} observations (every {every}, probe {probe})")
    print(f"  without (baseline): {statistics.median(base):8.2f} s   rounds {_fmt(base)}")
    print(f"  with the monitor:   {statistics.median(with_):8.2f} s   rounds {_fmt(with_)}")
    spread = max(ratios) - min(ratios)
    if len(ratios) > 1 and spread > 2 * (TARGET - 1):
        # rounds that disagree by more than the target's margin cannot confirm or refute it
        verdict = f"rounds differ by {spread:.2f}: too noisy to test the {TARGET}x target"
    else:
        verdict = ("meets" if statistics.median(ratios) <= TARGET else "MISSES") + (
            f" the {TARGET}x target"
        )
    print(
        f"  ratio with/without: {statistics.median(ratios):.3f}x (median of rounds "
        f"{', '.join(f'{r:.3f}' for r in ratios)}; {verdict})"
    )
    print(
        f"  monitor share:      {statistics.median(share):.3f} of the baseline time "
        f"({statistics.median(observe):.2f} s in observe); one observation {per_obs:.2f} s, "
        f"a step {1000 * per_step:.1f} ms: steady state {steady:.4f}x"
    )
    print(
        f"  median step:        {statistics.median(b['step_ms'] for _, b in runs):.1f} ms with, "
        f"{statistics.median(a['step_ms'] for a, _ in runs):.1f} ms without: "
        f"{statistics.median(step_ratio):.3f}x (rounds {', '.join(f'{r:.3f}' for r in step_ratio)})"
    )
    print(
        f"  peak memory:        {peak_b:.0f} MiB with, {peak_a:.0f} MiB without: "
        f"+{peak_b - peak_a:.0f} MiB"
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", default="toy,trainer", help="toy, trainer or both")
    parser.add_argument("--rounds", type=int, default=2, help="with/without pairs per trainer")
    parser.add_argument("--toy-steps", type=int, default=400)
    parser.add_argument("--trainer-steps", type=int, default=400)
    # One thread: on a machine busier than its cores, two OpenMP threads spin against each other
    # and a step can take 100x longer, which would measure the machine, not the monitor.
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--child", choices=("toy", "trainer"), help=argparse.SUPPRESS)
    parser.add_argument("--monitored", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    for which in [w.strip() for w in args.which.split(",") if w.strip()]:
        steps = args.toy_steps if which == "toy" else args.trainer_steps
        runs = []
        for r in range(args.rounds):
            # ABBA: the order alternates, so a slow spell of the machine hits both variants
            order = (False, True) if r % 2 == 0 else (True, False)
            got = {m: _spawn(which, m, args) for m in order}
            runs.append((got[False], got[True]))
            print(
                f"{which} round {r + 1}: without {got[False]['seconds']:.2f} s, with "
                f"{got[True]['seconds']:.2f} s",
                flush=True,
            )
        _report(which, steps, runs)


if __name__ == "__main__":
    main()
