"""Agreement of one metric's scores with a ``HumanSet``, by the set's protocol."""

from __future__ import annotations

import math

import numpy as np

from editmetrics.analysis.stats import correlate_arrays, spearman
from editmetrics.analysis.metaeval.loaders import HumanSet
from editmetrics.analysis.metaeval.protocols import (accuracy_with_ties_genai, accuracy_with_ties_grid, accuracy_without_ties, bootstrap,
                        imagenhub_average, per_model_spearman)


def scores_from_rows(rows, key: str) -> dict[str, float | None]:
    """id -> score (None when the metric failed on that record)."""
    out = {}
    for row in rows:
        value = (row.get("scores") or {}).get(key)
        out[str(row["id"])] = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return out


def evaluate(hs: HumanSet, scores: dict[str, float | None], *, higher_is_better: bool = True,
             protocol: str | None = None, label: str = "O", n_boot: int = 1000, seed: int = 0) -> dict:
    sign = 1.0 if higher_is_better else -1.0
    known = {k: sign * v for k, v in scores.items() if v is not None}
    missing = sorted(c for c in hs.candidates if c not in known)
    if hs.kind == "pairwise":
        out = _pairwise(hs, known, protocol or "genai-bench", n_boot, seed)
    elif hs.kind == "per_model":
        out = _per_model(hs, known, label, n_boot, seed)
    else:
        out = _mos(hs, known, n_boot, seed)
    out["candidates"] = len(hs.candidates)
    out["unscored"] = len(missing)
    if missing:
        out["unscored_examples"] = missing[:5]
    out["higher_is_better"] = higher_is_better
    return out


def _pairwise(hs: HumanSet, known: dict, protocol: str, n_boot: int, seed: int) -> dict:
    kept = [(a, b, h, g) for a, b, h, g in hs.pairs if a in known and b in known]
    h = np.array([p[2] for p in kept], dtype=np.float64)
    m = np.array([known[p[0]] - known[p[1]] for p in kept], dtype=np.float64)
    groups = np.array([p[3] for p in kept])
    out: dict = {"protocol": protocol, "pairs": len(kept), "pairs_dropped": len(hs.pairs) - len(kept),
                 "human_ties": int(np.sum(h == 0))}
    if protocol == "genai-bench":
        acc, eps = accuracy_with_ties_genai(h, m)
        out.update(accuracy_with_ties=acc, epsilon=eps,
                   accuracy_with_ties_grid=accuracy_with_ties_grid(h, m)[0],
                   accuracy_without_ties=accuracy_without_ties(h, m))
        out["accuracy_with_ties_ci95"] = bootstrap(lambda i: accuracy_with_ties_genai(h[i], m[i])[0],
                                                   len(kept), n_boot, seed)
        return out
    if protocol != "editreward-bench":
        raise ValueError(f"unknown pairwise protocol {protocol!r}")
    per_group = {}
    eps_by_group = {}
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        if g == "2-Pair":
            acc, eps = accuracy_with_ties_grid(h[sel], m[sel])
            per_group[g] = {"pairwise_accuracy": acc, "kind": "with ties", "epsilon": eps}
            eps_by_group[g] = eps
        else:
            per_group[g] = {"pairwise_accuracy": accuracy_without_ties(h[sel], m[sel]), "kind": "without ties"}
        per_group[g]["pairs"] = int(sel.sum())
    strict_total = strict_ok = 0
    for ids, ranking, g in hs.rankings:
        if not all(i in known for i in ids):
            continue
        s = [known[i] for i in ids]
        ok = _strict_correct(ranking, s, eps_by_group.get(g, 0.0))
        per_group.setdefault(g, {}).setdefault("strict_correct", 0)
        per_group[g].setdefault("strict_total", 0)
        per_group[g]["strict_correct"] += ok
        per_group[g]["strict_total"] += 1
        strict_ok += ok
        strict_total += 1
    for g in per_group.values():
        if g.get("strict_total"):
            g["strict_ranking_accuracy"] = g["strict_correct"] / g["strict_total"]
    overall, eps = accuracy_with_ties_grid(h, m)
    out.update(groups=per_group, pairwise_accuracy=overall, epsilon=eps,
               strict_ranking_accuracy=strict_ok / strict_total if strict_total else None,
               strict_total=strict_total)
    out["pairwise_accuracy_ci95"] = bootstrap(lambda i: accuracy_with_ties_grid(h[i], m[i])[0],
                                              len(kept), n_boot, seed)
    return out


