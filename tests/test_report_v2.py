"""Report v2: 12 metrics from two models, comparison view, failed vs n/a, BPM boxes,
and the layout in headless Chromium at 1400 px (DOM measurements, screenshots)."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image
from skimage import data

from editmetrics.analysis import report
from editmetrics.engine.runner import read_results, score_file

# 12 metric specs (BPM adds its six components: 18 score columns). BPM runs
# with the rules parser, the records' boxes and a tiny random CLIP; it fails
# only where an edit is missing.
METRICS = ["psnr", "ssim", "l1", "l2", "psnr@target", "ssim@target", "l1@target", "l2@target",
           "psnr(region=outside)", "ssim(region=outside)", "l1(region=inside)", "bpm"]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
SIZE = (160, 120)
BOX = (40, 30, 120, 90)
LONG_ID = "a-very-long-record-identifier-that-would-wrap-one-letter-per-line-0001"
LONG_INSTRUCTION = ("make the object in the middle of the picture bright blue while keeping the background, "
                    "the lighting and every other object exactly as they are")
PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


def _photo(name: str) -> np.ndarray:
    img = getattr(data, name)()
    return np.asarray(Image.fromarray(img).convert("RGB").resize(SIZE, Image.BICUBIC))


def _edit(src: np.ndarray, strength: float, local: bool) -> np.ndarray:
    out = src.astype(np.float64)
    x0, y0, x1, y1 = BOX
    if local:
        region = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = (1 - strength) * region + strength * region[..., [2, 0, 1]]
    else:
        out = out * (1 - 0.5 * strength)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_runs(root) -> tuple[str, str]:
    """Two models' results on 12 records (6 photographs x local/global edit).
    Model B edits more strongly; B lacks one record and has one unreadable edit."""
    from editmetrics.testing.tiny import write_hf_clip

    root = str(root)
    clip = write_hf_clip(os.path.join(root, "clip"))
    records = {"a": [], "b": []}
    mask = np.zeros(SIZE[::-1], np.uint8)
    mask[BOX[1]:BOX[3], BOX[0]:BOX[2]] = 255
    Image.fromarray(mask).save(os.path.join(root, "mask.png"))
    for i, name in enumerate(PHOTOS):
        src = _photo(name)
        Image.fromarray(src).save(os.path.join(root, f"{name}.png"))
        for local in (True, False):
            kind = "local" if local else "global"
            rid = f"{name}-{kind}" if i else (LONG_ID if local else f"{name}-{kind}")
            Image.fromarray(_edit(src, 1.0, local)).save(os.path.join(root, f"{rid}-target.png"))
            rec = {"id": rid, "category": kind, "source": f"{name}.png", "target": f"{rid}-target.png",
                   "instruction": LONG_INSTRUCTION if i == 1 and local else
                   (f"recolour the {name} in the middle" if local else "make it darker")}
            if local:
                rec.update(mask="mask.png", source_bbox=list(BOX), target_bbox=list(BOX),
                           edit_type="attribute", source_object="object", target_object="blue object")
            if i == 2 and local:
                rec["instruction"] = PAYLOAD
            for model, strength in (("a", 0.6), ("b", 0.9)):
                if model == "b" and i == 5 and not local:
                    continue  # missing from B
                path = f"{rid}-{model}.png"
                if model == "b" and i == 4 and local:
                    path = "does-not-exist.png"  # B's edit is missing: every metric fails
                else:
                    noisy = _edit(src, strength, local).astype(np.float64)
                    noisy += np.random.default_rng(i).normal(0, 4 + 8 * strength, noisy.shape)
                    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(os.path.join(root, path))
                records[model].append({**rec, "edited": path})
    outs = []
    for model, recs in records.items():
        pairs = os.path.join(root, f"pairs-{model}.jsonl")
        with open(pairs, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)
        out = os.path.join(root, f"model-{model}.jsonl")
        score_file(pairs, METRICS, out, progress=False, settings={"bpm_parser": "rules", "clip": clip})
        outs.append(out)
    return outs[0], outs[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[str, str]:
    return make_runs(tmp_path_factory.mktemp("v2"))


@pytest.fixture(scope="module")
def pages(runs, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("v2html")
    single, double = str(out / "single.html"), str(out / "compare.html")
    assert report.write_report(runs[0], single) == 12
    assert report.write_report(list(runs), double) == 12
    return {"single": single, "compare": double}


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


# ---------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------


def test_fixture_has_twelve_metrics_and_bpm_boxes(runs):
    rows = list(read_results(runs[0]))
    assert len(rows) == 12 and len(rows[0]["scores"]) == 18
    local = next(r for r in rows if r["id"] == "chelsea-local")
    assert local["scores"]["bpm"] is not None and "bpm" not in local["errors"]
    boxes = local["details"]["bpm"]["boxes_500"]
    assert boxes["source"] and boxes["target"] and local["details"]["bpm"]["frame"] == [500, 500]


def test_headers_show_direction(pages):
    page = _read(pages["single"])
    heads = re.findall(r'<th class="score" data-col="\d+" data-key="([^"]+)">(.*?)</th>', page)
    assert len(heads) == 18
    arrows = {key: ("&#8593;" in body, "&#8595;" in body) for key, body in heads}
    assert arrows["psnr"] == (True, False) and arrows["l2@target"] == (False, True)
    assert arrows["bpm.s_preserve"] == (True, False)  # a component takes its metric's direction


def test_failed_vs_na_and_top_reasons(pages, runs):
    rows = list(read_results(runs[1]))
    page = _read(pages["compare"])
    # B's missing edit: every metric needing 'edited' failed on that record, with one reason
    reason = report.top_reasons(rows, "psnr")
    assert reason == [("field 'edited' could not be loaded (see errors['edited'])", 1)]
    assert f"1 &#215; {html.escape(reason[0][0])}" in page
    # BPM fails only on that record, with the same reason
    bpm = report.top_reasons(rows, "bpm")
    assert bpm == reason
    # region metrics on a global edit (no mask) fail with their own reason; cells say failed / n/a
    assert report.top_reasons(rows, "psnr(region=outside)")[0][0] == "region=outside needs a 'mask' field in the record"
    assert 'class="score fail"' in page
    # bpm.s_size on a global edit: null, and BPM's error makes it "failed", as summarize counts it
    assert report.error_of({"errors": {"bpm": "x"}, "scores": {"bpm.s_size": None}}, "bpm.s_size") == "x"
    assert report.error_of({"errors": {}, "scores": {"bpm.s_size": None}}, "bpm.s_size") is None
    na = report._score_cell({"scores": {"m": None}, "errors": {}}, "m")
    assert "n/a" in na and "fail" not in na


def test_reason_class_folds_paths():
    assert report.reason_class("missing file: /data/a/x.png (or C:\\d\\x.png), see https://h.org/p") == \
        "missing file: <path> (or <path>), see https://h.org/p"
    assert report.reason_class("ratio 1/2 and a/b") == "ratio 1/2 and a/b"


def test_comparison_section_matches_compare(pages, runs):
    from editmetrics.analysis.compare import compare_files

    page = _read(pages["compare"])
    result = compare_files(list(runs), by="category")
    assert "<h2>Comparison</h2>" in page
    row = next(r for r in result["rows"] if r["metric"] == "psnr@target" and r["group"] is None)
    assert row["n"] == 10 and row["b_better"] + row["a_better"] + row["ties"] == 10
    cells = re.search(r'<tr data-metric="psnr@target"><td class="text">.*?</tr>', page).group(0)
    assert f"<td>{row['n']}</td><td>{report.fmt(row['mean_a'])}</td><td>{report.fmt(row['mean_b'])}</td>" in cells
    assert "missing from model-b: 1 record(s): hubble_deep_field-global" in page
    # one row per id, each run's score and B - A per metric
    assert page.count('<tr data-id="') == 12
    assert 'data-key="psnr [model-a]"' in page and 'data-key="psnr [B-A]"' in page


def test_full_size_panels_and_overlays(pages):
    page = _read(pages["single"])
    tpl = re.search(r'<tr data-id="chelsea-local".*?<template class="full">(.*?)</template>', page, re.S).group(1)
    labels = re.findall(r"<figcaption>(\w+) &#183; (\d+)&#215;(\d+)", tpl)
    assert labels == [("source", "160", "120"), ("edited", "160", "120"), ("target", "160", "120"),
                      ("mask", "160", "120")]
    # BPM's boxes: source side on the source, target side on the edit, plus the record's boxes
    assert "bpm: source" in tpl and "bpm: target" in tpl and "source_bbox" in tpl and "target_bbox" in tpl
    source_panel, edited_panel = tpl.split('<figure class="panel"')[1:3]
    assert "bpm: source" in source_panel and "bpm: target" not in source_panel
    assert "bpm: target" in edited_panel and 'class="ov mask"' in source_panel
    # full-size images decode to the file's size
    uri = re.search(r'<img class="base" src="data:image/jpeg;base64,([^"]+)"', source_panel).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(uri))).size == SIZE


def test_full_size_is_capped(runs, tmp_path):
    out = tmp_path / "small.html"
    report.write_report(runs[0], str(out), full_size=64)
    page = out.read_text(encoding="utf-8")
    assert "160&#215;120 (shown at 64&#215;48)" in page
    report.write_report(runs[0], str(out), full_size=0)
    assert '<template class="full"><div' not in out.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------
# Headless Chromium at 1400 px: layout through the DOM, and screenshots
# ---------------------------------------------------------------------------

CHROMIUM = os.environ.get("EDITMETRICS_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (install Debian's 'chromium': scripts/setup.sh --test)")

# Test-only probe, added to a copy of the page (its hash joins the CSP): it
# measures the rendered layout, drives the filters and the viewer, and writes
# the results as JSON into body[data-measure] for --dump-dom.
PROBE = """
window.addEventListener('load', function () {
  var out = {};
  function box(el) { var r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }
  var wrap = document.querySelector('.table-wrap'), table = document.getElementById('records');
  var rows = table.tBodies[0].rows, first = rows[0];
  out.viewport = [window.innerWidth, document.documentElement.scrollWidth];
  out.wrap = box(wrap).concat([wrap.scrollWidth, wrap.clientWidth, wrap.scrollHeight, wrap.clientHeight]);
  out.cells = {};
  ['id', 'cat', 'instr', 'err'].forEach(function (c) {
    out.cells[c] = Array.prototype.map.call(table.querySelectorAll('td.' + c), function (td) { return box(td)[2]; });
  });
  out.rowHeights = Array.prototype.map.call(rows, function (r) { return box(r)[3]; });
  out.errOverflow = Array.prototype.filter.call(table.querySelectorAll('td.err'), function (td) {
    return td.scrollWidth > td.clientWidth + 1; }).length;
  out.heads = Array.prototype.map.call(table.querySelectorAll('th.score'), function (th) { return th.textContent; });
  // scroll inside the table: header and id column stay in place
  wrap.scrollLeft = 700; wrap.scrollTop = 250;
  var visible = Array.prototype.filter.call(rows, function (r) { return box(r)[1] > box(wrap)[1] + 60; })[0];
  out.sticky = {wrap: box(wrap), th: box(table.tHead.rows[0].cells[4]), idCell: box(visible.cells[0]),
                thFirst: box(table.tHead.rows[0].cells[0]), scrolled: [wrap.scrollLeft, wrap.scrollTop]};
  wrap.scrollLeft = 0; wrap.scrollTop = 0;
  // filters
  function shown() { return Array.prototype.filter.call(rows, function (r) { return !r.hidden; }).length; }
  var t = document.getElementById('filter-text'), c = document.getElementById('filter-cat');
  out.filters = {all: shown()};
  t.value = 'chelsea'; t.dispatchEvent(new Event('input')); out.filters.text = shown();
  out.filters.count = document.getElementById('filter-count').textContent;
  t.value = ''; t.dispatchEvent(new Event('input'));
  c.value = 'global'; c.dispatchEvent(new Event('change')); out.filters.cat = shown();
  c.value = ''; c.dispatchEvent(new Event('change'));
  // the viewer: a click on a thumbnail of the chelsea local record
  var tr = Array.prototype.filter.call(rows, function (r) { return r.getAttribute('data-id') === 'chelsea-local'; })[0];
  tr.querySelector('td.images figure').click();
  var viewer = document.getElementById('viewer');
  out.viewer = {open: !viewer.hidden, title: document.getElementById('viewer-title').textContent,
                panels: Array.prototype.map.call(viewer.querySelectorAll('figure.panel'), function (f) {
                  var img = f.querySelector('img.base'); var s = f.querySelector('.stack');
                  return {caption: f.querySelector('figcaption').textContent, width: img ? box(img)[2] : 0,
                          rects: f.querySelectorAll('svg rect').length, top: s ? box(s)[1] : 0,
                          left: s ? box(s)[0] : 0};
                })};
  document.body.setAttribute('data-measure', JSON.stringify(out));
});
"""


def _probe_page(page: str, tmp_path, name: str) -> str:
    digest = base64.b64encode(hashlib.sha256(PROBE.encode("utf-8")).digest()).decode("ascii")
    page = page.replace("script-src 'sha256-", f"script-src 'sha256-{digest}' 'sha256-", 1)
    page = page.replace("</body>", f"<script>{PROBE}</script></body>")
    path = tmp_path / name
    path.write_text(page, encoding="utf-8")
    return str(path)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="em-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--window-size=1400,1000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _measure(path: str) -> dict:
    proc = _chromium("--dump-dom", "file://" + path)
    found = re.search(r'data-measure="([^"]*)"', proc.stdout)
    assert found, proc.stderr[-3000:]
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
@pytest.mark.parametrize("which", ["single", "compare"])
def test_chromium_layout_at_1400px(pages, which, tmp_path):
    m = _measure(_probe_page(_read(pages[which]), tmp_path, f"{which}-probe.html"))
    width, page_scroll_width = m["viewport"]
    assert width == 1400
    assert page_scroll_width <= width  # the page itself never scrolls sideways: the table does
    wrap_w, scroll_w, client_w = m["wrap"][2], m["wrap"][4], m["wrap"][5]
    assert scroll_w > client_w and wrap_w <= width  # the table scrolls inside its frame
    # text columns keep a readable width: no more one letter per line
    assert min(m["cells"]["id"]) >= 120
    assert min(m["cells"]["cat"]) >= 90
    assert min(m["cells"]["instr"]) >= 220
    assert min(m["cells"]["err"]) >= 240 and m["errOverflow"] == 0
    assert max(m["rowHeights"]) < 200, m["rowHeights"]
    assert all(("\u2191" in h) != ("\u2193" in h) for h in m["heads"])  # each score header: one arrow
    # sticky header and id column after scrolling inside the table
    s = m["sticky"]
    assert s["scrolled"][0] > 0 and s["scrolled"][1] > 0
    assert abs(s["th"][1] - s["wrap"][1]) <= 2  # header row at the frame's top
    assert abs(s["idCell"][0] - s["wrap"][0]) <= 2  # id column at the frame's left
    assert abs(s["thFirst"][0] - s["wrap"][0]) <= 2 and abs(s["thFirst"][1] - s["wrap"][1]) <= 2
    # filters
    f = m["filters"]
    assert f["all"] == 12 and f["text"] == 2 and f["cat"] == 6 and f["count"] == "2 of 12 records shown"
    # viewer: side by side at full size, with boxes
    v = m["viewer"]
    assert v["open"] and v["title"] == "chelsea-local"
    captions = [p["caption"].rsplit(" \u00b7 ", 1)[0] for p in v["panels"]]
    expected = (["source", "edited", "target", "mask"] if which == "single"
                else ["source", "edited · model-a", "edited · model-b", "target", "mask"])
    assert captions == expected
    assert all(p["width"] == SIZE[0] for p in v["panels"])  # full size: 160 px wide, not a thumbnail
    tops = {round(p["top"]) for p in v["panels"]}
    lefts = [p["left"] for p in v["panels"]]
    assert len(tops) == 1 and lefts == sorted(lefts)  # one row, left to right
    assert v["panels"][0]["rects"] >= 2 and v["panels"][1]["rects"] >= 2  # BPM + record boxes


@needs_chromium
def test_chromium_screenshots(pages, tmp_path):
    """Screenshots at 1400 px: the records table and the viewer. Kept under
    EDITMETRICS_SCREENSHOTS=DIR for a person to look at."""
    keep = os.environ.get("EDITMETRICS_SCREENSHOTS")
    shots = {}
    # the records table at the top of the window: a copy of the page with the other sections hidden
    # (a #records link scrolls there in a browser, but headless screenshots ignore the scroll)
    hide = "<style>body > :not(.filters):not(.table-wrap):not(#viewer) { display: none !important; }</style>"
    for name, url in (("table", "compare"), ("single", "single"), ("viewer", "compare")):
        path = tmp_path / f"{name}.html"
        page = _read(pages[url])
        path.write_text(page.replace("</head>", hide + "</head>") if name != "viewer" else page, encoding="utf-8")
        shot = tmp_path / f"{name}.png"
        proc = _chromium(f"--screenshot={shot}", f"file://{path}" + ("#view=chelsea-local" if name == "viewer" else ""))
        assert shot.exists(), proc.stderr[-2000:]
        shots[name] = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(shot, os.path.join(keep, f"report-{name}.png"))
    for name, pixels in shots.items():
        assert pixels.shape[1] == 1400
        saturation = pixels.max(axis=2) - pixels.min(axis=2)
        assert (saturation > 60).mean() > 0.01, name  # photographs are on screen


def test_three_files_rank_and_holm(runs, tmp_path):
    third = tmp_path / "model-c.jsonl"
    with open(third, "w", encoding="utf-8") as fh:
        for row in read_results(runs[0]):
            row["scores"] = {k: (None if v is None else v * 1.01) for k, v in row["scores"].items()}
            fh.write(json.dumps(row) + "\n")
    out = tmp_path / "three.html"
    assert report.write_report([*runs, str(third)], str(out)) == 12
    page = out.read_text(encoding="utf-8")
    assert "<h3>Ranking</h3>" in page and "<th>p Holm</th>" in page
    assert 'data-key="psnr [model-c]"' in page and "[B-A]" not in page  # a column per file, no difference column
    # psnr: C = 1.01 x A, and B is worse than A on every record: C first, then A, then B
    ranking = re.search(r'<table class="summary ranking">.*?</table>', page, re.S).group(0)
    psnr = re.search(r'<tr><td class="text">psnr <span.*?</tr>', ranking).group(0)
    assert re.findall(r"\(#(\d)\)", psnr) == ["2", "3", "1"]


def test_pages_stay_self_contained_and_escaped(pages):
    for path in pages.values():
        page = _read(path)
        srcs = re.findall(r'\ssrc="([^"]*)"', page)
        assert srcs and all(s.startswith("data:image/") for s in srcs)
        assert not re.search(r'\s(href|action|srcset)="', page) and "url(" not in page  # (URLs in error texts are text)
        assert page.count("<script") == 1 and "default-src 'none'" in page
        script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        assert f"script-src 'sha256-{digest}'" in page  # the CSP allows exactly this script
        # the instruction with markup is text everywhere (cell, search attribute)
        assert PAYLOAD not in page and html.escape(PAYLOAD, quote=True) in page
