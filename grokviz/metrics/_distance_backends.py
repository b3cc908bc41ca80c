"""What :mod:`grokviz.metrics.distance` stands on: inputs, backend choice and pairs.

Pathways of any accepted form become :class:`~grokviz.metrics._myers._Seqs` (padded int64
symbols), or strings with one character per symbol for rapidfuzz; ``backend="auto"`` resolves to
torch or rapidfuzz (:func:`_resolve`); the unordered pairs of ``N`` items are numbered row by row
so that all pairs can be enumerated in blocks and a uniform sample of them drawn by number
(:func:`_triangle_pairs`); and :func:`_pair_distances` sends chosen pairs to either backend.

Examples
--------
>>> i, j = _triangle_pairs(4, np.arange(_n_pairs(4)))
>>> list(zip(i.tolist(), j.tolist()))
[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from grokviz.errors import InputError
from grokviz.metrics._myers import _Myers, _pad, _Seqs
from grokviz.pathways import PackedPathways, symbols_to_strings

Backend = Literal["auto", "torch", "rapidfuzz"]
Paths = PackedPathways | Sequence[str] | Sequence[Sequence[int]] | Sequence[np.ndarray]

# Symbols above this are renumbered densely before building per-symbol bit masks or characters.
_MAX_DIRECT_SYMBOL = 1024
# Pairs enumerated at once for all-pairs work (index arrays of 64 MiB); the kernel sub-chunks.
_PAIR_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------------
# inputs


def _as_seqs(paths: Paths) -> _Seqs:
    if isinstance(paths, PackedPathways):
        return _Seqs(paths.symbols.astype(np.int64), paths.lengths.astype(np.int64))
    if isinstance(paths, (str, bytes)):
        msg = "pass a list of pathways, not a single string"
        raise TypeError(msg)
    items = list(paths)
    if items and all(isinstance(p, str) for p in items):
        strings = [str(p) for p in items]
        codes = [
            np.frombuffer(s.encode("utf-32-le"), dtype="<u4").astype(np.int64) for s in strings
        ]
        return _Seqs(*_pad(codes), strings=strings)
    arrays = []
    for p in items:
        a = np.asarray(p.detach().cpu() if hasattr(p, "detach") else p).ravel()
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0):
            msg = f"pathways must be sequences of non-negative ints or strings; got {p!r:.80}"
            raise TypeError(msg)
        arrays.append(a.astype(np.int64))
    return _Seqs(*_pad(arrays))


def _compact(*groups: _Seqs) -> list[_Seqs]:
    """Renumber the symbols of all groups jointly to ``0 .. alphabet-1`` when they are large."""
    top = max((int(g.symbols.max(initial=-1)) for g in groups), default=-1)
    if top < _MAX_DIRECT_SYMBOL:
        return list(groups)
    values = np.unique(np.concatenate([g.symbols[g.symbols >= 0] for g in groups]))
    out = []
    for g in groups:
        ranks = np.where(g.symbols >= 0, np.searchsorted(values, g.symbols), -1)
        out.append(_Seqs(ranks, g.lengths, g.strings))
    return out


def _strings(*groups: _Seqs) -> list[list[str]]:
    """The groups as rapidfuzz strings, one character per symbol, consistent across groups."""
    if all(g.strings is not None for g in groups):
        return [list(g.strings) for g in groups if g.strings is not None]
    return [symbols_to_strings(g.symbols, g.lengths) for g in _compact(*groups)]


def _resolve(backend: Backend, device: Any) -> tuple[str, Any]:
    if backend not in ("auto", "torch", "rapidfuzz"):
        msg = f"backend must be 'auto', 'torch' or 'rapidfuzz'; got {backend!r}"
        raise InputError(msg)
    if backend == "rapidfuzz":
        if device is not None and str(device) != "cpu":
            msg = f"the rapidfuzz backend runs on the CPU; use backend='torch' for device {device}"
            raise InputError(msg)
        return "rapidfuzz", None
    import torch

    if device is None:
        cuda = torch.cuda.is_available()
        if backend == "auto" and not cuda:
            return "rapidfuzz", None
        return "torch", torch.device("cuda" if cuda else "cpu")
    dev = torch.device(device)
    if backend == "auto" and dev.type != "cuda":
        return "rapidfuzz", None
    return "torch", dev


# ---------------------------------------------------------------------------------------------
# pairs


def _n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _triangle_pairs(n: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs ``i < j`` of ``n`` items numbered row by row: ``k -> (i, j)``."""
    k = np.asarray(k, dtype=np.int64)
    row_start = lambda i: i * (2 * n - i - 1) // 2  # noqa: E731
    i = np.floor(((2 * n - 1) - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    i = np.clip(i, 0, max(n - 2, 0))
    # float rounding can leave i one off near a row boundary
    i = np.where(row_start(i) > k, i - 1, i)
    i = np.where(row_start(i + 1) <= k, i + 1, i)
    return i, k - row_start(i) + i + 1


def _all_pair_chunks(n: int, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    total = _n_pairs(n)
    for start in range(0, total, size):
        yield _triangle_pairs(n, np.arange(start, min(start + size, total)))


def _pairs_rapidfuzz(sa: list[str], sb: list[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if len(a) == 0:
        return np.zeros(0, dtype=np.int32)
    left, right = [sa[i] for i in a], [sb[j] for j in b]
    return np.asarray(
        process.cpdist(left, right, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


def _cdist(sa: list[str], sb: list[str]) -> np.ndarray:
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    # Passing the same list twice lets rapidfuzz compute one triangle and mirror it.
    return np.asarray(
        process.cdist(sa, sb, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    )


# ---------------------------------------------------------------------------------------------
# pairs of one or two groups, on either backend


def _joined(sa: _Seqs, sb: _Seqs) -> tuple[_Seqs, int]:
    """Both groups as one set of sequences (b after a) with a shared alphabet."""
    ca, cb = _compact(sa, sb)
    width = max(ca.symbols.shape[1], cb.symbols.shape[1])
    pad = lambda s: np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=-1)  # noqa: E731
    symbols = np.concatenate([pad(ca.symbols), pad(cb.symbols)])
    return _Seqs(symbols, np.concatenate([ca.lengths, cb.lengths])), len(sa)


def _pair_distances(
    sa: _Seqs, sb: _Seqs | None, a: np.ndarray, b: np.ndarray, backend: Backend, device: Any
) -> np.ndarray:
    name, dev = _resolve(backend, device)
    if name == "rapidfuzz":
        if sb is None:
            (strings,) = _strings(sa)
            return _pairs_rapidfuzz(strings, strings, a, b)
        left, right = _strings(sa, sb)
        return _pairs_rapidfuzz(left, right, a, b)
    if sb is None:
        return _Myers(_compact(sa)[0], dev, None)(a, b)
    joint, offset = _joined(sa, sb)
    return _Myers(joint, dev, None)(a, b + offset)
