"""The word-level tokenizer both toys use: one token per whitespace-separated word.

Both toys' vocabularies are fixed lists of words (numbers, operation symbols, names), so a
``tokenizers`` WordLevel model over them is all a toy needs; it saves with ``save_pretrained``
and loads offline with ``AutoTokenizer.from_pretrained`` like any hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grokviz.errors import InputError

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
"""Ids 0-3 of every toy vocabulary, in this order."""


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
        raise InputError(msg)
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
