"""Exact Levenshtein distances between pathways, on a GPU (torch) or CPU (rapidfuzz).

Pathway distance is the edit distance with unit costs for insertion, deletion and substitution
(DESIGN.md §1). Pathways come as :class:`~grokviz.pathways.PackedPathways`, lists of strings, or
lists of integer sequences. Two backends give identical, exact results:

- ``"rapidfuzz"``: :mod:`rapidfuzz` on the CPU, all cores (``workers=-1``);
- ``"torch"``: Myers' bit-parallel algorithm (Myers 1999, in Hyyrö's formulation) with
  multi-word bit vectors, run for many pairs at once as ``int64`` tensors on any device.
  Each word holds 62 bits of a pattern, so sums with a carry never overflow a signed ``int64``
  and every shift stays non-negative: the arithmetic is exact by construction.

``backend="auto"`` picks torch when ``device`` names a CUDA device, or when ``device`` is None and
a CUDA GPU is available, and rapidfuzz otherwise.

The torch backend has three kernels, all exact. On CUDA with Triton (shipped with CUDA builds of
torch) a fused Triton kernel runs each block of pairs through all text symbols in one launch,
after a one-time check against eager mode. Without Triton, large CUDA workloads (about 10M pairs
of the paper's length and up) use ``torch.compile`` on the per-symbol step, smaller ones and the
CPU run it eagerly (~40 tensor ops per text symbol). A failing kernel falls back to eager mode.
``GROKVIZ_DISTANCE_KERNEL=eager|compile|triton`` forces one.

The monitored quantity is the average pairwise distance of a set of samples:
:func:`mean_pairwise_distance` gives it exactly, or estimated from a uniform sample of distinct
pairs with a confidence interval.

Examples
--------
>>> pairwise_distances(["kitten", "sitting", ""]).tolist()
[[0, 3, 6], [3, 0, 7], [6, 7, 0]]
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import polars as pl

from grokviz.errors import EmptyInputError
from grokviz.pathways import PackedPathways, _layers_from_frame, symbols_to_strings

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DistanceEstimate",
    "cross_distances",
    "mean_cross_distance",
    "mean_pairwise_distance",
    "pair_distances",
    "pairwise_distances",
    "per_layer_mean_distance",
]

Backend = Literal["auto", "torch", "rapidfuzz"]
Paths = PackedPathways | Sequence[str] | Sequence[Sequence[int]] | Sequence[np.ndarray]

_log = logging.getLogger(__name__)

_BITS = 62  # payload bits per int64 word, see the module docstring
_MASK = (1 << _BITS) - 1
# Symbols above this are renumbered densely before building per-symbol bit masks or characters.
_MAX_DIRECT_SYMBOL = 1024
# Pairs x mean length from which the torch backend compiles its step on CUDA: about 10M pairs of
# the paper's 470 symbols. A guess (eager ~1 s per 1M such pairs on an H100 by bandwidth
# arithmetic, compiling ~30 s); not yet measured on a GPU.
_COMPILE_MIN_WORK = 5e9
# Pairs enumerated at once for all-pairs work (index arrays of 64 MiB); the kernel sub-chunks.
_PAIR_BLOCK = 1 << 22
_TRITON_BLOCK = 128  # pairs per Triton program


@dataclass(frozen=True)
class DistanceEstimate:
    """A mean distance with its confidence interval.

    Attributes
    ----------
    value : float
        The mean distance (exact, or the sample mean).
    ci_low, ci_high : float
        Confidence interval; both equal ``value`` when ``exact``.
    n_pairs : int
        Pairs the value was computed from.
    exact : bool
        Whether every pair was used.
    """

    value: float
    ci_low: float
    ci_high: float
    n_pairs: int
    exact: bool


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass
class _Seqs:
    """Sequences as padded int64 symbols (pad -1) and lengths; ``strings`` when given as str."""

    symbols: np.ndarray
    lengths: np.ndarray
    strings: list[str] | None = None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])


def _pad(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    symbols = np.full((len(arrays), int(lengths.max(initial=0))), -1, dtype=np.int64)
    if lengths.sum():
        symbols[np.arange(symbols.shape[1]) < lengths[:, None]] = np.concatenate(arrays)
    return symbols, lengths


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
        raise ValueError(msg)
    if backend == "rapidfuzz":
        if device is not None and str(device) != "cpu":
            msg = f"the rapidfuzz backend runs on the CPU; use backend='torch' for device {device}"
            raise ValueError(msg)
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
# the bit-parallel torch kernel


class _Myers:
    """Levenshtein distances of pairs drawn from one set of sequences, on a torch device.

    For pair (pattern p, text t), the kernel keeps the vertical delta vectors VP/VN of the DP
    column over p's positions as ``W`` words and consumes t one symbol per step, for every pair
    of a chunk at once. The pattern of each pair is its shorter sequence.
    """

    def __init__(
        self,
        seqs: _Seqs,
        device: torch.device,
        chunk_pairs: int | None,
        *,
        kind: str | None = None,
        total_pairs: int = 0,
    ) -> None:
        import torch

        self.torch = torch
        self.device = device
        # "eager", "compile", "triton", or None: chosen per workload (all calls: total_pairs)
        self.kind = kind
        self.total_pairs = total_pairs
        symbols = seqs.symbols
        n, max_len = symbols.shape
        self.sigma = max(1, int(symbols.max(initial=-1)) + 1)
        self.words = max(1, -(-max_len // _BITS))
        self.lengths_np = seqs.lengths
        # symbols transposed, [max_len, N], padding as symbol 0 (its steps are never scored)
        self.sym_t = torch.as_tensor(np.maximum(symbols, 0).T.copy(), device=device)
        # peq[w, s * sigma + c]: bit b set where sequence s has symbol c at position 62 w + b
        peq = torch.zeros(self.words, n * self.sigma, dtype=torch.int64, device=device)
        rows, pos = np.nonzero(symbols >= 0)
        if rows.size:
            word = torch.as_tensor(pos // _BITS, device=device)
            col = torch.as_tensor(rows * self.sigma + symbols[rows, pos], device=device)
            bit = torch.as_tensor(np.left_shift(1, pos % _BITS).astype(np.int64), device=device)
            peq.index_put_((word, col), bit, accumulate=True)  # distinct bits: sum == or
        self.peq = peq
        if chunk_pairs is None:
            # On the CPU, tensors at most torch's parallel grain (32768 elements) stay on one
            # thread: faster than its threads fighting over busy cores.
            chunk_pairs = (1 << 22 if device.type == "cuda" else 1 << 15) // self.words
        self.chunk_pairs = max(1, int(chunk_pairs))

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances of pairs ``(a[i], b[i])``, chunked."""
        out = np.empty(len(a), dtype=np.int32)
        kind = self.kind
        if kind is None:
            mean_length = float(self.lengths_np.mean()) if self.lengths_np.size else 0.0
            kind = _choose_kernel(self.device, max(len(a), self.total_pairs) * mean_length)
        for start in range(0, len(a), self.chunk_pairs):
            pa, pb = a[start : start + self.chunk_pairs], b[start : start + self.chunk_pairs]
            if kind != "eager":
                try:
                    if kind == "triton":
                        out[start : start + len(pa)] = self._chunk_triton(pa, pb)
                    else:
                        out[start : start + len(pa)] = self._chunk(pa, pb, _compiled_step())
                    continue
                except Exception as exc:  # a missing or failing compiler must not stop the work
                    _log.warning("%s edit-distance kernel failed (%s); using eager mode", kind, exc)
                    kind = "eager"
            out[start : start + len(pa)] = self._chunk(pa, pb, _step)
        return out

    def _order(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pattern (shorter) and text of each pair, longest texts first, and that order."""
        swap = self.lengths_np[a] > self.lengths_np[b]
        pat, txt = np.where(swap, b, a), np.where(swap, a, b)
        m_np, n_np = self.lengths_np[pat], self.lengths_np[txt]
        order = np.argsort(-n_np, kind="stable")
        return pat[order], txt[order], m_np[order], n_np[order], order

    def _chunk_triton(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch, dev = self.torch, self.device
        pat, txt, m_np, n_np, order = self._order(a, b)
        words = max(1, -(-int(m_np.max(initial=0)) // _BITS))
        n_pairs = len(pat)
        scratch = torch.empty((2, words, n_pairs), dtype=torch.int64, device=dev)
        result = torch.empty(n_pairs, dtype=torch.int64, device=dev)
        as_t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=dev)  # noqa: E731
        _triton_kernel()[(-(-n_pairs // _TRITON_BLOCK),)](
            self.peq, self.peq.stride(0), self.sym_t, self.sym_t.shape[1],
            as_t(pat * self.sigma), as_t(txt), as_t(m_np), as_t(n_np),
            int(n_np[0]) if n_pairs else 0,  # the longest text
            scratch[0], scratch[1], result, n_pairs,
            WORDS=words, BITS=_BITS, MASK=_MASK, BLOCK=_TRITON_BLOCK,
        )  # fmt: skip
        out = np.empty(n_pairs, dtype=np.int32)
        out[order] = result.cpu().numpy()
        return out

    def _chunk(self, a: np.ndarray, b: np.ndarray, step: Any) -> np.ndarray:
        torch = self.torch
        pat, txt, m_np, n_np, order = self._order(a, b)
        n_steps = int(n_np[0]) if len(n_np) else 0
        # running[t] = number of pairs whose text is longer than t
        running = np.searchsorted(-n_np, -np.arange(n_steps), side="left")
        dev = self.device
        words = max(1, -(-int(m_np.max(initial=0)) // _BITS))
        peq = self.peq[:words]
        m = torch.as_tensor(m_np, device=dev)
        txt_t = torch.as_tensor(txt, device=dev)
        base = torch.as_tensor(pat * self.sigma, device=dev)
        last = (m - 1).clamp(min=0)
        word_of_last = (last // _BITS).unsqueeze(0)
        bit_of_last = last % _BITS
        vp = torch.full((words, len(pat)), _MASK, dtype=torch.int64, device=dev)
        vn = torch.zeros_like(vp)
        score = m.clone()
        for t in range(n_steps):
            k = int(running[t])
            if k < vp.shape[1]:
                vp, vn = vp[:, :k], vn[:, :k]
                txt_t, base = txt_t[:k], base[:k]
                word_of_last, bit_of_last = word_of_last[:, :k], bit_of_last[:k]
            vp, vn, delta = step(peq, self.sym_t[t], txt_t, base, vp, vn, word_of_last, bit_of_last)
            score[:k] += delta
        n = torch.as_tensor(n_np, device=dev)
        result = torch.where(m == 0, n, score).to(torch.int32).cpu().numpy()
        out = np.empty_like(result)
        out[order] = result
        return out


def _step(
    peq: torch.Tensor,
    symbols: torch.Tensor,
    text: torch.Tensor,
    base: torch.Tensor,
    vp: torch.Tensor,
    vn: torch.Tensor,
    word_of_last: torch.Tensor,
    bit_of_last: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One text symbol of Myers' algorithm for a batch of pairs.

    Pair ``p`` reads symbol ``symbols[text[p]]`` and matches it against its pattern's bit masks,
    column ``base[p] + symbol`` of ``peq``. ``vp``, ``vn`` and the masks are ``[W, P]``: words
    little-endian along dim 0, 62 bits each. Returns
    the new ``vp``, ``vn`` and the change of ``D[m, j]``, the distance of each pair's whole
    pattern to the text read so far. Pure (no in-place updates), so ``torch.compile`` can fuse it.
    """
    import torch

    eq = peq.index_select(1, base + symbols.index_select(0, text))
    x = eq | vn
    # (eq & vp) + vp over the multi-word numbers: each word's sum is < 2**63 (no overflow), and
    # bit 62 of a word's sum is its carry into the next word.
    total = (eq & vp) + vp
    words = [total[0]]
    for w in range(1, total.shape[0]):
        words.append(total[w] + (words[-1] >> _BITS))
    total = torch.stack(words) & _MASK if len(words) > 1 else total & _MASK
    d0 = (total ^ vp) | x
    hn = vp & d0
    hp = vn | ((vp | d0) ^ _MASK)
    delta = ((hp.gather(0, word_of_last)[0] >> bit_of_last) & 1) - (
        (hn.gather(0, word_of_last)[0] >> bit_of_last) & 1
    )
    shifted = _shift_left(hp, carry_in=1)  # row 0 of the DP table grows by one per text symbol
    return _shift_left(hn, carry_in=0) | ((shifted | d0) ^ _MASK), shifted & d0, delta


def _shift_left(x: torch.Tensor, *, carry_in: int) -> torch.Tensor:
    """``x`` (``[W, P]``, 62-bit words little-endian) shifted left by one bit, ``carry_in`` in."""
    import torch

    low = (x << 1) & _MASK
    below = x >> (_BITS - 1)  # the bit each word passes to the next
    first = torch.ones_like(below[:1]) if carry_in else torch.zeros_like(below[:1])
    return low | torch.cat([first, below[:-1]])


_COMPILED: list[Any] = []


def _choose_kernel(device: torch.device, work: float) -> str:
    """``"triton"``, ``"compile"`` or ``"eager"``: ``GROKVIZ_DISTANCE_KERNEL`` or by device.

    On CUDA with Triton available, the fused Triton kernel (checked once against eager mode).
    Otherwise eager mode launches ~40 small kernels per text symbol; ``torch.compile`` fuses
    them into one but costs tens of seconds, so it is used for CUDA workloads of at least
    ``_COMPILE_MIN_WORK`` pairs x symbols. The CPU runs eager mode (compiled is slower there).
    """
    forced = os.environ.get("GROKVIZ_DISTANCE_KERNEL", "").strip()
    if forced in ("eager", "compile", "triton"):
        return forced
    if device.type != "cuda":
        return "eager"
    if _triton_ok(device):
        return "triton"
    return "compile" if work >= _COMPILE_MIN_WORK else "eager"


def _triton_ok(device: torch.device) -> bool:
    """Whether Triton imports and its kernel matches eager mode on a test set (once per device)."""
    key = f"ok:{device}"
    if key not in _TRITON:
        try:
            rng = np.random.default_rng(0)
            seqs = [rng.integers(0, 3, int(rng.integers(0, 200))) for _ in range(24)]
            seqs += [np.zeros(0, dtype=np.int64), np.ones(186, dtype=np.int64)]
            kernel = _Myers(_as_seqs(seqs), device, None, kind="eager")
            i, j = np.triu_indices(len(seqs), 1)
            _TRITON[key] = bool(np.array_equal(kernel._chunk_triton(i, j), kernel(i, j)))
            if not _TRITON[key]:
                _log.warning("the Triton edit-distance kernel disagrees with eager mode; unused")
        except Exception as exc:
            _log.info("Triton edit-distance kernel unavailable: %s", exc)
            _TRITON[key] = False
    return bool(_TRITON[key])


def _compiled_step() -> Any:
    """:func:`_step` through ``torch.compile`` (one fused kernel per text symbol on a GPU)."""
    if not _COMPILED:
        import torch

        _COMPILED.append(torch.compile(_step, dynamic=True))
    return _COMPILED[0]


# Triton is imported only when a CUDA run needs it (it ships with CUDA builds of torch).
tl: Any = None
_TRITON: dict[str, Any] = {}


def _triton_kernel() -> Any:
    """The fused Myers kernel: each program runs a block of pairs through all text symbols.

    Word state lives in a small scratch buffer (cache-resident), so one launch does a whole
    chunk instead of ~40 launches per text symbol.
    """
    if "kernel" in _TRITON:
        return _TRITON["kernel"]
    global tl
    import triton
    import triton.language as triton_language

    tl = triton_language  # the kernel's globals resolve ``tl`` here

    @triton.jit
    def myers_kernel(
        peq_ptr, peq_stride, sym_ptr, n_seqs, base_ptr, txt_ptr, m_ptr, n_ptr, n_steps,
        vp_ptr, vn_ptr, out_ptr, n_pairs,
        WORDS: tl.constexpr, BITS: tl.constexpr, MASK: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offs < n_pairs
        base = tl.load(base_ptr + offs, mask=valid, other=0)
        txt = tl.load(txt_ptr + offs, mask=valid, other=0)
        m = tl.load(m_ptr + offs, mask=valid, other=0)
        n = tl.load(n_ptr + offs, mask=valid, other=0)
        last = tl.maximum(m - 1, 0)
        word_of_last = last // BITS
        bit_of_last = last % BITS
        score = m
        for w in tl.static_range(WORDS):
            tl.store(vp_ptr + w * n_pairs + offs, tl.zeros_like(m) + MASK, mask=valid)
            tl.store(vn_ptr + w * n_pairs + offs, tl.zeros_like(m), mask=valid)
        t = 0
        while t < n_steps:  # (a while loop: Triton's interpreter can run it too)
            running = valid & (t < n)
            sym = tl.load(sym_ptr + t * n_seqs + txt, mask=running, other=0)
            carry = tl.zeros_like(m)
            hp_in = tl.zeros_like(m) + 1  # row 0 of the DP table grows by one per symbol
            hn_in = tl.zeros_like(m)
            delta = tl.zeros_like(m)
            for w in tl.static_range(WORDS):
                eq = tl.load(peq_ptr + w * peq_stride + base + sym, mask=running, other=0)
                vp = tl.load(vp_ptr + w * n_pairs + offs, mask=running, other=0)
                vn = tl.load(vn_ptr + w * n_pairs + offs, mask=running, other=0)
                x = eq | vn
                total = (eq & vp) + vp + carry  # < 2**63
                carry = total >> BITS
                d0 = ((total & MASK) ^ vp) | x
                hn = vp & d0
                hp = vn | ((vp | d0) ^ MASK)
                at_last = word_of_last == w
                delta += tl.where(at_last, ((hp >> bit_of_last) & 1) - ((hn >> bit_of_last) & 1), 0)
                hp_shifted = ((hp << 1) & MASK) | hp_in
                hn_shifted = ((hn << 1) & MASK) | hn_in
                hp_in = hp >> (BITS - 1)
                hn_in = hn >> (BITS - 1)
                tl.store(vn_ptr + w * n_pairs + offs, hp_shifted & d0, mask=running)
                tl.store(
                    vp_ptr + w * n_pairs + offs,
                    hn_shifted | ((hp_shifted | d0) ^ MASK),
                    mask=running,
                )
            score += tl.where(running, delta, 0)
            t += 1
        tl.store(out_ptr + offs, tl.where(m == 0, n, score), mask=valid)

    _TRITON["kernel"] = myers_kernel
    return myers_kernel


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
# public: matrices and pairs


def pairwise_distances(
    paths: Paths,
    *,
    backend: Backend = "auto",
    device: Any = None,
    chunk_pairs: int | None = None,
) -> np.ndarray:
    """Edit distance between every two pathways.

    Parameters
    ----------
    paths
        :class:`~grokviz.pathways.PackedPathways`, a list of strings, or a list of int sequences.
    backend
        ``"torch"``, ``"rapidfuzz"``, or ``"auto"``: torch when ``device`` is a CUDA device or
        (``device=None``) a CUDA GPU is available, rapidfuzz otherwise.
    device
        Torch device for the torch backend (default: CUDA when available, else CPU).
    chunk_pairs
        Pairs processed at once by the torch backend, bounding its memory (default: about
        ``2**22 / words`` on CUDA, ``2**15 / words`` on CPU, words = ``ceil(length / 62)``).

    Returns
    -------
    numpy.ndarray
        ``int32 [N, N]``, symmetric with a zero diagonal.

    Examples
    --------
    >>> pairwise_distances([[1, 2, 3], [1, 3], []], backend="rapidfuzz").tolist()
    [[0, 1, 3], [1, 0, 2], [3, 2, 0]]
    """
    seqs = _as_seqs(paths)
    name, dev = _resolve(backend, device)
    n = len(seqs)
    if name == "rapidfuzz":
        (strings,) = _strings(seqs)
        return _cdist(strings, strings)
    out = np.zeros((n, n), dtype=np.int32)
    kernel = _Myers(_compact(seqs)[0], dev, chunk_pairs, total_pairs=_n_pairs(n))
    for i, j in _all_pair_chunks(n, _PAIR_BLOCK):
        d = kernel(i, j)
        out[i, j] = d
        out[j, i] = d
    return out


def cross_distances(
    a: Paths, b: Paths, *, backend: Backend = "auto", device: Any = None
) -> np.ndarray:
    """Edit distance between every pathway of ``a`` and every pathway of ``b``.

    Returns
    -------
    numpy.ndarray
        ``int32 [len(a), len(b)]``.

    Examples
    --------
    >>> cross_distances(["abc", "b"], ["abd"], backend="rapidfuzz").tolist()
    [[1], [2]]
    """
    sa, sb = _as_seqs(a), _as_seqs(b)
    name, dev = _resolve(backend, device)
    if name == "rapidfuzz":
        left, right = _strings(sa, sb)
        return _cdist(left, right)
    joint, offset = _joined(sa, sb)
    kernel = _Myers(joint, dev, None)
    i, j = np.divmod(np.arange(len(sa) * len(sb), dtype=np.int64), max(len(sb), 1))
    return kernel(i, j + offset).reshape(len(sa), len(sb))


def _joined(sa: _Seqs, sb: _Seqs) -> tuple[_Seqs, int]:
    """Both groups as one set of sequences (b after a) with a shared alphabet."""
    ca, cb = _compact(sa, sb)
    width = max(ca.symbols.shape[1], cb.symbols.shape[1])
    pad = lambda s: np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=-1)  # noqa: E731
    symbols = np.concatenate([pad(ca.symbols), pad(cb.symbols)])
    return _Seqs(symbols, np.concatenate([ca.lengths, cb.lengths])), len(sa)


def pair_distances(
    paths: Paths, pairs: np.ndarray, *, backend: Backend = "auto", device: Any = None
) -> np.ndarray:
    """Edit distances of chosen pairs of pathways.

    Parameters
    ----------
    paths
        The pathways, as for :func:`pairwise_distances`.
    pairs
        ``int [P, 2]``: row ``(i, j)`` asks for the distance between pathways ``i`` and ``j``.

    Returns
    -------
    numpy.ndarray
        ``int32 [P]``.

    Examples
    --------
    >>> pair_distances(["ab", "b", "abc"], np.array([[0, 2], [1, 1]]), backend="rapidfuzz").tolist()
    [1, 0]
    """
    seqs = _as_seqs(paths)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= len(seqs)):
        msg = f"pair indices must be in 0..{len(seqs) - 1}; got {pairs.min()}..{pairs.max()}"
        raise IndexError(msg)
    return _pair_distances(seqs, None, pairs[:, 0], pairs[:, 1], backend, device)


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


