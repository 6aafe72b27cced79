"""SPPE's 36 categories -> 11 privacy groups (paper Table 2): the mapping, the
loader's ``privacy_group``, the Tables 5-6 grouping and the Table-4 SRCC std."""

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from editmetrics.analysis import tables
from editmetrics.sppe.loader import SppeLoader
from editmetrics.sppe.privacy import (TABLE_ORDER, TAXONOMY, canonical_group, privacy_group,
                                      with_privacy_groups)
from editmetrics.analysis.stats import correlate_rows


def test_taxonomy_is_table_2():
    groups = [g for g, _, _, _ in TAXONOMY]
    categories = [c for _, _, _, cats in TAXONOMY for c in cats]
    assert len(groups) == 11 and len(set(groups)) == 11 and set(groups) == set(TABLE_ORDER)
    assert len(categories) == 36 and len(set(categories)) == 36  # "36 fine-grained privacy categories"
    assert {m for _, _, m, _ in TAXONOMY} == {"Visual", "Textual", "Multimodal"}
    # a few rows checked against the paper's Table 2 text
    by_group = {g: cats for g, _, _, cats in TAXONOMY}
    assert by_group["Document"] == {"passport cover": 28, "drivers license": 130, "student id": 134, "ausweis": 80,
                                    "education history": 152, "passport": 506}
    assert by_group["License Plate"] == {"vehicle registration plate": 96, "plate": 110, "multi-vehicle plates": 858}
    assert by_group["Others"]["landmark"] == 1730 and by_group["Face"]["faces"] == 9366


@pytest.mark.parametrize("category, group", [
    ("faces", "Face"), ("human face", "Face"), ("Human_Face", "Face"), ("person", "Body"),
    ("handwriting", "Biometric"), ("ausweis", "Document"), ("current address", "Contact"),
    ("name all", "Identity"), ("date time", "Time"), ("tablet computer", "Monitor"), ("receipt", "Financial"),
    ("multi-vehicle plates", "License Plate"), ("multi vehicle plates", "License Plate"), ("plate", "License Plate"),
    ("ticket", "Others"), ("landmark", "Others"),
    ("document", None), ("cat", None), ("", None), (None, None),
])
def test_category_to_group(category, group):
    assert privacy_group(category) == group


def test_group_names_in_either_spelling():
    assert canonical_group("Biometric Info") == canonical_group("biometric") == "Biometric"
    assert canonical_group("license_plate") == "License Plate" and canonical_group("plates") is None
    rows, unknown = with_privacy_groups([{"privacy_group": "biometric info"}, {"privacy_group": "Mine"},
                                         {"category": "Receipt"}, {"category": "kitchen"}])
    assert [r.get("privacy_group") for r in rows] == ["Biometric", "Mine", "Financial", None]
    assert unknown == ["kitchen"]


def _index(tmp_path, instances):
    (tmp_path / "sppe.json").write_text(json.dumps({"instances": instances}))
    return str(tmp_path)


def test_loader_writes_privacy_group(tmp_path):
    base = {"instruction": "x", "source": "a.png", "surrogate": "b.png"}
    root = _index(tmp_path, [
        {**base, "id": 1, "category": "faces"},
        {**base, "id": 2, "category": "vehicle registration plate"},
        {**base, "id": 3, "category": "faces", "privacy_group": "Body"},  # the index's own value wins
        {**base, "id": 4, "category": "kitchen"},
    ])
    with pytest.warns(UserWarning, match="kitchen"):
        recs = list(SppeLoader().records(root))
    assert [r.get("privacy_group") for r in recs] == ["Face", "License Plate", "Body", None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every category known: no warning
        list(SppeLoader().records(_index(tmp_path, [{**base, "id": 1, "category": "passport"}])))


def row(rid, scores, **fields):
    return {"id": rid, "scores": scores, "errors": {}, **fields}


def test_sppe_table_uses_the_11_groups_in_paper_order():
    runs = {"A": [row(1, {"psnr": 10.0}, category="landmark"), row(2, {"psnr": 20.0}, category="ticket"),
                  row(3, {"psnr": 30.0}, category="faces"), row(4, {"psnr": 40.0}, category="plate"),
                  row(5, {"psnr": 50.0}, category="kitchen")]}
    t = tables.sppe_table(runs)
    labels = [tuple(lab) for lab, _, _ in t.rows]
    assert labels == [("Face", "A"), ("License Plate", "A"), ("Others", "A"), ("Overall", "A")]
    psnr = {lab: vals[2] for lab, vals in zip(labels, (v for _, v, _ in t.rows))}
    assert psnr[("Others", "A")] == 15.0  # landmark and ticket are one group
    assert psnr[("Overall", "A")] == 30.0  # the unknown category counts in Overall only
    assert any("11 privacy groups" in n and "kitchen" in n and "only in Overall" in n for n in t.notes)
    # the fine-grained categories stay available
    by_cat = tables.sppe_table(runs, group_field="category")
    assert [lab[0] for lab, _, _ in by_cat.rows][:5] == ["faces", "kitchen", "landmark", "plate", "ticket"]


def test_sppe_table_falls_back_to_category_without_sppe_categories():
    t = tables.sppe_table({"A": [row(1, {"psnr": 1.0}, category="local"), row(2, {"psnr": 2.0}, category="global")]})
    assert [lab[0] for lab, _, _ in t.rows] == ["global", "local", "Overall"]
    assert "groups from the records' 'category' field" in t.notes


def _results(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    cats = ["faces", "human face", "plate", "multi-vehicle plates", "passport", "ausweis", "landmark", "ticket"]
    for i in range(160):
        label = float(rng.uniform())
        score = label + float(rng.normal(0, 0.1 + 0.1 * (i % 8)))  # the noise differs per category
        rows.append(row(i, {"erma": score}, category=cats[i % 8], editability_label=label))
    path = tmp_path / "res.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows, path


def test_srcc_std_is_across_privacy_groups(tmp_path):
    rows, path = _results(tmp_path)
    grouped, unknown = with_privacy_groups(rows)
    assert not unknown and all("privacy_group" not in r for r in rows)  # copies, input untouched
    by_group = correlate_rows(grouped, "editability_label", ["erma"], by="privacy_group", n_boot=0)[0]
    by_cat = correlate_rows(rows, "editability_label", ["erma"], by="category", n_boot=0)[0]
    assert set(by_group["groups"]) == {"Face", "License Plate", "Document", "Others"}
    assert len(by_cat["groups"]) == 8 and by_group["ungrouped"] == 0
    expected = np.std([by_group["groups"][g]["srcc"] for g in by_group["groups"]])
    assert by_group["srcc_std_across_groups"] == pytest.approx(expected, abs=1e-12)
    assert by_group["srcc_std_across_groups"] != pytest.approx(by_cat["srcc_std_across_groups"], abs=1e-6)

    from editmetrics.cli import app as cli_module

    cli_module._add_plugin_commands()
    runner = CliRunner()
    res = runner.invoke(cli_module.cli, ["sppe", "table", str(path), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("| SRCC std across"))
    assert line == f"| SRCC std across privacy groups | {by_group['srcc_std_across_groups']:.3f} |"
    assert "over the 4 'privacy_group' values" in res.output
    res = runner.invoke(cli_module.cli, ["sppe", "table", str(path), "--bootstrap", "0", "--by", "category"])
    line = next(x for x in res.output.splitlines() if x.startswith("| SRCC std across"))
    assert line == f"| SRCC std across categories | {by_cat['srcc_std_across_groups']:.3f} |"
