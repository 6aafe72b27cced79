"""Weight-free baselines on a small photo dataset: identity and seeded noise editors.

Writes three tables (``pytest benchmarks/``): mean scores per category, the
SPPE Tables 5-7 layout (groups = category; the CLIP columns stay '-' without
CLIP weights) and the BPM Tables 1-2 layout computed against a *synthetic*
preference (less added noise preferred: these are not human ratings; the
table checks that preservation metrics rank degradations the known way).
"""

from __future__ import annotations

import math

import pytest

from editmetrics.analysis import tables

METRICS = ["psnr", "ssim", "l2", "psnr@target", "ssim@target", "psnr(region=outside)"]
MODELS = {"identity": ("identity", {}), "noise-0.05": ("noise", {"sigma": 0.05}),
          "noise-0.15": ("noise", {"sigma": 0.15})}
SIGMA = {"identity": 0.0, "noise-0.05": 0.05, "noise-0.15": 0.15}


@pytest.fixture(scope="module")
def runs(photo_dataset, editmetrics_dataset, editmetrics_run_model, editmetrics_score):
    pairs = editmetrics_dataset("folder", photo_dataset)
    out = {}
    for label, (model, params) in MODELS.items():
        edited = editmetrics_run_model(model, pairs, seed=0, **params)
        rows = editmetrics_score(edited, METRICS)
        for row in rows:
            row["human_score"] = -SIGMA[label]  # synthetic preference, see the module docstring
        out[label] = rows
    return out


def test_runs_scored_every_record(runs):
    for label, rows in runs.items():
        assert len(rows) == 6
        # psnr(region=outside) needs a mask: only the global records lack one
        for row in rows:
            errors = set(row["errors"])
            assert errors == (set() if row["category"] == "local" else {"psnr(region=outside)"}), (label, row)


def test_identity_and_noise_orderings(runs):
    for row in runs["identity"]:
        assert row["scores"]["psnr"] == math.inf and row["scores"]["ssim"] == 1.0 and row["scores"]["l2"] == 0.0
    for low, high in zip(runs["noise-0.05"], runs["noise-0.15"]):
        assert low["id"] == high["id"]
        assert low["scores"]["psnr"] > high["scores"]["psnr"]
        assert low["scores"]["ssim"] > high["scores"]["ssim"]
        assert low["scores"]["l2"] < high["scores"]["l2"]


def test_tables(runs, editmetrics_results):
    summary = tables.summary_table(runs, title="Baselines on the photo set: mean scores")
    sppe = tables.sppe_table(runs, title="Baselines, SPPE Tables 5-7 layout (groups: category)")
    bpm = tables.bpm_alignment_table(runs, metrics=["psnr", "ssim", "l2", "psnr@target", "ssim@target"],
                                     title="Baselines, BPM Tables 1-2 layout, against a synthetic preference "
                                           "(less noise preferred; not human ratings)")
    editmetrics_results.add("baselines_summary", summary)
    editmetrics_results.add("baselines_sppe_layout", sppe)
    editmetrics_results.add("baselines_bpm_layout", bpm)
    # preservation metrics against the source rank the degradations exactly as constructed
    by_metric = {labels[0].split(" ")[0]: values for labels, values, _ in bpm.rows}
    for key in ("psnr", "ssim", "l2"):
        assert by_metric[key] == [1.0, 1.0, 1.0, 1.0], key
    assert "| Overall | identity | - | 1.0000 | inf |" in sppe.to_markdown()
