"""Docs generated from the registry must not go stale."""

import os

from helpers import REPO, run_cli


def test_metric_catalogue_is_current():
    proc = run_cli("metrics", "--markdown")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(REPO, "docs", "metrics.md"), encoding="utf-8") as fh:
        on_disk = fh.read()
    assert on_disk == proc.stdout, "docs/metrics.md is stale: run `editmetrics metrics --markdown > docs/metrics.md`"
