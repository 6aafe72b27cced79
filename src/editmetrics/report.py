"""Built-in plugin: ``editmetrics report RESULTS.jsonl --out report.html``.

One self-contained HTML file, readable offline and safe to open:

- no network: thumbnails are inlined as ``data:`` URIs (small JPEG/PNG),
  histograms are inline SVG, the only script is inline;
- a Content-Security-Policy allows exactly that one script (by its SHA-256
  hash) and ``data:`` images, so even a markup injection could not run code
  or fetch anything;
- every piece of record text (ids, instructions, categories, error messages,
  paths) is HTML-escaped: instructions are untrusted input.

Sections: summary with 95% bootstrap intervals (``editmetrics.stats``),
per-category tables, one histogram per metric, and one row per record with
thumbnails (source, edited, target, mask overlay, boxes) and scores; clicking
a column header sorts the records by that column.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw

from .hookspecs import hookimpl
from .images import ImageLoadError, load_image, load_mask, to_pil
from .stats import summarize

THUMB_SIZE = 128  # longest side of a thumbnail, in pixels
HIST_BINS = 12
THUMB_FIELDS = ("source", "edited", "target")
BOX_FIELDS = ("source_bbox", "target_bbox", "bbox")
BOX_COLOURS = {"source_bbox": (0, 160, 255), "target_bbox": (255, 170, 0), "bbox": (255, 0, 200)}

# The page's only script: header-click sorting and a thumbnail check that marks
# images which failed to decode (and counts those that did, for tests).
SCRIPT = """
(function () {
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
  // A link ending in #sort=KEY or #sort=KEY:asc opens the page sorted (descending by default).
  var m = /^#sort=(.+?)(?::(asc|desc))?$/.exec(decodeURIComponent(location.hash));
  var records = document.getElementById('records');
  if (m && records) {
    records.querySelectorAll('th[data-col]').forEach(function (th) {
      if (th.getAttribute('data-key') === m[1]) sortBy(records, th, m[2] === 'asc');
    });
  }
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
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; max-width: 22em; overflow-wrap: anywhere; }
table.sortable th[data-col] { cursor: pointer; }
th[data-dir=asc]::after { content: " \\25B2"; }
th[data-dir=desc]::after { content: " \\25BC"; }
td.err { color: #a00; font-size: 85%; text-align: left; max-width: 18em; }
figure { display: inline-block; margin: 0 4px; text-align: center; font-size: 75%; }
img.broken { outline: 2px solid red; }
td.images { white-space: nowrap; }
.hists svg { margin: 0 1em 1em 0; }
.none { color: #888; }
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


# ---------------------------------------------------------------------------
# Thumbnails
# ---------------------------------------------------------------------------


def _data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(img: Image.Image, size: int) -> tuple[Image.Image, float]:
    """A copy at most ``size`` px on its longest side and the scale applied."""
    scale = min(1.0, size / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return img, scale


def _boxes(row: dict) -> list[tuple[str, list[float]]]:
    """Boxes to draw: the record's ``*_bbox`` fields and any ``[x0,y0,x1,y1]``
    lists under a ``*box*`` key in the metrics' details (e.g. grounding)."""
    found: list[tuple[str, list[float]]] = []
    for name in BOX_FIELDS:
        box = row.get(name)
        if _is_box(box):
            found.append((name, box))

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            if "box" in key.lower() and _is_box(node):
                found.append(("bbox", node))
            else:
                for item in node:
                    walk(item, key)

    walk(row.get("details", {}))
    return found


def _is_box(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def record_thumbnails(row: dict, size: int = THUMB_SIZE) -> list[tuple[str, str | None, str | None]]:
    """(label, data URI or None, problem or None) for each picture of a row.

    Boxes are drawn on the source thumbnail (``source_bbox``, details boxes) and
    on the target/edited thumbnail (``target_bbox``); the mask overlay tints the
    mask region red over the source."""
    out: list[tuple[str, str | None, str | None]] = []
    boxes = _boxes(row)
    source_img = None
    for name in THUMB_FIELDS:
        path = row.get(name)
        if not isinstance(path, str) or not path:
            continue
        try:
            img = to_pil(load_image(path))
        except ImageLoadError as exc:
            out.append((name, None, str(exc)))
            continue
        thumb, scale = _thumb(img, size)
        if name == "source":
            source_img = img
        if name == "source":
            _draw_boxes(thumb, [b for b in boxes if b[0] != "target_bbox"], scale)
        elif name == "target" or not row.get("target"):  # target box on the target, else on the edit
            _draw_boxes(thumb, [b for b in boxes if b[0] == "target_bbox"], scale)
        out.append((name, _data_uri(thumb), None))
    mask_path = row.get("mask")
    if isinstance(mask_path, str) and mask_path:
        try:
            mask = load_mask(mask_path)
        except ImageLoadError as exc:
            out.append(("mask", None, str(exc)))
        else:
            base = source_img if source_img is not None else Image.new("RGB", mask.shape[::-1], (128, 128, 128))
            out.append(("mask", _data_uri(_mask_overlay(base, mask, size)), None))
    return out


def _draw_boxes(img: Image.Image, boxes, scale: float) -> None:
    draw = ImageDraw.Draw(img)
    for name, (x0, y0, x1, y1) in boxes:
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=BOX_COLOURS[name], width=2)


def _mask_overlay(base: Image.Image, mask: np.ndarray, size: int) -> Image.Image:
    if mask.shape != (base.height, base.width):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(base.size, Image.NEAREST)) > 0
    pixels = np.asarray(base, dtype=np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    pixels = np.where(mask[..., None], 0.45 * pixels + 0.55 * red, 0.6 * pixels + 0.4 * 255.0)
    return _thumb(Image.fromarray(pixels.astype(np.uint8)), size)[0]


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


def _score_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for key in row.get("scores", {}):
            if key not in keys:
                keys.append(key)
    return keys


def _stats_table(stats: dict) -> str:
    out = ['<table class="summary"><thead><tr><th class="text">metric</th><th>n</th><th>mean</th><th>std</th>'
           '<th>95% CI</th><th>failed</th><th>n/a</th></tr></thead><tbody>']
    for key, s in stats.items():
        ci = f"[{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]"
        out.append(f'<tr><td class="text">{esc(key)}</td><td>{s["n"]}</td><td>{esc(fmt(s["mean"]))}</td>'
                   f'<td>{esc(fmt(s["std"]))}</td><td>{esc(ci)}</td><td>{s["failures"]}</td>'
                   f'<td>{s.get("not_applicable", 0)}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _records_table(rows: list[dict], keys: list[str], thumb_size: int) -> str:
    head = ['<th class="text" data-col="0" data-key="id">id</th>',
            '<th class="text" data-col="1" data-key="category">category</th>',
            '<th class="text" data-col="2" data-key="instruction">instruction</th>', '<th class="text">images</th>']
    for i, key in enumerate(keys):
        head.append(f'<th data-col="{4 + i}" data-key="{esc(key)}">{esc(key)}</th>')
    head.append('<th class="text">errors / warnings</th>')
    out = [f'<table class="sortable records" id="records"><thead><tr>{"".join(head)}</tr></thead><tbody>']
    for row in rows:
        figs = []
        for label, uri, problem in record_thumbnails(row, thumb_size):
            if uri is None:
                figs.append(f'<figure><span class="none">{esc(label)}: {esc(problem)}</span></figure>')
            else:
                figs.append(f'<figure><img src="{uri}" alt="{esc(label)}"><figcaption>{esc(label)}</figcaption></figure>')
        scores = row.get("scores", {})
        cells = [f'<td class="text" data-v="{esc(row.get("id"))}">{esc(row.get("id"))}</td>',
                 f'<td class="text" data-v="{esc(row.get("category", ""))}">{esc(row.get("category", ""))}</td>',
                 f'<td class="text" data-v="{esc(row.get("instruction", ""))}">{esc(row.get("instruction", ""))}</td>',
                 f'<td class="images">{"".join(figs)}</td>']
        for key in keys:
            value = scores.get(key)
            cells.append(f'<td data-v="{sort_value(value)}">{esc(fmt(value))}</td>')
        notes = [f"{k}: {v}" for k, v in (row.get("errors") or {}).items()]
        notes += [f"warning {k}: {v}" for k, v in (row.get("warnings") or {}).items()]
        cells.append(f'<td class="err">{"<br>".join(esc(n) for n in notes)}</td>')
        out.append(f'<tr data-id="{esc(row.get("id"))}">{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def build_report(rows: Iterable[dict], title: str = "editmetrics report", by: str = "category",
                 thumb_size: int = THUMB_SIZE) -> str:
    """The report page for result rows (as written by ``editmetrics score``)."""
    rows = list(rows)
    keys = _score_keys(rows)
    summary = summarize(rows, by=by)
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    failed = sum(1 for r in rows if r.get("errors"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{len(rows)} records, {len(keys)} score columns, {failed} record(s) with errors.</p>",
        "<h2>Summary</h2><p>Mean with 95% percentile bootstrap interval (1000 resamples, seed 0); "
        "failed = records without a score.</p>",
        _stats_table(summary["overall"]),
    ]
    if summary.get("groups"):
        parts.append(f"<h2>By {esc(summary['by'])}</h2>")
        for group, stats in summary["groups"].items():
            parts.append(f"<h3>{esc(summary['by'])} = {esc(group)}</h3>")
            parts.append(_stats_table(stats))
    parts.append('<h2>Distributions</h2><div class="hists">')
    for key in keys:
        values = [float(r["scores"][key]) for r in rows if r.get("scores", {}).get(key) is not None]
        parts.append(histogram_svg(key, values))
    parts.append("</div>")
    parts.append("<h2>Records</h2><p>Click a column header to sort (missing scores stay last).</p>")
    parts.append(_records_table(rows, keys, thumb_size))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_report(results: str, out: str, title: str | None = None, by: str = "category",
                 thumb_size: int = THUMB_SIZE) -> int:
    """Write the report of a results file; returns the number of records."""
    from .results import atomic_write, check_paths, check_replaceable, starts_with
    from .runner import read_results

    html_file = starts_with((b"<!DOCTYPE html", b"<!doctype html"))  # only an earlier report is replaced
    check_paths({"RESULTS": results}, {"--out": out})
    check_replaceable(out, html_file, "--out")
    rows = list(read_results(results))
    page = build_report(rows, title=title or f"editmetrics report: {os.path.basename(results)}", by=by,
                        thumb_size=thumb_size)
    atomic_write(out, page, replaceable=html_file, label="--out")
    return len(rows)


# ---------------------------------------------------------------------------
# Plugin hook: the CLI command
# ---------------------------------------------------------------------------


@hookimpl
def register_commands(cli):
    import click

    @cli.command("report")
    @click.argument("results", type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
    @click.option("--title", help="Page title (default: the results file name).")
    @click.option("--by", default="category", show_default=True, help="Record field for the per-group tables.")
    @click.option("--thumb-size", default=THUMB_SIZE, show_default=True, type=click.IntRange(16, 1024),
                  help="Longest side of the inlined thumbnails, in pixels.")
    def report(results, out, title, by, thumb_size):
        """Write a self-contained HTML report of a results file."""
        try:
            n = write_report(results, out, title=title, by=by, thumb_size=thumb_size)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"{results} is not a results JSON Lines file: {exc}") from None
        click.echo(f"wrote {out} ({n} records, {os.path.getsize(out) // 1024} KiB)")
