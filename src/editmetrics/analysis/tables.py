"""Result tables laid out like the papers' tables, as Markdown and JSON.

- ``sppe_table``: SPPE Tables 5-7 (recovery): per privacy group (the 11 of
  SPPE's Table 2, ``editmetrics.sppe.privacy``) and method,
  CLIP-Sim (Src), SSIM (Src), PSNR (Src), DirI, DirS, CLIP-Sim (GT), SSIM (GT),
  PSNR (GT). Table 7 (InstructPix2Pix) is the same without groups (``group_field=None``).
- ``rsie_table``: R-SIE Table 2: per method, for each operation (Replace,
  Create, Delete) the columns RC, GC, DINO-I, CLIP-I (``reference``: the
  image CLIP-I/DINO-I compare with, which the paper leaves open).
- ``bpm_alignment_table``: BPM Tables 1-2: per metric, the human alignment
  score of each pair of models and their average.
- ``summary_table``: every score key's mean per group (any benchmark).

A builder takes *runs*: ``{method name: result rows}`` (rows as written by
``editmetrics score``). Each paper column lists the score keys that can fill
it, first present wins; a column no run has is shown as ``-``, so a table
builds from whatever metrics were computed. A cell is the mean of the
column's non-null values over the cell's records (``+inf``, e.g. PSNR of an
identical image, makes the mean ``+inf``: shown, not hidden).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Column:
    label: str
    keys: tuple[str, ...]  # candidate score keys, first present in the runs wins
    scale: float = 1.0  # e.g. 100 for the percentages of R-SIE
    digits: int = 4


@dataclass
class Table:
    title: str
    stub: list[str]  # names of the label columns, e.g. ["Group", "Method"]
    groups: list[tuple[str, list[Column]]]  # column groups ("" = no group header)
    rows: list[tuple[list[str], list[float | None], list[int]]] = field(default_factory=list)
    used: dict[str, str | None] = field(default_factory=dict)  # "group/label" -> score key used
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[str, Column]]:
        return [(g, c) for g, cols in self.groups for c in cols]

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "stub": self.stub,
            "columns": [{"group": g, "label": c.label, "key": self.used.get(f"{g}/{c.label}"), "scale": c.scale}
                        for g, c in self.columns],
            "rows": [{"labels": labels, "values": values, "n": ns} for labels, values, ns in self.rows],
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(strict_json(self.to_dict()), indent=2, allow_nan=False)

    def to_markdown(self) -> str:
        cols = self.columns
        grouped = any(g for g, _ in cols)
        lines = [f"**{self.title}**", ""]
        if grouped:
            top, seen = [], set()
            for g, _ in cols:
                top.append(g if g not in seen else "")
                seen.add(g)
            lines.append(_md_row(self.stub + top))
            lines.append(_md_row(["---"] * (len(self.stub) + len(cols))))
            lines.append(_md_row([""] * len(self.stub) + [c.label for _, c in cols]))
        else:
            lines.append(_md_row(self.stub + [c.label for _, c in cols]))
            lines.append(_md_row(["---"] * (len(self.stub) + len(cols))))
        for labels, values, _ in self.rows:
            lines.append(_md_row(labels + [format_cell(v, c.digits) for v, (_, c) in zip(values, cols)]))
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def strict_json(value):
    """``value`` with every non-finite float replaced by the string ``"inf"``,
    ``"-inf"`` or ``"nan"``: JSON has no literal for them (Python would write
    ``Infinity``/``NaN``, which strict parsers reject). ``null`` keeps meaning
    "no value" (an empty cell)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def format_cell(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _present_keys(runs: dict[str, list[dict]]) -> set[str]:
    return {k for rows in runs.values() for r in rows for k in r.get("scores", {})}


def _pick(col: Column, present: set[str]) -> str | None:
    return next((k for k in col.keys if k in present), None)


def _mean(rows: Sequence[dict], key: str | None, scale: float) -> tuple[float | None, int]:
    if key is None:
        return None, 0
    values = [float(r["scores"][key]) for r in rows if r.get("scores", {}).get(key) is not None]
    if not values:
        return None, 0
    with np.errstate(invalid="ignore"):
        return float(np.mean(values)) * scale, len(values)


def _fill(table: Table, runs: dict[str, list[dict]], cells: list[tuple[list[str], dict[str, list[dict]]]]) -> Table:
    """``cells``: (row labels, {column group: the records of that row and group})."""
    present = _present_keys(runs)
    for g, col in table.columns:
        table.used[f"{g}/{col.label}"] = _pick(col, present)
    missing = [c.label for g, c in table.columns if table.used[f"{g}/{c.label}"] is None]
    if missing:
        table.notes.append("no run has a score for: " + ", ".join(dict.fromkeys(missing)) + " (shown as '-')")
    for labels, by_group in cells:
        values, ns = [], []
        for g, col in table.columns:
            value, n = _mean(by_group.get(g, []), table.used[f"{g}/{col.label}"], col.scale)
            values.append(value)
            ns.append(n)
        table.rows.append((labels, values, ns))
    return table


def _field(rows: Iterable[dict], candidates: Sequence[str]) -> str | None:
    rows = list(rows)
    return next((f for f in candidates if any(r.get(f) not in (None, "") for r in rows)), None)


# ---------------------------------------------------------------------------
# SPPE Tables 5-7
# ---------------------------------------------------------------------------

SPPE_COLUMNS = [
    Column("CLIP-Sim (Src)", ("clip_i", "clip_i@source")),
    Column("SSIM (Src)", ("ssim", "ssim@source")),
    Column("PSNR (Src)", ("psnr", "psnr@source"), digits=2),
    Column("DirI", ("dir_i",)),
    Column("DirS", ("dir_s",)),
    Column("CLIP-Sim (GT)", ("clip_i@target",)),
    Column("SSIM (GT)", ("ssim@target",)),
    Column("PSNR (GT)", ("psnr@target",), digits=2),
]
SPPE_GROUP_FIELDS = ("privacy_group", "group", "category")


def _sppe_groups(all_rows: list[dict], group_field: str) -> tuple[dict[int, str | None], list[str], str]:
    """(row id -> group label, ordered groups, note) for ``sppe_table``."""
    from editmetrics.sppe.privacy import group_of, order_key

    if group_field in ("auto", "privacy_group"):
        labels = {id(r): group_of(r) for r in all_rows}
        if group_field == "privacy_group" or any(g is not None for g in labels.values()):
            groups = sorted({g for g in labels.values() if g is not None}, key=order_key)
            note = ("groups: SPPE's 11 privacy groups (paper Table 2), from each record's 'privacy_group' "
                    "or else its 'category'")
            lost = [r for r in all_rows if labels[id(r)] is None]
            if lost:
                cats = sorted({str(r.get("category")) for r in lost})
                note += (f"; {len(lost)} record(s) have no privacy group (categories: {', '.join(cats)}) "
                         "and appear only in Overall")
            return labels, groups, note
        group_field = _field(all_rows, SPPE_GROUP_FIELDS[1:]) or ""
    labels = {id(r): (str(r.get(group_field)) if r.get(group_field) not in (None, "") else None) for r in all_rows}
    groups = sorted({g for g in labels.values() if g is not None})
    return labels, groups, f"groups from the records' {group_field!r} field"


def sppe_table(runs: dict[str, list[dict]], group_field: str | None = "auto", title: str | None = None,
               overall: bool = True) -> Table:
    """SPPE Tables 5-6 (rows: privacy group x method, then Overall) or, with
    ``group_field=None``, Table 7 (rows: method).

    ``group_field``: ``"auto"`` (default) or ``"privacy_group"``: SPPE's 11
    privacy groups in the paper's column order (a record's ``privacy_group``,
    else the group of its ``category`` by Table 2); ``"auto"`` falls back to a
    ``group`` or ``category`` field when no record has a privacy group.
    Any other field name groups by that field's values (e.g. ``"category"``).
    """
    all_rows = [r for rows in runs.values() for r in rows]
    labels, groups, note = _sppe_groups(all_rows, group_field) if group_field else ({}, [], "")
    no_groups = bool(group_field) and not groups
    if no_groups:
        group_field = None
    table = Table(title or "Recovery (SPPE Tables 5-7 layout)", ["Group", "Method"] if group_field else ["Method"],
                  [("", SPPE_COLUMNS)])
    if no_groups and any(r.get(f) not in (None, "") for r in all_rows for f in SPPE_GROUP_FIELDS):
        table.notes.append(f"no per-group rows: no record has a group ({note})")  # e.g. only unknown categories
    cells = []
    if group_field:
        for group in groups:
            for method, rows in runs.items():
                cells.append(([group, method], {"": [r for r in rows if labels[id(r)] == group]}))
        if overall:
            cells += [(["Overall", method], {"": rows}) for method, rows in runs.items()]
        table.notes.append(note)
    else:
        cells = [([method], {"": rows}) for method, rows in runs.items()]
    return _fill(table, runs, cells)


# ---------------------------------------------------------------------------
# R-SIE Table 2
# ---------------------------------------------------------------------------

RSIE_OPERATIONS = ("replace", "create", "delete")
RSIE_GROUP_FIELDS = ("operation", "category")
RSIE_REFERENCES = ("target", "source", "both")
# The paper does not say which image CLIP-I / DINO-I compare the edit with
# (docs/semantic.md, "R-SIE's CLIP-I / DINO-I reference"): both readings.
RSIE_REFERENCE_NOTE = (
    "R-SIE does not say which image CLIP-I and DINO-I compare the edit with. Table 1b uses CLIP image "
    "similarity as a background-preservation baseline (suggesting the input image: clip_i@source, "
    "dino_i@source); Table 3 follows MagicBrush, which compares with the ground-truth output "
    "(clip_i@target, dino_i@target), and the Table 2 discussion speaks of coherence with the GT output. "
    "This table uses: {used}.")


def _image_columns(reference: str) -> list[Column]:
    if reference == "target":
        return [Column("DINO-I", ("dino_i@target",), scale=100.0, digits=2),
                Column("CLIP-I", ("clip_i@target",), scale=100.0, digits=2)]
    if reference == "source":
        return [Column("DINO-I", ("dino_i", "dino_i@source"), scale=100.0, digits=2),
                Column("CLIP-I", ("clip_i", "clip_i@source"), scale=100.0, digits=2)]
    return [Column("DINO-I@target", ("dino_i@target",), scale=100.0, digits=2),
            Column("CLIP-I@target", ("clip_i@target",), scale=100.0, digits=2),
            Column("DINO-I@source", ("dino_i", "dino_i@source"), scale=100.0, digits=2),
            Column("CLIP-I@source", ("clip_i", "clip_i@source"), scale=100.0, digits=2)]


def _rsie_columns(operation: str, reference: str = "target") -> list[Column]:
    rc = "RC ↓" if operation.lower() in ("delete", "remove") else "RC"  # a deleted object should not be found
    return [
        Column(rc, ("clip_rc",), digits=2),  # clip_rc / clip_gc are already percentages
        Column("GC", ("clip_gc",), digits=2),
    ] + _image_columns(reference)


def rsie_table(runs: dict[str, list[dict]], operation_field: str | None = "auto", title: str | None = None,
               reference: str = "target") -> Table:
    """R-SIE Table 2: rows = methods, column groups = operations (Replace, Create,
    Delete first, then any other operation found, sorted).

    ``reference``: the image CLIP-I and DINO-I compare the edit with, which the
    paper leaves open: ``"target"`` (the ground-truth output, ``clip_i@target``,
    as MagicBrush; default), ``"source"`` (the input image, ``clip_i``), or
    ``"both"`` (four columns, labelled ``@target`` / ``@source``)."""
    if reference not in RSIE_REFERENCES:
        raise ValueError(f"reference must be one of {RSIE_REFERENCES}, not {reference!r}")
    all_rows = [r for rows in runs.values() for r in rows]
    if operation_field == "auto":
        operation_field = _field(all_rows, RSIE_GROUP_FIELDS)
    if operation_field:
        found = {str(r.get(operation_field)) for r in all_rows if r.get(operation_field) not in (None, "")}
        ordered = [op for op in RSIE_OPERATIONS if op in {f.lower() for f in found}]
        ops = [next(f for f in found if f.lower() == op) for op in ordered]
        ops += sorted(f for f in found if f.lower() not in RSIE_OPERATIONS)
    else:
        ops = ["All"]
    table = Table(title or "Editing (R-SIE Table 2 layout)", ["Method"],
                  [(op.capitalize(), _rsie_columns(op, reference)) for op in ops])
    cells = []
    for method, rows in runs.items():
        by_group = {}
        for op in ops:
            selected = rows if operation_field is None else [r for r in rows if str(r.get(operation_field)) == op]
            by_group[op.capitalize()] = selected
        cells.append(([method], by_group))
    table.notes.append("DINO-I and CLIP-I x 100 (the paper's percentages); RC and GC as computed (0-100)")
    used = {"target": "the ground-truth output (clip_i@target, dino_i@target)",
            "source": "the input image (clip_i, dino_i)", "both": "both, in separate columns"}[reference]
    table.notes.append(RSIE_REFERENCE_NOTE.format(used=used))
    if operation_field:
        table.notes.append(f"operations from the records' {operation_field!r} field")
    return _fill(table, runs, cells)


# ---------------------------------------------------------------------------
# BPM Tables 1-2: pairwise human alignment
# ---------------------------------------------------------------------------

HUMAN_FIELDS = ("human_score", "human")


def _higher_is_better(key: str, registry) -> bool:
    """Direction of a score key (``psnr@target``, ``ssim(convention=rgb)``, or a
    component ``SPEC.NAME``); True for a key no registered metric explains."""
    from editmetrics.contract.scorekey import metric_class

    cls = metric_class(key, registry)
    return True if cls is None else bool(cls.higher_is_better)


def alignment(a: list[dict], b: list[dict], key: str, human_field: str, higher_is_better: bool = True
              ) -> tuple[float | None, int]:
    """BPM's alignment score of a metric for two models' outputs on the same
    inputs (records matched by id): the fraction of records where
    1[M_a > M_b] equals 1[H_a > H_b] (M negated for lower-is-better metrics)."""
    by_id = {str(r["id"]): r for r in b}
    agree = n = 0
    for ra in a:
        rb = by_id.get(str(ra["id"]))
        if rb is None:
            continue
        ma, mb = ra.get("scores", {}).get(key), rb.get("scores", {}).get(key)
        ha, hb = ra.get(human_field), rb.get(human_field)
        if None in (ma, mb, ha, hb):
            continue
        if not higher_is_better:
            ma, mb = -ma, -mb
        agree += (ma > mb) == (float(ha) > float(hb))
        n += 1
    return (agree / n if n else None), n


def bpm_alignment_table(runs: dict[str, list[dict]], metrics: Sequence[str] | None = None,
                        human_field: str | None = None, pairs: Sequence[tuple[str, str]] | None = None,
                        title: str | None = None, registry=None) -> Table:
    """BPM Tables 1-2: rows = metrics, columns = "A vs B" for each model pair
    (all pairs in the runs' order unless given) and their average."""
    if registry is None:
        from editmetrics.plugins.registry import get_registry

        registry = get_registry()
    all_rows = [r for rows in runs.values() for r in rows]
    human_field = human_field or _field(all_rows, HUMAN_FIELDS) or HUMAN_FIELDS[0]
    pairs = list(pairs or itertools.combinations(list(runs), 2))
    if metrics is None:
        metrics = sorted(_present_keys(runs))
    cols = [Column(f"{a} vs {b} ↑", (), digits=3) for a, b in pairs] + [Column("Average ↑", (), digits=3)]
    table = Table(title or "Human alignment (BPM Tables 1-2 layout)", ["Metric"], [("", cols)])
    for key in metrics:
        hib = _higher_is_better(key, registry)
        values, ns = [], []
        for a, b in pairs:
            value, n = alignment(runs[a], runs[b], key, human_field, hib)
            values.append(value)
            ns.append(n)
        scored = [v for v in values if v is not None]
        values.append(float(np.mean(scored)) if scored else None)
        ns.append(sum(ns))
        table.rows.append(([key if hib else f"{key} (lower is better)"], values, ns))
    for g, col in table.columns:
        table.used[f"{g}/{col.label}"] = None
    table.notes.append(f"human preference from the records' {human_field!r} field; records matched by id; "
                       "P = 1[score_A > score_B] as in the paper (ties count as 'not greater')")
    return table


# ---------------------------------------------------------------------------
# Any benchmark: means per group
# ---------------------------------------------------------------------------


def summary_table(runs: dict[str, list[dict]], by: str | None = "category", title: str | None = None,
                  digits: int = 4) -> Table:
    """Rows = method (x group when ``by`` is set, plus 'all'), columns = every score key."""
    keys: list[str] = []
    for rows in runs.values():
        for r in rows:
            for k in r.get("scores", {}):
                if k not in keys:
                    keys.append(k)
    cols = [Column(k, (k,), digits=digits) for k in keys]
    table = Table(title or "Mean scores", ["Method"] + ([by] if by else []), [("", cols)])
    cells = []
    for method, rows in runs.items():
        if by:
            for group in sorted({str(r.get(by)) for r in rows if r.get(by) not in (None, "")}):
                cells.append(([method, group], {"": [r for r in rows if str(r.get(by)) == group]}))
            cells.append(([method, "all"], {"": rows}))
        else:
            cells.append(([method], {"": rows}))
    return _fill(table, runs, cells)


def write_tables(tables: dict[str, Table], json_path: str | None = None, markdown_path: str | None = None) -> None:
    """Write several tables: one strict JSON object ``{name: table}`` (non-finite
    numbers as strings, ``strict_json``) and one Markdown file where each table
    comes under a heading with its name."""
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(strict_json({name: t.to_dict() for name, t in tables.items()}), fh, indent=2, allow_nan=False)
    if markdown_path:
        with open(markdown_path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(f"## {name}\n\n{t.to_markdown()}" for name, t in tables.items()))
