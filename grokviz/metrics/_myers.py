"""Myers' bit-parallel Levenshtein kernel in torch, batched over pairs (the ``"torch"`` backend).

For pair (pattern p, text t) the kernel keeps the vertical delta vectors of the DP column over p's
positions as multi-word bit vectors and consumes t one symbol per step, for many pairs at once as
``int64`` tensors on any device. Each word holds 62 bits, so sums with a carry never overflow a
signed ``int64`` and every shift stays non-negative: exact by construction. Kernels: eager torch,
``torch.compile`` of the per-symbol step, or a fused Triton kernel (see
:mod:`grokviz.metrics.distance` for when each runs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

_log = logging.getLogger("grokviz.metrics.distance")

_BITS = 62  # payload bits per int64 word, see the module docstring
_MASK = (1 << _BITS) - 1
# Pairs x mean length from which the torch backend compiles its step on CUDA: about 10M pairs of
# the paper's 470 symbols. A guess (eager ~1 s per 1M such pairs on an H100 by bandwidth
# arithmetic, compiling ~30 s); not yet measured on a GPU.
_COMPILE_MIN_WORK = 5e9
_TRITON_BLOCK = 128  # pairs per Triton program


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


class _Myers:
    """Levenshtein distances of pairs drawn from one set of sequences, on a torch device.

    For pair (pattern p, text t), the kernel keeps the vertical delta vectors VP/VN of the DP
    column over p's positions as ``W`` words and consumes t one symbol per step, for every pair
    of a chunk at once. The pattern of each pair is its shorter sequence.

    Everything after the pair numbers lives on the device: which sequence is the pattern, the
    order by text length, the kernel, and for all pairs (:meth:`all_pairs`) the pair numbers,
    the matrix or the sum too. On a GPU the host then only launches work and copies one result.
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
        self.n = n
        self.sigma = max(1, int(symbols.max(initial=-1)) + 1)
        self.words = max(1, -(-max_len // _BITS))
        self.lengths_np = seqs.lengths
        self.lengths = torch.as_tensor(seqs.lengths, dtype=torch.int64, device=device)
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

    # -- public entry points -------------------------------------------------------------

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances of pairs ``(a[i], b[i])``, chunked."""
        torch = self.torch
        out = np.empty(len(a), dtype=np.int32)
        for start in range(0, len(a), self.chunk_pairs):
            stop = min(start + self.chunk_pairs, len(a))
            pa = torch.as_tensor(np.ascontiguousarray(a[start:stop]), device=self.device)
            pb = torch.as_tensor(np.ascontiguousarray(b[start:stop]), device=self.device)
            out[start:stop] = self._distances(pa, pb, max(len(a), self.total_pairs)).cpu().numpy()
        return out

    def all_pairs(self, *, matrix: bool) -> Any:
        """Every unordered pair of distinct sequences: the ``int32 [N, N]`` matrix, or the sum.

        Pair numbers are turned into pairs on the device, chunk by chunk, and the distances are
        written into a device matrix (or summed there), so nothing travels back per chunk.
        """
        torch = self.torch
        n, dev = self.n, self.device
        total = n * (n - 1) // 2
        out = torch.zeros((n, n), dtype=torch.int32, device=dev) if matrix else None
        acc = torch.zeros((), dtype=torch.int64, device=dev)
        for start in range(0, total, self.chunk_pairs):
            k = torch.arange(start, min(start + self.chunk_pairs, total), device=dev)
            i, j = _triangle_pairs_torch(n, k)
            d = self._distances(i, j, max(total, self.total_pairs))
            if out is not None:
                out[i, j] = d
                out[j, i] = d
            else:
                acc += d.sum(dtype=torch.int64)
        if out is not None:
            return out.cpu().numpy()
        return int(acc.item())

    # -- one chunk -------------------------------------------------------------------------

    def _distances(self, a: torch.Tensor, b: torch.Tensor, work_pairs: int) -> torch.Tensor:
        """Distances of the pairs ``(a[i], b[i])`` (device tensors), as a device int32 tensor."""
        torch = self.torch
        if len(a) == 0:
            return torch.zeros(0, dtype=torch.int32, device=self.device)
        kind = self.kind
        if kind is None:
            mean_length = float(self.lengths_np.mean()) if self.lengths_np.size else 0.0
            kind = _choose_kernel(self.device, work_pairs * mean_length)
        pat, txt, m, n, order = self._order(a, b)
        if kind != "eager":
            try:
                if kind == "triton":
                    sorted_d = self._triton(pat, txt, m, n)
                else:
                    sorted_d = self._eager(pat, txt, m, n, _compiled_step())
            except Exception as exc:  # a missing or failing compiler must not stop the work
                _log.warning("%s edit-distance kernel failed (%s); using eager mode", kind, exc)
                self.kind = kind = "eager"
            else:
                return _unsort(sorted_d, order)
        return _unsort(self._eager(pat, txt, m, n, _step), order)

    def _forced(self, kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances of pairs through one kernel, without the fallback (self-check, tests)."""
        torch = self.torch
        pa, pb = (torch.as_tensor(np.ascontiguousarray(x), device=self.device) for x in (a, b))
        pat, txt, m, n, order = self._order(pa, pb)
        if kind == "triton":
            d = self._triton(pat, txt, m, n)
        else:
            d = self._eager(pat, txt, m, n, _compiled_step() if kind == "compile" else _step)
        return _unsort(d, order).cpu().numpy()

    def _order(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Pattern (shorter) and text of each pair, longest texts first, and that order."""
        torch = self.torch
        la, lb = self.lengths[a], self.lengths[b]
        swap = la > lb
        pat, txt = torch.where(swap, b, a), torch.where(swap, a, b)
        m, n = torch.minimum(la, lb), torch.maximum(la, lb)
        order = torch.argsort(n, descending=True, stable=True)
        return pat[order], txt[order], m[order], n[order], order

    def _triton(
        self, pat: torch.Tensor, txt: torch.Tensor, m: torch.Tensor, n: torch.Tensor
    ) -> torch.Tensor:
        torch = self.torch
        n_pairs = len(pat)
        # m is not sorted: its maximum is one small reduction, read once per chunk
        words = max(1, -(-int(m.max().item()) // _BITS))
        scratch = torch.empty((2, words, n_pairs), dtype=torch.int64, device=self.device)
        result = torch.empty(n_pairs, dtype=torch.int64, device=self.device)
        _triton_kernel()[(-(-n_pairs // _TRITON_BLOCK),)](
            self.peq, self.peq.stride(0), self.sym_t, self.sym_t.shape[1],
            (pat * self.sigma).contiguous(), txt.contiguous(), m.contiguous(), n.contiguous(),
            scratch[0], scratch[1], result, n_pairs,
            WORDS=words, BITS=_BITS, MASK=_MASK, BLOCK=_TRITON_BLOCK,
        )  # fmt: skip
        return result.to(torch.int32)

    def _eager(
        self, pat: torch.Tensor, txt: torch.Tensor, m: torch.Tensor, n: torch.Tensor, step: Any
    ) -> torch.Tensor:
        torch = self.torch
        n_np = n.cpu().numpy()
        n_steps = int(n_np[0]) if len(n_np) else 0
        # running[t] = number of pairs whose text is longer than t
        running = np.searchsorted(-n_np, -np.arange(n_steps), side="left")
        dev = self.device
        words = max(1, -(-int(m.max().item()) // _BITS))
        peq = self.peq[:words]
        txt_t = txt
        base = pat * self.sigma
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
        return torch.where(m == 0, n, score).to(torch.int32)


def _unsort(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``values`` in sorted order back to the order before ``order`` sorted them."""
    out = values.new_empty(values.shape)
    out[order] = values
    return out


def _triangle_pairs_torch(n: int, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unordered pairs ``i < j`` of ``n`` items numbered row by row, on ``k``'s device.

    The same numbering as :func:`grokviz.metrics._distance_backends._triangle_pairs`: row ``i``
    starts at pair ``i (2n - i - 1) / 2``. The square root is taken in float64 and the row is
    corrected by one where rounding put it across a boundary.
    """
    import torch

    row_start = lambda i: i * (2 * n - i - 1) // 2  # noqa: E731
    disc = (2.0 * n - 1) ** 2 - 8.0 * k.to(torch.float64)
    i = torch.floor(((2 * n - 1) - torch.sqrt(disc)) / 2).to(torch.int64)
    i = i.clamp(0, max(n - 2, 0))
    i = torch.where(row_start(i) > k, i - 1, i)
    i = torch.where(row_start(i + 1) <= k, i + 1, i)
    return i, k - row_start(i) + i + 1


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
            kernel = _Myers(_Seqs(*_pad(seqs)), device, None, kind="eager")
            i, j = np.triu_indices(len(seqs), 1)
            _TRITON[key] = bool(np.array_equal(kernel._forced("triton", i, j), kernel(i, j)))
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
        peq_ptr, peq_stride, sym_ptr, n_seqs, base_ptr, txt_ptr, m_ptr, n_ptr,
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
        # pairs come sorted by text length, so each block stops at its own longest text
        n_steps = tl.max(n, axis=0)
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
