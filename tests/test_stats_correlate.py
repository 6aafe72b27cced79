"""Correlation protocol: agreement with scipy, direction signs, groups, CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as st

from editmetrics.cli.app import cli
from editmetrics.analysis.stats import (correlate_arrays, correlate_rows, fit_logistic4, kendall, logistic4, pearson,
                               rank_average, spearman)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    label = rng.random(200)
    # integer-rounded predictions: many ties, the hard case for rank statistics
    pred = np.round(label * 8 + rng.normal(0, 1.5, 200))
    return pred, label


def test_point_estimates_match_scipy(data):
    x, y = data
    assert abs(spearman(x, y) - st.spearmanr(x, y).statistic) < 1e-9
    assert abs(pearson(x, y) - st.pearsonr(x, y).statistic) < 1e-9
    assert abs(kendall(x, y) - st.kendalltau(x, y).statistic) < 1e-9


def test_rank_average_matches_scipy_rankdata_with_ties():
    v = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, 0.5, 0.1, 9.0]])
    assert np.array_equal(rank_average(v), st.rankdata(v, axis=1))


def test_lower_is_better_metric_is_negated_not_abs(data):
    x, y = data
    distance = -x  # a distance that falls as the label rises
    res = correlate_arrays(distance, y, higher_is_better=False, n_boot=0)
    assert res["srcc"] > 0.5
    assert abs(res["srcc"] + st.spearmanr(distance, y).statistic) < 1e-9
    assert abs(res["plcc"] + st.pearsonr(distance, y).statistic) < 1e-9
    assert abs(res["krcc"] + st.kendalltau(distance, y).statistic) < 1e-9
    # a distance that wrongly rises with the label stays negative (abs() would hide it)
    wrong = correlate_arrays(x, y, higher_is_better=False, n_boot=0)
    assert wrong["srcc"] < -0.5


def test_logistic_fit_recovers_a_sigmoid_relation():
    rng = np.random.default_rng(0)
    x = np.linspace(-4, 4, 150)
    y = logistic4(x, 1.0, 0.0, 0.5, 0.7) + rng.normal(0, 0.01, x.size)
    params, reason = fit_logistic4(x, y)
    assert reason is None
    assert np.allclose(params[:3], [1.0, 0.0, 0.5], atol=0.05) and abs(abs(params[3]) - 0.7) < 0.05
    res = correlate_arrays(x, y, n_boot=0)
    assert res["plcc_logistic"] > 0.999 > res["plcc"]


def test_bootstrap_interval_is_seeded_and_brackets_estimate(data):
    x, y = data
    a = correlate_arrays(x, y, n_boot=300, seed=3)
    b = correlate_arrays(x, y, n_boot=300, seed=3)
    assert a == b
    for name in ("srcc", "plcc", "plcc_logistic", "krcc"):
        low, high = a[f"{name}_ci95"]
        assert low < a[name] < high


def test_degenerate_inputs_give_no_number():
    assert correlate_arrays([1, 2], [1, 2])["srcc"] is None
    res = correlate_arrays([1, 1, 1, 1], [1, 2, 3, 4])
    assert res["srcc"] is None and "constant" in res["note"]


def _rows(x, y, groups):
    return [{"id": i, "category": g, "editability_label": float(b), "scores": {"psnr": float(a), "l1": float(-a)}}
            for i, (a, b, g) in enumerate(zip(x, y, groups))]


def test_rows_groups_and_std(data):
    x, y = data
    groups = np.array(["face", "plate", "text", "x"])[np.arange(200) % 4]
    rows = _rows(x, y, groups)
    rows.append({"id": "nolabel", "category": "face", "scores": {"psnr": 1.0, "l1": 2.0}})
    rows.append({"id": "failed", "category": "face", "editability_label": 0.3, "scores": {"psnr": None, "l1": 1.0}})
    out = correlate_rows(rows, "editability_label", ["psnr", "l1"], by="category",
                         direction={"psnr": True, "l1": False}, n_boot=0)
    psnr, l1 = out
    assert psnr["n"] == 200 and psnr["skipped"] == 2 and l1["n"] == 201
    srccs = []
    for g in ("face", "plate", "text", "x"):
        sel = groups == g
        expect = st.spearmanr(x[sel], y[sel]).statistic
        assert abs(psnr["groups"][g]["srcc"] - expect) < 1e-9
        srccs.append(expect)
    assert abs(psnr["srcc_std_across_groups"] - np.std(srccs)) < 1e-12


def test_label_may_be_a_score_key(data):
    x, y = data
    rows = [{"id": i, "scores": {"psnr": float(a), "editability_label": float(b)}} for i, (a, b) in enumerate(zip(x, y))]
    (res,) = correlate_rows(rows, "editability_label", n_boot=0)
    assert res["metric"] == "psnr" and abs(res["srcc"] - st.spearmanr(x, y).statistic) < 1e-9


def test_cli_json_matches_scipy_and_signs_by_registry_direction(tmp_path, data):
    x, y = data
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(x, y, ["a", "b"] * 100)))
    result = CliRunner().invoke(cli, ["correlate", str(path), "--label", "editability_label", "--json",
                                      "--bootstrap", "50", "--by", "category"])
    assert result.exit_code == 0, result.output
    out = {r["metric"]: r for r in json.loads(result.output)}
    assert out["l1"]["direction"] == "lower" and out["psnr"]["direction"] == "higher"
    for key in ("psnr", "l1"):  # l1 = -x is lower-is-better: negated back, the same positive numbers
        assert abs(out[key]["srcc"] - st.spearmanr(x, y).statistic) < 1e-9
        assert abs(out[key]["plcc"] - st.pearsonr(x, y).statistic) < 1e-9
        assert abs(out[key]["krcc"] - st.kendalltau(x, y).statistic) < 1e-9
        assert out[key]["n"] == 200
    text = CliRunner().invoke(cli, ["correlate", str(path), "--label", "editability_label", "--bootstrap", "0"])
    assert text.exit_code == 0 and "SRCC" in text.output and "lower" in text.output
    bad = CliRunner().invoke(cli, ["correlate", str(path), "--label", "nope"])
    assert bad.exit_code == 2


def test_logistic_plcc_keeps_the_sign_of_an_inverse_relation():
    rng = np.random.default_rng(1)
    x = np.linspace(-3, 3, 120)
    y = logistic4(x, 0.0, 1.0, 0.0, 0.8) + rng.normal(0, 0.02, x.size)  # decreasing in x
    res = correlate_arrays(x, y, n_boot=100)
    assert res["plcc_logistic"] < -0.99 and res["plcc"] < 0 and res["srcc"] < 0
    assert res["plcc_logistic_ci95"][1] < 0
    # declared lower-is-better: negated first, so the same data reads as a positive correlation
    flipped = correlate_arrays(x, y, higher_is_better=False, n_boot=0)
    assert abs(flipped["plcc_logistic"] + res["plcc_logistic"]) < 1e-6


def test_bootstrap_kendall_matches_scipy_on_each_resample_with_ties():
    from editmetrics.analysis.stats import _kendall_bootstrap

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=60).astype(float)
    y = x + rng.integers(0, 3, size=60)
    idx = rng.integers(0, 60, size=(9, 60))
    got = _kendall_bootstrap(x, y, idx)
    for k in range(9):
        assert abs(got[k] - st.kendalltau(x[idx[k]], y[idx[k]]).statistic) < 1e-12


def test_summary_separates_failures_from_not_applicable_and_inf_std():
    from editmetrics.analysis.stats import summarize

    rows = [
        # a global edit: BPM's size judge does not apply, no error recorded
        {"id": "a", "category": "g", "scores": {"bpm": 0.5, "bpm.s_size": None, "psnr": float("inf")}, "errors": {}},
        # a real failure: the metric's error covers its component keys too
        {"id": "b", "category": "g", "scores": {"bpm": None, "bpm.s_size": None, "psnr": float("inf")},
         "errors": {"bpm": "grounding failed"}},
        {"id": "c", "category": "l", "scores": {"bpm": 0.7, "bpm.s_size": 1.0, "psnr": None},
         "errors": {"psnr": "missing file"}},
    ]
    s = summarize(rows)
    assert (s["overall"]["bpm.s_size"]["failures"], s["overall"]["bpm.s_size"]["not_applicable"]) == (1, 1)
    assert (s["overall"]["bpm"]["failures"], s["overall"]["bpm"]["not_applicable"]) == (1, 0)
    assert s["overall"]["psnr"]["failures"] == 1
    # two identical images each: mean inf, std undefined (None, not nan)
    assert s["overall"]["psnr"]["mean"] == float("inf") and s["overall"]["psnr"]["std"] is None
    one = summarize(rows[:1])["overall"]["psnr"]  # a single inf: undefined too, not 0
    assert one["mean"] == float("inf") and one["std"] is None
    assert summarize(rows[2:])["overall"]["bpm"]["std"] == 0.0  # a single finite value: 0
    assert s["groups"]["g"]["bpm.s_size"]["not_applicable"] == 1
