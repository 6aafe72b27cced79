"""Built-in plugin: ``editmetrics compare A.jsonl B.jsonl [C.jsonl ...]``.

Paired comparison of runs scored on the same inputs (records matched by id).
Per score key, and per group of ``--by`` when given, for each pair of files
(A, B):

- ``n``: records with a finite score in both files;
- ``mean_a``, ``mean_b``, ``mean_diff`` (B - A) over those records;
- ``ci95``: percentile paired bootstrap interval of ``mean_diff`` (the
  records' differences are resampled: 1000 resamples, seed 0, as
  ``editmetrics.analysis.stats.bootstrap_ci``);
- ``b_better``, ``a_better``, ``ties``: per-record counts, using the metric's
  direction from the registry (lower-is-better metrics: smaller wins);
- ``p_wilcoxon``: ``scipy.stats.wilcoxon(B - A)`` with its default options
  (two-sided, zero differences dropped), null when undefined;
- ``excluded``: matched records left out because a score is null or infinite.

With more than two files: every pair, each p-value also Holm-corrected
(``p_holm``) within its (metric, group) family, and a ranking table (means over
the records every file has a finite score for). Ids present in some files but
not others are counted and listed per file (``missing``), never dropped
silently. The overall rows have ``group`` null.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Sequence

import numpy as np

from editmetrics.analysis.stats import bootstrap_ci

RESULT_KEYS = ("n", "mean_a", "mean_b", "mean_diff", "ci95", "b_better", "a_better", "ties", "p_wilcoxon")


def run_labels(paths: Sequence[str]) -> list[str]:
    """Short, distinct labels for result files: the file names without
    extension, the paths themselves where two names coincide."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [os.path.normpath(p) for p in paths]