# ---------------------------------------------------------------------------------------------
# public: means


def _estimate(d: np.ndarray, population: int, confidence: float) -> DistanceEstimate:
    """Mean of ``d`` sampled without replacement from ``population`` pairs, with a CLT interval."""
    n = len(d)
    value = float(d.mean(dtype=np.float64))
    if n >= population:
        return DistanceEstimate(value, value, value, n, True)
    if not 0 < confidence < 1:
        msg = f"confidence must be in (0, 1); got {confidence}"
        raise ValueError(msg)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    sd = float(d.std(ddof=1)) if n > 1 else math.inf
    fpc = math.sqrt((population - n) / (population - 1))
    half = z * sd / math.sqrt(n) * fpc
    return DistanceEstimate(value, value - half, value + half, n, False)


def _check_n_pairs(n_pairs: int | None) -> None:
    if n_pairs is not None and n_pairs < 2:
        msg = f"n_pairs must be at least 2 for a confidence interval; got {n_pairs}"
        raise ValueError(msg)


def mean_pairwise_distance(
    paths: Paths,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
) -> DistanceEstimate:
    """Average edit distance over the unordered pairs of distinct pathways.

    Exact over all ``N (N - 1) / 2`` pairs when ``n_pairs`` is None or at least that many;
    otherwise the mean of ``n_pairs`` distinct pairs drawn uniformly (without replacement),
    with a normal-approximation confidence interval including the finite-population correction.

    Parameters
    ----------
    paths
        The pathways, as for :func:`pairwise_distances`; at least 2.
    n_pairs
        Pairs to sample, or None for the exact mean.
    confidence
        Coverage of the interval, in ``(0, 1)``.
    seed
        Seed of the pair sample.
    backend, device
        As for :func:`pairwise_distances`.

    Returns
    -------
    DistanceEstimate

    Examples
    --------
    >>> mean_pairwise_distance(["ab", "ac", "bc"], backend="rapidfuzz").value
    1.3333333333333333
    """
    seqs = _as_seqs(paths)
    n = len(seqs)
    if n < 2:
        msg = f"the mean pairwise distance needs at least 2 pathways; got {n}"
        raise EmptyInputError(msg)
    _check_n_pairs(n_pairs)
    population = _n_pairs(n)
    if n_pairs is None or n_pairs >= population:
        name, dev = _resolve(backend, device)
        if name == "rapidfuzz":
            (strings,) = _strings(seqs)
            # symmetric with a zero diagonal: each unordered pair is counted twice
            value = int(_cdist(strings, strings).sum(dtype=np.int64)) / 2 / population
            return DistanceEstimate(value, value, value, population, True)
        kernel = _Myers(_compact(seqs)[0], dev, None, total_pairs=population)
        total = sum(
            int(kernel(i, j).sum(dtype=np.int64)) for i, j in _all_pair_chunks(n, _PAIR_BLOCK)
        )
        value = total / population
        return DistanceEstimate(value, value, value, population, True)
    k = np.random.default_rng(seed).choice(population, size=n_pairs, replace=False)
    i, j = _triangle_pairs(n, k)
    return _estimate(_pair_distances(seqs, None, i, j, backend, device), population, confidence)


