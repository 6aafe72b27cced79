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


def run_cli(*args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)
