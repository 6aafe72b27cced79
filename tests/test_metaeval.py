"""meta-eval protocols against hand-computed values (fixtures in the released formats)."""

from __future__ import annotations

import json
import math
import os

import pytest

from editmetrics.analysis.metaeval.evaluate import evaluate
from editmetrics.analysis.metaeval.loaders import HumanSetError, load, pairs_records
from editmetrics.analysis.metaeval.protocols import (accuracy_with_ties_genai, accuracy_with_ties_grid,
                                            accuracy_without_ties, imagenhub_average, per_model_spearman,
                                            suff_stats)
from click.testing import CliRunner

DATA = os.path.join(os.path.dirname(__file__), "data", "judges")


def data(*names):
    return [os.path.join(DATA, n) for n in names]


def test_suff_stats_table():
    h = [1, -1, 0, 1, 0, -1]
    m = [2, 0.5, 0, -1, 3, 0]
    # eps=0.5: (1,2) C; (-1,.5) Tm; (0,0) Thm; (1,-1) D; (0,3) Th; (-1,0) Tm
    assert suff_stats(h, m, 0.5) == (1, 1, 1, 2, 1)
    # eps=-1: no model ties; (-1,0.5) D, (-1,0) D (a zero difference is not concordant)
    assert suff_stats(h, m, -1) == (1, 3, 2, 0, 0)


def test_tie_calibration_genai_vs_grid_on_equal_differences():
    # one human tie and one human preference share |m| = 1
    assert accuracy_with_ties_genai([0, 1], [1, 1]) == (1.0, 1.0)  # prefix [tie] alone: 2/2
    assert accuracy_with_ties_grid([0, 1], [1, 1]) == (0.5, 0.0)  # no epsilon separates them
    # the released incremental scorer depends on the input order within equal |m|
    assert accuracy_with_ties_genai([1, 0], [1, 1]) == (0.5, 1.0)


def test_tie_calibration_hand_computed():
    h = [1, 0, -1, 0]
    m = [3, 0, -1, 2]
    # stable |m| order: idx1(0) idx2(1) idx3(2) idx0(3); start C=2 of 4;
    # tie idx1 -> 3/4 (first maximum, epsilon 0), idx2 -> 2/4, idx3 -> 3/4, idx0 -> 2/4
    assert accuracy_with_ties_genai(h, m) == (0.75, 0.0)
    assert accuracy_with_ties_grid(h, m) == (0.75, 0.0)
    assert accuracy_without_ties(h, m) == 1.0
    assert accuracy_without_ties([1, -1, 1], [0, -2, 3]) == pytest.approx(2 / 3)
    assert accuracy_without_ties([0, 0], [1, 2]) is None


def test_per_model_spearman_tanh_mean_and_ties():
    out = per_model_spearman({"m1": ([1, 2, 3], [1, 2, 3]), "m2": ([1, 2, 3], [3, 2, 1]),
                              "m3": ([1, 2, 3, 4], [1, 3, 2, 4])})
    assert out["per_model"] == pytest.approx({"m1": 1.0, "m2": -1.0, "m3": 0.8})
    assert out["average"] == pytest.approx(math.tanh(0.8 / 3))
    assert out["mean"] == pytest.approx(0.8 / 3)
    tied = per_model_spearman({"t": ([1, 1, 2], [1, 2, 3])})
    assert tied["per_model"]["t"] == pytest.approx(1.5 / math.sqrt(3))  # average ranks
    const = per_model_spearman({"c": ([1, 1, 1], [1, 2, 3]), "d": ([1, 2, 3], [1, 2, 3])})
    assert const["average"] is None and const["undefined"] == ["c"]
    assert imagenhub_average([1.0, 0.0, 0.0]) == pytest.approx(math.tanh(1 / 3))


