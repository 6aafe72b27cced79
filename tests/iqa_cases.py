"""Reference/distorted image pairs for the full-reference IQA fixtures.

The pairs are built from skimage.data photographs by crops (no resampling) and
distortions written out here with integer arithmetic or a frozen random
generator (``np.random.RandomState``), so they regenerate bit-identically.
Only the JPEG cases depend on the JPEG codec PIL was built with; the fixture
stores a SHA-256 of every distorted image so a changed image is detected
instead of compared. ``tests/data/iqa_reference.json`` holds the values the
original MATLAB scripts gave for these pairs in GNU Octave (docs/conventions.md,
"Reference fixtures").

    python tests/iqa_cases.py OUTDIR   # writes NAME_ref.png / NAME_dist.png (used to make the fixture)
"""

from __future__ import annotations

import hashlib
import io
import os
import sys

import numpy as np
from PIL import Image

# name: (photo, top, left, height, width, distortion, parameter)
CASES = {
    "astronaut_176_near": ("astronaut", 40, 160, 176, 176, "near", 7),
    "chelsea_181x243_noise": ("chelsea", 30, 101, 181, 243, "noise", 12),
    "coffee_200x301_blur": ("coffee", 100, 150, 200, 301, "blur", 2),
    "rocket_240x320_jpeg": ("rocket", 100, 200, 240, 320, "jpeg", 15),
    "astronaut_256_shift": ("astronaut", 0, 200, 256, 256, "shift", 2),
    "camera_193x211_noise": ("camera", 150, 170, 193, 211, "noise", 40),
    "chelsea_300x451_contrast": ("chelsea", 0, 0, 300, 451, "contrast", 70),
    "coffee_400x515_noise": ("coffee", 0, 40, 400, 515, "noise", 6),
    "astronaut_512_jpeg": ("astronaut", 0, 0, 512, 512, "jpeg", 30),
    "rocket_427x640_blur": ("rocket", 0, 0, 427, 640, "blur", 1),
    "coffee_177x190_identical": ("coffee", 50, 300, 177, 190, "identical", 0),
}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def _blur(img: np.ndarray, passes: int) -> np.ndarray:
    """Binomial [1 4 6 4 1]/16 blur, edges replicated, rounded half up; ``passes`` times."""
    out = img.astype(np.int64)
    taps = np.array([1, 4, 6, 4, 1])
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(2, 2) if a == axis else (0, 0) for a in range(3)]
            p = np.pad(out, pad, mode="edge")
            n = out.shape[axis]
            acc = sum(int(t) * np.take(p, range(i, i + n), axis=axis) for i, t in enumerate(taps))
            out = (acc + 8) // 16
    return out.astype(np.uint8)


def make_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    photo, top, left, h, w, kind, p = CASES[name]
    full = _photo(photo)
    ref = full[top : top + h, left : left + w].copy()
    rng = np.random.RandomState(sum(map(ord, name)))
    if kind == "near":  # +1 on every p-th value: near-identical
        flat = ref.astype(np.int16).ravel()
        flat[::p] += 1
        dist = np.clip(flat, 0, 255).reshape(ref.shape)
    elif kind == "noise":  # uniform integer noise in [-p, p]
        dist = np.clip(ref.astype(np.int16) + rng.randint(-p, p + 1, ref.shape), 0, 255)
    elif kind == "blur":
        dist = _blur(ref, p)
    elif kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, format="JPEG", quality=p)
        dist = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    elif kind == "shift":  # the same scene p px further right
        dist = full[top : top + h, left + p : left + p + w]
    elif kind == "contrast":  # contrast reduced to p percent around 128
        dist = (ref.astype(np.int32) - 128) * p // 100 + 128
    elif kind == "identical":
        dist = ref
    else:
        raise ValueError(kind)
    return ref, np.ascontiguousarray(dist, dtype=np.uint8)


def digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img, dtype=np.uint8).tobytes()).hexdigest()[:16]


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cases.txt"), "w") as fh:
        for name in CASES:
            ref, dist = make_pair(name)
            Image.fromarray(ref).save(os.path.join(out, f"{name}_ref.png"))
            Image.fromarray(dist).save(os.path.join(out, f"{name}_dist.png"))
            fh.write(f"{name} {digest(ref)} {digest(dist)}\n")


if __name__ == "__main__":
    main(sys.argv[1])
