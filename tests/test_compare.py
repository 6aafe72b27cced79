"""editmetrics compare: paired statistics, direction, missing records, groups, several files, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import wilcoxon

from editmetrics.analysis import compare
from editmetrics.analysis.stats import bootstrap_ci

KEYS = ("n", "mean_a", "mean_b", "mean_diff", "ci95", "b_better", "a_better", "ties", "p_wilcoxon")


def rows(scores: dict[str, list], ids=None, **fields) -> list[dict]:
    n = len(next(iter(scores.values())))
    ids = ids or [f"r{i}" for i in range(n)]
    out = []
    for i, rid in enumerate(ids):
        row = {"id": rid, "scores": {k: v[i] for k, v in scores.items()}, "errors": {}}
        for name, values in fields.items():
            row[name] = values[i]
        out.append(row)
    return out


def write(path, rs) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rs), encoding="utf-8")
    return str(path)


def test_paired_statistics_match_numpy_and_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(20, 3, 30)
    b = a + rng.normal(0.8, 1.0, 30)
    b[4] = a[4]  # one tie
    out = compare.compare_runs([rows({"psnr": list(a)}), rows({"psnr": list(b)})], ["A", "B"],
                               directions={"psnr": True})
    (row,) = out["rows"]
    assert row["group"] is None and row["metric"] == "psnr"
    assert set(KEYS) <= set(row)
    d = b - a
    assert row["n"] == 30
    assert row["mean_a"] == pytest.approx(a.mean()) and row["mean_b"] == pytest.approx(b.mean())
    assert row["mean_diff"] == pytest.approx(d.mean())
    assert row["ci95"] == pytest.approx(list(bootstrap_ci(d)))
    assert row["ci95"][0] < d.mean() < row["ci95"][1]
    assert (row["b_better"], row["a_better"], row["ties"]) == (int((d > 0).sum()), int((d < 0).sum()), 1)
    assert row["p_wilcoxon"] == pytest.approx(wilcoxon(d).pvalue)
    assert "ranking" not in out


def test_direction_decides_who_is_better():
    a, b = [0.1, 0.2, 0.3, 0.4], [0.05, 0.25, 0.1, 0.4]
    out = compare.compare_runs([rows({"l2": a, "psnr": a}), rows({"l2": b, "psnr": b})], ["A", "B"],
                               directions={"l2": False, "psnr": True})
    l2, psnr = out["rows"]
    assert (l2["b_better"], l2["a_better"], l2["ties"]) == (2, 1, 1)  # lower wins
    assert (psnr["b_better"], psnr["a_better"], psnr["ties"]) == (1, 2, 1)
    assert l2["mean_diff"] == psnr["mean_diff"] == pytest.approx(np.mean(np.subtract(b, a)))


def test_directions_come_from_the_registry():
    out = compare.compare_runs([rows({"l2@target": [0.2, 0.3], "ssim.x": [1.0, 1.0]}),
                                rows({"l2@target": [0.1, 0.1], "ssim.x": [1.0, 1.0]})], ["A", "B"])
    l2 = out["rows"][0]
    assert l2["higher_is_better"] is False and l2["b_better"] == 2
    assert [m["direction"] for m in out["metrics"]] == ["lower", "higher"]  # a component: its metric's


def test_missing_and_non_finite_records_are_counted():
    a = rows({"psnr": [10.0, 11.0, math.inf, None, 14.0]}, ids=["x", "y", "z", "w", "only-a"])
    b = rows({"psnr": [10.5, 12.0, 13.0, 13.0, 9.0]}, ids=["x", "y", "z", "w", "only-b"])
    out = compare.compare_runs([a, b], ["A", "B"], directions={})
    (row,) = out["rows"]
    assert row["n"] == 2 and row["excluded"] == 2  # z: +inf in A, w: null in A
    assert out["missing"] == [{"file": "A", "count": 1, "ids": ["only-b"]},
                              {"file": "B", "count": 1, "ids": ["only-a"]}]
    assert out["metrics"][0]["direction"] == "assumed higher"
    json.dumps(out, allow_nan=False)  # strict JSON


def test_undefined_statistics_are_null():
    out = compare.compare_runs([rows({"m": [1.0, 2.0]}), rows({"m": [1.0, 2.0]})], ["A", "B"], directions={})
    row = out["rows"][0]
    assert row["ties"] == 2 and row["p_wilcoxon"] is None and row["mean_diff"] == 0.0
    out = compare.compare_runs([rows({"m": [None]}), rows({"m": [1.0]})], ["A", "B"], directions={})
    row = out["rows"][0]
    assert row["n"] == 0 and row["mean_a"] is None and row["ci95"] == [None, None] and row["p_wilcoxon"] is None


def test_groups_by_field():
    cats = ["x", "x", "y", "y", "y"]
    a = rows({"m": [1.0, 2.0, 3.0, 4.0, 5.0]}, category=cats)
    b = rows({"m": [2.0, 2.0, 1.0, 4.0, 6.0]}, category=cats)
    out = compare.compare_runs([a, b], ["A", "B"], by="category", directions={"m": True})
    groups = {r["group"]: r for r in out["rows"]}
    assert list(groups) == [None, "x", "y"]
    assert groups[None]["n"] == 5 and groups["x"]["n"] == 2 and groups["y"]["n"] == 3
    assert groups["x"]["mean_diff"] == pytest.approx(0.5)
    assert (groups["y"]["b_better"], groups["y"]["a_better"], groups["y"]["ties"]) == (1, 1, 1)


def test_holm():
    adjusted = compare.holm([0.01, 0.04, 0.03, None])
    # sorted p: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and adjusted[3] is None
    assert compare.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_three_files_ranking_and_pairwise_holm():
    base = np.linspace(0.1, 0.9, 12)
    runs = [rows({"l1": list(base + off)}) for off in (0.0, -0.05, 0.1)]
    runs[2][0]["scores"]["l1"] = None  # excluded from the ranking for every file
    out = compare.compare_runs(runs, ["A", "B", "C"], directions={"l1": False})
    assert [(r["a"], r["b"]) for r in out["rows"]] == [("A", "B"), ("A", "C"), ("B", "C")]
    family = [r["p_wilcoxon"] for r in out["rows"]]
    assert [r["p_holm"] for r in out["rows"]] == pytest.approx(compare.holm(family))
    (rank,) = out["ranking"]
    assert rank["n"] == 11 and rank["excluded"] == 1
    assert rank["ranks"] == {"B": 1, "A": 2, "C": 3}  # lower is better
    assert rank["means"]["A"] == pytest.approx(base[1:].mean())


def test_labels_and_usage_errors(tmp_path):
    assert compare.run_labels(["x/a.jsonl", "y/b.jsonl"]) == ["a", "b"]
    assert compare.run_labels(["x/a.jsonl", "y/a.jsonl"]) == ["x/a.jsonl", "y/a.jsonl"]
    with pytest.raises(compare.CompareError, match="no score 'ssim'"):
        compare.compare_runs([rows({"m": [1.0]}), rows({"m": [1.0]})], ["A", "B"], metrics=["ssim"])
    out = compare.compare_runs([rows({"m": [1.0], "only": [1.0]}), rows({"m": [1.0]})], ["A", "B"], directions={})
    assert out["not_compared"] == ["only"] and [r["metric"] for r in out["rows"]] == ["m"]


def test_cli_json_and_text(tmp_path):
    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    cats = ["g", "h", "g", "h"]
    a = write(tmp_path / "a.jsonl", rows({"psnr": [20.0, 21.0, 22.0, 23.0], "l2": [0.1, 0.2, 0.3, 0.4]},
                                         category=cats))
    b = write(tmp_path / "b.jsonl", rows({"psnr": [21.0, 22.5, 21.0, 25.0], "l2": [0.1, 0.1, 0.1, 0.1]},
                                         category=cats)[:3])
    res = CliRunner().invoke(cli, ["compare", a, b, "--json", "--by", "category", "--metrics", "psnr"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(r["metric"], r["group"]) for r in out["rows"]] == [("psnr", None), ("psnr", "g"), ("psnr", "h")]
    overall = out["rows"][0]
    assert {k: overall[k] for k in ("n", "mean_a", "mean_b", "b_better", "a_better", "ties")} == \
        {"n": 3, "mean_a": 21.0, "mean_b": pytest.approx(21.5), "b_better": 2, "a_better": 1, "ties": 0}
    assert out["missing"][1] == {"file": "b", "count": 1, "ids": ["r3"]}
    assert "1 record(s) missing from b" in res.stderr
    res = CliRunner().invoke(cli, ["compare", a, b])
    assert res.exit_code == 0 and "A = a, B = b" in res.stdout and "missing from b: 1 record(s)" in res.stdout
    assert "l2" in res.stdout and "lower" in res.stdout
    res = CliRunner().invoke(cli, ["compare", a])
    assert res.exit_code == 2 and "at least two" in res.output
    res = CliRunner().invoke(cli, ["compare", a, b, "--metrics", "nope"])
    assert res.exit_code == 2 and "no score 'nope'" in res.output


def test_equal_means_share_a_rank():
    runs = [rows({"psnr": [1.0, 2.0]}), rows({"psnr": [2.0, 1.0]}), rows({"psnr": [0.0, 1.0]})]
    (rank,) = compare.compare_runs(runs, ["A", "B", "C"], directions={"psnr": True})["ranking"]
    assert rank["ranks"] == {"A": 1, "B": 1, "C": 3}
