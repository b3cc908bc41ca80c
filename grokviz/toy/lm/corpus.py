"""A generated multi-domain corpus for the one-pass toy language model (:mod:`grokviz.toy.lm.train`).

Three domains of short documents whose last word is an answer the model can work out:

- ``arithmetic``: word problems, ``"ana has 3 pens and gets 4 more so ana has 7"`` (or
  ``"... and loses 2 so ana has 1"``);
- ``code``: straight-line programs that add or subtract and print the result,
  ``"x = 3 ; y = x + 4 ; print y -> 7"``;
- ``facts``: a fixed synthetic world where every city lies in one country. Atomic documents state
  it (``"c7 is in k2"``), composed ones apply it to a person (``"p3 lives in c7 so p3 is in k2"``);
- ``random``, the negative control: ``"r3 with r7 gives q2"``, where ``q2`` is a fixed random
  draw for the pair ``(r3, r7)``. Its training pairs recur through the corpus and can be
  memorized; its test pairs' answers follow no rule, so they are never generalized (chance is
  one in :data:`N_RANDOM_ANSWERS`). Its samples carry ``control = True``.

Each domain has a held-out **test task** whose prompts never occur with their answer in training:
``arithmetic`` and ``code`` hold out the same (operation, a, b) triples (so neither domain's
training documents teach a test answer), ``facts`` holds out some cities, which appear in training only in atomic documents, never in
composed ones, ``random`` holds out some of its pairs. A test prompt is a document without its last word; the answer is that word, one
token. Everything is drawn from one seed, and the word-level tokenizer is built from a fixed
vocabulary (not from the drawn documents), so every corpus of a config shares it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from grokviz.errors import InputError
from grokviz.schema import SAMPLES, conform
from grokviz.toy.shared.tokenizer import SPECIAL_TOKENS, word_tokenizer

DOMAINS: tuple[str, ...] = ("arithmetic", "code", "facts", "random")
CONTROL_DOMAINS: tuple[str, ...] = ("random",)
"""Domains whose answers are random: memorizable, never generalizable."""
MAX_TOKENS = 15
"""Longest document in tokens, ``<bos>`` included."""

MAX_OPERAND = 14
NAMES: tuple[str, ...] = ("ana", "ben", "cai", "dev", "eli", "fay", "gus", "hal", "ivy", "jon")
OBJECTS: tuple[str, ...] = ("pens", "apples", "coins", "books", "cards", "shells", "stamps")
VARIABLES: tuple[str, ...] = tuple("abcdefghij")
N_PERSONS = 40
N_CITIES = 60
N_COUNTRIES = 6
N_RANDOM_OPERANDS = 20
N_RANDOM_ANSWERS = 10
_FUNCTION_WORDS: tuple[str, ...] = (
    *("has", "and", "gets", "more", "loses", "so"),
    *("=", ";", "print", "->", "+", "-"),
    *("is", "in", "lives"),
    *("with", "gives"),
)


def vocabulary() -> dict[str, int]:
    """Token -> id: the specials, function words, numbers, names, objects, variables, entities.

    Examples
    --------
    >>> vocab = vocabulary()
    >>> vocab["<pad>"], vocab["<bos>"], "c59" in vocab, str(2 * MAX_OPERAND) in vocab
    (0, 1, True, True)
    """
    words = [
        *SPECIAL_TOKENS,
        *_FUNCTION_WORDS,
        *(str(n) for n in range(2 * MAX_OPERAND + 1)),
        *NAMES,
        *OBJECTS,
        *VARIABLES,
        *(f"p{i}" for i in range(N_PERSONS)),
        *(f"c{i}" for i in range(N_CITIES)),
        *(f"k{i}" for i in range(N_COUNTRIES)),
        *(f"r{i}" for i in range(N_RANDOM_OPERANDS)),
        *(f"q{i}" for i in range(N_RANDOM_ANSWERS)),
    ]
    return {w: i for i, w in enumerate(words)}


def make_tokenizer() -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over :func:`vocabulary` that prepends ``<bos>``.

    Saved with ``save_pretrained`` it loads offline with ``AutoTokenizer.from_pretrained``.

    Examples
    --------
    >>> tok = make_tokenizer()  # doctest: +SKIP
    >>> tok.convert_ids_to_tokens(tok("c7 is in k2").input_ids)  # doctest: +SKIP
    ['<bos>', 'c7', 'is', 'in', 'k2']
    """
    return word_tokenizer(vocabulary(), model_max_length=MAX_TOKENS)


