"""The repository's examples scored with the pixel metrics, with an HTML report."""

from __future__ import annotations

from editmetrics.analysis import tables
from editmetrics.analysis.report import build_report

METRICS = ["psnr", "ssim", "psnr@target", "ssim@target", "l1", "l2", "psnr(region=outside)"]


def test_examples(examples_pairs, editmetrics_score, editmetrics_results):
    rows = editmetrics_score(examples_pairs, METRICS)
    assert len(rows) == 5
    # only the record without a mask may miss the region metric
    for row in rows:
        assert set(row["errors"]) <= {"psnr(region=outside)"}
        assert bool(row["errors"]) == ("mask" not in row)
    editmetrics_results.add("examples_summary", tables.summary_table({"examples": rows},
                                                                      title="examples/pairs.jsonl: mean scores"))
    with open(editmetrics_results.path("examples-report.html"), "w", encoding="utf-8") as fh:
        fh.write(build_report(rows, title="examples/pairs.jsonl"))
