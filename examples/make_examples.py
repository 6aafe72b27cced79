"""Build the bundled example edits from scikit-image's photographs.

Run from the repository root: ``python examples/make_examples.py``. The output
(PNG files and ``pairs.jsonl``) is committed; this script documents how it was
made and regenerates it byte for byte (fixed seeds).

Each record has a source photo, an ``edited`` image (what an editing model
returned), a ``target`` (the ideal edit), and, for local edits, a ``mask``:
- ``local``: a hue change inside the mask (edited = target plus mild noise);
- ``global``: a whole-image sepia tone;
- ``noise``: the model returned the source plus noise instead of the edit
  (BPM's "excessively preserved" failure).
"""

from __future__ import annotations

import colorsys
import json
import os

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = (256, 192)


def photo(name: str) -> np.ndarray:
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    # centre-crop to 4:3, then resize: all examples share one size
    w, h = img.size
    target_ratio = SIZE[0] / SIZE[1]
    if w / h > target_ratio:
        nw = int(h * target_ratio)
        img = img.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
    else:
        nh = int(w / target_ratio)
        img = img.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))
    return np.asarray(img.resize(SIZE, Image.LANCZOS), dtype=np.float32) / 255.0


def ellipse_mask(box) -> np.ndarray:
    img = Image.new("L", SIZE, 0)
    ImageDraw.Draw(img).ellipse(box, fill=255)
    return np.asarray(img) > 0


def hue_shift(image: np.ndarray, mask: np.ndarray, hue: float) -> np.ndarray:
    """Set the hue of masked pixels to ``hue`` (saturation raised), keep the rest."""
    out = image.copy()
    ys, xs = np.nonzero(mask)
    for y, x in zip(ys, xs):
        _, l, s = colorsys.rgb_to_hls(*image[y, x])
        out[y, x] = colorsys.hls_to_rgb(hue, l, max(s, 0.6))
    return out


def sepia(image: np.ndarray) -> np.ndarray:
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    return np.clip(image @ m.T, 0, 1).astype(np.float32)


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 1).astype(np.float32)


def save(array: np.ndarray, name: str) -> str:
    if array.dtype == bool:
        Image.fromarray(array.astype(np.uint8) * 255).save(os.path.join(HERE, name))
    else:
        Image.fromarray(np.round(array * 255).astype(np.uint8)).save(os.path.join(HERE, name))
    return name


def main() -> None:
    records = []

    cat = photo("chelsea")
    cat_mask = ellipse_mask((60, 20, 200, 170))
    cat_target = hue_shift(cat, cat_mask, 0.6)
    records.append({
        "id": "cat-blue", "category": "local", "instruction": "make the cat blue",
        "source": save(cat, "cat.png"), "target": save(cat_target, "cat_target.png"),
        "edited": save(noisy(cat_target, 0.02, 1), "cat_edited.png"), "mask": save(cat_mask, "cat_mask.png"),
    })

    rocket = photo("rocket")
    rocket_mask = ellipse_mask((100, 30, 160, 180))
    rocket_target = hue_shift(rocket, rocket_mask, 0.0)
    records.append({
        "id": "rocket-red", "category": "local", "instruction": "paint the rocket red",
        "source": save(rocket, "rocket.png"), "target": save(rocket_target, "rocket_target.png"),
        "edited": save(noisy(rocket_target, 0.02, 2), "rocket_edited.png"), "mask": save(rocket_mask, "rocket_mask.png"),
    })

    coffee = photo("coffee")
    coffee_target = sepia(coffee)
    records.append({
        "id": "coffee-sepia", "category": "global", "instruction": "make it look like an old sepia photograph",
        "source": save(coffee, "coffee.png"), "target": save(coffee_target, "coffee_target.png"),
        "edited": save(noisy(coffee_target, 0.02, 3), "coffee_edited.png"),
    })

    astro = photo("astronaut")
    astro_mask = ellipse_mask((40, 0, 150, 100))
    records.append({
        "id": "astronaut-noise", "category": "noise", "instruction": "give the astronaut a red helmet",
        "source": save(astro, "astronaut.png"), "target": save(hue_shift(astro, astro_mask, 0.0), "astronaut_target.png"),
        "edited": save(noisy(astro, 0.05, 4), "astronaut_edited.png"), "mask": save(astro_mask, "astronaut_mask.png"),
    })

    # The same local recolour applied to the whole image: an over-edit of the cat.
    records.append({
        "id": "cat-blue-global", "category": "global", "instruction": "make the cat blue",
        "source": "cat.png", "target": "cat_target.png", "mask": "cat_mask.png",
        "edited": save(hue_shift(cat, np.ones_like(cat_mask), 0.6), "cat_edited_global.png"),
    })

    with open(os.path.join(HERE, "pairs.jsonl"), "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