def _strict_correct(ranking: str, scores: list[float], eps: float) -> bool:
    """EditReward-Bench's strict ranking check (a tie needs |s0 - s1| <= epsilon)."""
    if ranking in ("A=B=Good", "A=B=Bad"):
        return abs(scores[0] - scores[1]) <= eps
    if ranking == "A>B":
        gt = (0, 1)
    elif ranking in ("B>A", "A<B"):
        gt = (1, 0)
    elif "=" in ranking:
        return False  # malformed: the released code counts it as not correct
    else:
        order = ranking.replace(">", "").replace("<", "")
        if len(order) != len(scores):
            return False
        gt = tuple(ord(c) - ord("A") for c in order)
    return tuple(int(i) for i in np.argsort(scores)[::-1]) == gt


def _per_model(hs: HumanSet, known: dict, label: str, n_boot: int, seed: int) -> dict:
    ids = [c for c in hs.items if c in known]
    models = np.array([hs.items[c]["model"] for c in ids])
    x = np.array([known[c] for c in ids], dtype=np.float64)
    y = np.array([hs.items[c]["labels"][label] for c in ids], dtype=np.float64)

    def stat(idx):
        groups = {mname: (x[idx][models[idx] == mname], y[idx][models[idx] == mname]) for mname in set(models[idx])}
        return per_model_spearman(groups)["average"]

    result = per_model_spearman({mname: (x[models == mname], y[models == mname]) for mname in set(models.tolist())})
    out = {"protocol": "imagenhub", "label": label, "items": len(ids), **result,
           "average_ci95": bootstrap(stat, len(ids), n_boot, seed, strata=models)}
    # over the models the metric scored (as the released notebook, which iterates them)
    out["human_ceiling"] = human_ceiling(hs, label, models=set(models.tolist()))
    return out


def _rater_value(r: list[float], label: str) -> float:  # imagenhub raters' [SC, PQ]
    return {"SC": r[0], "PQ": r[1], "O": math.sqrt(r[0] * r[1])}[label]


def human_ceiling(hs: HumanSet, label: str, models: set | None = None) -> dict | None:
    """VIEScore's human-to-human protocol: per model and rater, Spearman of that
    rater against the mean of the others; tanh(mean) over raters, then (our
    aggregation) tanh(mean) over models."""
    by_model: dict[str, list] = {}
    for item in hs.items.values():
        if item.get("raters") and len(item["raters"]) >= 2 and (models is None or item["model"] in models):
            by_model.setdefault(item["model"], []).append(item["raters"])
    if not by_model:
        return None
    per_model = {}
    for model, items in sorted(by_model.items()):
        n_raters = len(items[0])
        rhos = []
        for t in range(n_raters):
            target = [_rater_value(rs[t], label) for rs in items]
            others = [math.fsum(_rater_value(rs[k], label) for k in range(n_raters) if k != t) / (n_raters - 1)
                      for rs in items]
            rhos.append(spearman(target, others))
        per_model[model] = imagenhub_average(rhos)
    values = list(per_model.values())
    return {"per_model": per_model,
            "average": None if any(v is None for v in values) else imagenhub_average(values)}


def _mos(hs: HumanSet, known: dict, n_boot: int, seed: int) -> dict:
    ids = [c for c in hs.items if c in known]
    x = [known[c] for c in ids]
    y = [hs.items[c]["labels"]["MOS"] for c in ids]
    out = {"protocol": "mos", **correlate_arrays(x, y, higher_is_better=True, n_boot=n_boot, seed=seed)}
    return out
