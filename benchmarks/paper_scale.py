"""Synthetic data of the paper's scale, shared by the benchmarks: pathways and a whole trace.

The paper traced OLMoE-1B-7B (16 MoE layers of 64 experts, hidden size 2048) at 10 checkpoints
on 10,000 pretraining samples per domain; at tau = 0.7 its pathways have about 470 symbols
(experts plus layer separators). Nothing here is a real model's routing. Two generators:

- :func:`paper_pathways`: pathways of that length from Dirichlet routing weights (what
  ``edit_distance.py`` has always timed);
- :class:`SyntheticRun`: an in-memory trace, a :class:`grokviz.metrics.analyze.TraceSource`
  of ``n_samples`` training samples x ``n_checkpoints``, for :func:`grokviz.analyze`. Each
  sample's router logits mix its own draw with its domain's, more of the domain's at later
  checkpoints (pathways become more shared, as the paper describes), with a little fresh noise
  per checkpoint, and are scaled by a peakedness of the sample's own (logit standard deviation
  0.5 to 0.9; 0.7 gives the paper's 467 symbols), so pathways run from about 390 to 550 symbols
  and pair distances spread as they do between samples that route more or less sharply. Losses: about 35 %
  of the samples settle, from an onset checkpoint of their own, at a final loss between 0.5 and
  3.0 (within 0.05, the paper's delta); the rest stay high and noisy. So ``analyze``'s default
  calibration of ``eps`` finds 20-25 % of each domain memorized, in memorization groups at every
  checkpoint before the last. The trace lives in memory: no store is read or written, so the
  times measured on it leave out reading Parquet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from grokviz.pathways import PackedPathways, encode, select_experts

LAYERS, EXPERTS, HIDDEN, TAU = 16, 64, 2048, 0.7
# the paper's ten checkpoints (steps of OLMoE-1B-7B's pretraining)
PAPER_STEPS = [5_000, 125_000, 245_000, 370_000, 490_000, 615_000, 735_000, 855_000, 980_000]
PAPER_STEPS += [1_100_000]
LOGIT_SD = 0.7  # softmax of N(0, 0.7^2) logits over 64 experts: 467 symbols at tau = 0.7


def paper_pathways(n: int, seed: int = 0) -> PackedPathways:
    """``n`` pathways of the paper's shape (16 layers x 64 experts, about 470 symbols each)."""
    weights = np.random.default_rng(seed).dirichlet(np.full(EXPERTS, 2.0), size=(n, LAYERS))
    return encode(select_experts(weights, tau=TAU), num_experts=EXPERTS)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class SyntheticRun:
    """An in-memory trace of the paper's shape: what :func:`grokviz.analyze` reads.

    Parameters
    ----------
    n_samples, n_checkpoints
        Training samples and checkpoints (the paper: 10,000 and 10).
    domains
        Number of domains the samples are spread over, round robin.
    hidden
        Width of the router rows (the consistency metric's embeddings).
    seed
        Everything is drawn from this seed.
    """

    def __init__(
        self,
        n_samples: int = 10_000,
        n_checkpoints: int = 10,
        *,
        domains: int = 4,
        hidden: int = HIDDEN,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"s{i:05d}" for i in range(n_samples)]
        self.domain = np.arange(n_samples) % domains
        steps = PAPER_STEPS if n_checkpoints == len(PAPER_STEPS) else None
        self.steps = steps or [int(s) for s in np.linspace(5_000, 1_100_000, n_checkpoints)]
        self.labels = [f"step{s}" for s in self.steps]
        own = rng.normal(0, 1, size=(n_samples, LAYERS, EXPERTS)).astype(np.float32)
        shared = rng.normal(0, 1, size=(domains, LAYERS, EXPERTS)).astype(np.float32)
        scale = rng.uniform(LOGIT_SD - 0.2, LOGIT_SD + 0.2, size=(n_samples, 1, 1))
        self.weights: dict[str, np.ndarray] = {}
        self.routers: dict[str, np.ndarray] = {}
        for c, label in enumerate(self.labels):
            angle = 0.35 * np.pi / 2 * c / max(1, n_checkpoints - 1)  # up to 35 % of the way
            noise = rng.normal(0, 0.2, size=own.shape).astype(np.float32)
            logits = np.cos(angle) * own + np.sin(angle) * shared[self.domain] + noise
            logits *= (scale / np.sqrt(1 + 0.2**2)).astype(np.float32)
            self.weights[label] = _softmax(logits).astype(np.float32)
            routers = rng.normal(0, 1 / np.sqrt(hidden), size=(LAYERS, EXPERTS, hidden))
            self.routers[label] = routers.astype(np.float32)
        self._losses = self._make_losses(rng, n_samples, n_checkpoints)

    def _make_losses(self, rng: np.random.Generator, n: int, n_ckpt: int) -> pl.DataFrame:
        settles = rng.random(n) < 0.35
        onset = rng.integers(0, max(1, n_ckpt - 1), size=n)  # never at the last checkpoint
        final = rng.uniform(0.5, 3.0, size=n)
        c = np.arange(n_ckpt)[None, :]
        before = final[:, None] + 1.0 + rng.uniform(0.3, 1.5, size=(n, n_ckpt))
        after = final[:, None] + rng.normal(0, 0.008, size=(n, n_ckpt))
        memorized = np.where(c >= onset[:, None], after, before)
        never = 3.5 + rng.normal(0, 0.5, size=(n, n_ckpt))
        loss = np.where(settles[:, None], memorized, never)
        return pl.DataFrame(
            {
                "checkpoint": np.repeat(np.array(self.labels)[None, :], n, 0).ravel(),
                "step": np.repeat(np.array(self.steps)[None, :], n, 0).ravel(),
                "sample_id": np.repeat(np.array(self.ids), n_ckpt),
                "loss": loss.ravel(),
                "n_tokens": np.full(n * n_ckpt, 512, dtype=np.int32),
            }
        )

    # -- the TraceSource protocol -----------------------------------------------------------

    def checkpoints(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "checkpoint": self.labels,
                "step": self.steps,
                "tokens": None,
                "source": "synthetic",
                "revision": None,
                "sha": None,
            }
        )

    def samples(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "sample_id": self.ids,
                "text": self.ids,
                "domain": [f"domain{d}" for d in self.domain],
                "split": "train",
            }
        )

    def losses(self) -> pl.DataFrame:
        return self._losses

    def routing_array(
        self, checkpoint: str, *, sample_ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        weights = self.weights[checkpoint]
        if sample_ids is None:
            return weights, list(self.ids)
        pos = {s: i for i, s in enumerate(self.ids)}
        return weights[[pos[s] for s in sample_ids]], list(sample_ids)

    def router_array(self, checkpoint: str) -> np.ndarray:
        return self.routers[checkpoint]
