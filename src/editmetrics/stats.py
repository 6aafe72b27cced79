"""Summaries, bootstrap intervals and (later) correlation protocols."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values, stat=np.mean, n_boot: int = BOOTSTRAP_SAMPLES, level: float = 0.95,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (seeded: the same data gives the same interval)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1 or not np.all(np.isfinite(data)):
        value = float(stat(data))
        return (value, value)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_boot, data.size))
    stats = np.apply_along_axis(stat, 1, data[idx]) if stat is not np.mean else data[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def describe(values: list[float], failures: int) -> dict:
    """n, mean, std (ddof=1), 95% bootstrap interval of the mean, failures."""
    data = np.asarray(values, dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": [None, None], "failures": failures}
    with np.errstate(invalid="ignore"):
        mean = float(data.mean())
        std = float(data.std(ddof=1)) if n > 1 else 0.0
    low, high = bootstrap_ci(data)
    return {"n": n, "mean": mean, "std": std, "ci95": [low, high], "failures": failures}


def summarize(rows: Iterable[dict], by: str | None = "category") -> dict:
    """Per score key: overall statistics and, when rows carry ``by``, per group."""
    values: dict[str, list[float]] = defaultdict(list)
    fails: dict[str, int] = defaultdict(int)
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    group_fails: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    keys: list[str] = []
    for row in rows:
        group = row.get(by) if by else None
        for key, value in row.get("scores", {}).items():
            if key not in values and key not in fails:
                keys.append(key)
            if value is None:
                fails[key] += 1
                if group is not None:
                    group_fails[str(group)][key] += 1
            else:
                values[key].append(float(value))
                if group is not None:
                    groups[str(group)][key].append(float(value))
    out = {"overall": {k: describe(values[k], fails[k]) for k in keys}}
    if groups or group_fails:
        out["by"] = by
        out["groups"] = {
            g: {k: describe(groups[g][k], group_fails[g][k]) for k in keys}
            for g in sorted(set(groups) | set(group_fails))
        }
    return out
