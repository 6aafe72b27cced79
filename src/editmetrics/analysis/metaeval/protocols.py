"""Agreement protocols, reproduced from the released evaluation code.

Pairwise accuracy with ties (Deutsch et al. 2023, arXiv 2305.14324, "tie
calibration"): human labels ``h`` (1: first better, -1: second better, 0: tie)
against metric differences ``m = score(first) - score(second)``; a pair is a
model tie when ``|m| <= epsilon``, and epsilon is chosen to maximise accuracy
(C + Thm) / N. Two released variants, kept apart because they differ when
several pairs share one ``|m|`` (integer judge scores!):

- ``accuracy_with_ties_genai``: GenAI-Bench editing as scored by
  TIGER-AI-Lab/EditReward ``evaluate/eval_bench.py`` ``calc_accuracy_with_ties``:
  pairs are (stably) sorted by ``|m|`` and made ties one at a time; the best
  accuracy over these prefixes is taken. A prefix may split a group of equal
  ``|m|``, which no single epsilon realises, so this can exceed the grid value.
- ``accuracy_with_ties_grid``: EditReward-Bench's
  ``calc_accuracy_with_ties_for_edit_reward_bench``: epsilon over
  ``{0} ∪ {|m|}``, the first best kept.

``accuracy_without_ties``: C / (C + D) over pairs humans did not tie (a model
tie, m == 0, counts as discordant), as ``calc_accuracy_without_ties``.

Per-model Spearman (ImagenHub / VIEScore ``analyze_json.ipynb``): Spearman per
generating model over the items it edited, then ``average_correlation``:
tanh(mean(rho)). The released code applies tanh to the mean of the raw rho
(not of atanh(rho)), so this is not a Fisher-z average; we reproduce it and
report the plain mean beside it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from editmetrics.analysis.stats import spearman


def suff_stats(h, m, epsilon: float) -> tuple[int, int, int, int, int]:
    """(C, D, Th, Tm, Thm) at tie threshold ``epsilon`` (see the module docstring)."""
    h = np.asarray(h, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    model_tie = np.abs(m) <= epsilon
    human_tie = h == 0
    thm = int(np.sum(human_tie & model_tie))
    th = int(np.sum(human_tie & ~model_tie))
    tm = int(np.sum(~human_tie & model_tie))
    rest = ~human_tie & ~model_tie
    c = int(np.sum(rest & (h * m > 0)))
    d = int(np.sum(rest)) - c
    return c, d, th, tm, thm


def accuracy_with_ties_genai(h, m) -> tuple[float | None, float | None]:
    """(accuracy, epsilon) by the incremental tie calibration of GenAI-Bench's scorer."""
    h = np.asarray(h, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    n = h.size
    if n == 0:
        return None, None
    order = np.argsort(np.abs(m), kind="stable")  # Python's sorted() is stable too
    hs, ms = h[order], m[order]
    c0 = int(np.sum((hs != 0) & (hs * ms > 0)))
    # making pair k a model tie: a human tie moves Th -> Thm (+1 correct),
    # a concordant pair moves C -> Tm (-1 correct), a discordant one D -> Tm (0)
    gain = np.where(hs == 0, 1, np.where(hs * ms > 0, -1, 0))
    correct = c0 + np.cumsum(gain)
    k = int(np.argmax(correct))  # the first maximum, as the released ``>`` update
    return float(correct[k] / n), float(abs(ms[k]))


def accuracy_with_ties_grid(h, m) -> tuple[float | None, float | None]:
    """(accuracy, epsilon) by EditReward-Bench's grid over {0} ∪ {|m|}."""
    h = np.asarray(h, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if h.size == 0:
        return None, None
    best, best_eps = -1.0, -1.0
    for eps in [0.0] + sorted(set(np.abs(m).tolist())):
        c, d, th, tm, thm = suff_stats(h, m, eps)
        acc = (c + thm) / (c + d + th + tm + thm)
        if acc > best:
            best, best_eps = acc, eps
    return float(best), float(best_eps)


def accuracy_without_ties(h, m) -> float | None:
    c, d, th, tm, thm = suff_stats(h, m, -1.0)
    return None if c + d + tm == 0 else c / (c + d + tm)


def imagenhub_average(rhos) -> float | None:
    """VIEScore/ImagenHub ``average_correlation``: tanh(mean(rho))."""
    values = [float(r) for r in rhos]
    if not values or any(not math.isfinite(r) for r in values):
        return None
    return math.tanh(sum(values) / len(values))


def per_model_spearman(groups: dict[str, tuple[list, list]]) -> dict:
    """Spearman per model; ``average`` = tanh(mean), ``mean`` = plain mean.
    A model whose scores or labels are constant has no rho: the averages are
    then None (the released code would average a NaN) and ``undefined`` names it."""
    per = {name: spearman(x, y) if len(x) >= 2 else math.nan for name, (x, y) in sorted(groups.items())}
    undefined = [k for k, v in per.items() if not math.isfinite(v)]
    finite = [v for v in per.values() if math.isfinite(v)]
    out = {"per_model": {k: (v if math.isfinite(v) else None) for k, v in per.items()},
           "average": None if undefined else imagenhub_average(per.values()),
           "mean": None if undefined or not finite else float(np.mean(finite))}
    if undefined:
        out["undefined"] = undefined
    return out


def bootstrap(stat: Callable[[np.ndarray], float | None], n: int, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95, strata: np.ndarray | None = None) -> list[float | None]:
    """Percentile interval of ``stat(indices)`` over resamples of ``n`` units
    (within each stratum when ``strata`` is given: per-model protocols keep
    every model's item count). Seeded: the same data gives the same interval."""
    if n_boot <= 0 or n < 2:
        return [None, None]
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        v = stat(idx)
        if v is not None and math.isfinite(v):
            values.append(v)
    if not values:
        return [None, None]
    alpha = (1.0 - level) / 2.0
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))]