def mean_cross_distance(
    a: Paths,
    b: Paths,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
) -> DistanceEstimate:
    """Average edit distance between a pathway of ``a`` and one of ``b`` (e.g. two domains).

    Exact over all ``len(a) * len(b)`` pairs, or sampled as in :func:`mean_pairwise_distance`.

    Examples
    --------
    >>> mean_cross_distance(["ab", "b"], ["abc"], backend="rapidfuzz").value
    1.5
    """
    sa, sb = _as_seqs(a), _as_seqs(b)
    if len(sa) == 0 or len(sb) == 0:
        msg = f"the mean cross distance needs pathways in both groups; got {len(sa)} and {len(sb)}"
        raise EmptyInputError(msg)
    _check_n_pairs(n_pairs)
    population = len(sa) * len(sb)
    if n_pairs is None or n_pairs >= population:
        k = np.arange(population, dtype=np.int64)
    else:
        k = np.random.default_rng(seed).choice(population, size=n_pairs, replace=False)
    i, j = np.divmod(k, len(sb))
    d = _pair_distances(sa, sb, i, j, backend, device)
    return _estimate(d, population, confidence)


@overload
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = ...,
    confidence: float = ...,
    seed: int = ...,
    backend: Backend = ...,
    device: Any = ...,
    estimates: Literal[False] = ...,
) -> np.ndarray: ...
@overload
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = ...,
    confidence: float = ...,
    seed: int = ...,
    backend: Backend = ...,
    device: Any = ...,
    estimates: Literal[True],
) -> list[DistanceEstimate]: ...
def per_layer_mean_distance(
    paths: list[list[np.ndarray]] | list[list[list[int]]] | pl.DataFrame,
    *,
    n_pairs: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    backend: Backend = "auto",
    device: Any = None,
    estimates: bool = False,
) -> np.ndarray | list[DistanceEstimate]:
    """Mean pairwise distance of each layer's expert lists alone (the paper's Fig. 5).

    Parameters
    ----------
    paths
        Per sample, its layers' expert lists (:func:`~grokviz.pathways.select_experts`), or a
        :func:`~grokviz.pathways.pathways` frame of one checkpoint.
    n_pairs, confidence, seed, backend, device
        As for :func:`mean_pairwise_distance`, applied per layer (same pairs in every layer).
    estimates
        Return a :class:`DistanceEstimate` per layer instead of an array of means.

    Returns
    -------
    numpy.ndarray or list of DistanceEstimate
        ``float64 [L]`` means, or ``L`` estimates.

    Examples
    --------
    >>> per_layer_mean_distance([[[0, 1], [2]], [[0, 2], [2]]], backend="rapidfuzz").tolist()
    [1.0, 0.0]
    """
    if isinstance(paths, pl.DataFrame):
        layered, _ = _layers_from_frame(paths)
    else:
        layered = [[np.asarray(layer, dtype=np.int64).ravel() for layer in p] for p in paths]
    n_layers = {len(p) for p in layered}
    if len(n_layers) > 1:
        msg = f"every pathway needs the same number of layers; got {sorted(n_layers)}"
        raise ValueError(msg)
    count = n_layers.pop() if n_layers else 0
    out = [
        mean_pairwise_distance(
            [p[layer] for p in layered],
            n_pairs=n_pairs,
            confidence=confidence,
            seed=seed,
            backend=backend,
            device=device,
        )
        for layer in range(count)
    ]
    if estimates:
        return out
    return np.array([e.value for e in out], dtype=np.float64)
