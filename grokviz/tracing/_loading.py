"""Load a checkpoint's model and tokenizer safely: safetensors only, no remote code unless asked.

:func:`load_model` checks a checkpoint's weight files before transformers sees them: a folder or hub revision with only
pickle weights (``*.bin``, ``*.pt``, ``*.pth``), which can run arbitrary code when loaded, needs
``allow_pickle=True``. The model must be an MoE that grokviz can route; the tokenizer is the
checkpoint's own or, for a local checkpoint, its run folder's.

Finding checkpoints and their identities is :mod:`grokviz.tracing._checkpoints`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokviz.errors import (
    CheckpointNotFoundError,
    GrokvizError,
    InputError,
    UnsafeCheckpointError,
)
from grokviz.tracing._checkpoints import (
    Checkpoint,
    _hub_commit,
    _hub_refs,
    _weight_files,
    as_checkpoint,
    hub_error,
    load_failure,
)

if TYPE_CHECKING:
    import torch

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


def _check_local_weights(folder: Path, *, allow_pickle: bool) -> bool:
    """Validate a local folder; return whether to load safetensors."""
    if not (folder / "config.json").is_file():
        msg = f"{str(folder)!r} is not a checkpoint folder: it has no config.json"
        raise CheckpointNotFoundError(msg)
    names = [p.name for p in _weight_files(folder)]
    if any(n.endswith(".safetensors") for n in names):
        return True
    if not any(n.endswith(_PICKLE_SUFFIXES) for n in names):
        msg = f"checkpoint folder {str(folder)!r} has no weight files (*.safetensors)"
        raise CheckpointNotFoundError(msg)
    if not allow_pickle:
        msg = (
            f"checkpoint folder {str(folder)!r} holds only pickle weights ({', '.join(names)}), "
            "which can run arbitrary code when loaded. If you trust them, pass allow_pickle=True "
            "(or convert them to safetensors)"
        )
        raise UnsafeCheckpointError(msg)
    return False


def _check_hub_weights(checkpoint: Checkpoint, *, allow_pickle: bool) -> bool:
    """Validate a hub revision; return whether to load safetensors (True when offline)."""
    import huggingface_hub
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = checkpoint.source, checkpoint.sha or checkpoint.revision
    try:
        names = huggingface_hub.list_repo_files(repo, revision=revision)
    except RevisionNotFoundError as exc:
        _hub_commit(repo, str(checkpoint.revision))  # raises, listing what is available
        raise CheckpointNotFoundError(str(exc)) from exc
    except RepositoryNotFoundError:
        _hub_refs(repo)  # raises CheckpointNotFoundError with advice
        raise
    except HfHubHTTPError as exc:
        raise hub_error(exc, f"list the files of {repo}@{checkpoint.revision}") from exc
    except OSError:
        # offline (HF_HUB_OFFLINE or no network): transformers loads from its cache, and only
        # safetensors, so nothing unsafe can slip through unchecked
        return True
    if any(n.endswith(".safetensors") for n in names):
        return True
    if not allow_pickle:
        msg = (
            f"{repo}@{checkpoint.revision} holds no safetensors weights, only pickle files, "
            "which can run arbitrary code when loaded. If you trust them, pass allow_pickle=True"
        )
        raise UnsafeCheckpointError(msg)
    return False


def _resolve_dtype(dtype: torch.dtype | str | None) -> Any:
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        msg = f"unknown dtype {dtype!r}; use e.g. 'bfloat16', 'float16', 'float32' or 'auto'"
        raise InputError(msg)
    return resolved


def load_model(
    checkpoint: Checkpoint | str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load a checkpoint's causal MoE language model (in eval mode) and its tokenizer.

    Parameters
    ----------
    checkpoint
        A :class:`Checkpoint`, a local folder, or a hub id ``"owner/name"`` or
        ``"owner/name@revision"`` (default revision ``main``).
    device
        Where to put the model. Off the CPU, with ``accelerate`` installed, the weights load
        straight onto the device (``device_map``), which for a 7B checkpoint saves a CPU copy
        of the whole model; without it they load on the CPU and then move.
    dtype
        Weights dtype (``torch.bfloat16``, ``"bfloat16"``, ``"auto"``); ``None`` keeps
        transformers' default.
    allow_pickle
        Allow pickle weights (``pytorch_model.bin``) when no safetensors exist. Pickle can run
        arbitrary code: only for checkpoints you trust.
    trust_remote_code
        Passed to transformers; runs the repository's own Python code.

    Returns
    -------
    tuple
        ``(model, tokenizer)``. A local checkpoint without tokenizer files uses the tokenizer of
        its parent folder (the run), when that has one.

    Raises
    ------
    CheckpointNotFoundError
        Missing folder, weights, tokenizer, or unknown hub revision (the message lists some
        that exist).
    UnsafeCheckpointError
        Only pickle weights and ``allow_pickle=False``.
    NotMoEError
        The model is dense or of an architecture grokviz cannot route (see
        ``grokviz.tracing._routing.SUPPORTED_ARCHITECTURES``).

    Examples
    --------
    >>> model, tokenizer = load_model("data/samples/toy/checkpoints/step-000050")
    >>> model.config.model_type, model.training
    ('olmoe', False)
    >>> model, tokenizer = load_model("allenai/OLMoE-1B-7B-0924@step5000-tokens20B",
    ...                               device="cuda", dtype="bfloat16")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grokviz.tracing._routing import moe_info

    ckpt = as_checkpoint(checkpoint)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if ckpt.is_local:
        folder = Path(ckpt.source).expanduser()
        if not folder.is_dir():
            msg = f"checkpoint folder {ckpt.source!r} does not exist; check the path"
            raise CheckpointNotFoundError(msg)
        safetensors = _check_local_weights(folder, allow_pickle=allow_pickle)
        location = str(folder)
    else:
        safetensors = _check_hub_weights(ckpt, allow_pickle=allow_pickle)
        location = ckpt.source
        kwargs["revision"] = ckpt.sha or ckpt.revision
    resolved_dtype = _resolve_dtype(dtype)
    model_kwargs = dict(kwargs, use_safetensors=safetensors)
    if resolved_dtype is not None:
        model_kwargs["dtype"] = resolved_dtype
    if _direct_to_device(device):
        model_kwargs["device_map"] = str(device)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(location, **model_kwargs)
        model = model.to(device).eval()
    except GrokvizError:
        raise
    except Exception as exc:
        raise load_error(exc, ckpt, location) from exc
    moe_info(model)  # a dense model fails here, naming the architectures grokviz supports
    tokenizer = _load_tokenizer(AutoTokenizer, ckpt, location, kwargs)
    return model, tokenizer


def load_error(exc: BaseException, ckpt: Checkpoint, location: str) -> BaseException:
    """A failure to load ``ckpt``'s model as a grokviz error that says what to do."""
    from grokviz.errors import DeviceError

    text = " ".join(str(exc).split())
    if "CUDA" in text or "out of memory" in text.lower():
        msg = f"cannot put checkpoint {ckpt.label!r} on the device: {text}"
        return DeviceError(msg)
    return load_failure(
        exc,
        f"load the model of checkpoint {ckpt.label!r} from {location!r}",
        advice="Its files may be incomplete or damaged (save or download them again), or "
        "need another version of transformers.",
    )


