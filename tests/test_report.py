"""HTML report: content, escaping, infinities, boxes, and rendering in headless Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from editmetrics.analysis import report
from editmetrics.engine.runner import score_file
from editmetrics.analysis.stats import summarize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "pairs.jsonl")
PAYLOAD = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=\"alert(1)\"> & \"q\""
METRICS = ["psnr", "ssim", "psnr@target", "l2"]


def _photo(name: str, size=(96, 64)) -> np.ndarray:
    return np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.BICUBIC))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> str:
    """The examples' records plus three: an untrusted instruction with markup,
    an identical edit (PSNR = +inf) with boxes, and a missing edited image."""
    tmp = tmp_path_factory.mktemp("report")
    records = []
    with open(EXAMPLES, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            for key in ("source", "target", "edited", "mask"):
                if key in rec:
                    rec[key] = os.path.join(REPO, "examples", rec[key])
            records.append(rec)
    chelsea = tmp / "chelsea.png"
    Image.fromarray(_photo("chelsea")).save(chelsea)
    records.append({"id": "evil", "category": "local", "instruction": PAYLOAD, "source": str(chelsea),
                    "edited": str(chelsea), "target": str(chelsea),
                    "source_bbox": [10, 8, 60, 50], "target_bbox": [20, 10, 90, 60]})
    records.append({"id": "missing-edit", "category": "global", "instruction": "brighten",
                    "source": str(chelsea), "edited": str(tmp / "nope.png"), "target": str(chelsea)})
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp / "results.jsonl"
    score_file(str(pairs), METRICS, str(out), progress=False)
    return str(out)


@pytest.fixture(scope="module")
def page_path(results, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert report.write_report(results, str(out)) == 7
    return str(out)


@pytest.fixture(scope="module")
def page(page_path) -> str:
    with open(page_path, encoding="utf-8") as fh:
        return fh.read()


def _rows(results):
    from editmetrics.engine.runner import read_results

    return list(read_results(results))


def test_untrusted_text_is_escaped(page):
    assert html.escape(PAYLOAD, quote=True) in page
    assert "data-pwned" not in page.replace(html.escape("data-pwned"), "")  # only in escaped form
    assert page.count("<script") == 1  # ours, at the end
    assert "onerror=" not in page.replace("onerror=&quot;", "")


def test_self_contained_no_network(page):
    # every src is an inline data URI; nothing links to another file or host
    srcs = re.findall(r'\ssrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r'\s(href|action)="', page)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "default-src 'none'" in page


def test_summary_and_groups_match_stats(page, results):
    rows = _rows(results)
    summary = summarize(rows)
    for key in METRICS:
        s = summary["overall"][key]
        assert f"<td>{report.fmt(s['mean'])}</td>" in page
        assert f"[{report.fmt(s['ci95'][0])}, {report.fmt(s['ci95'][1])}]" in page
    for group in ("global", "local", "noise"):
        assert f"category = {group}</h3>" in page
    # the missing image is one failure for every metric that needs 'edited'
    assert summary["overall"]["psnr"]["failures"] == 1
    assert "missing file" in page


def test_infinity_is_shown_sorted_and_not_drawn(page, results):
    evil = next(r for r in _rows(results) if r["id"] == "evil")
    assert evil["scores"]["psnr"] == math.inf
    assert 'data-v="Infinity">+inf</td>' in page
    # the psnr histogram caption counts the infinite value and draws the finite ones
    assert "psnr (n=6; 1 x +inf not drawn)" in page
    svg = report.histogram_svg("m", [1.0, 2.0, math.inf, -math.inf])
    assert "1 x +inf, 1 x -inf not drawn" in svg and svg.count("<rect") == report.HIST_BINS


def test_histogram_counts():
    svg = report.histogram_svg("m", [0.0, 0.0, 0.0, 1.0], bins=2)
    titles = re.findall(r"<rect[^>]*><title>\[[^<]*[)\]]: (\d+)</title>", svg)
    assert titles == ["3", "1"]


def test_thumbnails_boxes_and_mask(results):
    rows = {r["id"]: r for r in _rows(results)}
    thumbs = {label: uri for label, uri, _ in report.record_thumbnails(rows["evil"], size=96)}
    assert set(thumbs) == {"source", "edited", "target"}
    import base64
    import io

    def decode(uri):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), dtype=int)

    src, edited, tgt = decode(thumbs["source"]), decode(thumbs["edited"]), decode(thumbs["target"])
    assert src.shape == (64, 96, 3)  # already smaller than 96: not resized
    # source box [10, 8, 60, 50] in blue on the source; the target box on the target only
    assert np.abs(src[30, 10] - report.BOX_COLOURS["source_bbox"]).max() < 60
    assert np.abs(tgt[30, 20] - report.BOX_COLOURS["target_bbox"]).max() < 60
    assert np.abs(edited[30, 10] - report.BOX_COLOURS["source_bbox"]).max() > 60
    # mask overlay: red inside the cat's mask, not outside
    cat = report.record_thumbnails(rows["cat-blue"], size=64)
    labels = [label for label, _, _ in cat]
    assert labels == ["source", "edited", "target", "mask"]
    overlay = decode(cat[3][1])
    mask = np.asarray(Image.open(rows["cat-blue"]["mask"]).convert("L").resize(overlay.shape[1::-1], Image.NEAREST)) > 0
    inside, outside = overlay[mask], overlay[~mask]
    assert (inside[:, 0] - inside[:, 1:].mean(axis=1)).mean() > 80
    assert abs((outside[:, 0] - outside[:, 1:].mean(axis=1)).mean()) < 40


def test_boxes_found_in_details():
    row = {"details": {"other": {"phrases": [{"text": "cat", "boxes": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}},
           "source_bbox": [0, 0, 5, 5], "target_bbox": "not a box"}
    found = [(b.kind, list(b.coords), b.image) for b in report.find_boxes(row)]
    assert found == [("source_bbox", [0, 0, 5, 5], "source"), ("bbox", [1, 2, 3, 4], "source"),
                     ("bbox", [5, 6, 7, 8], "source")]


def test_detail_boxes_on_the_edit_when_said_so():
    row = {"details": {"clip_rc@target": {"box": [1, 2, 3, 4]},  # R-SIE's crop of the edited image
                       "mine": {"box_image": "edited", "boxes": [[5, 6, 7, 8]]},
                       "other": {"box": [9, 9, 10, 10]}}}
    assert [(b.label, b.image) for b in report.find_boxes(row)] == [
        ("clip_rc@target: box", "edited"), ("mine: boxes", "edited"), ("other: box", "source")]


def test_bpm_boxes_by_side_and_frame():
    """BPM's details: boxes keyed by side in a frame; the target side goes on the edit."""
    row = {"target_bbox": [1, 1, 9, 9],
           "details": {"bpm": {"frame": [200, 100], "boxes": {"source": [[10, 10, 50, 50]],
                                                              "target": [[100, 20, 150, 80]],
                                                              "modify_crop": [5, 5, 160, 90]}}}}
    boxes = report.find_boxes(row)
    assert [(b.label, b.image, b.kind, b.frame) for b in boxes] == [
        ("target_bbox", "edited", "target_bbox", None), ("bpm: source", "source", "bbox", (200, 100)),
        ("bpm: target", "edited", "bbox", (200, 100)), ("bpm: modify_crop", "source", "crop", (200, 100))]
    from editmetrics.analysis.report_media import _scaled

    # shown at half the frame's size: coordinates halve
    assert _scaled(boxes[2], (100, 50), (400, 200)) == (50.0, 10.0, 75.0, 40.0)


