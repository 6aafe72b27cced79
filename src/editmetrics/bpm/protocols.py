"""After the pass: pool normalisation and the paper's two evaluation protocols.

- ``pool_rows``: the paper's Norm (min-max over the whole pool of scored
  images) applied to the raw ``s_modify`` / ``s_preserve`` that ``bpm`` wrote,
  giving pooled ``s_semantic`` and ``bpm``. The scoring pass itself is
  append-only, so pooled scores go to a new file (``editmetrics bpm pool``).
- ``human_alignment``: for two models' edits of the same input, does the metric
  prefer the same one as people? (paper Sec. 4.1: P = 1[score_1 > score_2],
  alignment = mean of 1[P_metric == P_human], reported per model pair.)
- ``ground_truth_test``: over (excessively preserved, excessively modified,
  well edited) triplets, the share of triplets in which each kind wins.

Files (JSON Lines or CSV, see docs/bpm.md):
- human scores: ``input`` (the shared source/instruction id), ``model``,
  ``id`` (the record id in the results file), ``human`` (the score);
- triplets: ``input``, ``ep``, ``em``, ``gt`` (record ids in the results file).
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import os
from typing import Any, Iterable

from editmetrics.bpm.metric import combine


class ProtocolError(ValueError):
    """A protocol input is unusable (a usage error: exit status 2)."""


def read_table(path: str) -> list[dict[str, Any]]:
    if not os.path.isfile(path):
        raise ProtocolError(f"file not found: {path}")
    if path.lower().endswith((".csv", ".tsv")):
        with open(path, encoding="utf-8", newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh, delimiter="\t" if path.lower().endswith(".tsv") else ",")]
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ProtocolError(f"{path}: line {number}: invalid JSON: {exc}") from None
    return rows


# ---------------------------------------------------------------------------
# Pool normalisation
# ---------------------------------------------------------------------------


def _preserve_range(values: list[float]) -> tuple[float, float] | None:
    """The released eval script's range of preservation: values of exactly 0 or
    -1 (here s_preserve = 1 - L2 of exactly 1 or 0: global edits, identical
    images, L2 = 1) are left out of the min and max. None when nothing usable
    is left (the released script crashes there: ``min()`` of an empty list)."""
    kept = [v for v in values if v != 1.0 and v != 0.0]
    if not kept or max(kept) <= min(kept):
        return None
    return min(kept), max(kept)


def pool_rows(rows: list[dict], key: str = "bpm", alpha: float | None = None) -> tuple[list[dict], dict]:
    """Rows with pooled ``key`` / ``key.s_semantic`` (raw components kept, the
    normalised ones added as ``key.s_modify_norm`` / ``key.s_preserve_norm``).

    As the released ``eval_human_alignment.py``: min-max of S_modify over every
    row; min-max of S_preserve over the rows whose value is not exactly 1 or 0
    (released preservation 0 / -1), applied to all rows (so a global edit's
    hard-coded perfect preservation normalises above 1). Where no such row is
    left, or they share one value, S_preserve_norm = 0 for every row (documented
    fallback; the released script stops with an error) and the summary says so.
    """
    mod, pres = f"{key}.s_modify", f"{key}.s_preserve"
    usable = [r for r in rows if r.get("scores", {}).get(mod) is not None
              and r.get("scores", {}).get(pres) is not None]
    if not usable:
        raise ProtocolError(f"no row has both {mod!r} and {pres!r}: nothing to pool")
    values = [r["scores"][mod] for r in usable]
    low, high = min(values), max(values)
    if high <= low:
        raise ProtocolError(
            f"{mod} takes a single value ({low}) over the pool: min-max normalisation is undefined; "
            "use the fixed-range scores of the scoring pass"
        )
    ranges = {mod: (low, high), pres: _preserve_range([r["scores"][pres] for r in usable])}
    summary = {"mode": "pool", "n": len(usable), "s_modify_range": list(ranges[mod]),
               "s_preserve_range": list(ranges[pres]) if ranges[pres] else None,
               "s_preserve_excluded": sum(1 for r in usable if r["scores"][pres] in (0.0, 1.0))}
    if ranges[pres] is None:
        summary["s_preserve_fallback"] = ("no s_preserve value other than exactly 1 or 0 (or a single one): "
                                          "s_preserve_norm = 0 for every row")
    out = []
    for row in rows:
        row = copy.deepcopy(row)
        scores = row.setdefault("scores", {})
        details = row.setdefault("details", {}).setdefault(key, {})
        if scores.get(mod) is None or scores.get(pres) is None:
            scores[key] = scores[f"{key}.s_semantic"] = None
            row.setdefault("errors", {}).setdefault(key, "not pooled: raw s_modify/s_preserve missing")
            out.append(row)
            continue
        a = alpha if alpha is not None else float(details.get("alpha", 0.7))
        nm = (scores[mod] - ranges[mod][0]) / (ranges[mod][1] - ranges[mod][0])
        if ranges[pres] is None:
            np_ = 0.0
        else:
            np_ = (scores[pres] - ranges[pres][0]) / (ranges[pres][1] - ranges[pres][0])
        sem = nm + np_
        scores[f"{key}.s_modify_norm"] = nm
        scores[f"{key}.s_preserve_norm"] = np_
        scores[f"{key}.s_semantic"] = sem
        scores[key] = combine(sem, scores.get(f"{key}.s_region"), a)
        details["normalisation"] = {**summary, "alpha": a}
        out.append(row)
    return out, summary


# ---------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------


def _score_index(results: Iterable[dict], key: str) -> dict[str, float]:
    out = {}
    for row in results:
        value = row.get("scores", {}).get(key)
        if value is not None:
            out[str(row["id"])] = float(value)
    return out


def human_alignment(human: list[dict], results: list[dict], key: str, higher_is_better: bool = True,
                    ties: str = "paper") -> dict[str, Any]:
    """Per model pair: share of inputs where metric and people prefer the same model.

    ``ties='paper'``: P = 1[a > b] exactly as the paper (a tie counts as "not
    better"); ``ties='skip'``: inputs where people tie are left out.
    """
    for i, row in enumerate(human, start=1):
        missing = [c for c in ("input", "model", "id", "human") if c not in row]
        if missing:
            raise ProtocolError(f"human scores row {i}: missing column(s) {', '.join(missing)}")
    scores = _score_index(results, key)
    by_input: dict[str, dict[str, tuple[float, str]]] = {}
    for row in human:
        by_input.setdefault(str(row["input"]), {})[str(row["model"])] = (float(row["human"]), str(row["id"]))
    sign = 1.0 if higher_is_better else -1.0
    pairs: dict[str, list[int]] = {}
    missing = 0
    for models in by_input.values():
        for a, b in itertools.combinations(sorted(models), 2):
            (ha, ida), (hb, idb) = models[a], models[b]
            if ida not in scores or idb not in scores:
                missing += 1
                continue
            if ties == "skip" and ha == hb:
                continue
            p_h = ha > hb
            p_m = sign * scores[ida] > sign * scores[idb]
            pairs.setdefault(f"{a} vs {b}", []).append(int(p_h == p_m))
    if not pairs:
        raise ProtocolError(f"no model pair has {key!r} scores for both edits")
    per_pair = {name: {"alignment": sum(v) / len(v), "n": len(v)} for name, v in sorted(pairs.items())}
    average = sum(p["alignment"] for p in per_pair.values()) / len(per_pair)
    return {"metric": key, "pairs": per_pair, "average": average, "missing_scores": missing, "ties": ties}


def ground_truth_test(triplets: list[dict], results: list[dict], key: str,
                      higher_is_better: bool = True) -> dict[str, Any]:
    """Win rates of EP / EM / GT; a tie for first place splits the win."""
    scores = _score_index(results, key)
    wins = {"ep": 0.0, "em": 0.0, "gt": 0.0}
    used = skipped = 0
    sign = 1.0 if higher_is_better else -1.0
    for i, row in enumerate(triplets, start=1):
        missing = [c for c in ("ep", "em", "gt") if c not in row]
        if missing:
            raise ProtocolError(f"triplets row {i}: missing column(s) {', '.join(missing)}")
        ids = {kind: str(row[kind]) for kind in wins}
        if any(v not in scores for v in ids.values()):
            skipped += 1
            continue
        values = {kind: sign * scores[rid] for kind, rid in ids.items()}
        best = max(values.values())
        top = [kind for kind, v in values.items() if v == best]
        for kind in top:
            wins[kind] += 1.0 / len(top)
        used += 1
    if not used:
        raise ProtocolError(f"no triplet has {key!r} scores for all three images")
    return {"metric": key, "win_rate": {k.upper(): v / used for k, v in wins.items()}, "n": used,
            "skipped": skipped}
