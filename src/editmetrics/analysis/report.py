"""Built-in plugin: ``editmetrics report RESULTS.jsonl [MORE.jsonl ...] --out report.html``.

One self-contained HTML file, readable offline and safe to open:

- no network: pictures are inlined as ``data:`` URIs, histograms are inline
  SVG, the only script is inline;
- a Content-Security-Policy allows exactly that one script (by its SHA-256
  hash) and ``data:`` images, so even a markup injection could not run code
  or fetch anything;
- every piece of record text (ids, instructions, categories, error messages,
  paths, detail keys) is HTML-escaped: instructions are untrusted input.

Sections: with several results files a comparison (``editmetrics.analysis.compare``);
a summary per metric (direction, 95% bootstrap interval, failed vs n/a and the
most frequent error reasons), per-group tables, histograms, and the records
table: sticky header and first column, scrolling inside the table, filters by
group and text, sorting by any column, and a full-size viewer (source /
edited / target / mask side by side with boxes and mask overlays) opened by
clicking a thumbnail. Pictures: ``editmetrics.analysis.report_media``; table and
cells: ``editmetrics.analysis.report_records``; script and style:
``editmetrics.analysis.report_assets``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from editmetrics.analysis.report_assets import SCRIPT, STYLE, VIEWER
from editmetrics.analysis.report_media import BOX_COLOURS, FULL_SIZE, THUMB_FIELDS, THUMB_SIZE, find_boxes, record_thumbnails  # noqa: F401
from editmetrics.analysis.report_records import (TOP_REASONS, _cut, _records_table, _filters, _score_cell, direction_html,  # noqa: F401
                             error_of, esc, fmt, metric_info, reason_class, sort_value, top_reasons)
from editmetrics.analysis.stats import summarize

HIST_BINS = 12

# ---------------------------------------------------------------------------
# Histograms (inline SVG)
# ---------------------------------------------------------------------------


def histogram_svg(key: str, values: list[float], bins: int = HIST_BINS, width: int = 300, height: int = 150) -> str:
    """An SVG bar chart of the finite values; infinite ones are counted in the caption."""
    finite = [v for v in values if math.isfinite(v)]
    pos_inf = sum(1 for v in values if v == math.inf)
    neg_inf = sum(1 for v in values if v == -math.inf)
    notes = []
    if pos_inf:
        notes.append(f"{pos_inf} x +inf")
    if neg_inf:
        notes.append(f"{neg_inf} x -inf")
    caption = f"{key} (n={len(values)}{'; ' + ', '.join(notes) + ' not drawn' if notes else ''})"
    top, bottom, left = 18, 22, 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'data-metric="{esc(key)}"><title>{esc(caption)}</title>',
             f'<text x="{left}" y="12" font-size="11">{esc(caption)}</text>']
    if finite:
        low, high = min(finite), max(finite)
        if high == low:  # one value: one bar centred on it
            low, high = low - 0.5, high + 0.5
        counts, edges = np.histogram(finite, bins=bins, range=(low, high))
        peak = max(int(counts.max()), 1)
        plot_w, plot_h = width - 2 * left, height - top - bottom
        bar_w = plot_w / bins
        for i, count in enumerate(counts):
            h = plot_h * int(count) / peak
            parts.append(
                f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="#4a78b0"><title>[{fmt(float(edges[i]))}, {fmt(float(edges[i + 1]))}'
                f'{"]" if i == bins - 1 else ")"}: {int(count)}</title></rect>')  # numpy: last bin closed
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="10">{esc(fmt(float(edges[0]), 3))}</text>')
        parts.append(f'<text x="{width - left}" y="{height - 6}" font-size="10" text-anchor="end">'
                     f'{esc(fmt(float(edges[-1]), 3))}</text>')
    else:
        parts.append(f'<text x="{left}" y="{height / 2:.0f}" font-size="11">no finite values</text>')
    parts.append("</svg>")
    return "".join(parts)



# ---------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------


def _score_keys(rows: Iterable[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for key in row.get("scores", {}):
            if key not in keys:
                keys.append(key)
    return keys


def _stats_table(stats: dict, info: dict, rows: Sequence[dict] | None = None) -> str:
    """Summary per metric; with ``rows``, the most frequent error reasons too."""
    head = ('<th class="text">metric</th><th>n</th><th>mean</th><th>std</th><th>95% CI</th>'
            '<th title="null score with a recorded error">failed</th>'
            '<th title="null score without an error: the metric does not apply">n/a</th>')
    if rows is not None:
        head += '<th class="text">most frequent errors (count)</th>'
    out = [f'<div class="wrap"><table class="summary"><thead><tr>{head}</tr></thead><tbody>']
    for key, s in stats.items():
        ci = f"[{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]"
        cells = (f'<td class="text">{esc(key)} {direction_html(info.get(key))}</td><td>{s["n"]}</td>'
                 f'<td>{esc(fmt(s["mean"]))}</td><td>{esc(fmt(s["std"]))}</td><td>{esc(ci)}</td>'
                 f'<td>{s["failures"]}</td><td>{s.get("not_applicable", 0)}</td>')
        if rows is not None:
            reasons = top_reasons(rows, key)
            cells += '<td class="reasons">' + "<br>".join(
                f'<span title="{esc(r)}">{n} &#215; {esc(_cut(r))}</span>' for r, n in reasons) + "</td>"
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)




def _p(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _comparison_html(result: dict, info: dict) -> str:
    """The ``editmetrics compare`` result as tables."""
    labels = [f["label"] for f in result["files"]]
    multi = "ranking" in result
    parts = ["<h2>Comparison</h2>",
             "<p>Records matched by id. B &#8722; A with a paired bootstrap 95% interval (1000 resamples, seed 0); "
             "better / worse per record by the metric's direction; p: two-sided Wilcoxon signed-rank test on "
             "B &#8722; A (scipy defaults)" + ("; p Holm: Holm-corrected over the pairs of each metric and group"
                                              if multi else "") + ". excluded = matched records without a finite "
             "score in both files.</p><ul>"]
    for f in result["files"]:
        parts.append(f"<li>{esc(f['label'])}: {esc(f.get('path', ''))} ({f['records']} records)</li>")
    for m in result["missing"]:
        if m["count"]:
            shown = ", ".join(m["ids"][:20]) + (", ..." if m["count"] > 20 else "")
            parts.append(f'<li class="worse">missing from {esc(m["file"])}: {m["count"]} record(s): {esc(shown)}</li>')
    if result["not_compared"]:
        parts.append(f"<li>not compared (not in every file): {esc(', '.join(result['not_compared']))}</li>")
    parts.append("</ul>")
    if multi:
        parts.append("<h3>Ranking</h3><p>Mean over the records every file scored; #1 = best by the metric's "
                     "direction.</p>")
        head = "".join(f"<th>{esc(lab)}</th>" for lab in labels)
        rank_head = (f'<div class="wrap"><table class="summary ranking"><thead><tr><th class="text">metric</th>'
                     f'<th class="text">group</th><th>n</th>{head}</tr></thead><tbody>')

        def rank_rows(rows):
            return "".join(
                f'<tr><td class="text">{esc(r["metric"])} {direction_html(info.get(r["metric"]))}</td>'
                f'<td class="text">{esc("all" if r["group"] is None else r["group"])}</td><td>{r["n"]}</td>'
                + "".join(f"<td>{esc(fmt(r['means'][lab]))} (#{r['ranks'][lab] or '-'})</td>" for lab in labels)
                + "</tr>" for r in rows)

        parts.append(rank_head + rank_rows([r for r in result["ranking"] if r["group"] is None])
                     + "</tbody></table></div>")
        grouped = [r for r in result["ranking"] if r["group"] is not None]
        if grouped:
            parts.append(f'<details><summary>per {esc(result["by"])}</summary>{rank_head}{rank_rows(grouped)}'
                         "</tbody></table></div></details>")
        parts.append("<h3>Pairwise tests</h3>")
    head = ['<th class="text">metric</th>', '<th class="text">group</th>']
    if multi:
        head += ['<th class="text">A</th>', '<th class="text">B</th>']
    a, b = ("A", "B") if multi else (esc(labels[0]), esc(labels[1]))
    head += ["<th>n</th>", f"<th>mean {a}</th>", f"<th>mean {b}</th>", f"<th>{b} &#8722; {a}</th>", "<th>95% CI</th>",
             f"<th>{b} better</th>", f"<th>{a} better</th>", "<th>ties</th>", "<th>p (Wilcoxon)</th>"]
    if multi:
        head.append("<th>p Holm</th>")
    head.append("<th>excluded</th>")
    table_head = f'<div class="wrap"><table class="summary comparison"><thead><tr>{"".join(head)}</tr></thead><tbody>'

    def body(rows):
        out = []
        for r in rows:
            d = r["mean_diff"]
            cls = "" if d is None or d == 0 else ("better" if (d > 0) == r["higher_is_better"] else "worse")
            ci = "-" if r["ci95"][0] is None else f"[{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]"
            cells = [f'<td class="text">{esc(r["metric"])} {direction_html(info.get(r["metric"]))}</td>',
                     f'<td class="text">{esc("all" if r["group"] is None else r["group"])}</td>']
            if multi:
                cells += [f'<td class="text">{esc(r["a"])}</td>', f'<td class="text">{esc(r["b"])}</td>']
            cells += [f"<td>{r['n']}</td>", f"<td>{esc(fmt(r['mean_a']))}</td>", f"<td>{esc(fmt(r['mean_b']))}</td>",
                      f'<td class="{cls}">{esc(fmt(d))}</td>', f"<td>{esc(ci)}</td>", f"<td>{r['b_better']}</td>",
                      f"<td>{r['a_better']}</td>", f"<td>{r['ties']}</td>", f"<td>{esc(_p(r['p_wilcoxon']))}</td>"]
            if multi:
                cells.append(f"<td>{esc(_p(r.get('p_holm')))}</td>")
            cells.append(f"<td>{r['excluded']}</td>")
            group = "" if r["group"] is None else f' data-group="{esc(r["group"])}"'
            out.append(f'<tr data-metric="{esc(r["metric"])}"{group}>{"".join(cells)}</tr>')
        return "".join(out)

    parts.append(table_head + body([r for r in result["rows"] if r["group"] is None]) + "</tbody></table></div>")
    grouped = [r for r in result["rows"] if r["group"] is not None]
    if grouped:  # per group: folded, the overall table stays short
        parts.append(f'<details><summary>per {esc(result["by"])}</summary>{table_head}{body(grouped)}'
                     "</tbody></table></div></details>")
    return "".join(parts)


def build_report(rows: Iterable[dict] | dict[str, list[dict]], title: str = "editmetrics report",
                 by: str = "category", thumb_size: int = THUMB_SIZE, full_size: int = FULL_SIZE,
                 paths: Sequence[str] | None = None) -> str:
    """The report page for result rows (as written by ``editmetrics score``),
    or for several runs ``{label: rows}`` (a comparison view)."""
    runs = {k: list(v) for k, v in rows.items()} if isinstance(rows, dict) else {"results": list(rows)}
    labels = list(runs)
    all_rows = [r for rs in runs.values() for r in rs]
    keys = _score_keys(all_rows)
    info = metric_info(keys)
    multi = len(runs) > 1
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for label, rs in runs.items():
        failed = sum(1 for r in rs if r.get("errors"))
        prefix = f"{esc(label)}: " if multi else ""
        parts.append(f"<p>{prefix}{len(rs)} records, {len(_score_keys(rs))} score columns, "
                     f"{failed} record(s) with errors.</p>")
    if multi:
        from editmetrics.analysis.compare import compare_runs

        result = compare_runs(list(runs.values()), labels, by=by,
                              directions={k: v["higher_is_better"] for k, v in info.items()
                                          if v["higher_is_better"] is not None})
        for f, path in zip(result["files"], paths or []):
            f["path"] = path
        parts.append(_comparison_html(result, info))
    parts.append("<h2>Summary</h2><p>Mean with 95% percentile bootstrap interval (1000 resamples, seed 0); "
                 "&#8593; higher is better, &#8595; lower is better; failed = no score, with a recorded error; "
                 "n/a = no score and no error (the metric does not apply to the record).</p>")
    for label, rs in runs.items():
        summary = summarize(rs, by=by)
        if multi:
            parts.append(f"<h3>{esc(label)}</h3>")
        parts.append(_stats_table(summary["overall"], info, rs))
        if summary.get("groups") and not multi:
            parts.append(f"<h2>By {esc(summary['by'])}</h2>")
            for group, stats in summary["groups"].items():
                parts.append(f"<h3>{esc(summary['by'])} = {esc(group)}</h3>")
                parts.append(_stats_table(stats, info))
    parts.append("<h2>Distributions</h2>")
    for label, rs in runs.items():
        if multi:
            parts.append(f"<h3>{esc(label)}</h3>")
        parts.append('<div class="hists">')
        for key in keys:
            values = [float(r["scores"][key]) for r in rs if r.get("scores", {}).get(key) is not None]
            parts.append(histogram_svg(key, values))
        parts.append("</div>")
    table, groups = _records_table(list(runs.values()), labels, keys, info, by, thumb_size, full_size)
    parts.append("<h2>Records</h2><p>Click a column header to sort (missing scores stay last), a thumbnail to "
                 "see the pictures at full size with boxes and masks. In a score cell, <em>failed</em> "
                 "(hover for the reason) differs from <em>n/a</em> (the metric does not apply).</p>")
    parts.append(_filters(by or "category", groups))
    parts.append(table)
    parts.append(VIEWER)
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_report(results: str | Sequence[str], out: str, title: str | None = None, by: str = "category",
                 thumb_size: int = THUMB_SIZE, full_size: int = FULL_SIZE) -> int:
    """Write the report of one results file, or the comparison of several;
    returns the number of records (distinct ids)."""
    from editmetrics.analysis.compare import run_labels
    from editmetrics.engine.results import atomic_write, check_paths, check_replaceable, starts_with
    from editmetrics.engine.runner import read_results

    paths = [results] if isinstance(results, str) else list(results)
    html_file = starts_with((b"<!DOCTYPE html", b"<!doctype html"))  # only an earlier report is replaced
    check_paths({f"RESULTS {i + 1}": p for i, p in enumerate(paths)}, {"--out": out})
    check_replaceable(out, html_file, "--out")
    if len(paths) == 1:
        rows: Any = list(read_results(paths[0]))
        n = len(rows)
        default_title = f"editmetrics report: {os.path.basename(paths[0])}"
    else:
        rows = {lab: list(read_results(p)) for lab, p in zip(run_labels(paths), paths)}
        n = len({str(r.get("id")) for rs in rows.values() for r in rs})
        default_title = "editmetrics comparison: " + ", ".join(os.path.basename(p) for p in paths)
    page = build_report(rows, title=title or default_title, by=by, thumb_size=thumb_size, full_size=full_size,
                        paths=paths)
    atomic_write(out, page, replaceable=html_file, label="--out")
    return n