def _direct_to_device(device: str | torch.device) -> bool:
    """Whether transformers can put the weights on ``device`` as it reads them: a device other
    than the CPU, and ``accelerate`` (which transformers needs for ``device_map``) installed.

    Examples
    --------
    >>> _direct_to_device("cpu")
    False
    """
    import importlib.util

    if str(device).split(":")[0] == "cpu":
        return False
    return importlib.util.find_spec("accelerate") is not None


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _load_tokenizer(auto: Any, ckpt: Checkpoint, location: str, kwargs: dict[str, Any]) -> Any:
    if ckpt.is_local:
        # transformers builds an empty tokenizer for a folder without tokenizer files rather
        # than failing, so look for the files first; a run often keeps one tokenizer at its root
        folder = Path(location)
        found = next((f for f in (folder, folder.parent) if _has_tokenizer(f)), None)
        if found is None:
            msg = (
                f"no tokenizer files ({', '.join(_TOKENIZER_FILES)}) in checkpoint folder "
                f"{location!r} or its parent; save one with tokenizer.save_pretrained(folder)"
            )
            raise CheckpointNotFoundError(msg)
        location = str(found)
    try:
        return auto.from_pretrained(location, **kwargs)
    except Exception as exc:
        what = f"load the tokenizer of checkpoint {ckpt.label!r} from {location!r}"
        raise load_failure(exc, what) from exc
