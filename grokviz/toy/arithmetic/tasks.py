"""The arithmetic toy's tasks: modular arithmetic, one data group per operation, and a control.

Each sample is an equation written as words, e.g. ``"12 + 7 = 19"`` for ``(12 + 7) mod p``
(``layout="infix"``) or ``"+ 12 7 = 19"`` (``layout="prefix"``: the operation first, so every
later token's routing can depend on it); its domain is the operation's name. The operation
``random`` is the negative control: its answer is a fixed random table of ``(a, b)``, so its
training pairs can be memorized and its test pairs never generalize; its samples carry
``control = True``. The word-level tokenizer has one token per number ``0..p-1``, one per
operation symbol, ``=`` and the specials, so every equation is exactly five tokens after
``<bos>`` and the answer is always the last one.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from grokviz.errors import InputError
from grokviz.schema import SAMPLES, conform
from grokviz.toy.shared.tokenizer import SPECIAL_TOKENS, word_tokenizer

EQUALS = "="
LAYOUTS: tuple[str, ...] = ("infix", "prefix")
"""How an equation is written: ``a op b = c`` or ``op a b = c``."""


@dataclass(frozen=True)
class Operation:
    """A binary operation modulo ``p``: its group name, the symbol written in the text, its rule."""

    name: str
    symbol: str
    rule: Callable[[int, int, int], int]
    """``rule(a, b, p)`` -> the answer in ``0..p-1``."""
    description: str
    excludes_zero_b: bool = False
    """True where ``b = 0`` has no answer (division)."""
    control: bool = False
    """True for a negative control: answers no rule produces, so nothing can generalize."""


def _inverse(b: int, p: int) -> int:
    return pow(b, p - 2, p)  # Fermat: b^(p-2) is b's inverse modulo a prime p


@functools.lru_cache(maxsize=8)
def _random_table(p: int) -> tuple[tuple[int, ...], ...]:
    # one fixed table per modulus, independent of the run's seed, so every run's control
    # group asks the same questions with the same answers
    rng = random.Random(f"grokviz-random-answers-{p}")
    return tuple(tuple(rng.randrange(p) for _ in range(p)) for _ in range(p))


def random_answer(a: int, b: int, p: int) -> int:
    """The control group's answer to ``(a, b)``: a fixed random draw from ``0..p-1``.

    Examples
    --------
    >>> random_answer(3, 4, 31) == random_answer(3, 4, 31)
    True
    >>> len({random_answer(a, 0, 31) for a in range(31)}) > 10  # no rule: scattered answers
    True
    """
    return _random_table(p)[a][b]


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("add", "+", lambda a, b, p: (a + b) % p, "a + b mod p"),
        Operation("sub", "-", lambda a, b, p: (a - b) % p, "a − b mod p"),
        Operation("mul", "*", lambda a, b, p: (a * b) % p, "a · b mod p"),
        Operation(
            "div",
            "/",
            lambda a, b, p: (a * _inverse(b, p)) % p,
            "a · b⁻¹ mod p",
            excludes_zero_b=True,
        ),
        Operation("sqsum", "#", lambda a, b, p: (a * a + b * b) % p, "a² + b² mod p"),
        Operation("cubic", "&", lambda a, b, p: (a**3 + a * b) % p, "a³ + a·b mod p"),
        Operation("random", "?", random_answer, "a fixed random answer per (a, b)", control=True),
    )
}


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def _check(p: int, operations: Sequence[str]) -> None:
    if not _is_prime(p):
        msg = f"the modulus p must be a prime (division needs inverses); got p={p}, try 53 or 97"
        raise InputError(msg)
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown or not operations:
        msg = f"unknown operation(s) {unknown or operations!r}; choose from {sorted(OPERATIONS)}"
        raise InputError(msg)


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        msg = f"layout must be one of {LAYOUTS}; got {layout!r}"
        raise InputError(msg)


def equation(a: int, b: int, operation: str, *, p: int, layout: str = "infix") -> str:
    """The text of one sample: ``"a <symbol> b = answer"``, or ``"<symbol> a b = answer"``.

    Examples
    --------
    >>> equation(12, 7, "add", p=53)
    '12 + 7 = 19'
    >>> equation(3, 4, "sqsum", p=53, layout="prefix")
    '# 3 4 = 25'
    """
    _check_layout(layout)
    op = OPERATIONS[operation]
    words = (a, op.symbol, b) if layout == "infix" else (op.symbol, a, b)
    return " ".join(map(str, words)) + f" {EQUALS} {op.rule(a, b, p)}"


def make_samples(
    *,
    p: int = 53,
    operations: Sequence[str] = ("add", "sub", "div", "sqsum"),
    train_fraction: float | Mapping[str, float] = 0.5,
    val_fraction: float = 0.0,
    seed: int = 0,
    layout: str = "infix",
) -> pl.DataFrame:
    """Every equation of each operation modulo ``p``, split into train/val/test per operation.

    Parameters
    ----------
    p
        A prime modulus; numbers are ``0..p-1``.
    operations
        Names from :data:`OPERATIONS`; each becomes a domain (data group).
    train_fraction
        Fraction of each operation's pairs used for training, one value or one per operation.
    val_fraction
        Fraction of each operation's pairs set aside as ``"val"`` (for a validation loss); the
        rest is ``"test"``.
    seed
        Seed of the split; the same seed gives the same frame.
    layout
        ``"infix"`` (``a op b = c``) or ``"prefix"`` (``op a b = c``).

    Returns
    -------
    polars.DataFrame
        ``schema.SAMPLES`` columns (``sample_id``, ``text``, ``domain``, ``split``) plus
        ``control`` (True for a control operation's samples) and ``a``, ``b``, ``answer``
        (ints). ``sample_id`` is ``"<op>-<a>-<b>"``.

    Examples
    --------
    >>> frame = make_samples(p=5, operations=["add"], train_fraction=0.4)
    >>> frame.group_by("split").len().sort("split").rows()
    [('test', 15), ('train', 10)]
    """
    _check(p, operations)
    _check_layout(layout)
    fractions = (
        {op: float(train_fraction) for op in operations}
        if isinstance(train_fraction, (int, float))
        else dict(train_fraction)
    )
    rows: list[dict[str, Any]] = []
    rng = random.Random(seed)
    for name in operations:
        frac = fractions.get(name)
        if frac is None or not 0.0 < frac < 1.0 or not 0.0 <= val_fraction < 1.0 - frac:
            msg = (
                f"train_fraction for {name!r} must be in (0, 1) and leave room for "
                f"val_fraction={val_fraction} and a test split; got {frac!r}"
            )
            raise InputError(msg)
        op = OPERATIONS[name]
        pairs = [(a, b) for a in range(p) for b in range(p) if not (op.excludes_zero_b and b == 0)]
        rng.shuffle(pairs)
        n_train = round(frac * len(pairs))
        n_val = round(val_fraction * len(pairs))
        for k, (a, b) in enumerate(pairs):
            split = "train" if k < n_train else "val" if k < n_train + n_val else "test"
            rows.append(
                {
                    "sample_id": f"{name}-{a}-{b}",
                    "text": equation(a, b, name, p=p, layout=layout),
                    "domain": name,
                    "split": split,
                    "control": op.control,
                    "a": a,
                    "b": b,
                    "answer": op.rule(a, b, p),
                }
            )
    frame = pl.DataFrame(rows).sort("domain", "split", "a", "b", maintain_order=True)
    return conform(frame, SAMPLES, name="samples")


def vocabulary(*, p: int, operations: Sequence[str]) -> dict[str, int]:
    """Token -> id: the specials, ``=``, the operation symbols in order, then ``0..p-1``.

    Examples
    --------
    >>> vocab = vocabulary(p=5, operations=["add", "sub"])
    >>> [vocab[t] for t in ("<pad>", "<bos>", "=", "+", "-", "0", "4")]
    [0, 1, 4, 5, 6, 7, 11]
    """
    _check(p, operations)
    tokens = [*SPECIAL_TOKENS, EQUALS, *(OPERATIONS[op].symbol for op in operations)]
    tokens += [str(n) for n in range(p)]
    return {tok: i for i, tok in enumerate(tokens)}


def make_tokenizer(*, p: int, operations: Sequence[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` for the equations; it prepends ``<bos>``.

    It saves with ``save_pretrained`` and loads offline with ``AutoTokenizer.from_pretrained``.

    Examples
    --------
    >>> tok = make_tokenizer(p=53, operations=["add"])  # doctest: +SKIP
    >>> tok("12 + 7 = 19").input_ids  # doctest: +SKIP
    [1, 17, 5, 12, 4, 24]
    """
    return word_tokenizer(vocabulary(p=p, operations=operations), model_max_length=16)


def encode(
    samples: pl.DataFrame, *, p: int, operations: Sequence[str], layout: str = "infix"
) -> Any:
    """The samples as a ``(n, 6)`` int64 tensor ``<bos> a op b = answer`` (or ``<bos> op a b =
    answer``), without a tokenizer call.

    Equal to what :func:`make_tokenizer` produces for the ``text`` column, and much faster.

    Examples
    --------
    >>> frame = make_samples(p=5, operations=["add"], layout="prefix")
    >>> frame["text"][0], encode(frame, p=5, operations=["add"], layout="prefix")[0].tolist()
    ('+ 0 1 = 1', [1, 5, 6, 7, 4, 7])
    """
    import torch

    _check_layout(layout)
    vocab = vocabulary(p=p, operations=operations)
    symbol = {name: vocab[OPERATIONS[name].symbol] for name in operations}
    offset = vocab["0"]
    bos, eq = vocab["<bos>"], vocab[EQUALS]
    ids = [
        [bos, offset + a, symbol[d], offset + b, eq, offset + c]
        if layout == "infix"
        else [bos, symbol[d], offset + a, offset + b, eq, offset + c]
        for d, a, b, c in samples.select("domain", "a", "b", "answer").iter_rows()
    ]
    return torch.tensor(ids, dtype=torch.long).reshape(-1, 6)
