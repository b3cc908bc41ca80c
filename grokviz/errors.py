"""Exceptions grokviz raises, so callers can catch grokviz's own failures precisely.

Every error a user can cause is one of these, with a message that says what was wrong and what to
do; the ``grokviz`` command prints that message as one line (``--debug`` adds the traceback).
Each also derives from the built-in exception a caller would expect (``ValueError``, ``KeyError``,
``OSError`` ...), so ``except ValueError`` keeps working.

Examples
--------
>>> from grokviz.errors import GrokvizError, InputError
>>> issubclass(InputError, ValueError) and issubclass(InputError, GrokvizError)
True
"""

from __future__ import annotations


class GrokvizError(Exception):
    """Base class of every error grokviz raises on purpose."""


class InputError(GrokvizError, ValueError):
    """An argument or input table is not usable as given (the message says what to change)."""


class EmptyInputError(InputError):
    """An operation received no samples, checkpoints or pathways to work on."""


class UnknownSampleError(GrokvizError, KeyError):
    """Sample ids were asked for that the store or table does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownCheckpointError(GrokvizError, KeyError):
    """A checkpoint label was asked for that the store or table does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(GrokvizError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class CheckpointNotFoundError(GrokvizError, FileNotFoundError):
    """A checkpoint folder, hub repository or revision does not exist."""


class CheckpointLoadError(GrokvizError, OSError):
    """A checkpoint exists but its weights, config or tokenizer cannot be read."""


class NotMoEError(GrokvizError, TypeError):
    """The model has no Mixture-of-Experts routers grokviz can reach."""


class UnsafeCheckpointError(GrokvizError):
    """Loading would run pickle or remote code and the user did not opt in."""


class DeviceError(GrokvizError, RuntimeError):
    """The requested device is not available, or failed while tracing."""


class ClusterError(GrokvizError, ConnectionError):
    """A Ray cluster could not be reached or started."""


class WorkerLostError(GrokvizError, RuntimeError):
    """Ray workers kept dying on the same unit of work (out of memory, a failing node ...)."""


class NonFiniteError(GrokvizError, FloatingPointError):
    """A model gave non-finite losses or routing weights and the caller asked for an error."""


class TraceStoreError(GrokvizError):
    """A trace store is missing, damaged, busy, or does not fit what is being written to it."""


class NotAStoreError(TraceStoreError, FileNotFoundError):
    """A folder is not a trace store (and, for writing, not empty either)."""


class StoreDamagedError(TraceStoreError):
    """A file of a trace store is missing, damaged, or belongs to another store."""


class StoreMismatchError(TraceStoreError):
    """What is being traced does not fit the store: other weights under a label, other
    parameters, another sample set."""


class SeriesMismatchError(StoreMismatchError):
    """Checkpoints of one series disagree on MoE layers, experts, top-k or vocabulary."""
