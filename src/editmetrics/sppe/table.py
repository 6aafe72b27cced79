"""Table-4-style Markdown table of SPPE task 1 results."""

from __future__ import annotations

# Paper column order (Table 4) and display names; any other metric follows.
PAPER_ORDER = [("afine", "AFINE-FR"), ("ahiq", "AHIQ"), ("dists", "DISTS"), ("stlpips", "ST-LPIPS"),
               ("topiq_fr", "TOPIQ-FR"), ("lpips", "LPIPS"), ("erma", "ERMA")]


def _base(key: str) -> str:
    from editmetrics.contract.scorekey import metric_name

    return metric_name(key) or key


def _name(key: str) -> str:
    base = _base(key)
    for mid, label in PAPER_ORDER:
        if base == mid:
            return label
    return key


def _order(key: str) -> int:
    base = _base(key)
    ids = [m for m, _ in PAPER_ORDER]
    return ids.index(base) if base in ids else len(ids)


def std_label(results: list[dict]) -> str:
    """Row label of the SRCC-std row: names what the std is taken across."""
    by = next((r.get("by") for r in results if r.get("by")), "privacy_group")
    what = {"privacy_group": "privacy groups", "category": "categories"}.get(by, f"{by} values")
    return f"SRCC std across {what}"


def std_note(results: list[dict]) -> str | None:
    by = next((r.get("by") for r in results if r.get("by")), None)
    if not by:
        return None
    n_groups = max((sum(1 for g in r.get("groups", {}).values() if g.get("srcc") is not None) for r in results),
                   default=0)
    ungrouped = max((r.get("ungrouped", 0) for r in results), default=0)
    return (f"SRCC std: population std (ddof=0) over the {n_groups} {by!r} values with a defined SRCC"
            + (f"; {ungrouped} pair(s) have no {by!r} and count only in the overall figures" if ungrouped else ""))


def markdown_table(results: list[dict], failures: dict[str, str] | None = None) -> str:
    """``results``: ``stats.correlate_rows`` output (with groups for the std
    row). ``failures``: metric key -> reason for metrics with no score at all."""
    failures = failures or {}
    keys = [r["metric"] for r in results] + [k for k in failures if k not in {r["metric"] for r in results}]
    keys.sort(key=_order)  # stable: the paper's column order, then the rest as given
    by_key = {r["metric"]: r for r in results}

    def cell(key, field, digits=4):
        r = by_key.get(key)
        value = None if r is None else r.get(field)
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = ["| Metric | " + " | ".join(_name(k) for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for label, field in (("SRCC", "srcc"), ("PLCC", "plcc_logistic"), ("PLCC (raw)", "plcc"), ("KRCC", "krcc")):
        lines.append(f"| {label} | " + " | ".join(cell(k, field) for k in keys) + " |")
    if any("srcc_std_across_groups" in r for r in results):
        lines.append(f"| {std_label(results)} | "
                     + " | ".join(cell(k, "srcc_std_across_groups", 3) for k in keys) + " |")
    lines.append("| n | " + " | ".join(str(by_key[k]["n"]) if k in by_key else "0" for k in keys) + " |")
    notes = [f"- {_name(k)} (`{k}`): not scored: {failures[k]}" for k in keys if k in failures]
    if std_note(results):
        notes.append(f"- {std_note(results)}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def table4(results: list[dict], failures: dict[str, str] | None = None, title: str = "SPPE Table 4 layout"):
    """The same table as an ``editmetrics.analysis.tables.Table`` (benchmark collector)."""
    from editmetrics.analysis.tables import Column, Table

    failures = failures or {}
    by_key = {r["metric"]: r for r in results}
    keys = [r["metric"] for r in results] + [k for k in failures if k not in by_key]
    keys.sort(key=_order)
    table = Table(title=title, stub=["Metric"], groups=[("", [Column(_name(k), (k,)) for k in keys])])
    for label, field in (("SRCC", "srcc"), ("PLCC", "plcc_logistic"), ("PLCC (raw)", "plcc"), ("KRCC", "krcc"),
                         (std_label(results), "srcc_std_across_groups")):
        values = [by_key[k].get(field) if k in by_key else None for k in keys]
        table.rows.append(([label], values, [by_key[k]["n"] if k in by_key else 0 for k in keys]))
    for k in keys:
        table.used[f"/{_name(k)}"] = k
    table.notes = [f"{_name(k)} (`{k}`) not scored: {failures[k]}" for k in keys if k in failures]
    table.notes.append("PLCC is computed after the 4-parameter logistic fit; lower-is-better metrics are negated.")
    if std_note(results):
        table.notes.append(std_note(results))
    return table