def encode(texts: list[str]) -> Any:
    """Texts as a right-padded ``(n, MAX_TOKENS)`` int64 tensor starting with ``<bos>``.

    Equal, row by row and before padding, to what :func:`make_tokenizer` gives; much faster.

    Examples
    --------
    >>> ids = encode(["c7 is in k2"])  # doctest: +SKIP
    >>> ids.shape, (ids[0] != 0).sum().item()  # doctest: +SKIP
    (torch.Size([1, 15]), 5)
    """
    import torch

    vocab = vocabulary()
    out = torch.full((len(texts), MAX_TOKENS), vocab["<pad>"], dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [vocab["<bos>"], *(vocab[w] for w in text.split())]
        if len(ids) > MAX_TOKENS:
            msg = f"document {text!r} has {len(ids)} tokens; at most {MAX_TOKENS} fit"
            raise InputError(msg)
        out[row, : len(ids)] = torch.tensor(ids)
    return out


@dataclass(frozen=True)
class World:
    """The facts every corpus of a seed shares, and what each domain's test task holds out."""

    country: dict[str, str]
    """City -> country."""
    held_out_sums: frozenset[tuple[str, int, int]]
    """``(op, a, b)`` with op ``"add"``/``"sub"``: the arithmetic and code test problems."""
    held_out_cities: frozenset[str]
    """Cities that appear in composed documents only in the test task."""
    random_answer: dict[tuple[int, int], int]
    """``(x, y)`` -> the control's answer ``q``: a fixed random draw, no rule."""
    held_out_pairs: frozenset[tuple[int, int]]
    """The control's test pairs, never in its training documents."""


def make_world(*, seed: int = 0, held_out: float = 0.2) -> World:
    """The world of ``seed``: a city -> country map and the held-out sums and cities.

    Examples
    --------
    >>> world = make_world(seed=0)
    >>> len(world.country), len(world.held_out_cities)
    (60, 12)
    """
    if not 0.0 < held_out < 1.0:
        msg = f"held_out must be a fraction in (0, 1); got {held_out}"
        raise InputError(msg)
    rng = random.Random(f"world-{seed}")
    cities = [f"c{i}" for i in range(N_CITIES)]
    # every country gets the same number of cities, in a seeded order
    countries = [f"k{i % N_COUNTRIES}" for i in range(N_CITIES)]
    rng.shuffle(countries)
    sums = [("add", a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    sums += [("sub", a, b) for a in range(MAX_OPERAND + 1) for b in range(a + 1)]

    def pick(items: list[Any]) -> frozenset[Any]:
        return frozenset(rng.sample(items, round(held_out * len(items))))

    held_out_sums, held_out_cities = pick(sums), pick(cities)
    # drawn after the other domains' choices, so adding the control left them as they were
    pairs = [(x, y) for x in range(N_RANDOM_OPERANDS) for y in range(N_RANDOM_OPERANDS)]
    answers = {pair: rng.randrange(N_RANDOM_ANSWERS) for pair in pairs}
    return World(
        country=dict(zip(cities, countries, strict=True)),
        held_out_sums=held_out_sums,
        held_out_cities=held_out_cities,
        random_answer=answers,
        held_out_pairs=pick(pairs),
    )


def _result(op: str, a: int, b: int) -> int:
    """``a + b`` or ``a - b``: the answer of a problem of either domain (never negative)."""
    if op == "add":
        return a + b
    if op == "sub" and 0 <= b <= a:
        return a - b
    msg = f"op must be 'add' or 'sub' with b <= a; got op={op!r}, a={a}, b={b}"
    raise InputError(msg)


def arithmetic_document(name: str, obj: str, op: str, a: int, b: int) -> str:
    """A word problem whose last word is its answer.

    Examples
    --------
    >>> arithmetic_document("ana", "pens", "add", 3, 4)
    'ana has 3 pens and gets 4 more so ana has 7'
    >>> arithmetic_document("ben", "coins", "sub", 5, 2)
    'ben has 5 coins and loses 2 so ben has 3'
    """
    answer = _result(op, a, b)
    change = f"gets {b} more" if op == "add" else f"loses {b}"
    return f"{name} has {a} {obj} and {change} so {name} has {answer}"


def code_document(names: tuple[str, str], op: str, a: int, b: int) -> str:
    """A program that sets ``names[0]`` to ``a``, adds ``b`` to it (or subtracts) into
    ``names[1]`` and prints the result.

    Examples
    --------
    >>> code_document(("x", "y"), "add", 3, 4)
    'x = 3 ; y = x + 4 ; print y -> 7'
    >>> code_document(("b", "a"), "sub", 5, 2)
    'b = 5 ; a = b - 2 ; print a -> 3'
    """
    first, second = names
    answer = _result(op, a, b)
    sign = "+" if op == "add" else "-"
    return f"{first} = {a} ; {second} = {first} {sign} {b} ; print {second} -> {answer}"


def facts_document(world: World, city: str, person: str | None = None) -> str:
    """An atomic fact (no ``person``) or the fact applied to a person.

    Examples
    --------
    >>> world = make_world(seed=0)
    >>> facts_document(world, "c0") == f"c0 is in {world.country['c0']}"
    True
    >>> facts_document(world, "c0", "p3").startswith("p3 lives in c0 so p3 is in ")
    True
    """
    if person is None:
        return f"{city} is in {world.country[city]}"
    return f"{person} lives in {city} so {person} is in {world.country[city]}"


def random_document(world: World, x: int, y: int) -> str:
    """The control's document for the pair ``(x, y)``: its answer is the world's random draw.

    Examples
    --------
    >>> world = make_world(seed=0)
    >>> random_document(world, 3, 7) == f"r3 with r7 gives q{world.random_answer[(3, 7)]}"
    True
    """
    return f"r{x} with r{y} gives q{world.random_answer[(x, y)]}"


_VAL = "val"


def _problem(rng: random.Random, world: World, *, test: bool) -> tuple[str, int, int]:
    while True:
        op = rng.choice(("add", "sub"))
        a = rng.randint(0, MAX_OPERAND)
        b = rng.randint(0, MAX_OPERAND if op == "add" else a)
        if ((op, a, b) in world.held_out_sums) == test:
            return op, a, b


def _arithmetic(rng: random.Random, world: World, *, test: bool) -> str:
    op, a, b = _problem(rng, world, test=test)
    return arithmetic_document(rng.choice(NAMES), rng.choice(OBJECTS), op, a, b)


def _code(rng: random.Random, world: World, *, test: bool) -> str:
    op, a, b = _problem(rng, world, test=test)
    first, second = rng.sample(VARIABLES, 2)
    return code_document((first, second), op, a, b)


def _facts(rng: random.Random, world: World, *, test: bool, atomic_share: float) -> str:
    cities = sorted(world.country)
    person = f"p{rng.randrange(N_PERSONS)}"
    if test:
        return facts_document(world, rng.choice(sorted(world.held_out_cities)), person)
    if rng.random() < atomic_share:
        return facts_document(world, rng.choice(cities))
    seen = [c for c in cities if c not in world.held_out_cities]
    return facts_document(world, rng.choice(seen), person)


def _random(rng: random.Random, world: World, *, test: bool) -> str:
    pairs = sorted(p for p in world.random_answer if (p in world.held_out_pairs) == test)
    return random_document(world, *rng.choice(pairs))


def _documents(
    domain: str, n: int, rng: random.Random, world: World, *, test: bool, atomic_share: float
) -> Iterator[str]:
    for _ in range(n):
        if domain == "arithmetic":
            yield _arithmetic(rng, world, test=test)
        elif domain == "code":
            yield _code(rng, world, test=test)
        elif domain == "random":
            yield _random(rng, world, test=test)
        else:
            yield _facts(rng, world, test=test, atomic_share=atomic_share)


def make_corpus(
    *,
    n_train: int,
    n_val: int = 0,
    n_test: int = 0,
    seed: int = 0,
    held_out: float = 0.2,
    atomic_share: float = 0.3,
    domains: tuple[str, ...] = DOMAINS,
) -> pl.DataFrame:
    """Documents of every domain: training, validation (same distribution) and test prompts.

    Parameters
    ----------
    n_train, n_val, n_test
        Documents per domain in each split.
    seed
        Seed of the world and of every document; the same arguments give the same frame.
    held_out
        Fraction of each domain's held-out unit (sums, name triples, cities) kept for the test.
    atomic_share
        Share of ``facts`` training documents that state a city's country without a person.
    domains
        Which of :data:`DOMAINS` to generate (each from its own seeded stream, so leaving one
        out does not change the others).

    Returns
    -------
    polars.DataFrame
        ``schema.SAMPLES`` columns plus ``control`` (True for a control domain's documents),
        ``prompt`` (the text without its last word) and ``answer`` (that word), in domain then
        split order (train, val, test).
        ``sample_id`` is ``"<domain>-<split>-<index>"``. Validation documents come from the
        training distribution but are not trained on; test documents are the held-out task.

    Examples
    --------
    >>> corpus = make_corpus(n_train=4, n_test=2, seed=0)
    >>> corpus.group_by("domain", "split").len().sort("domain", "split").rows()[:2]
    [('arithmetic', 'test', 2), ('arithmetic', 'train', 4)]
    """
    if min(n_train, n_val, n_test) < 0:
        msg = f"document counts must be >= 0; got n_train={n_train}, n_val={n_val}, n_test={n_test}"
        raise InputError(msg)
    if not 0.0 <= atomic_share <= 1.0:
        msg = f"atomic_share must be in [0, 1]; got {atomic_share}"
        raise InputError(msg)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or not domains:
        msg = f"unknown domain(s) {unknown or list(domains)}; choose from {DOMAINS}"
        raise InputError(msg)
    world = make_world(seed=seed, held_out=held_out)
    rows: list[tuple[str, str, str, str]] = []
    for domain in domains:
        for split, n in (("train", n_train), (_VAL, n_val), ("test", n_test)):
            rng = random.Random(f"{seed}-{domain}-{split}")
            docs = _documents(
                domain, n, rng, world, test=split == "test", atomic_share=atomic_share
            )
            rows += [(f"{domain}-{split}-{i:06d}", t, domain, split) for i, t in enumerate(docs)]
    frame = pl.DataFrame(rows, schema=list(SAMPLES), orient="row").with_columns(
        control=pl.col("domain").is_in(list(CONTROL_DOMAINS)),
        prompt=pl.col("text").str.replace(r" \S+$", ""),
        answer=pl.col("text").str.extract(r"(\S+)$"),
    )
    return conform(frame, SAMPLES, name="samples")
