"""Summaries, bootstrap intervals and (later) correlation protocols."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
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
    # resamples drawn in chunks of about 4M indices: the same stream (and
    # interval) as one (n_boot, n) draw, without n_boot * n memory
    chunk = max(1, (1 << 22) // data.size)
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, data.size, size=(min(chunk, n_boot - start), data.size))
        parts.append(np.apply_along_axis(stat, 1, data[idx]) if stat is not np.mean else data[idx].mean(axis=1))
    stats = np.concatenate(parts)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def describe(values: list[float], failures: int, not_applicable: int = 0) -> dict:
    """n, mean, std (ddof=1), 95% bootstrap interval of the mean, failures
    (null scores with a recorded error) and not_applicable (null scores with
    none, e.g. BPM's size judge on a global edit). The std of values holding
    an infinity (PSNR of identical images) is undefined: None, not nan."""
    data = np.asarray(values, dtype=np.float64)
    n = int(data.size)
    counts = {"failures": failures, "not_applicable": not_applicable}
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": [None, None], **counts}
    with np.errstate(invalid="ignore"):
        mean = float(data.mean())
        std = float(data.std(ddof=1)) if n > 1 else 0.0
    defined = math.isfinite(std) and math.isfinite(mean)  # one inf as several: undefined
    low, high = bootstrap_ci(data)
    return {"n": n, "mean": mean, "std": std if defined else None, "ci95": [low, high], **counts}


def _has_error(row: dict, key: str) -> bool:
    """Whether a null score ``key`` comes with a recorded error: the errors are
    keyed by metric (``bpm``), its components by ``metric.part`` (``bpm.s_size``)."""
    errors = row.get("errors") or {}
    return any(key == name or key.startswith(name + ".") for name in errors)


@dataclass
class _Cell:
    values: list = field(default_factory=list)
    failures: int = 0
    not_applicable: int = 0


def summarize(rows: Iterable[dict], by: str | None = "category") -> dict:
    """Per score key: overall statistics and, when rows carry ``by``, per group."""
    cells: dict = defaultdict(lambda: defaultdict(_Cell))  # scope (None = overall, else group) -> key -> cell
    keys: list[str] = []
    for row in rows:
        group = row.get(by) if by else None
        scopes = [None] if group is None else [None, str(group)]
        for key, value in row.get("scores", {}).items():
            if key not in keys:
                keys.append(key)
            for scope in scopes:
                cell = cells[scope][key]
                if value is not None:
                    cell.values.append(float(value))
                elif _has_error(row, key):
                    cell.failures += 1
                else:
                    cell.not_applicable += 1

    def table(scope) -> dict:
        return {k: describe(cells[scope][k].values, cells[scope][k].failures, cells[scope][k].not_applicable)
                for k in keys}

    out = {"overall": table(None)}
    groups = sorted(g for g in cells if g is not None)
    if groups:
        out["by"] = by
        out["groups"] = {g: table(g) for g in groups}
    return out


# ---------------------------------------------------------------------------
# Correlation protocol (IQA-style): SRCC, PLCC (raw and after a 4-parameter
# logistic), KRCC, bootstrap intervals, per-group tables.
# ---------------------------------------------------------------------------

MIN_PAIRS = 3  # fewer pairs give no meaningful correlation (and no interval)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two 1-D arrays (nan when either is constant)."""
    xc = x - x.mean()
    yc = y - y.mean()
    denom = math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc)))
    if denom == 0.0:
        return math.nan
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r per row of two (B, n) arrays: the vectorised bootstrap."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = (xc * yc).sum(axis=1)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan), -1.0, 1.0)


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties get the mean of their ranks (as
    Spearman's rho requires)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, axis=-1, kind="mergesort")
    sorted_vals = np.take_along_axis(values, order, axis=-1)
    n = values.shape[-1]
    ranks_sorted = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), values.shape).copy()
    # A tie group is a run of equal sorted values: replace its ranks by their mean.
    new_group = np.ones(values.shape, dtype=bool)
    new_group[..., 1:] = sorted_vals[..., 1:] != sorted_vals[..., :-1]
    group_id = np.cumsum(new_group, axis=-1) - 1
    flat_rows = values.reshape(-1, n) if values.ndim > 1 else values[None, :]
    out = np.empty_like(flat_rows)
    gid = group_id.reshape(-1, n) if values.ndim > 1 else group_id[None, :]
    rs = ranks_sorted.reshape(-1, n) if values.ndim > 1 else ranks_sorted[None, :]
    od = order.reshape(-1, n) if values.ndim > 1 else order[None, :]
    for i in range(flat_rows.shape[0]):
        sums = np.bincount(gid[i], weights=rs[i])
        counts = np.bincount(gid[i])
        row = np.empty(n)
        row[od[i]] = (sums / counts)[gid[i]]
        out[i] = row
    return out.reshape(values.shape)