def test_imagenhub_loader_protocol_and_ceiling():
    hs = load("imagenhub", [DATA])
    assert len(hs.candidates) == 6 and hs.kind == "per_model"
    a1 = hs.items["ModelA/sample_1_1.jpg"]
    assert a1["labels"]["SC"] == pytest.approx(0.5 / 3)
    assert a1["labels"]["O"] == pytest.approx(math.sqrt(0.5) / 3)
    scores = {"ModelA/sample_1_1.jpg": 3, "ModelA/sample_2_1.jpg": 5, "ModelA/sample_3_1.jpg": 4,
              "ModelB/sample_1_1.jpg": 9, "ModelB/sample_2_1.jpg": 1, "ModelB/sample_3_1.jpg": 6}
    out = evaluate(hs, scores, label="SC", n_boot=50)
    assert out["per_model"] == pytest.approx({"ModelA": 0.5, "ModelB": 1.0})
    assert out["average"] == pytest.approx(math.tanh(0.75))
    ceiling = out["human_ceiling"]
    # Each rater's SC (first value) against the mean of the other two, by hand. ModelA:
    # r1 [0, .5, 1] vs [.25, .5, .75] -> 1; r2 [0, 1, .5] vs [.25, .25, 1] -> 0;
    # r3 [.5, 0, 1] vs [0, .75, .75] -> 0. ModelB: rhos 1, 0.5, 0.5.
    assert ceiling["per_model"]["ModelA"] == pytest.approx(math.tanh(1 / 3))
    assert ceiling["per_model"]["ModelB"] == pytest.approx(math.tanh(2 / 3))
    assert ceiling["average"] == pytest.approx(math.tanh((math.tanh(1 / 3) + math.tanh(2 / 3)) / 2))
    lo, hi = out["average_ci95"]
    assert lo <= hi
    # a lower-is-better metric is negated, never abs()'d
    neg = evaluate(hs, {k: -v for k, v in scores.items()}, higher_is_better=False, label="SC", n_boot=0)
    assert neg["per_model"] == pytest.approx(out["per_model"])


def test_genai_bench_loader_and_accuracy():
    hs = load("genai-bench", data("genai_bench_image_edition.jsonl"))
    assert [p[2] for p in hs.pairs] == [1, 0, -1, 0]  # leftvote, bothbad, rightvote, tievote
    recs = {r["id"]: r for r in pairs_records(hs)}
    assert recs["0/A"]["edited"].endswith("img/0_l.png") and recs["0/B"]["model"] == "InstructPix2Pix"
    assert recs["0/A"]["instruction"] == "let a herd of sheep block the taxi"
    scores = {"0/A": 8, "0/B": 5, "1/A": 4, "1/B": 4, "2/A": 6, "2/B": 7, "3/A": 5, "3/B": 3}
    out = evaluate(hs, scores, n_boot=100)
    assert out["accuracy_with_ties"] == 0.75 and out["epsilon"] == 0.0
    assert out["accuracy_without_ties"] == 1.0
    assert out["pairs"] == 4 and out["human_ties"] == 2
    del scores["3/B"]
    out = evaluate(hs, scores, n_boot=0)
    assert out["pairs"] == 3 and out["pairs_dropped"] == 1 and out["unscored"] == 1


def test_editreward_bench_groups_and_strict_ranking():
    hs = load("editreward-bench", data("EditReward_Bench_2pair.json", "EditReward_Bench_3pair.json"))
    # C>A>B: (A,B) A first -> 1; (A,C) -> -1; (B,C) -> -1
    assert [p[2] for p in hs.pairs] == [1, 0, 1, -1, -1]
    scores = {"0:0/A": 7, "0:0/B": 5, "0:1/A": 3, "0:1/B": 4, "1:0/A": 4, "1:0/B": 6, "1:0/C": 2}
    out = evaluate(hs, scores, protocol="editreward-bench", n_boot=0)
    g2, g3 = out["groups"]["2-Pair"], out["groups"]["3-Pair"]
    assert g2["pairwise_accuracy"] == 1.0 and g2["epsilon"] == 1.0  # eps 1 ties item b
    assert g3["pairwise_accuracy"] == 0.0  # B>A>C predicted, all three pairs discordant
    assert out["pairwise_accuracy"] == pytest.approx(0.4) and out["epsilon"] == 1.0
    assert g2["strict_ranking_accuracy"] == 1.0 and g3["strict_ranking_accuracy"] == 0.0
    assert out["strict_ranking_accuracy"] == pytest.approx(2 / 3)


def test_mos_protocol():
    hs = load("mos", data("mos.csv"))
    out = evaluate(hs, {"x1": 1, "x2": 2, "x3": 3, "x4": 4, "x5": 5}, n_boot=100)
    assert out["srcc"] == pytest.approx(0.9)  # one adjacent swap: 1 - 6*2/(5*24)
    assert out["srcc_ci95"][0] <= out["srcc_ci95"][1]


