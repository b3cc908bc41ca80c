"""Leave a training run exactly as it was: what an observation could change, saved and restored.

An observation runs the probe set through the model being trained. The training run must not be
able to tell: training with the monitor has to give bit-identical weights to training without it
(same machine, same seed, same threads). :func:`untouched` saves, before the probe, everything a
forward pass in eval mode could change, and puts it back afterwards, also when the probe fails:

- the random number generators: torch's CPU generator and every initialised CUDA device's,
  Python's :mod:`random` and numpy's global generator. An eval-mode forward pass of the models
  grokviz supports draws nothing (dropout and router jitter are off), but a model with its own
  stochastic layers, a hook, or a future version could; restoring costs microseconds;
- every module's own ``training`` flag, one by one: ``model.train()`` afterwards would switch on
  modules the user had frozen in eval mode (a frozen embedding's dropout, a norm's statistics);
- every buffer and every tensor attribute of every module ("router statistics" such as expert
  load counters or balancing biases, rotary caches that a long probe sample makes a model
  recompute): each buffer object is put back, with its values if they changed;
- autograd's grad mode, torch's intra-op thread count and the deterministic-algorithms flag.

What it cannot restore it refuses up front: a model whose parameters are sharded across
processes (FSDP, DeepSpeed ZeRO-3) cannot run a forward pass on one rank alone.

Examples
--------
>>> import torch
>>> from grokviz.testing import tiny_moe
>>> model = tiny_moe().train()
>>> _ = model.model.embed_tokens.eval()  # a part the user froze
>>> before = torch.get_rng_state()
>>> with untouched(model):
...     _ = model.eval(), torch.rand(3)  # what a careless probe might do
>>> model.training, model.model.embed_tokens.training, torch.equal(torch.get_rng_state(), before)
(True, False, True)
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grokviz.errors import InputError

__all__ = ["check_observable", "untouched"]


@dataclass
class _Saved:
    """Everything :func:`untouched` puts back."""

    torch_rng: Any
    cuda_rng: list[Any] | None
    python_rng: Any
    numpy_rng: Any
    grad_enabled: bool
    threads: int
    deterministic: tuple[bool, bool]
    training: list[tuple[Any, bool]]
    buffers: list[tuple[Any, str, Any, Any]]  # (module, name, the tensor object, a copy)
    attributes: list[tuple[Any, str, Any, Any]]


def _cuda_states() -> list[Any] | None:
    import torch

    # Querying an uninitialised CUDA context would initialise it (and take GPU memory).
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(torch.cuda.get_rng_state_all())
    return None


def _tensor_attributes(module: Any) -> list[tuple[str, Any]]:
    """Tensors a module keeps as plain attributes (neither parameters nor buffers)."""
    import torch

    return [
        (name, value)
        for name, value in vars(module).items()
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)
    ]


def _save(model: Any) -> _Saved:
    import numpy as np
    import torch

    buffers = []
    attributes = []
    with torch.no_grad():
        for module in model.modules():
            for name, buf in module._buffers.items():
                if buf is not None:
                    buffers.append((module, name, buf, buf.detach().clone()))
            for name, value in _tensor_attributes(module):
                attributes.append((module, name, value, value.detach().clone()))
    return _Saved(
        torch_rng=torch.get_rng_state(),
        cuda_rng=_cuda_states(),
        python_rng=random.getstate(),
        numpy_rng=np.random.get_state(),
        grad_enabled=torch.is_grad_enabled(),
        threads=torch.get_num_threads(),
        deterministic=(
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        training=[(m, m.training) for m in model.modules()],
        buffers=buffers,
        attributes=attributes,
    )


def _same(a: Any, b: Any) -> bool:
    import torch

    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def _restore(saved: _Saved) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(saved.torch_rng)
    if saved.cuda_rng is not None:
        torch.cuda.set_rng_state_all(saved.cuda_rng)
    random.setstate(saved.python_rng)
    np.random.set_state(saved.numpy_rng)
    torch.set_grad_enabled(saved.grad_enabled)
    if torch.get_num_threads() != saved.threads:
        torch.set_num_threads(saved.threads)
    torch.use_deterministic_algorithms(saved.deterministic[0], warn_only=saved.deterministic[1])
    for module, flag in saved.training:
        module.training = flag  # each module's own flag: model.train() would set them all
    with torch.no_grad():
        for module, name, tensor, copy in saved.buffers:
            if module._buffers.get(name) is not tensor:
                module._buffers[name] = tensor
            if not _same(tensor, copy):
                tensor.copy_(copy)
        for module, name, tensor, copy in saved.attributes:
            if vars(module).get(name) is not tensor:
                setattr(module, name, tensor)
            if not _same(tensor, copy):
                tensor.copy_(copy)


@contextlib.contextmanager
def untouched(model: Any) -> Iterator[None]:
    """Run the block, then put back everything of ``model`` and of torch it could have changed.

    See the module docstring for the list. The model's parameters are not copied: the probe
    never writes them (it runs under ``torch.inference_mode``).
    """
    saved = _save(model)
    try:
        yield
    finally:
        _restore(saved)


def check_observable(model: Any) -> None:
    """Refuse models whose forward pass cannot run on one process alone.

    Raises
    ------
    InputError
        The model's parameters are sharded across processes (FSDP or DeepSpeed ZeRO-3).
    """
    sharded = type(model).__name__ in {"FullyShardedDataParallel", "FSDPModule"} or any(
        hasattr(p, "ds_id") or type(p).__name__ == "DTensor" for p in model.parameters()
    )
    if sharded:
        msg = (
            f"the monitor cannot observe this {type(model).__name__}: its parameters are sharded "
            "across processes (FSDP / DeepSpeed ZeRO-3), so one rank cannot run the probe alone. "
            "Monitor the checkpoints it saves instead: grokviz watch CHECKPOINT_DIR --samples S "
            "--out STORE"
        )
        raise InputError(msg)
