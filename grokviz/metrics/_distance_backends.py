"""What :mod:`grokviz.metrics.distance` stands on: inputs, backend choice and pairs.

Pathways of any accepted form become :class:`~grokviz.metrics._myers._Seqs` (padded int64
symbols), strings with one character per symbol for rapidfuzz, or byte strings with one byte per
symbol for StringZilla; ``backend="auto"`` resolves to torch or rapidfuzz (:func:`_resolve`); the
unordered pairs of ``N`` items are numbered row by row so that a uniform sample of them can be
drawn by number (:func:`_triangle_pairs`); and :func:`_pair_distances` sends chosen pairs to the
torch or rapidfuzz backend. StringZilla's engines score whole cross products
(:func:`_sz_matrix`), so that backend serves matrices and exact means only. Whether a mean takes
all pairs or a sample is :func:`auto_pairs`'s rule for ``n_pairs="auto"``.

Examples
--------
>>> i, j = _triangle_pairs(4, np.arange(_n_pairs(4)))
>>> list(zip(i.tolist(), j.tolist()))
[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from grokviz.errors import InputError, MissingDependencyError
from grokviz.metrics._myers import _Myers, _pad, _Seqs
from grokviz.pathways import PackedPathways, symbols_to_strings

Backend = Literal["auto", "torch", "rapidfuzz", "stringzilla"]
Paths = PackedPathways | Sequence[str] | Sequence[Sequence[int]] | Sequence[np.ndarray]

# Symbols above this are renumbered densely before building per-symbol bit masks or characters.
_MAX_DIRECT_SYMBOL = 1024
# StringZilla's byte engine: one byte per symbol.
_BYTE_ALPHABET = 256
_BACKENDS = ("auto", "torch", "rapidfuzz", "stringzilla")


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


def _compact(*groups: _Seqs, below: int = _MAX_DIRECT_SYMBOL) -> list[_Seqs]:
    """Renumber the symbols of all groups jointly to ``0 .. alphabet-1`` unless all are ``< below``."""
    top = max((int(g.symbols.max(initial=-1)) for g in groups), default=-1)
    if top < below:
        return list(groups)
    values = np.unique(np.concatenate([g.symbols[g.symbols >= 0] for g in groups]))
    out = []
    for g in groups:
        ranks = np.where(g.symbols >= 0, np.searchsorted(values, g.symbols), -1)
        out.append(_Seqs(ranks, g.lengths, g.strings))
    return out


def _strings(*groups: _Seqs) -> list[list[str]]:
    """The groups as rapidfuzz strings, one character per symbol, consistent across groups.

    Alphabets of at most 256 symbols (pathways of up to 255 experts) become Latin-1 characters:
    rapidfuzz looks those up in a table, where higher code points go through a hash map, which
    measured 2-2.5x slower on 470-symbol pathways.
    """
    dense = _compact(*groups, below=_BYTE_ALPHABET)
    if max((int(g.symbols.max(initial=-1)) for g in dense), default=-1) < _BYTE_ALPHABET:
        return [[b.decode("latin-1") for b in g] for g in _sz_bytes(*dense)]
    if all(g.strings is not None for g in groups):
        return [list(g.strings) for g in groups if g.strings is not None]
    return [symbols_to_strings(g.symbols, g.lengths) for g in _compact(*groups)]


def _resolve(backend: Backend, device: Any) -> tuple[str, Any]:
    """The backend to run and its device: a torch device, None (rapidfuzz) or a device name."""
    if backend not in _BACKENDS:
        msg = f"backend must be one of {list(_BACKENDS)}; got {backend!r}"
        raise InputError(msg)
    if backend == "rapidfuzz":
        if device is not None and str(device) != "cpu":
            msg = f"the rapidfuzz backend runs on the CPU; use backend='torch' for device {device}"
            raise InputError(msg)
        return "rapidfuzz", None
    import torch

    if backend == "stringzilla":
        if device is None:
            _, szs = _stringzilla()
            gpu = torch.cuda.is_available() and "cuda" in szs.__capabilities__
            return "stringzilla", "cuda:0" if gpu else "cpu"
        name = str(device)
        if name != "cpu" and not name.startswith("cuda"):
            msg = f"the stringzilla backend runs on the CPU or a CUDA GPU; got device {device!r}"
            raise InputError(msg)
        return "stringzilla", "cuda:0" if name == "cuda" else name

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
# how many pairs: all, or a sample (n_pairs)

# What ``n_pairs="auto"`` may spend on one mean: 20,000 pairs of the paper's pathways (470 symbols,
# so 8 words of 64 bits), in the units of the bit-parallel algorithm both rapidfuzz and the torch
# kernel run: text symbols x pattern words per pair. About a second of rapidfuzz on 2 CPU cores;
# benchmarks/analyze_scale.py measures it and the error it gives.
_AUTO_WORK = 20_000 * 470 * 8
# A sample never smaller than this, however long the pathways (its interval stays narrow).
_AUTO_MIN_PAIRS = 5_000

NPairs = int | None | Literal["auto"]


def auto_pairs(lengths: Any, population: int) -> int | None:
    """How many pairs ``n_pairs="auto"`` uses: None for all of them, else a sample size.

    All pairs when computing them costs at most what 20,000 pairs of the paper's pathways cost
    (470 symbols each); otherwise a uniform sample of that cost, and at least 5,000 pairs. The
    cost of a pair is taken as ``L * ceil(L / 64)`` for the mean pathway length ``L``: the text
    symbols times the 64-bit words of the pattern that bit-parallel edit distance works through.
    So the paper's pathways are exact up to 20,000 pairs (groups of 200 samples) and sampled with
    20,000 pairs above; pathways of 25 symbols are exact up to 3 million pairs.

    Parameters
    ----------
    lengths
        The pathways' lengths in symbols (any array-like).
    population
        The number of pairs the mean is over.

    Returns
    -------
    int or None
        None when every pair is affordable, else the number of pairs to sample.

    Examples
    --------
    >>> auto_pairs([470] * 1000, population=499_500)
    20000
    >>> auto_pairs([470] * 200, population=19_900) is None
    True
    >>> auto_pairs([25] * 2000, population=1_999_000) is None
    True
    """
    mean = float(np.mean(lengths)) if np.size(lengths) else 0.0
    cost = max(mean, 1.0) * math.ceil(max(mean, 1.0) / 64)
    if population * cost <= _AUTO_WORK:
        return None
    n = max(_AUTO_MIN_PAIRS, int(_AUTO_WORK // cost))
    return None if n >= population else n


def _check_n_pairs(n_pairs: NPairs) -> None:
    if n_pairs == "auto" or n_pairs is None:
        return
    if isinstance(n_pairs, str) or n_pairs < 2:
        msg = f"n_pairs must be 'auto', None or at least 2 (for an interval); got {n_pairs!r}"
        raise InputError(msg)


def _sample_size(n_pairs: NPairs, lengths: np.ndarray, population: int) -> int | None:
    """Pairs to sample, or None for all of them."""
    if n_pairs == "auto":
        return auto_pairs(lengths, population)
    if n_pairs is None or int(n_pairs) >= population:
        return None
    return int(n_pairs)


# ---------------------------------------------------------------------------------------------
# StringZilla: whole cross products of byte strings, on CPU cores or a CUDA GPU

_SZ_ENGINES: dict[str, Any] = {}


def _stringzilla() -> tuple[Any, Any]:
    """The ``stringzilla`` and ``stringzillas`` modules, or an error saying what to install."""
    try:
        import stringzilla
        import stringzillas
    except ImportError as exc:
        msg = (
            "backend='stringzilla' needs StringZilla's batch engines: "
            'pip install "grokviz[stringzilla]" (CPU cores) or '
            '"grokviz[stringzilla-cuda]" (NVIDIA GPUs)'
        )
        raise MissingDependencyError(msg) from exc
    return stringzilla, stringzillas


def _sz_bytes(*groups: _Seqs) -> list[list[bytes]]:
    """The groups as byte strings, one byte per symbol, with one alphabet across the groups."""
    dense = _compact(*groups, below=_BYTE_ALPHABET)
    top = max((int(g.symbols.max(initial=-1)) for g in dense), default=-1)
    if top >= _BYTE_ALPHABET:
        msg = (
            f"backend='stringzilla' compares bytes, so it takes at most {_BYTE_ALPHABET} distinct "
            f"symbols; these pathways use {top + 1}: use backend='torch' or 'rapidfuzz'"
        )
        raise InputError(msg)
    out = []
    for g in dense:
        flat = g.symbols[g.symbols >= 0].astype(np.uint8).tobytes()
        ends = np.cumsum(g.lengths)
        out.append(
            [flat[e - n : e] for e, n in zip(ends.tolist(), g.lengths.tolist(), strict=True)]
        )
    return out


def _sz_matrix(a: list[bytes], b: list[bytes] | None, device: str) -> np.ndarray:
    """``int32`` distances of every ``a[i]`` to every ``b[j]`` (``b=None``: to every ``a[j]``)."""
    sz, szs = _stringzilla()
    rows, cols = len(a), len(a) if b is None else len(b)
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype=np.int32)
    if device not in _SZ_ENGINES:
        if device.startswith("cuda"):
            scope = szs.DeviceScope(gpu_device=int(device.partition(":")[2] or 0))
        else:
            scope = szs.DeviceScope()  # all CPU cores
        # unit costs: a gap of length g costs open + (g - 1) * extend = g
        engine = szs.LevenshteinDistances(match=0, mismatch=1, open=1, extend=1, capabilities=scope)
        _SZ_ENGINES[device] = (engine, scope)
    engine, scope = _SZ_ENGINES[device]
    out = engine(sz.Strs(a), None if b is None else sz.Strs(b), device=scope)
    return np.asarray(out).astype(np.int32)


def _sz_no_pairs() -> InputError:
    msg = (
        "backend='stringzilla' scores whole matrices (StringZilla's engines compute cross "
        "products), not chosen pairs; for sampled means or pair lists use backend='torch' or "
        "'rapidfuzz'"
    )
    return InputError(msg)


# ---------------------------------------------------------------------------------------------
# pairs of one or two groups, on the torch or rapidfuzz backend


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
    if name == "stringzilla":
        raise _sz_no_pairs()
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
