"""Find and load the checkpoints of a pretraining run: local folders or hub revisions.

A run is either a local folder of checkpoint folders (each with a ``config.json``, e.g.
``run/step-000100/``, ``run/step-000200/``) or a hub repository whose branches are checkpoints
(OLMoE publishes ``step5000-tokens20B`` and so on). :func:`list_checkpoints` finds them in training
order; :func:`load_model` loads one safely (safetensors only, no remote code unless asked).

Every checkpoint has an identity (:meth:`Checkpoint.identity`) so traces of different weights never
mix: on the hub it is the commit sha; for a local folder it is a SHA-256 over the weight files
(``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``), their names and sizes. Files up to 256 MiB are
hashed in full. Larger files are hashed by their size, their first 1 MiB (a safetensors header
with every tensor's name, dtype, shape and offset) and 32 evenly spaced 1 MiB blocks: hashing a
14 GB checkpoint in full takes tens of seconds, and a training step changes nearly every
parameter, so the sample catches any real change in weights. An edit confined to unsampled bytes
of a large file is not detected.

This module finds checkpoints and says what they are; :mod:`grokviz.tracing._loading` loads one.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from grokviz.errors import CheckpointLoadError, CheckpointNotFoundError, InputError
from grokviz.schema import CHECKPOINTS, conform

__all__ = ["Checkpoint", "as_checkpoint", "checkpoints_frame", "list_checkpoints", "parse_step"]

_STEP = re.compile(
    r"(?<![a-z])(?:global_step|step|checkpoint|ckpt|iteration|iter)[-_]?(\d+)", re.IGNORECASE
)
_TOKENS = re.compile(r"(?<![a-z])tokens?[-_]?(\d+(?:\.\d+)?)([kmbt]?)(?![a-z])", re.IGNORECASE)
_TOKEN_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FULL_HASH_LIMIT = 256 * 2**20
_BLOCK = 2**20
_SAMPLED_BLOCKS = 32


def parse_step(name: str) -> tuple[int | None, int | None]:
    """Read the training step and token count from a checkpoint's name.

    Parameters
    ----------
    name
        A branch or folder name such as ``"step5000-tokens20B"``, ``"step-000100"``,
        ``"checkpoint-500"`` or ``"global_step42"``. Token counts take a K/M/B/T suffix.

    Returns
    -------
    tuple
        ``(step, tokens)``, each ``None`` when the name does not say.

    Examples
    --------
    >>> parse_step("step5000-tokens20B")
    (5000, 20000000000)
    >>> parse_step("checkpoint-500")
    (500, None)
    >>> parse_step("main")
    (None, None)
    """
    step_match = _STEP.search(name)
    step = int(step_match.group(1)) if step_match else None
    tokens_match = _TOKENS.search(name)
    tokens = None
    if tokens_match:
        count = Decimal(tokens_match.group(1)) * _TOKEN_UNITS[tokens_match.group(2).lower()]
        tokens = int(count)
    return step, tokens


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a run: a local folder, or a hub repository at a revision.

    Attributes
    ----------
    source
        The local folder path, or the hub repository id (``"owner/name"``).
    revision
        The hub branch, tag or commit; ``None`` for a local folder (that is how
        :attr:`is_local` tells them apart).
    step, tokens
        The training step and tokens seen; when both are left out they are read from the
        label with :func:`parse_step`.
    label
        A short name for tables and plots; defaults to the revision or the folder name.
    sha
        What the weights are, when already known: the hub commit of ``revision`` (filled in by
        :func:`list_checkpoints`, which then pins loading to that commit), or a hash a caller
        computed (a training monitor hashes the live model). ``None`` lets :meth:`identity`
        work it out: the hub commit, or a hash of a local folder's weight files.

    Examples
    --------
    >>> Checkpoint("runs/toy/step-000100").label
    'step-000100'
    >>> Checkpoint("runs/toy/step-000100").step
    100
    >>> Checkpoint("allenai/OLMoE-1B-7B-0924", revision="step5000-tokens20B").is_local
    False
    """

    source: str
    revision: str | None = None
    step: int | None = None
    tokens: int | None = None
    label: str = ""
    sha: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", os.fspath(self.source))
        if not self.label:
            label = self.revision or Path(self.source).name or self.source
            object.__setattr__(self, "label", label)
        if self.step is None and self.tokens is None:
            step, tokens = parse_step(self.label)
            object.__setattr__(self, "step", step)
            object.__setattr__(self, "tokens", tokens)

    @property
    def is_local(self) -> bool:
        """Whether this is a local folder (it has no hub revision)."""
        return self.revision is None

    def identity(self) -> dict[str, str | None]:
        """What the weights are: ``{"source", "revision", "sha"}``.

        ``sha`` is the hub commit for a hub checkpoint (asked of the hub when ``self.sha`` is
        unknown), or a SHA-256 of the weight files for a local folder, computed afresh on each
        call so that it follows the files (see the module docstring for what is hashed).

        Examples
        --------
        >>> Checkpoint("data/samples/toy/checkpoints/step-000050").identity()  # doctest: +ELLIPSIS
        {'source': 'data/samples/toy/checkpoints/step-000050', 'revision': None, 'sha': '...'}
        """
        if self.sha:
            sha = self.sha
        elif self.is_local:
            sha = _weights_hash(Path(self.source).expanduser())
        else:
            sha = _hub_commit(self.source, str(self.revision))
        return {"source": self.source, "revision": self.revision, "sha": sha}


