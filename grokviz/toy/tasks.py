"""Algorithmic tasks for the toy runs: modular arithmetic, one data group per operation.

Each sample is an equation written as words, e.g. ``"12 + 7 = 19"`` for ``(12 + 7) mod p``; its
domain is the operation's name. The word-level tokenizer has one token per number ``0..p-1``, one
per operation symbol, ``=`` and the specials, so every equation is exactly five tokens after
``<bos>`` and the answer is always the last one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from grokviz.schema import SAMPLES, conform

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
EQUALS = "="


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


def _inverse(b: int, p: int) -> int:
    return pow(b, p - 2, p)  # Fermat: b^(p-2) is b's inverse modulo a prime p


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
    )
}


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def _check(p: int, operations: Sequence[str]) -> None:
    if not _is_prime(p):
        msg = f"the modulus p must be a prime (division needs inverses); got p={p}, try 53 or 97"
        raise ValueError(msg)
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown or not operations:
        msg = f"unknown operation(s) {unknown or operations!r}; choose from {sorted(OPERATIONS)}"
        raise ValueError(msg)


def equation(a: int, b: int, operation: str, *, p: int) -> str:
    """The text of one sample: ``"a <symbol> b = answer"``.

    Examples
    --------
    >>> equation(12, 7, "add", p=53)
    '12 + 7 = 19'
    >>> equation(3, 4, "sqsum", p=53)
    '3 # 4 = 25'
    """
    op = OPERATIONS[operation]
    return f"{a} {op.symbol} {b} {EQUALS} {op.rule(a, b, p)}"


def make_samples(
    *,
    p: int = 53,
    operations: Sequence[str] = ("add", "sub", "div", "sqsum"),
    train_fraction: float | Mapping[str, float] = 0.5,
    val_fraction: float = 0.0,
    seed: int = 0,
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

    Returns
    -------
    polars.DataFrame
        ``schema.SAMPLES`` columns (``sample_id``, ``text``, ``domain``, ``split``) plus ``a``,
        ``b``, ``answer`` (ints). ``sample_id`` is ``"<op>-<a>-<b>"``.

    Examples
    --------
    >>> frame = make_samples(p=5, operations=["add"], train_fraction=0.4)
    >>> frame.group_by("split").len().sort("split").rows()
    [('test', 15), ('train', 10)]
    """
    _check(p, operations)
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
            raise ValueError(msg)
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
                    "text": equation(a, b, name, p=p),
                    "domain": name,
                    "split": split,
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


def word_tokenizer(vocab: Mapping[str, int], *, model_max_length: int) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per whitespace-separated word of ``vocab``.

    ``vocab`` maps every word and the :data:`SPECIAL_TOKENS` to ids. The tokenizer prepends
    ``<bos>``, maps unknown words to ``<unk>``, decodes with spaces between words, and saves
    with ``save_pretrained`` so that it loads offline with ``AutoTokenizer.from_pretrained``.
    Both toys' tokenizers are built by it.

    Examples
    --------
    >>> tok = word_tokenizer(vocabulary(p=5, operations=["add"]), model_max_length=16)  # doctest: +SKIP
    >>> tok("3 + 4 = 2").input_ids  # doctest: +SKIP
    [1, 9, 5, 10, 4, 8]
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        msg = f"the vocabulary lacks the special tokens {missing}; give ids to all of {SPECIAL_TOKENS}"
        raise ValueError(msg)
    backend = Tokenizer(models.WordLevel(vocab=dict(vocab), unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece with a prefix no word has puts the spaces back between words when decoding
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def encode(samples: pl.DataFrame, *, p: int, operations: Sequence[str]) -> Any:
    """The samples as a ``(n, 6)`` int64 tensor ``<bos> a op b = answer`` (no tokenizer call).

    Equal to what :func:`make_tokenizer` produces for the ``text`` column, and much faster.
    """
    import torch

    vocab = vocabulary(p=p, operations=operations)
    symbol = {name: vocab[OPERATIONS[name].symbol] for name in operations}
    offset = vocab["0"]
    ids = [
        [vocab["<bos>"], offset + a, symbol[d], offset + b, vocab[EQUALS], offset + c]
        for d, a, b, c in samples.select("domain", "a", "b", "answer").iter_rows()
    ]
    return torch.tensor(ids, dtype=torch.long).reshape(-1, 6)