def test_bad_files_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"idx": 0, "vote_type": "maybe"}\n')
    with pytest.raises(HumanSetError, match="unknown vote"):
        load("genai-bench", [str(bad)])


def run_cli(*args):
    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    return CliRunner().invoke(cli, list(args))


def test_cli_meta_eval_end_to_end(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    proc = run_cli("meta-eval", "--format", "genai-bench", "--human", data("genai_bench_image_edition.jsonl")[0],
                   "--write-pairs", str(pairs))
    assert proc.exit_code == 0, proc.output
    ids = [json.loads(line)["id"] for line in pairs.read_text().splitlines()]
    assert ids == ["0/A", "0/B", "1/A", "1/B", "2/A", "2/B", "3/A", "3/B"]
    values = [8, 5, 4, 4, 6, 7, 5, 3]
    results = tmp_path / "results.jsonl"
    with open(results, "w") as fh:
        for i, v in zip(ids, values):
            fh.write(json.dumps({"id": i, "scores": {"viescore": v}, "errors": {}}) + "\n")
    proc = run_cli("meta-eval", "--format", "genai-bench", "--human", data("genai_bench_image_edition.jsonl")[0],
                   "--results", str(results), "--metric", "viescore", "--json", "--bootstrap", "20")
    assert proc.exit_code == 0, proc.output
    out = json.loads(proc.output)
    assert out["accuracy_with_ties"] == 0.75
    proc = run_cli("meta-eval", "--format", "genai-bench", "--human", data("genai_bench_image_edition.jsonl")[0],
                   "--results", str(results), "--metric", "nope")
    assert proc.exit_code == 2 and "no score 'nope'" in proc.output


def test_pointwise_processed_files_per_model():
    hs = load("pointwise", data("imagenhub_processed_pointwise.json"))
    recs = {r["id"]: r for r in pairs_records(hs)}
    assert recs["ModelA/sample_2.jpg"]["edited"].endswith("img/A_2.jpg")
    assert recs["ModelA/sample_2.jpg"]["instruction"] == "make it night"
    scores = {"ModelA/sample_1.jpg": 1, "ModelA/sample_2.jpg": 3, "ModelA/sample_3.jpg": 2,
              "ModelB/sample_1.jpg": 3, "ModelB/sample_2.jpg": 2, "ModelB/sample_3.jpg": 1}
    out = evaluate(hs, scores, label="score", n_boot=0)
    assert out["per_model"] == pytest.approx({"ModelA": 0.5, "ModelB": -1.0})
    assert out["average"] == pytest.approx(math.tanh(-0.25))  # EditReward's ImagenHub scorer
    assert out["mean"] == pytest.approx(-0.25)  # its AURORA pointwise scorer
    assert out["human_ceiling"] is None


def test_bootstrap_agrees_with_scipy_and_keeps_strata():
    """The percentile interval agrees with scipy.stats.bootstrap (an
    independent implementation; other random draws, so to 0.03 on a standard
    error of 0.14: a 90% interval, or a bias, would be off by more), is
    seeded, and resampling within strata keeps every stratum's size."""
    import numpy as np
    import scipy.stats

    from editmetrics.analysis.metaeval.protocols import bootstrap

    x = np.random.default_rng(3).normal(size=60)
    ours = bootstrap(lambda idx: float(x[idx].mean()), x.size, n_boot=4000, seed=1)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                                random_state=np.random.default_rng(7)).confidence_interval
    assert ours == pytest.approx([ref.low, ref.high], abs=0.03)
    assert bootstrap(lambda idx: float(x[idx].mean()), x.size, n_boot=4000, seed=1) == ours
    assert bootstrap(lambda idx: float(x[idx].mean()), x.size, n_boot=0) == [None, None]

    strata = np.array([0] * 10 + [1] * 3 + [2] * 47)
    sizes = set()

    def stat(idx):
        sizes.add(tuple(np.bincount(strata[idx], minlength=3)))
        return float(x[idx].mean())

    lo, hi = bootstrap(stat, x.size, n_boot=200, seed=0, strata=strata)
    assert sizes == {(10, 3, 47)} and lo < hi