# --- local folders ---------------------------------------------------------------------------


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def _file_digest(path: Path) -> str:
    # No cache keyed on mtime: a file rewritten within one timestamp tick would keep a stale hash.
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
        else:
            digest.update(handle.read(_BLOCK))
            for i in range(1, _SAMPLED_BLOCKS + 1):  # the last block ends the file
                handle.seek(i * (size - _BLOCK) // _SAMPLED_BLOCKS)
                digest.update(handle.read(_BLOCK))
    return digest.hexdigest()


def _weights_hash(folder: Path) -> str:
    if not folder.is_dir():
        msg = f"checkpoint folder {str(folder)!r} does not exist; check the path"
        raise CheckpointNotFoundError(msg)
    files = _weight_files(folder)
    if not files:
        msg = (
            f"checkpoint folder {str(folder)!r} has no weight files "
            f"({', '.join('*' + s for s in _WEIGHT_SUFFIXES)})"
        )
        raise CheckpointNotFoundError(msg)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0{_file_digest(path)}\n".encode())
    return digest.hexdigest()


def _sorted(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    return sorted(checkpoints, key=lambda c: (c.step is None, c.step or 0, c.label))


def _list_local(folder: Path, revisions: Sequence[str] | None) -> list[Checkpoint]:
    if (folder / "config.json").is_file():
        return [Checkpoint(str(folder))]
    found = {p.name: p for p in folder.iterdir() if (p / "config.json").is_file()}
    if not found:
        msg = (
            f"no checkpoints in {str(folder)!r}: expected it, or its subfolders, to hold a "
            "config.json (as written by save_pretrained)"
        )
        raise CheckpointNotFoundError(msg)
    if revisions is not None:
        missing = [r for r in revisions if r not in found]
        if missing:
            msg = (
                f"no checkpoint folder(s) {missing} in {str(folder)!r}; it has "
                f"{_few(sorted(found))}"
            )
            raise CheckpointNotFoundError(msg)
        found = {r: found[r] for r in revisions}
    return _sorted([Checkpoint(str(p)) for p in found.values()])


def _few(names: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return f"{shown} and {len(names) - n} more" if len(names) > n else shown


# --- hub repositories ------------------------------------------------------------------------


def _looks_like_repo(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and not source.startswith((".", "~"))


def _hub_refs(repo: str) -> dict[str, str]:
    """Branch and tag names of a hub model repository -> their commit shas."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = huggingface_hub.list_repo_refs(repo)
    except RepositoryNotFoundError as exc:
        msg = (
            f"no hub model repository {repo!r} (and no local folder of that name); check the id, "
            "or log in with `hf auth login` if it is private or gated"
        )
        raise CheckpointNotFoundError(msg) from exc
    except Exception as exc:
        raise hub_error(exc, f"list the revisions of {repo!r}") from exc
    return {ref.name: ref.target_commit for ref in [*refs.branches, *refs.tags]}


def _list_hub(repo: str, revisions: Sequence[str] | None) -> list[Checkpoint]:
    refs = _hub_refs(repo)
    if revisions is not None:
        missing = [r for r in revisions if r not in refs]
        if missing:
            msg = (
                f"hub repository {repo!r} has no revision(s) {missing}; available include "
                f"{_few(_sorted_names(refs))}"
            )
            raise CheckpointNotFoundError(msg)
        refs = {r: refs[r] for r in revisions}
    checkpoints = []
    for name, commit in refs.items():
        checkpoints.append(Checkpoint(repo, revision=name, sha=commit))
    return _sorted(checkpoints)


def hub_error(exc: BaseException, what: str) -> BaseException:
    """``exc`` from the hub client as a grokviz error that says what to do; other errors as is."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    offline = {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}
    network = {"ConnectionError", "ConnectError", "Timeout", "TimeoutException", "ConnectTimeout"}
    if names & offline:
        msg = (
            f"cannot {what}: the hub is switched off (HF_HUB_OFFLINE) and it is not in the local "
            "cache; unset HF_HUB_OFFLINE on a machine with network access, or use a local folder"
        )
        return CheckpointLoadError(msg)
    if names & network or isinstance(exc, (ConnectionError, TimeoutError)):
        msg = (
            f"cannot {what}: the Hugging Face hub cannot be reached ({type(exc).__name__}); "
            "check the network, or set HF_HUB_OFFLINE=1 to use what is already in the cache"
        )
        return CheckpointLoadError(msg)
    if "HfHubHTTPError" in names:
        msg = f"cannot {what}: the hub answered {exc}"
        return CheckpointLoadError(msg)
    return exc


def load_failure(exc: BaseException, what: str, *, advice: str = "") -> BaseException:
    """A failure to ``what`` (e.g. "load the model of checkpoint 'x'") as a grokviz error: the hub's
    own advice for hub failures, else a :class:`CheckpointLoadError` naming the cause."""
    hub = hub_error(exc, what)
    if hub is not exc:
        return hub
    text = " ".join(str(exc).split())
    msg = f"cannot {what}: {type(exc).__name__}: {text}" + (f". {advice}" if advice else "")
    return CheckpointLoadError(msg)


def _sorted_names(refs: dict[str, str]) -> list[str]:
    return [c.label for c in _sorted([Checkpoint("_", revision=r) for r in refs])]


def _hub_commit(repo: str, revision: str) -> str:
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    refs = _hub_refs(repo)
    if revision not in refs:
        msg = (
            f"hub repository {repo!r} has no revision {revision!r}; available include "
            f"{_few(_sorted_names(refs))}"
        )
        raise CheckpointNotFoundError(msg)
    return refs[revision]


def as_checkpoint(checkpoint: Checkpoint | str | os.PathLike[str]) -> Checkpoint:
    """The one checkpoint ``checkpoint`` names: a :class:`Checkpoint`, a checkpoint folder, or a
    hub id ``"owner/name"`` / ``"owner/name@revision"`` (default revision ``main``).

    Raises
    ------
    CheckpointNotFoundError
        Neither an existing path nor a hub repository id.

    Examples
    --------
    >>> as_checkpoint("allenai/OLMoE-1B-7B-0924@step5000-tokens20B").step
    5000
    """
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    text = os.fspath(checkpoint)
    path = Path(text).expanduser()
    if path.exists():
        return Checkpoint(str(path))
    repo, _, revision = text.partition("@")
    if _looks_like_repo(repo):
        return Checkpoint(repo, revision=revision or "main")
    msg = (
        f"no checkpoint folder at {text!r} and it is not a hub repository id "
        "('owner/name' or 'owner/name@revision')"
    )
    raise CheckpointNotFoundError(msg)


def list_checkpoints(
    source: str | os.PathLike[str], *, revisions: Sequence[str] | None = None
) -> list[Checkpoint]:
    """List the checkpoints of a run in training order.

    Parameters
    ----------
    source
        A local folder of checkpoint folders (each with a ``config.json``), a single checkpoint
        folder, a hub repository id whose branches and tags are checkpoints, or
        ``"owner/name@revision"`` for one of them.
    revisions
        Only these folder names (local) or branches/tags (hub), in any order.

    Returns
    -------
    list[Checkpoint]
        Sorted by step; checkpoints whose name gives no step come last.

    Raises
    ------
    CheckpointNotFoundError
        If the folder or repository does not exist, holds no checkpoints, or lacks one of
        ``revisions``; the message says what was looked for.

    Examples
    --------
    >>> [c.label for c in list_checkpoints("data/samples/toy/checkpoints")][:2]  # doctest: +ELLIPSIS
    ['step-...', 'step-...']
    >>> list_checkpoints("allenai/OLMoE-1B-7B-0924", revisions=["step5000-tokens20B"])  # doctest: +SKIP
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _list_local(path, revisions)
    text = os.fspath(source)
    repo, at, revision = text.partition("@")
    if at and _looks_like_repo(repo) and not path.exists():
        if revisions is not None:
            msg = f"{text!r} names its revision already; drop --revisions / revisions="
            raise InputError(msg)
        return _list_hub(repo, [revision])
    if _looks_like_repo(text) and not path.exists():
        return _list_hub(text, revisions)
    msg = (
        f"no checkpoint folder at {text!r} (resolved to {str(path.resolve())!r}) and it is not "
        "a hub repository id of the form 'owner/name'"
    )
    raise CheckpointNotFoundError(msg)


def checkpoints_frame(checkpoints: Sequence[Checkpoint]) -> pl.DataFrame:
    """The checkpoints table (``schema.CHECKPOINTS``), one row per checkpoint, with identities.

    Examples
    --------
    >>> checkpoints_frame(list_checkpoints("data/samples/toy/checkpoints")).columns
    ['checkpoint', 'step', 'tokens', 'source', 'revision', 'sha']
    """
    rows = []
    for checkpoint in checkpoints:
        identity = checkpoint.identity()
        rows.append(
            {
                "checkpoint": checkpoint.label,
                "step": checkpoint.step,
                "tokens": checkpoint.tokens,
                "source": identity["source"],
                "revision": identity["revision"],
                "sha": identity["sha"],
            }
        )
    return conform(pl.DataFrame(rows, schema=CHECKPOINTS), CHECKPOINTS, name="checkpoints")
