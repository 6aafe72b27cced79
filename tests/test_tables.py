"""Paper-style tables: exact cell values on constructed result rows."""

from __future__ import annotations

import json
import math

import pytest

from editmetrics.analysis import tables
from editmetrics.plugins.registry import get_registry


def row(rid, scores, **fields):
    return {"id": rid, "scores": scores, "errors": {}, **fields}


def cells(table):
    """{tuple(labels): {column label: value}}"""
    out = {}
    for labels, values, _ in table.rows:
        out[tuple(labels)] = {f"{g}/{c.label}".lstrip("/"): v for (g, c), v in zip(table.columns, values)}
    return out


def test_sppe_groups_methods_overall_and_missing_columns():
    a = [row(1, {"psnr": 20.0, "ssim": 0.5, "psnr@target": 30.0, "dir_i": 0.2}, privacy_group="face"),
         row(2, {"psnr": 10.0, "ssim": 0.7, "psnr@target": None, "dir_i": 0.4}, privacy_group="face"),
         row(3, {"psnr": math.inf, "ssim": 1.0, "psnr@target": 40.0, "dir_i": 0.6}, privacy_group="document")]
    b = [row(1, {"psnr": 25.0, "ssim": 0.6}, privacy_group="face")]
    t = tables.sppe_table({"A": a, "B": b})
    c = cells(t)
    # privacy groups in the paper's Tables 5-6 column order (Face before Document), named as there
    assert list(c) == [("Face", "A"), ("Face", "B"), ("Document", "A"), ("Document", "B"),
                       ("Overall", "A"), ("Overall", "B")]
    assert c[("Face", "A")]["PSNR (Src)"] == 15.0
    assert c[("Face", "A")]["SSIM (Src)"] == pytest.approx(0.6)
    assert c[("Face", "A")]["PSNR (GT)"] == 30.0  # the null score is left out, not counted as 0
    assert c[("Face", "A")]["DirI"] == pytest.approx(0.3)
    assert c[("Document", "A")]["PSNR (Src)"] == math.inf
    assert c[("Document", "B")]["SSIM (Src)"] is None  # B has no record in that group
    assert c[("Overall", "A")]["DirI"] == pytest.approx(0.4)
    assert c[("Overall", "B")]["PSNR (Src)"] == 25.0
    for label in ("CLIP-Sim (Src)", "DirS", "CLIP-Sim (GT)", "SSIM (GT)"):
        assert all(v[label] is None for v in c.values())
    md = t.to_markdown()
    assert "| Document | A | - | 1.0000 | inf | 0.6000 | - | - | - | 40.00 |" in md
    assert "no run has a score for: CLIP-Sim (Src), DirS, CLIP-Sim (GT), SSIM (GT)" in md
    # every table line has the same number of cells
    widths = {line.count(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert widths == {9}


def test_sppe_table7_without_groups_and_json():
    t = tables.sppe_table({"A": [row(1, {"clip_i@target": 0.8}), row(2, {"clip_i@target": 0.6})]}, group_field=None)
    assert t.stub == ["Method"]
    data = json.loads(t.to_json())
    assert data["rows"] == [{"labels": ["A"], "values": [None] * 5 + [pytest.approx(0.7), None, None],
                             "n": [0] * 5 + [2, 0, 0]}]
    assert data["columns"][5] == {"group": "", "label": "CLIP-Sim (GT)", "key": "clip_i@target", "scale": 1.0}


def test_rsie_operations_order_scale_and_delete_arrow():
    runs = {
        "IP2P": [row(1, {"clip_rc": 10.0, "clip_gc": 90.0, "dino_i@target": 0.5, "clip_i@target": 0.8},
                     operation="delete"),
                 row(2, {"clip_rc": 30.0, "clip_gc": 80.0, "dino_i@target": 0.7, "clip_i@target": 0.6},
                     operation="replace"),
                 row(3, {"clip_rc": 50.0, "clip_gc": 70.0}, operation="create"),
                 row(4, {"clip_rc": 1.0}, operation="blur")],
    }
    t = tables.rsie_table(runs)
    assert [g for g, _ in t.groups] == ["Replace", "Create", "Delete", "Blur"]
    c = cells(t)[("IP2P",)]
    assert c["Replace/RC"] == 30.0 and c["Replace/GC"] == 80.0
    assert c["Replace/DINO-I"] == pytest.approx(70.0) and c["Replace/CLIP-I"] == pytest.approx(60.0)
    assert c["Delete/RC ↓"] == 10.0 and c["Delete/DINO-I"] == pytest.approx(50.0)
    assert c["Create/DINO-I"] is None
    md = t.to_markdown().splitlines()
    assert md[2].startswith("| Method | Replace |  |  |  | Create |")
    assert md[4].startswith("|  | RC | GC | DINO-I | CLIP-I | RC | GC |")


def test_rsie_reference_of_clip_i_is_explicit():
    """The paper leaves CLIP-I/DINO-I's reference open: target (default), source or both; never mixed."""
    runs = {"M": [row(1, {"clip_i@target": 0.6, "clip_i": 0.9, "dino_i@target": 0.5, "dino_i": 0.8},
                      operation="replace"),
                  row(2, {"clip_i": 0.7}, operation="create")]}
    target = cells(tables.rsie_table(runs))[("M",)]
    assert target["Replace/CLIP-I"] == pytest.approx(60.0)
    assert target["Create/CLIP-I"] is None  # only clip_i (vs source) there: not used as CLIP-I vs target
    source = cells(tables.rsie_table(runs, reference="source"))[("M",)]
    assert source["Replace/CLIP-I"] == pytest.approx(90.0) and source["Create/CLIP-I"] == pytest.approx(70.0)
    assert source["Replace/DINO-I"] == pytest.approx(80.0)
    both_table = tables.rsie_table(runs, reference="both")
    both = cells(both_table)[("M",)]
    assert both["Replace/CLIP-I@target"] == pytest.approx(60.0) and both["Replace/CLIP-I@source"] == pytest.approx(90.0)
    assert both["Replace/DINO-I@target"] == pytest.approx(50.0) and both["Replace/DINO-I@source"] == pytest.approx(80.0)
    for t in (tables.rsie_table(runs), both_table):
        note = next(n for n in t.notes if "does not say which image" in n)
        assert "clip_i@source" in note and "clip_i@target" in note
    with pytest.raises(ValueError):
        tables.rsie_table(runs, reference="gt")


def test_bpm_alignment_by_hand():
    # human prefers A on records 1, 2; B on 3; tie on 4 (1[H_A > H_B] = 0)
    human_a, human_b = [5, 4, 1, 3], [1, 2, 5, 3]
    psnr_a, psnr_b = [30, 20, 25, 10], [20, 25, 20, 12]  # agrees on 1, 4 -> 2/4
    l2_a, l2_b = [0.1, 0.1, 0.3, 0.2], [0.2, 0.3, 0.1, 0.2]  # lower is better: A better on 1,2; B on 3; tie -> 4/4
    runs = {
        "A": [row(i + 1, {"psnr": psnr_a[i], "l2": l2_a[i]}, human_score=human_a[i]) for i in range(4)],
        "B": [row(i + 1, {"psnr": psnr_b[i], "l2": l2_b[i]}, human_score=human_b[i]) for i in range(4)],
        "C": [row(i + 1, {"psnr": psnr_b[i], "l2": l2_b[i]}, human_score=human_b[i]) for i in range(2)],
    }
    t = tables.bpm_alignment_table(runs, metrics=["psnr", "l2"], registry=get_registry())
    assert [c.label for _, c in t.columns] == ["A vs B ↑", "A vs C ↑", "B vs C ↑", "Average ↑"]
    psnr = t.rows[0]
    assert psnr[0] == ["psnr"]
    assert psnr[1][0] == 0.5 and psnr[2][0] == 4
    assert psnr[1][1] == 0.5 and psnr[2][1] == 2  # only the ids both runs have
    assert psnr[1][2] == 1.0  # identical scores and humans: both P = 0 everywhere
    assert psnr[1][3] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    l2 = t.rows[1]
    assert l2[0] == ["l2 (lower is better)"]
    assert l2[1][0] == 1.0


def test_summary_table_groups():
    runs = {"m": [row(1, {"psnr": 10.0}, category="x"), row(2, {"psnr": 20.0}, category="y"),
                  row(3, {"psnr": None}, category="y")]}
    c = cells(tables.summary_table(runs))
    assert c == {("m", "x"): {"psnr": 10.0}, ("m", "y"): {"psnr": 20.0}, ("m", "all"): {"psnr": 15.0}}


def test_write_tables(tmp_path):
    t = tables.summary_table({"m": [row(1, {"psnr": math.inf})]}, by=None)
    nan = tables.summary_table({"m": [row(1, {"psnr": 1.0}), row(2, {"psnr": None})]}, by=None)
    nan.rows[0][1][0] = math.nan
    tables.write_tables({"s": t, "with_nan": nan}, str(tmp_path / "t.json"), str(tmp_path / "t.md"))
    text = (tmp_path / "t.json").read_text()
    assert "Infinity" not in text and "NaN" not in text

    def strict(literal):
        raise ValueError(f"non-standard JSON literal {literal}")

    loaded = json.loads(text, parse_constant=strict)  # strict JSON: no Infinity/NaN literals
    assert loaded["s"]["rows"][0]["values"] == ["inf"] and loaded["with_nan"]["rows"][0]["values"] == ["nan"]
    assert json.loads(t.to_json(), parse_constant=strict)["rows"][0]["values"] == ["inf"]
    md = (tmp_path / "t.md").read_text()
    assert "| m | inf |" in md
    assert md.index("## s\n") < md.index("| m | inf |") < md.index("## with_nan\n")  # each table under its name
    assert tables.strict_json({"a": [-math.inf, None, 1.5, (2.0, math.nan)]}) == {"a": ["-inf", None, 1.5, [2.0, "nan"]]}
