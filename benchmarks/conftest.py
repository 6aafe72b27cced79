"""Shared data for the benchmark suites (``pytest benchmarks/``).

The fixtures of the editmetrics pytest plugin (``editmetrics_dataset``,
``editmetrics_run_model``, ``editmetrics_score``, ``editmetrics_results``) come
from the ``pytest11`` entry point; this file only builds the small local
dataset the weight-free suites run on.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (photo, category, edit): local edits recolour a box (the mask), global ones tone the whole image.
PHOTOS = (("astronaut", "local", "swap"), ("chelsea", "local", "swap"), ("rocket", "local", "swap"),
          ("coffee", "global", "sepia"), ("coffee", "global", "dark"), ("immunohistochemistry", "global", "sepia"))
SIZE = (128, 96)


def _edit(src: np.ndarray, kind: str, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = src.astype(np.float64)
    if kind == "swap":  # the "ground truth" of a local edit: channels rotated inside the box
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1][..., [2, 0, 1]]
    elif kind == "sepia":
        gray = out @ np.array([0.299, 0.587, 0.114])
        out = np.stack([gray * 1.07, gray * 0.74, gray * 0.43], axis=-1)
    else:
        out = out * 0.6
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo_dataset(tmp_path_factory) -> str:
    """A folder+CSV dataset (the ``folder`` loader's layout) of skimage.data photographs
    with a constructed ground-truth edit (``target``) and, for local edits, a mask."""
    from skimage import data

    root = tmp_path_factory.mktemp("photo-dataset")
    lines = ["id,source,target,mask,instruction,category,source_bbox"]
    box = (32, 24, 96, 72)
    for i, (name, category, kind) in enumerate(PHOTOS):
        src = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize(SIZE, Image.BICUBIC))
        Image.fromarray(src).save(root / f"{i}_src.png")
        Image.fromarray(_edit(src, kind, box)).save(root / f"{i}_gt.png")
        mask = ""
        if category == "local":
            m = np.zeros(SIZE[::-1], np.uint8)
            m[box[1]:box[3], box[0]:box[2]] = 255
            Image.fromarray(m).save(root / f"{i}_mask.png")
            mask = f"{i}_mask.png"
        instruction = {"swap": "recolour the middle", "sepia": "make it sepia", "dark": "make it darker"}[kind]
        bbox = f'"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]"' if mask else ""
        lines.append(f"{name}-{kind}-{i},{i}_src.png,{i}_gt.png,{mask},{instruction},{category},{bbox}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(root)


@pytest.fixture(scope="session")
def examples_pairs() -> str:
    return os.path.join(REPO, "examples", "pairs.jsonl")
