"""Small shared helpers for tests: real photographs and pairs files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from skimage import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "editmetrics"]


def photo(name: str = "astronaut", size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A real photograph from skimage.data as uint8 RGB at ``size`` (w, h)."""
    img = Image.fromarray(getattr(data, name)())
    return np.asarray(img.convert("RGB").resize(size, Image.BICUBIC))


def save(array: np.ndarray, path: str, **kwargs) -> str:
    Image.fromarray(array).save(path, **kwargs)
    return os.path.basename(path)


def write_pairs(path: str, records: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path


def read_jsonl(path: str) -> list[dict]:
    """Every JSON line of a file, the run header of a results file left out."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [row for row in rows if list(row) != ["editmetrics_run"]]


# Environment variables that change which plugins a process loads: a call that
# sets one runs in a fresh interpreter (plugin discovery is then what is tested).
PLUGIN_ENV = ("PYTHONPATH", "EDITMETRICS_LOAD_PLUGINS", "EDITMETRICS_STRICT_PLUGINS")


def run_cli(*args: str, env: dict | None = None, cwd: str | None = None,
            subprocess_: bool = False) -> subprocess.CompletedProcess:
    """``editmetrics ARGS``: in this process (click's CliRunner, this session's
    fixed plugin set, see conftest.py) unless ``subprocess_`` is true or
    ``env`` changes the plugins loaded. Returns a CompletedProcess either way."""
    env = dict(env or {})
    if subprocess_ or any(k in env for k in PLUGIN_ENV):
        full_env = dict(os.environ)
        if "EDITMETRICS_LOAD_PLUGINS" not in env:  # discovery under test: every installed plugin
            full_env.pop("EDITMETRICS_LOAD_PLUGINS", None)
        full_env.update(env)
        return subprocess.run(CLI + list(args), capture_output=True, text=True, env=full_env, cwd=cwd,
                              timeout=300)
    return invoke(*args, env=env, cwd=cwd)


def invoke(*args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in-process with CliRunner; stdout and stderr kept apart."""
    import contextlib
    import inspect

    from click.testing import CliRunner

    from editmetrics.cli.app import get_cli

    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    runner = CliRunner(env=env, **kwargs)
    with contextlib.chdir(cwd or os.getcwd()):
        result = runner.invoke(get_cli(), list(args), prog_name="editmetrics")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr = "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(list(args), 1, result.stdout, result.stderr + stderr)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def default_sigint() -> None:
    """Popen preexec_fn: the child gets the default SIGINT disposition even
    when this process ignores SIGINT (a run started in the background with `&`
    inherits SIG_IGN, and Python then never raises KeyboardInterrupt)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def repo_sources(folders: tuple[str, ...], suffixes: tuple[str, ...] = (".py",)):
    """(path relative to the repository, text) of every file with one of
    ``suffixes`` under ``folders``: for tests that scan the code itself."""
    for folder in folders:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in sorted(files):
                if name.endswith(suffixes):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as fh:
                        yield os.path.relpath(path, REPO), fh.read()
