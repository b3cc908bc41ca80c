"""Exceptions grokviz raises, so callers can catch grokviz's own failures precisely."""

from __future__ import annotations


class GrokvizError(Exception):
    """Base class of every error grokviz raises on purpose."""


class CheckpointNotFoundError(GrokvizError, FileNotFoundError):
    """A checkpoint folder, hub repository or revision does not exist."""


class NotMoEError(GrokvizError, TypeError):
    """The model has no Mixture-of-Experts routers grokviz can reach."""


class UnsafeCheckpointError(GrokvizError):
    """Loading would run pickle or remote code and the user did not opt in."""


class TraceStoreError(GrokvizError):
    """A trace store is missing, corrupt, or mixes traces of different weights."""


class EmptyInputError(GrokvizError, ValueError):
    """An operation received no samples, checkpoints or pathways to work on."""