def test_cli_command(results, tmp_path):
    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", results, "--out", str(out), "--title", "<b>t</b>", "--thumb-size", "48"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "7 records" in res.output
    text = out.read_text(encoding="utf-8")
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in text


# ---------------------------------------------------------------------------
# Headless Chromium
# ---------------------------------------------------------------------------

CHROMIUM = os.environ.get("EDITMETRICS_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (install Debian's 'chromium': scripts/setup.sh --test)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="em-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@needs_chromium
def test_chromium_renders_table_images_and_not_the_payload(page_path, page):
    proc = _chromium("--dump-dom", "file://" + page_path)
    dom = proc.stdout
    assert proc.returncode == 0 and "<table" in dom, proc.stderr[-2000:]
    assert 'data-script="ran"' in dom  # the page's own script did run ...
    assert "data-pwned=" not in dom.replace(html.escape("data-pwned=", quote=False), "")  # ... the payload did not
    assert dom.count("<script") == 1
    # the instruction is a text node: serialised with its markup escaped
    cell = re.search(r'<tr data-id="evil"[^>]*>.*?</tr>', dom, re.S).group(0)
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;" in cell
    assert dom.count('<tr data-id="') == 7
    # images outside the full-size templates (those load when the viewer opens)
    n_images = re.sub(r"<template.*?</template>", "", page, flags=re.S).count("<img ")
    assert n_images >= 20
    assert f'data-images-ok="{n_images}"' in dom  # every thumbnail decoded


@needs_chromium
def test_chromium_sorts_by_metric(page_path, results):
    rows = _rows(results)
    proc = _chromium("--dump-dom", "file://" + page_path + "#sort=psnr@target:asc")
    order = re.findall(r'<tr data-id="([^"]+)"', proc.stdout)
    scored = sorted((r for r in rows if r["scores"]["psnr@target"] is not None),
                    key=lambda r: r["scores"]["psnr@target"])
    expected = [r["id"] for r in scored] + [r["id"] for r in rows if r["scores"]["psnr@target"] is None]
    assert order == expected
    proc = _chromium("--dump-dom", "file://" + page_path + "#sort=psnr")
    order = re.findall(r'<tr data-id="([^"]+)"', proc.stdout)
    assert order[0] == "evil" and order[-1] == "missing-edit"  # +inf first, missing last


@needs_chromium
def test_chromium_screenshot_shows_photographs(page_path, tmp_path):
    shot = tmp_path / "shot.png"
    proc = _chromium("--window-size=1200,2600", f"--screenshot={shot}", "file://" + page_path)
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    # text and tables are grey; the thumbnails are colourful photographs
    assert (saturation > 60).mean() > 0.02