def spearman(x, y) -> float:
    """Spearman's rho: Pearson's r of average ranks."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return _pearson(rank_average(x), rank_average(y))


def pearson(x, y) -> float:
    return _pearson(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))


def kendall(x, y) -> float:
    """Kendall's tau-b (ties in either variable handled), via scipy's
    O(n log n) implementation: an O(n^2) loop would be too slow for the
    bootstrap on thousands of records."""
    from scipy.stats import kendalltau

    with np.errstate(invalid="ignore", divide="ignore"):
        tau = kendalltau(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)).statistic
    return float(tau)


KENDALL_MATRIX_MAX_N = 1500  # the n x n pair matrices below: 18 MB each at this size


def _kendall_bootstrap(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every bootstrap resample ``(x[idx[k]], y[idx[k]])``.

    tau-b = sum(sx * sy) / sqrt(sum|sx| * sum|sy|) over pairs i < j of the
    resample, with sx = sign(x_i - x_j) (|sx| counts pairs not tied in x). A
    resample is a multiset of the original points, so with c the count of
    each point in it, each sum is c' M c / 2 for the fixed matrix M over the
    original pairs (repeated points tie: M's diagonal is 0). One matrix
    product per statistic replaces a tau computation per resample; beyond
    ``KENDALL_MATRIX_MAX_N`` points scipy's routine runs per resample.
    """
    b, n = idx.shape
    if len(x) > KENDALL_MATRIX_MAX_N:
        return np.array([kendall(x[i], y[i]) for i in idx])
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    counts = np.bincount((np.arange(b)[:, None] * len(x) + idx).ravel(), minlength=b * len(x))
    counts = counts.reshape(b, len(x)).astype(np.float64)
    num = ((counts @ (sx * sy)) * counts).sum(axis=1)
    den = np.sqrt(((counts @ np.abs(sx)) * counts).sum(axis=1) * ((counts @ np.abs(sy)) * counts).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan), -1.0, 1.0)


