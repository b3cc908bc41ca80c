"""Which probe samples count as memorized *now*: an online memorization criterion.

The paper (§2.1) calls training sample ``i`` memorized from checkpoint ``t*`` when for every
``t >= t*`` its loss ``l_t <= eps`` and ``|l_t - l_T| <= delta``, with ``T`` the *final*
checkpoint. A run in progress has no final checkpoint. The online criterion applies the paper's
rule to the run as it stands, the latest observation ``n`` taking the place of ``T``:

    online onset at ``n``:  the earliest observation ``t*`` such that for every ``t`` in
                            ``t* .. n``: ``l_t <= eps`` and ``|l_t - l_n| <= delta``;
    memorized at ``n``:     an online onset exists and the rule has held for at least
                            ``window`` observations (``n - t* + 1 >= window``).

The window is needed because with ``T = n`` the last observation satisfies ``|l_n - l_n| <= delta``
trivially: a sample whose loss has just dropped below ``eps`` would count at once. With
``window = k`` its loss must have stayed within ``delta`` of the latest value over the last ``k``
observations (``k - 1`` intervals of the monitor's frequency).

How it relates to the paper's criterion (tested in ``tests/test_monitor_online.py``):

- at the last observation of a finished run, with the same ``eps`` and ``delta``, the online
  onset *is* the paper's onset, and with ``window = 2`` the memorized set is exactly the set the
  paper analyzes (memorized before ``T``, :func:`grokviz.analyze`'s ``memorized_only``); a larger
  window gives the subset memorized at least ``window - 1`` observations before the end;
- during the run a sample can leave the set again: when its loss later moves by more than
  ``delta``, the onset of the longer run moves past it. The paper, knowing ``l_T``, would not have
  counted it at those earlier observations either. The online set at ``n`` is the paper's set of
  a run that stopped at ``n``.

``eps`` is a float or a ``{domain: eps}`` dict, or ``None`` to choose it per domain the paper's
way at every observation: the smallest multiple of ``grid_step`` that puts a ``target`` fraction
(20-25 %) of the domain's probe samples in the memorized set. A calibrated ``eps`` keeps that
fraction near the target by construction, so then the informative quantities are *which*
samples qualify and the ``eps`` it takes (which falls as the run memorizes); give a fixed ``eps``
to watch the memorized fraction itself grow. After the run, ``grokviz.analyze(store)`` applies
the paper's own criterion to the same store, with ``T`` the last observation.

Examples
--------
>>> import numpy as np
>>> losses = np.array([[3.0, 0.5, 0.48, 0.47], [3.0, 2.0, 0.5, 0.1]])
>>> state = OnlineCriterion(eps=1.0, window=2).evaluate(losses, ["a", "a"])
>>> state.memorized.tolist(), state.onset.tolist()  # onset: an observation index, -1 for none
([True, False], [1, 3])

The second sample's loss has only just dropped below ``eps``: it has an onset, at the latest
observation, but the rule has not held for ``window`` observations yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grokviz.errors import InputError
from grokviz.metrics.onsets import memorization_suffix

__all__ = ["OnlineCriterion", "OnlineState"]


@dataclass(frozen=True)
class OnlineState:
    """The online criterion at one observation, one entry per probe sample.

    Attributes
    ----------
    memorized : np.ndarray
        bool ``[N]``: the sample counts as memorized at this observation.
    onset : np.ndarray
        int ``[N]``: index of its online onset observation, ``-1`` when there is none (an onset
        can exist while the window is not yet full).
    eps : np.ndarray
        float ``[N]``: the ``eps`` applied to the sample (its domain's).
    """

    memorized: np.ndarray
    onset: np.ndarray
    eps: np.ndarray


@dataclass(frozen=True)
class OnlineCriterion:
    """The online memorization criterion (see the module docstring for its definition).

    Parameters
    ----------
    eps
        Loss ceiling: a float, a ``{domain: eps}`` dict (domains missing from it are
        calibrated), or ``None`` to calibrate every domain at every observation.
    delta
        Allowed distance from the latest loss (paper: 0.05).
    window
        Observations the rule must have held for, the latest included (at least 2).
    target, grid_step
        The calibration of ``eps`` (paper: 20-25 % of samples, in steps of 0.1).

    Examples
    --------
    >>> OnlineCriterion(eps=1.5).window
    3
    """

    eps: float | Mapping[str, float] | None = None
    delta: float = 0.05
    window: int = 3
    target: tuple[float, float] = (0.20, 0.25)
    grid_step: float = 0.1

    def __post_init__(self) -> None:
        if self.window < 2:
            msg = (
                f"window must be at least 2 observations, got {self.window}: with one, every "
                "sample would count as memorized the moment its loss fell below eps"
            )
            raise InputError(msg)
        if self.delta < 0 or not math.isfinite(self.delta):
            msg = f"delta must be a finite number >= 0, got {self.delta}"
            raise InputError(msg)
        if self.grid_step <= 0:
            msg = f"grid_step must be > 0, got {self.grid_step}"
            raise InputError(msg)
        lo, hi = self.target
        if not 0 < lo <= hi <= 1:
            msg = f"target must be a (low, high) fraction range within (0, 1], got {self.target}"
            raise InputError(msg)
        values = self.eps.values() if isinstance(self.eps, Mapping) else [self.eps]
        bad = [v for v in values if v is not None and not (v > 0 and math.isfinite(v))]
        if bad:
            msg = f"eps must be positive and finite, got {bad[0]}"
            raise InputError(msg)

    def eps_for(self, domain: str) -> float | None:
        """The fixed ``eps`` of ``domain``, or ``None`` when it is calibrated."""
        if isinstance(self.eps, Mapping):
            value = self.eps.get(domain)
            return None if value is None else float(value)
        return None if self.eps is None else float(self.eps)

    def evaluate(self, losses: np.ndarray, domains: Sequence[str]) -> OnlineState:
        """The criterion at the latest observation.

        Parameters
        ----------
        losses
            ``[N, n]`` losses of the probe samples at the observations so far, in step order;
            NaN (not traced, or not finite) never counts as memorized.
        domains
            The domain of each of the ``N`` samples.

        Returns
        -------
        OnlineState
            Who is memorized at observation ``n - 1``, their onsets, and the ``eps`` used.
        """
        losses = np.asarray(losses, dtype=np.float64)
        if losses.ndim != 2 or losses.shape[0] != len(domains):
            msg = f"losses must be [samples, observations] with one domain per row; got {losses.shape} and {len(domains)} domains"
            raise InputError(msg)
        n_samples, n_obs = losses.shape
        memorized = np.zeros(n_samples, dtype=bool)
        onset = np.full(n_samples, -1, dtype=np.int64)
        eps_used = np.full(n_samples, np.nan)
        if n_obs == 0:
            return OnlineState(memorized, onset, eps_used)
        domain_of = np.asarray(list(domains), dtype=object)
        for domain in sorted(set(domain_of.tolist())):
            rows = np.flatnonzero(domain_of == domain)
            part = losses[rows]
            eps = self.eps_for(domain)
            if eps is None:
                eps = self._calibrate(part)
            found = memorization_suffix(part, eps=eps, delta=self.delta)
            onset[rows] = found
            memorized[rows] = (found >= 0) & (n_obs - found >= self.window)
            eps_used[rows] = eps
        return OnlineState(memorized, onset, eps_used)

    def _calibrate(self, losses: np.ndarray) -> float:
        """Smallest grid eps whose memorized fraction lies in ``target`` (else the closest)."""
        lo, hi = self.target
        n_obs = losses.shape[1]
        finite = losses[np.isfinite(losses)]
        top = float(finite.max()) if finite.size else self.grid_step
        best_eps, best_gap = self.grid_step, math.inf
        for k in range(1, max(1, math.ceil(top / self.grid_step) + 1) + 1):
            eps = round(k * self.grid_step, 10)
            found = memorization_suffix(losses, eps=eps, delta=self.delta)
            frac = float(np.mean((found >= 0) & (n_obs - found >= self.window)))
            if lo <= frac <= hi:
                return eps
            gap = lo - frac if frac < lo else frac - hi
            if gap < best_gap:  # strict: ties keep the smaller eps
                best_eps, best_gap = eps, gap
        return best_eps
