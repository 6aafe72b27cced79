"""A small synthetic SPPE-format set built from scikit-image photographs.

For tests, the README walkthrough and the benchmark on machines without the
real SPPE data. What is simulated (docs/sppe.md):

- a private region per category (box shapes differ per category);
- surrogates by inpainting-like region replacement: the region is refilled
  with a blend of a diffusion fill from its surroundings (normalised
  convolution) and a donor photograph's pixels, at a random strength (the
  "guidance scale" of SPPE's SDXL inpainting);
- "MLLM edits" as deterministic image operations per instruction, applied
  to the source (-> edited_source) and to the surrogate (-> edited_surrogate);
  some are global (style), some act on the region (red object, removal) or on
  the background, so surrogates differ in how well they transfer the edit;
- labels by the ``editability_label`` metric with a tiny random CLIP written
  next to the data (``tinyclip/``): exactly the SPPE label's formula, with a
  meaningless encoder. The numbers exercise the pipeline; they say nothing
  about how ERMA performs on the real SPPE.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from scipy import ndimage

from editmetrics.testing.tiny import write_open_clip

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
          "retina", "page", "coins", "moon", "text", "brick", "grass", "gravel", "colorwheel", "cell", "clock")
# category -> box (width, height) as fractions of the image side
# real SPPE categories (Table 2) of four privacy groups: Face, License Plate, Document, Others
CATEGORIES = {"faces": (0.35, 0.4), "plate": (0.5, 0.15), "passport": (0.4, 0.5), "landmark": (0.6, 0.55)}
INSTRUCTIONS = (
    "turn to a pencil sketch style",
    "make it look like an old sepia photograph",
    "turn to an oil painting style",
    "remove the object",
    "make the object red",
    "change the background to a night scene",
    "make it look futuristic",
)


def photo(name: str, size: int) -> np.ndarray:
    """A skimage.data photograph as float32 RGB (size x size) in [0, 1]."""
    from skimage import data

    arr = getattr(data, name)()
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    h, w = arr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(np.ascontiguousarray(arr[top:top + side, left:left + side])).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def box_mask(size: int, category: str, rng) -> np.ndarray:
    fw, fh = CATEGORIES[category]
    w, h = max(4, int(size * fw)), max(4, int(size * fh))
    x0 = int(rng.integers(0, size - w + 1))
    y0 = int(rng.integers(0, size - h + 1))
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    return mask


def diffusion_fill(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Fill the mask from its surroundings: blur(image * keep) / blur(keep)."""
    keep = (~mask).astype(np.float32)
    num = np.stack([ndimage.gaussian_filter(image[..., c] * keep, sigma) for c in range(3)], axis=2)
    den = ndimage.gaussian_filter(keep, sigma)[..., None]
    fill = num / np.maximum(den, 1e-4)
    return np.where(mask[..., None], fill, image)


def make_surrogate(image: np.ndarray, mask: np.ndarray, donor: np.ndarray, strength: float, mix: float) -> np.ndarray:
    """Inpainting-like replacement of the masked region (feathered edges)."""
    filled = diffusion_fill(image, mask, sigma=image.shape[0] / 10)
    content = mix * filled + (1.0 - mix) * donor
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 1.5)[..., None] * strength
    return np.clip(image * (1.0 - soft) + content * soft, 0.0, 1.0).astype(np.float32)


def apply_edit(image: np.ndarray, mask: np.ndarray, instruction: str) -> np.ndarray:
    """A deterministic stand-in for an MLLM edit of ``image`` by ``instruction``."""
    gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if instruction == "turn to a pencil sketch style":
        edges = np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1))
        out = 1.0 - np.clip(edges / (edges.max() + 1e-6) * 2.0, 0, 1)
        return np.repeat(out[..., None], 3, axis=2).astype(np.float32)
    if instruction == "make it look like an old sepia photograph":
        sepia = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
        return np.clip(image @ sepia.T, 0, 1).astype(np.float32)
    if instruction == "turn to an oil painting style":
        smooth = np.stack([ndimage.median_filter(image[..., c], size=5) for c in range(3)], axis=2)
        mean = smooth.mean(axis=2, keepdims=True)
        return np.clip(mean + 1.6 * (smooth - mean), 0, 1).astype(np.float32)
    if instruction == "remove the object":
        return diffusion_fill(image, mask, sigma=image.shape[0] / 8).astype(np.float32)
    if instruction == "make the object red":
        red = image.copy()
        red[mask] = np.clip(red[mask] * np.array([0.3, 0.3, 0.3]) + np.array([0.7, 0.05, 0.05]), 0, 1)
        return red.astype(np.float32)
    if instruction == "change the background to a night scene":
        night = np.clip(image * np.array([0.25, 0.3, 0.55], dtype=np.float32), 0, 1)
        return np.where(mask[..., None], image, night).astype(np.float32)
    if instruction == "make it look futuristic":
        return np.clip(image[..., [2, 0, 1]] * 1.3 - 0.1 + 0.3 * (gray[..., None] > 0.6), 0, 1).astype(np.float32)
    raise ValueError(f"unknown synthetic instruction {instruction!r}")