def _finite(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided p of scipy's Wilcoxon signed-rank test with default options;
    None where it is undefined (no records, every difference zero)."""
    if diffs.size == 0 or not np.any(diffs != 0):
        return None
    import warnings

    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes; the p-value is still returned
        try:
            p = float(wilcoxon(diffs).pvalue)
        except ValueError:
            return None
    return _json_float(p)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None entries stay None and do not
    count in the family size)."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_stats(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True) -> dict:
    """The statistics of one (metric, group) cell from aligned finite scores."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    diffs = xb - xa
    n = int(diffs.size)
    sign = 1.0 if higher_is_better else -1.0
    out = {"n": n, "mean_a": None, "mean_b": None, "mean_diff": None, "ci95": [None, None],
           "b_better": int(np.sum(sign * diffs > 0)), "a_better": int(np.sum(sign * diffs < 0)),
           "ties": int(np.sum(diffs == 0)), "p_wilcoxon": None}
    if n:
        out["mean_a"] = _json_float(float(xa.mean()))
        out["mean_b"] = _json_float(float(xb.mean()))
        out["mean_diff"] = _json_float(float(diffs.mean()))
        low, high = bootstrap_ci(diffs)
        out["ci95"] = [_json_float(low), _json_float(high)]
        out["p_wilcoxon"] = wilcoxon_p(diffs)
    return out


def _group_of(rows: Sequence[dict | None], by: str | None) -> str | None:
    """The record's group: the first file's value of the field that has one."""
    if not by:
        return None
    for row in rows:
        if row is not None and row.get(by) not in (None, ""):
            return str(row[by])
    return None


def _score_keys(runs: Sequence[list[dict]]) -> tuple[list[str], list[str]]:
    """Keys in every file (first file's order) and keys only some files have."""
    per_file = []
    for rows in runs:
        keys: dict[str, None] = {}
        for row in rows:
            for key in row.get("scores", {}):
                keys.setdefault(key)
        per_file.append(list(keys))
    common = [k for k in per_file[0] if all(k in keys for keys in per_file[1:])]
    partial = list(dict.fromkeys(k for keys in per_file for k in keys if k not in common))
    return common, partial


class CompareError(ValueError):
    """The files cannot be compared (usage error)."""


def compare_runs(runs: Sequence[list[dict]], labels: Sequence[str], metrics: Sequence[str] | None = None,
                 by: str | None = None, directions: dict[str, bool] | None = None) -> dict:
    """Compare result rows of several runs (see the module docstring)."""
    if len(runs) < 2:
        raise CompareError("compare needs at least two results files")
    if len(set(labels)) != len(labels):
        raise CompareError(f"labels must be distinct: {list(labels)}")
    common, partial = _score_keys(runs)
    if metrics:
        for key in metrics:
            absent = [lab for lab, rows in zip(labels, runs) if not any(key in r.get("scores", {}) for r in rows)]
            if absent:
                raise CompareError(f"no score {key!r} in {absent[0]} (scores there: "
                                   f"{sorted(common + partial)})")
        keys = list(dict.fromkeys(metrics))
    else:
        keys = common
    if directions is None:
        from editmetrics.plugins.registry import get_registry
        from editmetrics.analysis.stats import metric_directions

        directions = metric_directions(keys, get_registry())
    by_id = []
    for label, rows in zip(labels, runs):
        table: dict[str, dict] = {}
        for row in rows:
            rid = str(row.get("id"))
            if rid in table:
                raise CompareError(f"{label}: id {rid!r} appears twice")
            table[rid] = row
        by_id.append(table)
    all_ids = list(dict.fromkeys(rid for table in by_id for rid in table))
    missing = [{"file": lab, "count": len(ids), "ids": ids}
               for lab, table in zip(labels, by_id)
               for ids in [[rid for rid in all_ids if rid not in table]]]
    out = {
        "files": [{"label": lab, "records": len(table)} for lab, table in zip(labels, by_id)],
        "by": by,
        "metrics": [{"key": k, "higher_is_better": directions.get(k, True),
                     "direction": ("higher" if directions[k] else "lower") if k in directions else "assumed higher"}
                    for k in keys],
        "not_compared": [] if metrics else partial,
        "missing": missing,
        "rows": [],
    }
    pairs = list(itertools.combinations(range(len(runs)), 2))
    for key in keys:
        hib = directions.get(key, True)
        families: dict[str | None, list[dict]] = {}
        for i, j in pairs:
            cells: dict[str | None, tuple[list, list, int]] = {None: ([], [], 0)}
            for rid in all_ids:
                ra, rb = by_id[i].get(rid), by_id[j].get(rid)
                if ra is None or rb is None:
                    continue  # counted in "missing"
                group = _group_of([ra, rb], by)
                targets = [None] if group is None else [None, group]
                va, vb = _finite(ra.get("scores", {}).get(key)), _finite(rb.get("scores", {}).get(key))
                for g in targets:
                    xa, xb, excluded = cells.setdefault(g, ([], [], 0))
                    if va is None or vb is None:
                        cells[g] = (xa, xb, excluded + 1)
                    else:
                        xa.append(va)
                        xb.append(vb)
            for g in [None] + sorted(k for k in cells if k is not None):
                xa, xb, excluded = cells[g]
                row = {"metric": key, "group": g, "a": labels[i], "b": labels[j], "higher_is_better": hib,
                       **paired_stats(xa, xb, hib), "excluded": excluded}
                families.setdefault(g, []).append(row)
                out["rows"].append(row)
        if len(runs) > 2:
            for family in families.values():
                for row, p in zip(family, holm([r["p_wilcoxon"] for r in family])):
                    row["p_holm"] = p
    if len(runs) > 2:
        out["ranking"] = ranking(by_id, labels, keys, directions, by, all_ids)
    return out


def ranking(by_id: Sequence[dict[str, dict]], labels: Sequence[str], keys: Sequence[str],
            directions: dict[str, bool], by: str | None, all_ids: Sequence[str]) -> list[dict]:
    """Per metric (and group): each file's mean over the records that every
    file scored (finite), ranked best first by the metric's direction (equal
    means share the better rank)."""
    out = []
    for key in keys:
        hib = directions.get(key, True)
        cells: dict[str | None, list[list[float]]] = {None: []}
        excluded: dict[str | None, int] = {None: 0}
        for rid in all_ids:
            rows = [table.get(rid) for table in by_id]
            if any(r is None for r in rows):
                continue
            group = _group_of(rows, by)
            values = [_finite(r.get("scores", {}).get(key)) for r in rows]
            for g in ([None] if group is None else [None, group]):
                cells.setdefault(g, [])
                excluded.setdefault(g, 0)
                if any(v is None for v in values):
                    excluded[g] += 1
                else:
                    cells[g].append(values)
        for g in [None] + sorted(k for k in cells if k is not None):
            matrix = np.asarray(cells[g], dtype=np.float64).reshape(-1, len(labels))
            means = matrix.mean(axis=0) if len(matrix) else np.full(len(labels), np.nan)
            signed = means if hib else -means
            # competition ranking: 1 + the number of files strictly better (equal means share a rank)
            ranks = {labels[i]: (int(np.sum(signed > signed[i])) + 1 if len(matrix) else None)
                     for i in range(len(labels))}
            out.append({"metric": key, "group": g, "higher_is_better": hib, "n": int(len(matrix)),
                        "excluded": excluded[g],
                        "means": {labels[i]: _json_float(float(means[i])) for i in range(len(labels))},
                        "ranks": ranks})
    return out


def compare_files(paths: Sequence[str], metrics: Sequence[str] | None = None, by: str | None = None,
                  labels: Sequence[str] | None = None) -> dict:
    from editmetrics.engine.runner import read_results

    labels = list(labels) if labels else run_labels(paths)
    runs = [list(read_results(p)) for p in paths]
    out = compare_runs(runs, labels, metrics, by)
    for entry, path in zip(out["files"], paths):
        entry["path"] = path
    return out


# ---------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def format_comparison(result: dict) -> str:
    lines = []
    for entry in result["files"]:
        lines.append(f"{entry['label']}: {entry.get('path', '')} ({entry['records']} records)")
    for m in result["missing"]:
        if m["count"]:
            shown = ", ".join(m["ids"][:8]) + (", ..." if m["count"] > 8 else "")
            lines.append(f"missing from {m['file']}: {m['count']} record(s) present in another file: {shown}")
    if result["not_compared"]:
        lines.append("not compared (not in every file): " + ", ".join(result["not_compared"]))
    multi = "ranking" in result
    head = ["metric", "group", "A", "B", "dir", "n", "mean A", "mean B", "B-A", "95% CI", "B better",
            "A better", "ties", "p Wilcoxon"] + (["p Holm"] if multi else []) + ["excl."]
    body = []
    for r in result["rows"]:
        ci = "-" if r["ci95"][0] is None else f"[{_num(r['ci95'][0])}, {_num(r['ci95'][1])}]"
        body.append([r["metric"], "all" if r["group"] is None else r["group"], r["a"], r["b"],
                     "higher" if r["higher_is_better"] else "lower", str(r["n"]), _num(r["mean_a"]),
                     _num(r["mean_b"]), _num(r["mean_diff"]), ci, str(r["b_better"]), str(r["a_better"]),
                     str(r["ties"]), _p(r["p_wilcoxon"])] + ([_p(r.get("p_holm"))] if multi else [])
                    + [str(r["excluded"])])
    if not multi:  # two files: A and B are named above the table
        head = head[:2] + head[4:]
        body = [row[:2] + row[4:] for row in body]
        lines.insert(0, f"A = {result['files'][0]['label']}, B = {result['files'][1]['label']}; "
                        "B-A with a paired bootstrap 95% interval; better = by the metric's direction")
    lines.append("")
    lines += _table(head, body)
    if multi:
        lines.append("")
        lines.append("Ranking (mean over the records every file scored; 1 = best by the metric's direction):")
        labels = [e["label"] for e in result["files"]]
        rhead = ["metric", "group", "n"] + labels
        rbody = [[r["metric"], "all" if r["group"] is None else r["group"], str(r["n"])]
                 + [f"{_num(r['means'][lab])} (#{r['ranks'][lab] or '-'})" for lab in labels]
                 for r in result["ranking"]]
        lines += _table(rhead, rbody)
    return "\n".join(lines)


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(head)]
    text = [i < 2 or h in ("A", "B") for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if t else c.rjust(w) for c, w, t in zip(cells, widths, text)).rstrip()

    return [line(head)] + [line(row) for row in body]
