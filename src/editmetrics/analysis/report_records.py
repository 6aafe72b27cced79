"""HTML pieces of the report: value formatting, failure reasons, and the records
table (score cells, thumbnails, full-size viewer panels, filters).

Every piece of record text goes through ``esc`` (``html.escape`` with quotes):
ids, instructions, groups, error messages and detail keys are untrusted.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from typing import Any, Iterable, Sequence

from editmetrics.analysis.report_media import BOX_COLOURS, Pictures, run_boxes

TOP_REASONS = 3  # error reasons listed per metric in the summary
LABEL_MIN_WIDTH = 320  # boxes on a full-size picture narrower than this are labelled in the legend only
NOTE_CHARS = 140  # an error/warning longer than this is cut in the records table (whole text: tooltip)
PANEL_MIN_WIDTH = 240  # a full-size panel is at least this wide (room for its legend)

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
    from editmetrics.contract.metric import MetricSpec
    from editmetrics.plugins.registry import get_registry
    from editmetrics.analysis.stats import metric_directions

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
    if not body:  # a record without pictures: nothing to open
        return f'<td class="images">{"".join(figs)}</td>'
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