def write_tiny_clip(folder: str, seed: int = 0) -> str:
    """A random tiny open_clip (real architecture, 3.4M parameters) saved as a
    model-config JSON + safetensors; returns its backbone spec (``editmetrics.testing.tiny``)."""
    return write_open_clip(folder, name="tinyclip_sppe", seed=seed)


def _save(array: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array.dtype == bool:
        Image.fromarray(array.astype(np.uint8) * 255).save(path)
    else:
        Image.fromarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)).save(path)


def make_synthetic(out: str, *, photos: int = 16, surrogates: int = 2, instructions: int = 2, size: int = 96,
                   test_fraction: float = 0.25, seed: int = 0, clip_spec: str | None = None,
                   label: bool = True) -> dict:
    """Write an SPPE-format folder (see ``SppeLoader.layout``) plus
    ``train.jsonl`` / ``test.jsonl`` pairs files and ``editmetrics.toml``
    (setting ``clip`` = the tiny CLIP). Returns a summary dict.

    Records: photos x surrogates x instructions; the split is by source photo
    (no source appears in both splits).
    """
    rng = np.random.default_rng(seed)
    names = list(PHOTOS[:photos]) if photos <= len(PHOTOS) else None
    if names is None:
        raise ValueError(f"at most {len(PHOTOS)} photographs are available")
    images = {n: photo(n, size) for n in names}
    cats = list(CATEGORIES)
    # split by photo, stratified by category: every category is in both splits
    test_names = set()
    for c, cat in enumerate(cats):
        members = [n for i, n in enumerate(names) if i % len(cats) == c]
        k = min(len(members) - 1, max(1, round(len(members) * test_fraction))) if len(members) > 1 else 0
        test_names.update(rng.permutation(members)[:k].tolist())
    instances = []
    for i, name in enumerate(names):
        x = images[name]
        category = cats[i % len(cats)]
        for k in range(surrogates):
            mask = box_mask(size, category, rng)
            donor = images[names[(i + 1 + k) % len(names)]]
            strength, mix = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.0, 1.0))
            s = make_surrogate(x, mask, donor, strength, mix)
            base = f"{name}-{k}"
            _save(x, os.path.join(out, "source", f"{name}.png"))
            _save(mask, os.path.join(out, "mask", f"{base}.png"))
            _save(s, os.path.join(out, "surrogate", f"{base}.png"))
            for instr_idx in rng.choice(len(INSTRUCTIONS), size=instructions, replace=False):
                instruction = INSTRUCTIONS[int(instr_idx)]
                rid = f"{base}-e{int(instr_idx)}"
                _save(apply_edit(x, mask, instruction), os.path.join(out, "edited_source", f"{rid}.png"))
                _save(apply_edit(s, mask, instruction), os.path.join(out, "edited_surrogate", f"{rid}.png"))
                instances.append({
                    "id": rid, "category": category, "instruction": instruction,
                    "source": f"source/{name}.png", "surrogate": f"surrogate/{base}.png", "mask": f"mask/{base}.png",
                    "edited_source": f"edited_source/{rid}.png", "edited_surrogate": f"edited_surrogate/{rid}.png",
                    "split": "test" if name in test_names else "train",
                    "surrogate_strength": round(strength, 4), "fill_mix": round(mix, 4),
                })
    spec = clip_spec or write_tiny_clip(os.path.join(out, "tinyclip"), seed=seed)
    if label:
        from editmetrics.engine.runner import score_records
        from editmetrics.sppe.loader import SppeLoader

        index = os.path.join(out, "sppe.json")
        with open(index, "w", encoding="utf-8") as fh:
            json.dump({"instances": instances}, fh, indent=1)
        rows = score_records(list(SppeLoader().records(out)), ["editability_label"], settings={"clip": spec})
        labels = {str(r["id"]): r["scores"]["editability_label"] for r in rows}
        bad = {str(r["id"]): r["errors"] for r in rows if r["errors"]}
        if bad:
            raise RuntimeError(f"editability_label failed for {len(bad)} record(s): {next(iter(bad.items()))}")
        for inst in instances:
            inst["editability_label"] = labels[inst["id"]]
    with open(os.path.join(out, "sppe.json"), "w", encoding="utf-8") as fh:
        json.dump({"instances": instances, "clip": spec,
                   "note": "synthetic SPPE-format set (editmetrics.sppe.synthetic); labels from a random tiny CLIP"},
                  fh, indent=1)
    with open(os.path.join(out, "editmetrics.toml"), "w", encoding="utf-8") as fh:
        fh.write(f"# settings for this synthetic set: its labels were computed with this CLIP\nclip = {json.dumps(spec)}\n")
    from editmetrics.sppe.loader import SppeLoader, write_pairs

    recs = list(SppeLoader().records(out))
    n_train = write_pairs((r for r in recs if r.get("split") == "train"), os.path.join(out, "train.jsonl"))
    n_test = write_pairs((r for r in recs if r.get("split") == "test"), os.path.join(out, "test.jsonl"))
    return {"out": out, "records": len(instances), "train": n_train, "test": n_test, "clip": spec}


