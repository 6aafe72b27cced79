"""Built-in plugin: ``editmetrics report RESULTS.jsonl [MORE.jsonl ...] --out report.html``.

One self-contained HTML file, readable offline and safe to open:

- no network: pictures are inlined as ``data:`` URIs, histograms are inline
  SVG, the only script is inline;
- a Content-Security-Policy allows exactly that one script (by its SHA-256
  hash) and ``data:`` images, so even a markup injection could not run code
  or fetch anything;
- every piece of record text (ids, instructions, categories, error messages,
  paths, detail keys) is HTML-escaped: instructions are untrusted input.

Sections: with several results files a comparison (``editmetrics.compare``);
a summary per metric (direction, 95% bootstrap interval, failed vs n/a and the
most frequent error reasons), per-group tables, histograms, and the records
table: sticky header and first column, scrolling inside the table, filters by
group and text, sorting by any column, and a full-size viewer (source /
edited / target / mask side by side with boxes and mask overlays) opened by
clicking a thumbnail. Pictures: ``editmetrics.report_media``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from .hookspecs import hookimpl
from .report_media import (BOX_COLOURS, FULL_SIZE, THUMB_FIELDS, THUMB_SIZE, Pictures,  # noqa: F401 - re-exported
                           find_boxes, record_thumbnails, run_boxes)
from .stats import summarize

HIST_BINS = 12
TOP_REASONS = 3  # error reasons listed per metric in the summary
LABEL_MIN_WIDTH = 320  # boxes on a full-size picture narrower than this are labelled in the legend only
NOTE_CHARS = 140  # an error/warning longer than this is cut in the records table (whole text: tooltip)
PANEL_MIN_WIDTH = 240  # a full-size panel is at least this wide (room for its legend)

# The page's only script: sorting, filters, the full-size viewer, #sort= and
# #view= links, and a check that marks images which failed to decode (and
# counts those that did, for tests).
SCRIPT = """
(function () {
  var records = document.getElementById('records');
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') return null;
    var n = Number(v);  // reads 'Infinity' and '-Infinity' too
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(table, th, asc) {
    var col = parseInt(th.getAttribute('data-col'), 10);
    table.querySelectorAll('th[data-col]').forEach(function (o) { o.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // missing scores always last
      if (y === null) return -1;
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th[data-col]').forEach(function (th) {
      th.addEventListener('click', function () { sortBy(table, th, th.getAttribute('data-dir') !== 'asc'); });
    });
  });
  // Filters: text (id, instruction, group, errors), group, only records with errors.
  var ftext = document.getElementById('filter-text'), fcat = document.getElementById('filter-cat');
  var ferr = document.getElementById('filter-err'), fcount = document.getElementById('filter-count');
  function applyFilters() {
    if (!records) return;
    var q = ftext ? ftext.value.trim().toLowerCase() : '', c = fcat ? fcat.value : '', e = ferr && ferr.checked;
    var rows = records.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var ok = (!q || (r.getAttribute('data-search') || '').indexOf(q) >= 0) &&
               (!c || r.getAttribute('data-cat') === c) && (!e || r.hasAttribute('data-err'));
      r.hidden = !ok;
      if (ok) shown += 1;
    }
    if (fcount) fcount.textContent = shown + ' of ' + rows.length + ' records shown';
  }
  [ftext, fcat, ferr].forEach(function (el) {
    if (el) { el.addEventListener('input', applyFilters); el.addEventListener('change', applyFilters); }
  });
  applyFilters();
  // Full-size viewer: the row's <template class="full"> cloned into #viewer.
  var viewer = document.getElementById('viewer'), vbody = document.getElementById('viewer-body');
  var vtitle = document.getElementById('viewer-title');
  function openViewer(tr) {
    var tpl = tr && tr.querySelector('template.full');
    if (!tpl || !viewer) return;
    vbody.textContent = '';
    vbody.appendChild(tpl.content.cloneNode(true));
    vtitle.textContent = tr.getAttribute('data-id');
    viewer.setAttribute('data-open', tr.getAttribute('data-id'));
    viewer.hidden = false;
    viewer.scrollTop = 0;
  }
  function closeViewer() {
    if (!viewer) return;
    viewer.hidden = true;
    viewer.removeAttribute('data-open');
    vbody.textContent = '';
  }
  if (records) {
    records.addEventListener('click', function (ev) {
      var fig = ev.target.closest ? ev.target.closest('td.images figure') : null;
      if (fig) openViewer(fig.closest('tr'));
    });
  }
  if (viewer) {
    document.getElementById('viewer-close').addEventListener('click', closeViewer);
    document.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeViewer(); });
    ['boxes', 'masks'].forEach(function (name) {
      var box = document.getElementById('ov-' + name);
      box.addEventListener('change', function () { viewer.classList.toggle('no-' + name, !box.checked); });
    });
  }
  // Links: #sort=KEY or #sort=KEY:asc (descending by default), #view=ID opens that record.
  function fromHash() {
    var hash = decodeURIComponent(location.hash);
    var m = /^#sort=(.+?)(?::(asc|desc))?$/.exec(hash);
    if (m && records) {
      records.querySelectorAll('th[data-col]').forEach(function (th) {
        if (th.getAttribute('data-key') === m[1]) sortBy(records, th, m[2] === 'asc');
      });
    }
    var v = /^#view=(.+)$/.exec(hash);
    if (v && records) {
      Array.prototype.forEach.call(records.tBodies[0].rows, function (r) {
        if (r.getAttribute('data-id') === v[1]) openViewer(r);
      });
    }
  }
  fromHash();
  window.addEventListener('hashchange', fromHash);
  window.addEventListener('load', function () {
    var ok = 0;
    document.querySelectorAll('img').forEach(function (img) {
      if (img.complete && img.naturalWidth > 0) { ok += 1; } else { img.classList.add('broken'); }
    });
    document.body.setAttribute('data-images-ok', String(ok));
  });
  document.body.setAttribute('data-script', 'ran');
})();
"""

STYLE = """
body { font-family: sans-serif; margin: 1.2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; }
.wrap { overflow: auto; max-width: 100%; }
table.summary td.text { max-width: 30em; overflow-wrap: anywhere; }
td.reasons { text-align: left; font-size: 85%; min-width: 16em; max-width: 36em; }
.dir { color: #555; font-weight: normal; }
table.sortable th[data-col] { cursor: pointer; }
th[data-dir=asc]::after { content: " \\25B2"; }
th[data-dir=desc]::after { content: " \\25BC"; }
/* records: scroll inside the table, sticky header row and id column */
.table-wrap { overflow: auto; max-height: calc(100vh - 4em); border: 1px solid #bbb; }
table.records { border-collapse: separate; border-spacing: 0; margin: 0; }
table.records th, table.records td { border-width: 0 1px 1px 0; }
table.records thead th { position: sticky; top: 0; z-index: 2; box-shadow: 0 1px 0 #999; }
table.records tbody td:first-child { position: sticky; left: 0; z-index: 1; background: #fff; box-shadow: 1px 0 0 #999; }
table.records thead th:first-child { left: 0; z-index: 3; }
table.records td.id { min-width: 8em; max-width: 14em; overflow-wrap: anywhere; }
table.records td.cat { min-width: 6em; max-width: 12em; overflow-wrap: anywhere; }
table.records td.instr { min-width: 14em; max-width: 22em; overflow-wrap: break-word; }
table.records td.err { color: #a00; font-size: 85%; text-align: left; min-width: 18em; max-width: 34em;
  overflow-wrap: anywhere; }
table.records td.err .notes { max-height: 7.5em; overflow-y: auto; }
table.records td.err .notes > div { margin-bottom: 2px; }
table.records th.score { min-width: 5.5em; max-width: 10em; white-space: normal; overflow-wrap: anywhere; }
table.records td.score { white-space: nowrap; }
table.records td.fail { color: #a00; font-size: 85%; }
table.records td.na { color: #888; font-size: 85%; }
td.delta { background: #fafafa; }
th .run { color: #245; font-weight: normal; font-size: 85%; }
td.images { white-space: nowrap; text-align: left; }
td.images figure { cursor: zoom-in; }
td.images .none { display: inline-block; white-space: normal; width: 8em; overflow-wrap: anywhere; text-align: left; }
figure { display: inline-block; margin: 0 3px; text-align: center; font-size: 75%; vertical-align: top; }
img.broken { outline: 2px solid red; }
.filters { margin: 0.5em 0; display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
.filters input[type=search] { width: 22em; }
.hists svg { margin: 0 1em 1em 0; }
.none { color: #888; }
.better { color: #060; } .worse { color: #a00; }
#viewer { position: fixed; inset: 0; background: #fff; overflow: auto; z-index: 10; padding: 0.5em 1em; }
#viewer[hidden] { display: none; }
#viewer .bar { position: sticky; top: 0; left: 0; background: #fff; padding: 0.3em 0; display: flex; gap: 1.5em;
  align-items: center; border-bottom: 1px solid #ccc; z-index: 2; }
#viewer-title { font-weight: bold; }
#viewer .panels { display: flex; gap: 12px; align-items: flex-start; padding-top: 0.5em; }
#viewer figure.panel { margin: 0; text-align: left; font-size: 85%; flex: none; }
#viewer .stack { position: relative; }
#viewer .stack > img, #viewer .stack > svg { position: absolute; left: 0; top: 0; }
#viewer.no-boxes .ov.boxes, #viewer.no-masks .ov.mask { display: none; }
#viewer ul.legend { list-style: none; padding: 0; margin: 0.3em 0; max-width: 40em; }
#viewer .sw { display: inline-block; width: 0.9em; height: 0.9em; border: 2px solid; margin-right: 0.3em;
  vertical-align: middle; }
"""


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "+inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def sort_value(value: Any) -> str:
    """The ``data-v`` attribute: numbers as JS parseFloat reads them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(float(value))
    return esc(value)


_PATH = re.compile(r"(?<![\w.:/])(?:~|[A-Za-z]:)?[/\\][^\s'\"]*[^\s'\",;:)\]]")
REASON_CHARS = 160  # a longer reason is cut in the summary (the whole text is its tooltip)


def reason_class(message: str) -> str:
    """An error message with file paths replaced by ``<path>``, so that one
    cause on many records counts as one reason."""
    return _PATH.sub("<path>", str(message))


def error_of(row: dict, key: str) -> str | None:
    """The recorded error of a null score ``key`` (components ``spec.part``
    take their spec's error), or None when there is none (n/a)."""
    errors = row.get("errors") or {}
    if key in errors:
        return str(errors[key])
    owners = [name for name in errors if key.startswith(name + ".")]
    return str(errors[max(owners, key=len)]) if owners else None


def top_reasons(rows: Iterable[dict], key: str, limit: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The most frequent error reasons of null ``key`` scores, with counts."""
    counts: Counter = Counter()
    for row in rows:
        if key in row.get("scores", {}) and row["scores"][key] is None:
            reason = error_of(row, key)
            if reason is not None:
                counts[reason_class(reason)] += 1
    return counts.most_common(limit)


def _cut(text: str, limit: int = REASON_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def metric_info(keys: Sequence[str]) -> dict[str, dict]:
    """Direction (True: higher is better, None: unknown) and range per score key, from the registry."""
    from .metric import MetricSpec
    from .plugins import get_registry
    from .stats import metric_directions

    registry = get_registry()
    directions = metric_directions(keys, registry)
    out = {}
    for key in keys:
        rng = None
        for cand in (key, key.rsplit(".", 1)[0]):
            try:
                cls = registry.get("metrics", MetricSpec.parse(cand).name)
            except Exception:  # noqa: BLE001 - not a spec / unknown metric
                continue
            rng = getattr(cls, "range", None) if cand == key else None  # a component has its own range
            break
        out[key] = {"higher_is_better": directions.get(key), "range": rng}
    return out


def direction_html(info: dict | None) -> str:
    hib = (info or {}).get("higher_is_better")
    if hib is None:
        return '<span class="dir" title="direction unknown (not a registered metric)">?</span>'
    title = "higher is better" if hib else "lower is better"
    rng = (info or {}).get("range")
    if rng:
        title += f"; range [{'-inf' if rng[0] is None else rng[0]}, {'inf' if rng[1] is None else rng[1]}]"
    return f'<span class="dir" title="{esc(title)}">{"&#8593;" if hib else "&#8595;"}</span>'


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


def _legend_coords(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.coords) + "]" + (
        f" in a {box.frame[0]}x{box.frame[1]} frame" if box.frame else "")


def _panel_html(panel: dict) -> str:
    label = esc(panel["label"])
    if "problem" in panel:
        return f'<figure class="panel"><figcaption>{label}</figcaption><p class="none">{esc(panel["problem"])}</p></figure>'
    w, h = panel["size"]
    nw, nh = panel["natural"]
    caption = f"{label} &#183; {nw}&#215;{nh}" + (f" (shown at {w}&#215;{h})" if panel["scaled"] else "")
    layers = [f'<img class="base" src="{panel["uri"]}" width="{w}" height="{h}" alt="{label}">']
    for name, uri in panel["masks"]:
        layers.append(f'<img class="ov mask" src="{uri}" width="{w}" height="{h}" alt="{esc(name)} overlay" '
                      f'title="{esc(name)}">')
    legend = []
    if panel["boxes"]:
        svg = [f'<svg class="ov boxes" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}">']
        for box, (x0, y0, x1, y1) in panel["boxes"]:
            colour = "rgb({},{},{})".format(*BOX_COLOURS[box.kind])
            dash = ' stroke-dasharray="6 4"' if box.kind == "crop" else ""
            svg.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0, 1):.1f}" height="{max(y1 - y0, 1):.1f}" '
                       f'fill="none" stroke="{colour}" stroke-width="2"{dash}><title>{esc(box.label)}</title></rect>')
            if w >= LABEL_MIN_WIDTH:  # on small pictures the labels would hide the picture: legend only
                svg.append(f'<text x="{x0 + 3:.1f}" y="{max(y0 + 13, 13):.1f}" font-size="12" fill="{colour}" '
                           f'stroke="#fff" stroke-width="3" paint-order="stroke">{esc(box.label)}</text>')
            legend.append(f'<li><span class="sw" style="border-color:{colour}"></span>{esc(box.label)} '
                          f'{esc(_legend_coords(box))}</li>')
        svg.append("</svg>")
        layers.append("".join(svg))
    for name, _ in panel["masks"]:
        legend.append(f'<li><span class="sw" style="border-color:rgb(255,0,0);background:rgba(255,0,0,.45)"></span>'
                      f'{esc(name)} (mask overlay)</li>')
    return (f'<figure class="panel" style="width:{max(w, PANEL_MIN_WIDTH)}px"><figcaption>{caption}</figcaption>'
            f'<div class="stack" style="width:{w}px;height:{h}px">{"".join(layers)}</div>'
            + (f'<ul class="legend">{"".join(legend)}</ul>' if legend else "") + "</figure>")


def _pictures_cell(runs: Sequence[dict | None], labels: Sequence[str], thumb_size: int, full_size: int) -> str:
    """Thumbnails of a record (edited once per run) and its full-size view template."""
    base_i = next(i for i, r in enumerate(runs) if r is not None)
    pics = [Pictures(r) if r is not None else None for r in runs]
    base = pics[base_i]
    multi = len(runs) > 1
    figs = []

    def fig(label, uri, problem):
        if uri is None:
            figs.append(f'<figure><span class="none">{esc(label)}: {esc(problem)}</span></figure>')
        else:
            figs.append(f'<figure><img src="{uri}" alt="{esc(label)}"><figcaption>{esc(label)}</figcaption></figure>')

    if multi:  # source, the edit of each run, target, mask
        items = base.thumbnails(thumb_size, fields=("source",), with_mask=False)
        for label, pic in zip(labels, pics):
            if pic is None:
                items.append((f"edited · {label}", None, "not in this file"))
            else:
                items += pic.thumbnails(thumb_size, fields=("edited",), labels={"edited": f"edited · {label}"},
                                        with_mask=False)
        items += base.thumbnails(thumb_size, fields=("target",))
    else:
        items = base.thumbnails(thumb_size)
    for item in items:
        fig(*item)
    if full_size <= 0:
        return f'<td class="images">{"".join(figs)}</td>'
    panels = []
    if multi:
        panels.append(base.panel("source", full_size, boxes=run_boxes(pics, list(labels))))
        for label, pic in zip(labels, pics):
            panels.append(pic.panel("edited", full_size, label=f"edited · {label}") if pic is not None
                          else {"label": f"edited · {label}", "problem": "record not in this file"})
    else:
        panels += [base.panel("source", full_size), base.panel("edited", full_size)]
    panels += [base.panel("target", full_size), base.panel("mask", full_size)]
    body = "".join(_panel_html(p) for p in panels if p is not None)
    return f'<td class="images">{"".join(figs)}<template class="full"><div class="panels">{body}</div></template></td>'


def _score_cell(row: dict | None, key: str) -> str:
    if row is None or key not in row.get("scores", {}):
        return '<td class="score na" data-v="" title="no such score in this file">-</td>'
    value = row["scores"][key]
    if value is not None:
        return f'<td class="score" data-v="{sort_value(value)}">{esc(fmt(value))}</td>'
    reason = error_of(row, key)
    if reason is not None:
        return f'<td class="score fail" data-v="" title="{esc(reason)}">failed</td>'
    return '<td class="score na" data-v="" title="not applicable: no score and no error">n/a</td>'


def _delta_cell(a: dict | None, b: dict | None, key: str, hib: bool | None) -> str:
    va = (a or {}).get("scores", {}).get(key)
    vb = (b or {}).get("scores", {}).get(key)
    if va is None or vb is None or not (math.isfinite(va) and math.isfinite(vb)):
        return '<td class="score delta" data-v="">-</td>'
    d = float(vb) - float(va)
    cls = "" if d == 0 or hib is None else (" better" if (d > 0) == hib else " worse")
    return f'<td class="score delta{cls}" data-v="{sort_value(d)}">{esc(fmt(d))}</td>'


def _records_table(runs: Sequence[list[dict]], labels: Sequence[str], keys: list[str], info: dict, by: str,
                   thumb_size: int, full_size: int) -> tuple[str, list[str]]:
    """The records table (one row per id, every run's scores) and the groups seen."""
    multi = len(runs) > 1
    by_id = [{str(r.get("id")): r for r in rows} for rows in runs]
    ids = list(dict.fromkeys(str(r.get("id")) for rows in runs for r in rows))
    group_label = by or "category"
    head = ['<th class="text" data-col="0" data-key="id">id</th>',
            f'<th class="text" data-col="1" data-key="{esc(group_label)}">{esc(group_label)}</th>',
            '<th class="text" data-col="2" data-key="instruction">instruction</th>',
            '<th class="text">images (click: full size)</th>']
    col = 4
    for key in keys:
        arrow = direction_html(info.get(key))
        names = [(f"{key} [{lab}]", f'<br><span class="run">{esc(lab)}</span>') for lab in labels] if multi \
            else [(key, "")]
        if len(runs) == 2:
            names.append((f"{key} [B-A]", f'<br><span class="run">{esc(labels[1])} &#8722; {esc(labels[0])}</span>'))
        for data_key, suffix in names:
            head.append(f'<th class="score" data-col="{col}" data-key="{esc(data_key)}">{esc(key)} {arrow}{suffix}</th>')
            col += 1
    head.append('<th class="text">errors / warnings</th>')
    out = [f'<div class="table-wrap"><table class="sortable records" id="records"><thead><tr>{"".join(head)}</tr>'
           "</thead><tbody>"]
    groups: set[str] = set()
    for rid in ids:
        rows = [table.get(rid) for table in by_id]
        base = next(r for r in rows if r is not None)
        group = base.get(by) if by else base.get("category")
        group = "" if group is None else str(group)
        if group:
            groups.add(group)
        instruction = base.get("instruction", "")
        notes = []
        for lab, row in zip(labels, rows):
            prefix = f"{lab}: " if multi else ""
            if row is None:
                notes.append(f"{prefix}record not in this file")
                continue
            notes += [f"{prefix}{k}: {v}" for k, v in (row.get("errors") or {}).items()]
            notes += [f"{prefix}warning {k}: {v}" for k, v in (row.get("warnings") or {}).items()]
        has_err = any(r is not None and r.get("errors") for r in rows) or any(r is None for r in rows)
        search = " ".join([rid, group, str(instruction)] + notes).lower()
        cells = [f'<td class="text id" data-v="{esc(rid)}">{esc(rid)}</td>',
                 f'<td class="text cat" data-v="{esc(group)}">{esc(group)}</td>',
                 f'<td class="text instr" data-v="{esc(instruction)}">{esc(instruction)}</td>',
                 _pictures_cell(rows, labels, thumb_size, full_size)]
        for key in keys:
            cells += [_score_cell(row, key) for row in rows]
            if len(runs) == 2:
                cells.append(_delta_cell(rows[0], rows[1], key, info.get(key, {}).get("higher_is_better")))
        notes_html = "".join(f'<div title="{esc(n)}">{esc(_cut(n, NOTE_CHARS))}</div>' for n in notes)
        cells.append(f'<td class="err"><div class="notes">{notes_html}</div></td>')
        out.append(f'<tr data-id="{esc(rid)}" data-cat="{esc(group)}" data-search="{esc(search)}"'
                   f'{" data-err" if has_err else ""}>{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out), sorted(groups)


def _filters(group_label: str, groups: list[str]) -> str:
    options = "".join(f'<option value="{esc(g)}">{esc(g)}</option>' for g in groups)
    return ('<div class="filters"><input type="search" id="filter-text" aria-label="text filter" '
            'placeholder="filter: id, instruction, error text">'
            f'<label>{esc(group_label)} <select id="filter-cat"><option value="">all</option>{options}</select></label>'
            '<label><input type="checkbox" id="filter-err"> only records with errors</label>'
            '<span id="filter-count"></span></div>')


VIEWER = ('<div id="viewer" hidden><div class="bar"><span id="viewer-title"></span>'
          '<label><input type="checkbox" id="ov-boxes" checked> boxes</label>'
          '<label><input type="checkbox" id="ov-masks" checked> mask overlays</label>'
          '<button type="button" id="viewer-close">close (Esc)</button></div><div id="viewer-body"></div></div>')


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
        parts.append(f'<div class="wrap"><table class="summary ranking"><thead><tr><th class="text">metric</th>'
                     f'<th class="text">group</th><th>n</th>{head}</tr></thead><tbody>')
        for r in result["ranking"]:
            cells = "".join(f"<td>{esc(fmt(r['means'][lab]))} (#{r['ranks'][lab] or '-'})</td>" for lab in labels)
            parts.append(f'<tr><td class="text">{esc(r["metric"])} {direction_html(info.get(r["metric"]))}</td>'
                         f'<td class="text">{esc("all" if r["group"] is None else r["group"])}</td><td>{r["n"]}</td>'
                         f"{cells}</tr>")
        parts.append("</tbody></table></div><h3>Pairwise tests</h3>")
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
        from .compare import compare_runs

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
    from .compare import run_labels
    from .runner import read_results

    paths = [results] if isinstance(results, str) else list(results)
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
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return n


# ---------------------------------------------------------------------------
# Plugin hook: the CLI command
# ---------------------------------------------------------------------------


@hookimpl
def register_commands(cli):
    import click

    @cli.command("report")
    @click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
    @click.option("--title", help="Page title (default: the results file name).")
    @click.option("--by", default="category", show_default=True, help="Record field for the per-group tables.")
    @click.option("--thumb-size", default=THUMB_SIZE, show_default=True, type=click.IntRange(16, 1024),
                  help="Longest side of the inlined thumbnails, in pixels.")
    @click.option("--full-size", default=FULL_SIZE, show_default=True, type=click.IntRange(0, 8192),
                  help="Longest side of the full-size views (larger images are scaled down; 0: no full-size views).")
    def report(results, out, title, by, thumb_size, full_size):
        """Write a self-contained HTML report of a results file (several files: a comparison)."""
        try:
            n = write_report(list(results), out, title=title, by=by, thumb_size=thumb_size, full_size=full_size)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"not a results JSON Lines file: {exc}") from None
        click.echo(f"wrote {out} ({n} records, {os.path.getsize(out) // 1024} KiB)")
