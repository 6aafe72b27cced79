"""pytest plugin shipped by editmetrics (entry point ``pytest11``): benchmark runs as tests.

A benchmark is an ordinary ``test_*.py`` file using these fixtures:

- ``editmetrics_dataset(name, path, limit=None)`` -> pairs file: a registered
  dataset loader (``editmetrics dataset list``) turned into a JSONL pairs file;
- ``editmetrics_run_model(model, pairs, seed=0, **params)`` -> pairs file: a
  registered model (``editmetrics models``) run over a pairs file (the
  ``edited`` field filled in), through ``editmetrics.engine.model_runs.run_model``;
- ``editmetrics_score(pairs, metrics, **options)`` -> result rows, through
  ``editmetrics.engine.runner.score_file`` (settings: environment and
  ``editmetrics.toml``, like the CLI);
- ``editmetrics_settings``: those settings, to skip a suite whose weights are
  not configured (``pytest.skip`` with the setting's name);
- ``editmetrics_results``: the session's table collector. ``add(name, table)``
  keeps a ``editmetrics.analysis.tables.Table``; at the end of the session every table
  goes to ``OUT/results.json`` (strict JSON: non-finite numbers as the
  strings ``"inf"``, ``"-inf"``, ``"nan"``) and ``OUT/results.md`` (one
  ``## NAME`` heading per table) and the Markdown is printed in the terminal
  summary. ``OUT`` is ``--editmetrics-out`` (default ``benchmark-results``
  under the rootdir). Files an earlier session wrote there (listed in
  ``OUT/.editmetrics-files.json``) and this one did not are removed, so the
  folder never mixes runs.

Nothing happens in a session that does not use the fixtures: no file is
written, nothing heavy is imported at plugin load.
"""

from __future__ import annotations

import json
import os
import re

import pytest

_RESULTS = pytest.StashKey["BenchmarkResults"]()
MANIFEST = ".editmetrics-files.json"  # what the last session wrote to the output folder


def pytest_addoption(parser):
    group = parser.getgroup("editmetrics", "editmetrics benchmark runs")
    group.addoption("--editmetrics-out", metavar="DIR", default=None,
                    help="folder for benchmark result tables (default: benchmark-results under the rootdir)")


class BenchmarkResults:
    """Tables collected during a session, written once at its end."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.tables: dict = {}
        self.files: list[str] = []
        self.removed: list[str] = []

    def add(self, name: str, table) -> None:
        if name in self.tables:
            raise ValueError(f"a table named {name!r} was already added in this session")
        self.tables[name] = table

    def path(self, name: str) -> str:
        """A path in the output folder for an extra artefact (e.g. an HTML report)."""
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, name)
        self.files.append(path)
        return path

    def write(self) -> tuple[str, str] | None:
        """Write the tables, then remove what an earlier session wrote here and
        this one did not (so the folder holds this run's outputs only), and
        list this session's files in the manifest for the next one."""
        from editmetrics.analysis.tables import write_tables

        os.makedirs(self.out_dir, exist_ok=True)
        json_path = os.path.join(self.out_dir, "results.json")
        md_path = os.path.join(self.out_dir, "results.md")
        written = [p for p in self.files if os.path.exists(p)]
        if self.tables:
            write_tables(self.tables, json_path, md_path)
            written += [json_path, md_path]
        self.removed = self._remove_stale(written)
        with open(os.path.join(self.out_dir, MANIFEST), "w", encoding="utf-8") as fh:
            json.dump(sorted({os.path.relpath(p, self.out_dir) for p in written}), fh, indent=1)
        return (json_path, md_path) if self.tables else None

    def _remove_stale(self, written: list[str]) -> list[str]:
        """Files of the previous session's manifest not written again (and,
        for folders from before the manifest, an old results.json/.md)."""
        keep = {os.path.abspath(p) for p in written}
        manifest = os.path.join(self.out_dir, MANIFEST)
        try:
            with open(manifest, encoding="utf-8") as fh:
                previous = [str(p) for p in json.load(fh)]
        except (OSError, ValueError):
            previous = ["results.json", "results.md"]
        removed = []
        for name in previous:
            path = os.path.abspath(os.path.join(self.out_dir, name))
            inside = os.path.commonpath([path, os.path.abspath(self.out_dir)]) == os.path.abspath(self.out_dir)
            if inside and path not in keep and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        return removed


def _results(config) -> BenchmarkResults:
    if _RESULTS not in config.stash:
        out = config.getoption("--editmetrics-out") or os.path.join(str(config.rootpath), "benchmark-results")
        config.stash[_RESULTS] = BenchmarkResults(os.path.abspath(out))
    return config.stash[_RESULTS]


@pytest.fixture(scope="session")
def editmetrics_results(pytestconfig) -> BenchmarkResults:
    return _results(pytestconfig)


@pytest.fixture(scope="session")
def editmetrics_settings() -> dict:
    from editmetrics.engine.config import load_settings

    return load_settings()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "x"


@pytest.fixture(scope="session")
def editmetrics_dataset(tmp_path_factory):
    """Factory: ``(name, path, limit=None) -> pairs file`` from a registered loader."""
    from editmetrics.data.datasets import export_dataset

    def load(name: str, path: str, limit: int | None = None) -> str:
        out = tmp_path_factory.mktemp(f"dataset-{_safe(name)}") / "pairs.jsonl"
        export_dataset(name, path, str(out), limit=limit)
        return str(out)

    return load


@pytest.fixture(scope="session")
def editmetrics_run_model(tmp_path_factory, editmetrics_settings):
    """Factory: ``(model, pairs, seed=0, **params) -> pairs file`` with the model's outputs."""

    def run(model: str, pairs: str, seed: int = 0, **params) -> str:
        from editmetrics.engine.model_runs import run_model

        out_dir = tmp_path_factory.mktemp(f"run-{_safe(model)}")
        result = run_model(model, pairs, str(out_dir), seed=seed, assignments=params,
                           settings=editmetrics_settings, progress=False)
        return result.out

    return run


@pytest.fixture(scope="session")
def editmetrics_score(tmp_path_factory, editmetrics_settings):
    """Factory: ``(pairs, metrics, **options) -> result rows`` (``score_file`` options)."""

    def score(pairs: str, metrics, **options) -> list[dict]:
        from editmetrics.contract.metric import split_specs
        from editmetrics.engine.runner import read_results, score_file

        specs = split_specs(metrics) if isinstance(metrics, str) else list(metrics)
        out = tmp_path_factory.mktemp("scores") / "results.jsonl"
        options.setdefault("settings", editmetrics_settings)
        options.setdefault("progress", False)
        score_file(pairs, specs, str(out), **options)
        return list(read_results(str(out)))

    return score


def pytest_sessionfinish(session, exitstatus):
    results = session.config.stash.get(_RESULTS, None)
    if results is not None:
        results.written = results.write()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, None)
    written = getattr(results, "written", None) if results is not None else None
    if results is not None and results.removed:
        terminalreporter.write_line(f"editmetrics: removed {len(results.removed)} file(s) of an earlier run "
                                    f"from {results.out_dir}")
    if not written:
        return
    terminalreporter.section("editmetrics benchmark tables")
    with open(written[1], encoding="utf-8") as fh:
        terminalreporter.write(fh.read())
    terminalreporter.write_line(f"tables: {written[1]} (Markdown), {written[0]} (JSON)")
    for path in results.files:
        if os.path.exists(path):
            terminalreporter.write_line(f"also: {path}")

