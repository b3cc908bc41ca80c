"""What a trace checks before it writes or computes anything: the device, the checkpoints, their
identities and whether they form one series.

A series is a run's checkpoints: they must agree on MoE layers, experts, top-k and vocabulary, or
their pathways are not comparable. :func:`series_record` reads that shape from a checkpoint's
config alone, by building the model on PyTorch's ``meta`` device (no weights are read, no memory
is used), so a mismatch is reported before hours of tracing, naming both checkpoints.

Examples
--------
>>> from grokviz.testing import tiny_moe
>>> model_record(tiny_moe())["num_experts"]
8
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from grokviz.errors import (
    DeviceError,
    EmptyInputError,
    GrokvizError,
    InputError,
)
from grokviz.tracing._checkpoints import Checkpoint, as_checkpoint, list_checkpoints, load_failure


def resolve_device(device: Any) -> Any:
    """The torch device to trace on: ``device`` checked, or CUDA when available, else the CPU.

    Raises
    ------
    DeviceError
        ``device`` names an accelerator this machine's torch cannot use.
    InputError
        ``device`` is not a device name.

    Examples
    --------
    >>> str(resolve_device("cpu"))
    'cpu'
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        msg = f"unknown device {device!r}: {exc}; use e.g. 'cpu', 'cuda' or 'cuda:1'"
        raise InputError(msg) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            msg = (
                f"device {str(device)!r} was asked for, but this torch ({torch.__version__}) sees "
                "no CUDA GPU; install a CUDA build of torch on a GPU machine, or pass --device cpu"
            )
            raise DeviceError(msg)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            msg = (
                f"device {str(device)!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA GPU(s) are visible"
            )
            raise DeviceError(msg)
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        msg = f"device {str(device)!r} was asked for, but MPS is not available here; pass --device cpu"
        raise DeviceError(msg)
    return resolved


def is_checkpoint_like(obj: Any) -> bool:
    """Whether ``obj`` names checkpoints (a path, a hub id or a :class:`Checkpoint`) rather than
    being a loaded model."""
    return isinstance(obj, (str, os.PathLike, Checkpoint))


def resolve_checkpoints(checkpoints: Any) -> list[Checkpoint]:
    """Expand ``checkpoints`` (one or a list of folders, run folders, hub ids, ``repo@revision``
    or :class:`Checkpoint`) into a list with unique labels, in the order given."""
    items = [checkpoints] if is_checkpoint_like(checkpoints) else list(checkpoints)
    resolved: list[Checkpoint] = []
    for item in items:
        if isinstance(item, Checkpoint):
            resolved.append(item)
        elif "@" in os.fspath(item) and not Path(os.fspath(item)).exists():
            resolved.append(as_checkpoint(item))
        else:
            resolved += list_checkpoints(item)
    if not resolved:
        msg = f"no checkpoints to trace in {checkpoints!r}"
        raise EmptyInputError(msg)
    labels = [c.label for c in resolved]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        msg = f"several checkpoints share the label(s) {dupes}; labels must be unique in a store"
        raise InputError(msg)
    return resolved


def one_checkpoint(source: Any) -> Checkpoint:
    """The single checkpoint ``source`` names (for :func:`grokviz.iter_trace`)."""
    if isinstance(source, Checkpoint):
        return source
    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        return as_checkpoint(source)
    found = list_checkpoints(path)
    if len(found) != 1:
        labels = [c.label for c in found]
        msg = (
            f"{str(source)!r} holds {len(found)} checkpoints {labels[:5]}; iter_trace traces "
            "one: pass one of them, or use grokviz.trace for a series"
        )
        raise InputError(msg)
    return found[0]


def identity(checkpoint: Checkpoint) -> dict[str, Any]:
    """What the store records about ``checkpoint``: label, step, tokens, source, revision, sha."""
    return {
        "label": checkpoint.label,
        "step": checkpoint.step,
        "tokens": checkpoint.tokens,
        **checkpoint.identity(),
    }


def model_record(model: Any) -> dict[str, Any]:
    """The MoE shape of a loaded (or meta-device) model, as the store records it."""
    from grokviz.tracing._routing import moe_info

    info = moe_info(model)
    embeddings = model.get_input_embeddings()
    vocab = getattr(getattr(embeddings, "weight", None), "shape", (None,))[0]
    return {
        "model_type": info.model_type,
        "num_layers": info.num_layers,
        "num_experts": info.num_experts,
        "top_k": info.top_k,
        "hidden_size": info.hidden_size,
        "moe_layers": list(info.moe_layers),
        "vocab_size": None if vocab is None else int(vocab),
    }


def series_record(checkpoint: Checkpoint, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """The MoE shape of ``checkpoint``, from its config alone (a model on the ``meta`` device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    location = os.fspath(Path(checkpoint.source).expanduser())
    if not checkpoint.is_local:
        location, kwargs["revision"] = checkpoint.source, checkpoint.sha or checkpoint.revision
    try:
        config = AutoConfig.from_pretrained(location, **kwargs)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except GrokvizError:
        raise
    except Exception as exc:
        what = f"read the config of checkpoint {checkpoint.label!r} ({location})"
        raise load_failure(exc, what) from exc
    return model_record(model)


def weights_hash(model: Any) -> str:
    """A SHA-256 over a loaded model's parameters and buffers (names, dtypes, shapes, bytes): the
    identity of weights that have no files, such as a model being trained.

    Examples
    --------
    >>> from grokviz.testing import tiny_moe
    >>> weights_hash(tiny_moe(seed=0)) == weights_hash(tiny_moe(seed=0)) != weights_hash(tiny_moe(seed=1))
    True
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            data = tensor.detach().contiguous().cpu()
            digest.update(f"{name}\0{data.dtype}\0{tuple(data.shape)}\n".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def check_select(select: Iterable[str], sample_ids: Sequence[str]) -> list[str]:
    """``select`` as a sorted list, checked against the samples' ids."""
    chosen = sorted(set(select))
    known = set(sample_ids)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        msg = (
            f"{len(unknown)} selected sample id(s) are not in the samples table: {unknown[:5]}; "
            "select ids from its sample_id column"
        )
        raise InputError(msg)
    return chosen


def check_trace_args(*, batch_size: int, max_length: int, on_nonfinite: str) -> None:
    """Refuse arguments no trace can run with, before anything is loaded or written."""
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise InputError(msg)
    if max_length < 2:
        msg = f"max_length must be at least 2 tokens (one to predict from, one to predict), got {max_length}"
        raise InputError(msg)
    if on_nonfinite not in ("warn", "error"):
        msg = f"on_nonfinite must be 'warn' or 'error', got {on_nonfinite!r}"
        raise InputError(msg)


def device_error(exc: BaseException, checkpoint: Checkpoint, longest: int) -> DeviceError:
    """An accelerator failure while tracing ``checkpoint`` as a :class:`DeviceError`."""
    text = " ".join(str(exc).split())
    if "out of memory" in text.lower():
        msg = (
            f"out of memory tracing checkpoint {checkpoint.label!r}, even one sample of "
            f"{longest} tokens at a time; pass a smaller max_length (--max-length), a smaller "
            "dtype (--dtype bfloat16), or use a device with more memory"
        )
    else:
        msg = f"the device failed while tracing checkpoint {checkpoint.label!r}: {text}"
    return DeviceError(msg)
