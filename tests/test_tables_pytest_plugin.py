"""The pytest plugin (entry point pytest11): a suite in a temporary folder, run by pytest itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from skimage import data

SUITE = '''
from editmetrics.analysis import tables

def test_suite(editmetrics_dataset, editmetrics_score, editmetrics_results, editmetrics_settings):
    assert isinstance(editmetrics_settings, dict)
    pairs = editmetrics_dataset("folder", {root!r})
    rows = editmetrics_score(pairs, "psnr,l2")
    assert [r["id"] for r in rows] == ["same", "dark"]
    editmetrics_results.add("plain", tables.summary_table({{"m": rows}}, by=None, title="Plain"))
    editmetrics_results.add("sppe", tables.sppe_table({{"m": rows}}, group_field=None, title="SPPE"))
{extra}
'''

RUN_MODEL = '''
def test_run_model(editmetrics_dataset, editmetrics_run_model, editmetrics_score, editmetrics_results):
    pairs = editmetrics_dataset("folder", {root!r})
    edited = editmetrics_run_model("identity", pairs)
    rows = editmetrics_score(edited, ["psnr"])
    assert all(r["scores"]["psnr"] == float("inf") for r in rows)
'''


def _dataset(root):
    img = Image.fromarray(data.chelsea()).convert("RGB").resize((48, 32))
    img.save(root / "a.png")
    Image.fromarray(np.asarray(img) // 2).save(root / "b.png")
    (root / "pairs.csv").write_text("id,source,edited\nsame,a.png,a.png\ndark,a.png,b.png\n")


def _pytest(folder, *args):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder), *args],
                          capture_output=True, text=True, cwd=folder, env=env, timeout=300)


def test_plugin_fixtures_write_tables(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _dataset(root)
    suite = tmp_path / "suite"
    suite.mkdir()
    try:
        import editmetrics.engine.model_runs  # noqa: F401  (the run API: used when present)
        extra = RUN_MODEL.format(root=str(root))
    except ImportError:
        extra = ""
    (suite / "test_bench.py").write_text(SUITE.format(root=str(root), extra=extra))
    out = tmp_path / "tables"
    out.mkdir()
    # an earlier session's outputs: its manifest names stale.html; keep.txt is not ours
    (out / "stale.html").write_text("old")
    (out / "keep.txt").write_text("user file")
    (out / "results.json").write_text("{}")
    (out / ".editmetrics-files.json").write_text(json.dumps(["results.json", "results.md", "stale.html"]))
    proc = _pytest(suite, f"--editmetrics-out={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "editmetrics benchmark tables" in proc.stdout
    md = (out / "results.md").read_text()
    # psnr of an identical pair is +inf, so the mean is inf; l2 of b = a // 2 is checked against numpy
    a = np.asarray(Image.open(root / "a.png"), dtype=np.float64) / 255
    b = np.asarray(Image.open(root / "b.png"), dtype=np.float64) / 255
    l2 = ((a - b) ** 2).mean() / 2
    assert f"| m | inf | {l2:.4f} |" in md
    assert "**SPPE**" in md and "| m | - | - | inf | - | - | - | - | - |" in md
    assert "## plain\n\n**Plain**" in md and "## sppe\n\n**SPPE**" in md  # each table's name
    text = (out / "results.json").read_text()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON
    data_json = json.loads(text)
    assert set(data_json) == {"plain", "sppe"}
    assert data_json["plain"]["rows"][0]["values"] == ["inf", pytest.approx(l2)]
    # nothing stale: the earlier session's stale.html is gone, a file that was never ours stays
    assert not (out / "stale.html").exists() and (out / "keep.txt").exists()
    assert "removed 1 file(s) of an earlier run" in proc.stdout
    assert json.loads((out / ".editmetrics-files.json").read_text()) == ["results.json", "results.md"]
    # a later session writing no table removes this one's tables
    (suite / "test_bench.py").write_text("def test_nothing(editmetrics_results):\n    pass\n")
    proc = _pytest(suite, f"--editmetrics-out={out}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(os.listdir(out)) == [".editmetrics-files.json", "keep.txt"]


def test_plugin_is_inert_without_fixtures(tmp_path):
    (tmp_path / "test_plain.py").write_text(textwrap.dedent("""
        def test_nothing():
            assert True
    """))
    proc = _pytest(tmp_path, f"--editmetrics-out={tmp_path / 'tables'}")
    assert proc.returncode == 0, proc.stdout
    assert not (tmp_path / "tables").exists()
    assert "editmetrics benchmark tables" not in proc.stdout