GLOBAL_INSTRUCTIONS = ("turn to a pencil sketch style", "make it look like an old sepia photograph",
                       "turn to an oil painting style", "make it look futuristic")


def make_full_image_surrogate(image: np.ndarray, donor: np.ndarray, strength: float, rng) -> np.ndarray:
    """A stand-in for a regenerated whole image: a blurred copy (the layout
    kept) mixed with a donor photograph and a colour shift, at ``strength``."""
    blurred = np.stack([ndimage.gaussian_filter(image[..., c], image.shape[0] / 40) for c in range(3)], axis=2)
    shift = rng.uniform(-0.1, 0.1, size=3).astype(np.float32)
    content = np.clip(0.7 * blurred + 0.3 * donor + shift, 0, 1)
    return np.clip((1 - strength) * image + strength * content, 0, 1).astype(np.float32)


def make_synthetic_ip2p(out: str, *, photos: int = 8, instructions: int = 2, size: int = 96, seed: int = 0) -> dict:
    """An InstructPix2Pix-style folder (``InstructPix2PixLoader.layout``) with
    full-image surrogates, like SPPE's generalisation set: one sample folder
    per (photo, instruction), global edits only (a full-image surrogate has no
    region to act on). No labels: score ``editability_label`` on it."""
    rng = np.random.default_rng(seed)
    names = list(PHOTOS[:photos])
    images = {n: photo(n, size) for n in names}
    count = 0
    for i, name in enumerate(names):
        x = images[name]
        s = make_full_image_surrogate(x, images[names[(i + 1) % len(names)]], float(rng.uniform(0.2, 0.8)), rng)
        for k in rng.choice(len(GLOBAL_INSTRUCTIONS), size=min(instructions, len(GLOBAL_INSTRUCTIONS)), replace=False):
            instruction = GLOBAL_INSTRUCTIONS[int(k)]
            folder = os.path.join(out, f"{i:04d}-{int(k)}")
            full = np.ones(x.shape[:2], dtype=bool)
            _save(x, os.path.join(folder, "0_0.png"))
            _save(apply_edit(x, full, instruction), os.path.join(folder, "0_1.png"))
            _save(s, os.path.join(folder, "0_s.png"))
            _save(apply_edit(s, full, instruction), os.path.join(folder, "0_s1.png"))
            with open(os.path.join(folder, "prompt.json"), "w", encoding="utf-8") as fh:
                json.dump({"edit": instruction, "input": f"a photograph ({name})",
                           "output": f"a photograph ({name}), {instruction}"}, fh)
            count += 1
    return {"out": out, "records": count}