def logistic4(x, b1, b2, b3, b4):
    """The standard (VQEG) 4-parameter logistic used before PLCC in IQA:
    ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / (abs(b4) + 1e-12), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic4(x, y) -> tuple[np.ndarray | None, str | None]:
    """Least-squares fit of ``logistic4`` mapping predictions ``x`` to labels
    ``y``. Two starts, increasing (b1=max(y), b2=min(y)) and decreasing
    (swapped), both with b3=mean(x), b4=std(x); the one with the smaller
    squared error wins. Returns (parameters, None) or (None, reason)."""
    import warnings

    from scipy.optimize import curve_fit

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scale = float(x.std()) or 1.0
    best, reason = None, None
    for b1, b2 in ((float(y.max()), float(y.min())), (float(y.min()), float(y.max()))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = curve_fit(logistic4, x, y, p0=[b1, b2, float(x.mean()), scale], maxfev=20000)
        except (RuntimeError, ValueError, TypeError) as exc:  # no convergence from this start
            reason = f"logistic fit failed: {exc}"
            continue
        if not np.all(np.isfinite(params)):
            reason = "logistic fit failed: non-finite parameters"
            continue
        sse = float(((logistic4(x, *params) - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, params)
    return (best[1], None) if best is not None else (None, reason)


def plcc_after_logistic(x, y, params) -> float:
    """PLCC between the fitted curve's values and the labels, signed by the
    curve's direction (b1 > b2: increasing): a metric that relates to the label
    against its declared direction stays negative here too, as for SRCC."""
    fitted = logistic4(x, *params)
    r = pearson(fitted, y)
    return r if params[0] >= params[1] else -r


def _interval(samples: np.ndarray, level: float) -> list[float | None]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return [None, None]
    alpha = (1.0 - level) / 2.0
    return [float(np.quantile(samples, alpha)), float(np.quantile(samples, 1.0 - alpha))]


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def correlate_arrays(pred, label, *, higher_is_better: bool = True, n_boot: int = BOOTSTRAP_SAMPLES,
                     level: float = 0.95, seed: int = BOOTSTRAP_SEED) -> dict:
    """SRCC, PLCC, PLCC after the logistic fit, KRCC between a metric and a
    label, each with a percentile bootstrap interval over resampled pairs.

    A lower-is-better metric is negated first (never ``abs()``): a distance
    that falls as the label rises gets a *positive* correlation, and one that
    wrongly rises with the label stays negative.
    """
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(label, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("predictions and labels differ in length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not higher_is_better:
        x = -x
    n = int(x.size)
    out: dict = {"n": n, "srcc": None, "plcc": None, "plcc_logistic": None, "krcc": None,
                 "srcc_ci95": [None, None], "plcc_ci95": [None, None],
                 "plcc_logistic_ci95": [None, None], "krcc_ci95": [None, None]}
    if n < MIN_PAIRS:
        out["note"] = f"fewer than {MIN_PAIRS} pairs"
        return out
    if np.all(x == x[0]) or np.all(y == y[0]):
        out["note"] = "constant " + ("metric" if np.all(x == x[0]) else "label") + ": correlation undefined"
        return out
    out["srcc"] = _finite(spearman(x, y))
    out["plcc"] = _finite(pearson(x, y))
    out["krcc"] = _finite(kendall(x, y))
    params, reason = fit_logistic4(x, y)
    fitted = None
    if params is not None:
        fitted = logistic4(x, *params)
        sign = 1.0 if params[0] >= params[1] else -1.0
        out["plcc_logistic"] = _finite(plcc_after_logistic(x, y, params))
        out["logistic_params"] = [float(p) for p in params]
        if out["plcc_logistic"] is None:
            out["note"] = "logistic fit is flat: PLCC after the fit is undefined"
    else:
        out["note"] = reason
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        xb, yb = x[idx], y[idx]
        out["srcc_ci95"] = _interval(_pearson_rows(rank_average(xb), rank_average(yb)), level)
        out["plcc_ci95"] = _interval(_pearson_rows(xb, yb), level)
        if fitted is not None:
            # The logistic is fit once on all pairs; the interval resamples
            # (fitted, label) pairs: refitting 1000 times would cost minutes
            # on a full test split for a negligible change of the interval.
            out["plcc_logistic_ci95"] = _interval(sign * _pearson_rows(fitted[idx], yb), level)
        out["krcc_ci95"] = _interval(_kendall_bootstrap(x, y, idx), level)
    return out


def label_value(row: dict, label: str):
    """The label of a result row: a top-level field, else a key of ``scores``."""
    value = row.get(label)
    if value is None:
        value = row.get("scores", {}).get(label)
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def correlate_rows(rows: Iterable[dict], label: str, metrics: list[str] | None = None, by: str | None = None,
                   direction: dict[str, bool] | None = None, n_boot: int = BOOTSTRAP_SAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> list[dict]:
    """One result per metric key: overall correlations with ``label`` and,
    when ``by`` is given, the same per group plus the standard deviation of
    SRCC across groups (population std over groups with a defined SRCC).

    ``direction`` maps a score key to higher_is_better (``metric_directions``
    builds it from the registry); a key missing there counts as
    higher-is-better and is marked ``direction: "assumed higher"``.
    """
    rows = list(rows)
    if metrics is None:
        metrics = []
        for row in rows:
            for key in row.get("scores", {}):
                if key != label and key not in metrics:
                    metrics.append(key)
    direction = direction or {}
    results = []
    for key in metrics:
        pairs = []  # (metric value, label, group)
        missing = 0
        for row in rows:
            value = row.get("scores", {}).get(key)
            lab = label_value(row, label)
            if value is None or lab is None or not math.isfinite(float(value)):
                missing += 1
                continue
            pairs.append((float(value), lab, str(row.get(by)) if by else None))
        hib = direction.get(key)
        res = {"metric": key, "label": label, "higher_is_better": True if hib is None else hib,
               "direction": "assumed higher" if hib is None else ("higher" if hib else "lower")}
        x = np.array([p[0] for p in pairs])
        y = np.array([p[1] for p in pairs])
        stats = correlate_arrays(x, y, higher_is_better=res["higher_is_better"], n_boot=n_boot, seed=seed)
        res.update(stats)
        res["skipped"] = missing
        if by:
            groups: dict[str, dict] = {}
            for g in sorted({p[2] for p in pairs if p[2] not in (None, "None", "")}):
                gx = np.array([p[0] for p in pairs if p[2] == g])
                gy = np.array([p[1] for p in pairs if p[2] == g])
                groups[g] = correlate_arrays(gx, gy, higher_is_better=res["higher_is_better"],
                                             n_boot=n_boot, seed=seed)
            srccs = [s["srcc"] for s in groups.values() if s["srcc"] is not None]
            res["by"] = by
            res["groups"] = groups
            res["ungrouped"] = sum(1 for p in pairs if p[2] in (None, "None", ""))  # in the overall figures only
            res["srcc_std_across_groups"] = float(np.std(srccs)) if len(srccs) >= 2 else None
        results.append(res)
    return results


def metric_directions(keys: Iterable[str], registry) -> dict[str, bool]:
    """higher_is_better of each score key, from the metric registry.

    A key is a metric spec (``lpips@target``, ``psnr(region=inside)``) or a
    component of one (``spec.component``); components take their metric's
    direction. Keys of unknown metrics are left out.
    """
    from editmetrics.contract.scorekey import metric_class

    out = {}
    for key in keys:
        cls = metric_class(key, registry)
        if cls is not None:
            out[key] = bool(cls.higher_is_better)
    return out


def _fmt(value, ci=None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}"
    if ci is not None and ci[0] is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def format_correlations(results: list[dict]) -> str:
    """Plain-text tables of ``correlate_rows`` results (overall, then per group)."""
    lines: list[str] = []

    def table(title: str, items: list[tuple[str, str, dict]]) -> None:
        lines.append(title)
        width = max([len("metric")] + [len(name) for name, _, _ in items])
        head = f"  {'metric':<{width}}  {'dir':>6}  {'n':>5}  {'SRCC [95% CI]':>24}  {'PLCC [95% CI]':>24}" \
               f"  {'PLCC-logistic [95% CI]':>24}  {'KRCC [95% CI]':>24}"
        lines.append(head)
        for name, direction, s in items:
            lines.append(
                f"  {name:<{width}}  {direction:>6}  {s['n']:>5}  {_fmt(s['srcc'], s['srcc_ci95']):>24}"
                f"  {_fmt(s['plcc'], s['plcc_ci95']):>24}  {_fmt(s['plcc_logistic'], s['plcc_logistic_ci95']):>24}"
                f"  {_fmt(s['krcc'], s['krcc_ci95']):>24}" + (f"  ({s['note']})" if s.get("note") else "")
            )

    if not results:
        return "no metrics to correlate"
    label = results[0]["label"]
    table(f"Correlation with {label!r} (lower-is-better metrics negated; 95% bootstrap intervals):",
          [(r["metric"], r["direction"], r) for r in results])
    if "groups" in results[0]:
        groups = sorted({g for r in results for g in r.get("groups", {})})
        for g in groups:
            table(f"{results[0]['by']} = {g}:",
                  [(r["metric"], r["direction"], r["groups"][g]) for r in results if g in r.get("groups", {})])
        lines.append(f"SRCC standard deviation across {results[0]['by']} values (population std):")
        for r in results:
            lines.append(f"  {r['metric']}: {_fmt(r.get('srcc_std_across_groups'))}")
    return "\n".join(lines)
