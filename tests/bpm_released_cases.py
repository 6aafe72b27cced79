"""Inputs of the differential BPM fixture (tests/data/bpm_released_fixture.json):
constructed edits, the images they render to, and the stub detector/segmenter
outputs both sides were given (docs/bpm.md, "Differential fixture").

Everything here is ours; the fixture holds the numbers the authors' released
code printed for these inputs. Each item is one source image + instruction with
four edited images (the released scripts score four editors per item).

Coordinates of boxes and object regions are normalised ``cx, cy, w, h`` in
[0, 1] (GroundingDINO's output convention). The stub segmenter returns, for an
image and a box, the image's object region (union of ellipses) inside the box,
evaluated on the 500x500 working frame: so segmenting an edited image with the
source boxes (what the released code does for non-add edits) differs from
segmenting it with its own boxes.
"""

from __future__ import annotations

import hashlib

import numpy as np

FRAME = 500

# parse fields in the project's schema, per item
def _parse(source, target, edit_type, size="unchanged", position="unchanged", reference=None):
    return {"source_object": source, "target_object": target, "edit_type": edit_type, "size_change": size,
            "position_change": position, "reference_object": reference}


def _v(ops, det=None, regions=None):
    """One edited image: ops applied to the source, its detections of the
    target phrase (list of boxes; [] = not found), its object regions."""
    return {"ops": ops, "detect": det if det is not None else [], "regions": regions or []}


# Boxes are cx, cy, w, h; "regions" are ellipses inscribed in such boxes.
CAT = [0.50, 0.47, 0.42, 0.60]
ROCKET = [0.52, 0.52, 0.20, 0.70]
MAN = [0.45, 0.52, 0.50, 0.80]
CUP = [0.55, 0.45, 0.32, 0.30]

ITEMS = [
    {"id": "replace-cat-dog", "photo": "chelsea", "size": [480, 320], "instruction": "replace the cat with a dog",
     "parse": _parse("cat", "dog", "replace"), "source_detect": [CAT], "source_regions": [CAT],
     "edited": [
         _v([{"op": "paint", "box": CAT, "color": [140, 90, 40]}], [CAT], [CAT]),
         _v([{"op": "paint", "box": CAT, "color": [140, 90, 40]}, {"op": "noise", "sigma": 6, "seed": 1}],
            [[0.51, 0.47, 0.40, 0.58]], [CAT]),
         _v([{"op": "paint", "box": [0.5, 0.45, 0.2, 0.2], "color": [200, 180, 160]}],
            [[0.5, 0.45, 0.2, 0.2]], [[0.5, 0.45, 0.2, 0.2]]),
         _v([{"op": "noise", "sigma": 3, "seed": 2}], []),
     ]},
    {"id": "colour-rocket", "photo": "rocket", "size": [320, 480], "instruction": "make the rocket red",
     "parse": _parse("rocket", "red rocket", "attribute"),
     "source_detect": [ROCKET, [0.52, 0.30, 0.10, 0.22]], "source_regions": [ROCKET],
     "edited": [
         _v([{"op": "tint", "box": ROCKET, "color": [255, 0, 0], "alpha": 0.6}], [ROCKET], [ROCKET]),
         _v([{"op": "tint", "box": ROCKET, "color": [255, 0, 0], "alpha": 0.6}, {"op": "add", "delta": -1}],
            [ROCKET], [ROCKET]),
         _v([{"op": "tint", "box": ROCKET, "color": [255, 40, 0], "alpha": 0.9}, {"op": "add", "delta": 20}],
            [ROCKET, [0.2, 0.8, 0.1, 0.1]], [ROCKET]),
         _v([{"op": "tint", "box": [0.52, 0.52, 0.34, 0.8], "color": [0, 0, 255], "alpha": 0.5}],
            [[0.52, 0.52, 0.34, 0.8]], [[0.52, 0.52, 0.34, 0.8]]),
     ]},
    {"id": "texture-cup", "photo": "coffee", "size": [600, 400], "instruction": "make the cup wooden",
     "parse": _parse("cup", "wooden cup", "attribute"), "source_detect": [CUP], "source_regions": [CUP],
     "edited": [
         _v([{"op": "stripes", "box": CUP, "color": [150, 100, 50], "period": 6}], [CUP], [CUP]),
         _v([{"op": "stripes", "box": CUP, "color": [150, 100, 50], "period": 6}, {"op": "noise", "sigma": 12, "seed": 3}],
            [CUP], [CUP]),
         _v([{"op": "stripes", "box": [0.55, 0.45, 0.5, 0.5], "color": [120, 80, 40], "period": 9}],
            [[0.55, 0.45, 0.5, 0.5]], [[0.55, 0.45, 0.5, 0.5]]),
         _v([{"op": "add", "delta": 2}], [CUP], [CUP]),
     ]},
    {"id": "add-bird-above-man", "photo": "astronaut", "size": [512, 512], "instruction": "add a bird above the man",
     "parse": _parse(None, "bird", "add", position="up", reference="man"), "source_detect": [MAN],
     "source_regions": [MAN],
     "edited": [
         _v([{"op": "paint", "box": [0.45, 0.07, 0.16, 0.10], "color": [30, 30, 30]}],
            [[0.45, 0.07, 0.16, 0.10]], [[0.45, 0.07, 0.16, 0.10]]),
         _v([{"op": "paint", "box": [0.45, 0.94, 0.16, 0.10], "color": [30, 30, 30]}],
            [[0.45, 0.94, 0.16, 0.10]], [[0.45, 0.94, 0.16, 0.10]]),
         _v([{"op": "paint", "box": [0.45, 0.07, 0.16, 0.10], "color": [30, 30, 30]},
             {"op": "paint", "box": [0.85, 0.5, 0.16, 0.10], "color": [30, 30, 30]}],
            [[0.45, 0.07, 0.16, 0.10], [0.85, 0.5, 0.16, 0.10]],
            [[0.45, 0.07, 0.16, 0.10], [0.85, 0.5, 0.16, 0.10]]),
         _v([{"op": "noise", "sigma": 4, "seed": 4}], []),
     ]},
    {"id": "add-dog", "photo": "coffee", "size": [450, 300], "instruction": "add a dog",
     "parse": _parse(None, "dog", "add"), "source_detect": [], "source_regions": [],
     "edited": [
         _v([{"op": "paint", "box": [0.2, 0.7, 0.2, 0.3], "color": [120, 70, 30]}],
            [[0.2, 0.7, 0.2, 0.3]], [[0.2, 0.7, 0.2, 0.3]]),
         _v([{"op": "paint", "box": [0.8, 0.3, 0.3, 0.4], "color": [90, 60, 30]}, {"op": "noise", "sigma": 8, "seed": 5}],
            [[0.8, 0.3, 0.3, 0.4]], [[0.8, 0.3, 0.3, 0.4]]),
         _v([{"op": "paint", "box": [0.5, 0.5, 0.9, 0.9], "color": [100, 100, 100]}],
            [[0.5, 0.5, 0.9, 0.9]], [[0.5, 0.5, 0.9, 0.9]]),
         _v([{"op": "paint", "box": [0.3, 0.3, 0.1, 0.1], "color": [10, 200, 10]}],
            [[0.3, 0.3, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1]], [[0.3, 0.3, 0.1, 0.1]]),
     ]},
    {"id": "add-cup-inside-box-missing-ref", "photo": "chelsea", "size": [389, 257],
     "instruction": "put a cup inside the basket",
     "parse": _parse(None, "cup", "add", position="inside", reference="basket"), "source_detect": [],
     "source_regions": [],
     "edited": [
         _v([{"op": "paint", "box": [0.3, 0.6, 0.15, 0.2], "color": [250, 250, 250]}],
            [[0.3, 0.6, 0.15, 0.2]], [[0.3, 0.6, 0.15, 0.2]]),
         _v([{"op": "paint", "box": [0.7, 0.2, 0.2, 0.2], "color": [240, 240, 200]}],
            [[0.7, 0.2, 0.2, 0.2]], [[0.7, 0.2, 0.2, 0.2]]),
         _v([{"op": "noise", "sigma": 2, "seed": 6}], []),
         _v([{"op": "paint", "box": [0.5, 0.5, 0.3, 0.3], "color": [250, 250, 250]}, {"op": "add", "delta": -3}],
            [[0.5, 0.5, 0.3, 0.3]], [[0.5, 0.5, 0.3, 0.3]]),
     ]},
    {"id": "add-hat-inside-man", "photo": "astronaut", "size": [400, 400], "instruction": "put a hat on the man",
     "parse": _parse(None, "hat", "add", position="inside", reference="man"), "source_detect": [MAN],
     "source_regions": [MAN],
     "edited": [
         _v([{"op": "paint", "box": [0.45, 0.3, 0.2, 0.1], "color": [20, 20, 120]}],
            [[0.45, 0.3, 0.2, 0.1]], [[0.45, 0.3, 0.2, 0.1]]),
         _v([{"op": "paint", "box": [0.9, 0.1, 0.15, 0.1], "color": [20, 20, 120]}],
            [[0.9, 0.1, 0.15, 0.1]], [[0.9, 0.1, 0.15, 0.1]]),
         _v([{"op": "paint", "box": [0.45, 0.3, 0.2, 0.1], "color": [20, 20, 120]}, {"op": "noise", "sigma": 20, "seed": 7}],
            [[0.45, 0.3, 0.2, 0.1]], [[0.45, 0.3, 0.2, 0.1]]),
         _v([{"op": "paint", "box": [0.47, 0.5, 0.2, 0.1], "color": [220, 20, 20]}],
            [[0.47, 0.5, 0.2, 0.1]], [[0.47, 0.5, 0.2, 0.1]]),
     ]},
    {"id": "remove-cup", "photo": "coffee", "size": [600, 400], "instruction": "remove the cup",
     "parse": _parse("cup", None, "remove"), "source_detect": [CUP], "source_regions": [CUP],
     "edited": [
         _v([{"op": "paint", "box": CUP, "color": [170, 160, 150]}], [], []),
         _v([{"op": "paint", "box": [0.55, 0.45, 0.16, 0.15], "color": [170, 160, 150]}], [], []),
         _v([{"op": "noise", "sigma": 5, "seed": 8}], [], []),
         _v([{"op": "paint", "box": CUP, "color": [170, 160, 150]}, {"op": "add", "delta": 30}], [], []),
     ]},
    {"id": "bigger-cat", "photo": "chelsea", "size": [482, 322], "instruction": "make the cat bigger",
     "parse": _parse("cat", "big cat", "size", size="larger"), "source_detect": [[0.5, 0.5, 0.3, 0.4]],
     "source_regions": [[0.5, 0.5, 0.3, 0.4]],
     "edited": [
         _v([{"op": "scale", "box": [0.5, 0.5, 0.3, 0.4], "factor": 1.5}], [[0.5, 0.5, 0.45, 0.6]],
            [[0.5, 0.5, 0.45, 0.6]]),
         _v([{"op": "scale", "box": [0.5, 0.5, 0.3, 0.4], "factor": 1.05}], [[0.5, 0.5, 0.315, 0.42]],
            [[0.5, 0.5, 0.315, 0.42]]),
         _v([{"op": "scale", "box": [0.5, 0.5, 0.3, 0.4], "factor": 0.7}], [[0.5, 0.5, 0.21, 0.28]],
            [[0.5, 0.5, 0.21, 0.28]]),
         _v([{"op": "scale", "box": [0.5, 0.5, 0.3, 0.4], "factor": 1.6}, {"op": "noise", "sigma": 3, "seed": 9}],
            [[0.5, 0.5, 0.48, 0.64], [0.1, 0.1, 0.1, 0.1]], [[0.5, 0.5, 0.48, 0.64]]),
     ]},
    {"id": "smaller-rocket", "photo": "rocket", "size": [300, 450], "instruction": "make the rocket smaller",
     "parse": _parse("rocket", "small rocket", "size", size="smaller"), "source_detect": [ROCKET],
     "source_regions": [ROCKET],
     "edited": [
         _v([{"op": "scale", "box": ROCKET, "factor": 0.6}], [[0.52, 0.52, 0.12, 0.42]], [[0.52, 0.52, 0.12, 0.42]]),
         _v([{"op": "scale", "box": ROCKET, "factor": 0.95}], [[0.52, 0.52, 0.19, 0.665]],
            [[0.52, 0.52, 0.19, 0.665]]),
         _v([{"op": "scale", "box": ROCKET, "factor": 1.3}], [[0.52, 0.52, 0.26, 0.91]], [[0.52, 0.52, 0.26, 0.91]]),
         _v([{"op": "scale", "box": ROCKET, "factor": 0.5}, {"op": "add", "delta": -1}],
            [[0.52, 0.52, 0.10, 0.35]], [[0.52, 0.52, 0.10, 0.35]]),
     ]},
    {"id": "move-cat-left", "photo": "chelsea", "size": [500, 500], "instruction": "move the cat to the left",
     "parse": _parse("cat", "cat", "position", position="left"), "source_detect": [[0.6, 0.5, 0.3, 0.4]],
     "source_regions": [[0.6, 0.5, 0.3, 0.4]],
     "edited": [
         _v([{"op": "move", "box": [0.6, 0.5, 0.3, 0.4], "to": [0.25, 0.5]}], [[0.25, 0.5, 0.3, 0.4]],
            [[0.25, 0.5, 0.3, 0.4]]),
         _v([{"op": "move", "box": [0.6, 0.5, 0.3, 0.4], "to": [0.8, 0.5]}], [[0.8, 0.5, 0.3, 0.4]],
            [[0.8, 0.5, 0.3, 0.4]]),
         _v([{"op": "noise", "sigma": 2, "seed": 10}], [[0.6, 0.5, 0.3, 0.4]], [[0.6, 0.5, 0.3, 0.4]]),
         _v([{"op": "move", "box": [0.6, 0.5, 0.3, 0.4], "to": [0.6, 0.25]}], [[0.6, 0.25, 0.3, 0.4]],
            [[0.6, 0.25, 0.3, 0.4]]),
     ]},
    {"id": "replace-horse-missing-source", "photo": "astronaut", "size": [320, 320],
     "instruction": "replace the horse with a zebra", "parse": _parse("horse", "zebra", "replace"),
     "source_detect": [], "source_regions": [],
     "edited": [
         _v([{"op": "stripes", "box": [0.5, 0.5, 0.4, 0.4], "color": [0, 0, 0], "period": 4}],
            [[0.5, 0.5, 0.4, 0.4]], [[0.5, 0.5, 0.4, 0.4]]),
         _v([{"op": "noise", "sigma": 10, "seed": 11}], []),
         _v([{"op": "add", "delta": -1}], []),
         _v([{"op": "invert"}], []),
     ]},
    {"id": "remove-dog-missing-source", "photo": "coffee", "size": [360, 240], "instruction": "remove the dog",
     "parse": _parse("dog", None, "remove"), "source_detect": [], "source_regions": [],
     "edited": [
         _v([{"op": "noise", "sigma": 4, "seed": 12}]),
         _v([{"op": "paint", "box": [0.5, 0.5, 0.2, 0.2], "color": [0, 0, 0]}]),
         _v([{"op": "add", "delta": 5}]),
         _v([{"op": "add", "delta": -40}]),
     ]},
    {"id": "global-watercolor", "photo": "astronaut", "size": [512, 384], "global": True,
     "instruction": "make it look like a watercolor painting",
     "parse": _parse(None, "watercolor painting", "global"), "source_detect": [], "source_regions": [],
     "edited": [_v([{"op": "posterize", "levels": 4}]), _v([{"op": "blur", "radius": 3}]),
                _v([{"op": "invert"}]), _v([{"op": "noise", "sigma": 25, "seed": 13}])]},
    {"id": "global-night", "photo": "chelsea", "size": [300, 200], "global": True,
     "instruction": "turn the photo into a night scene",
     "parse": _parse(None, "night scene", "global"), "source_detect": [], "source_regions": [],
     "edited": [_v([{"op": "scale_values", "factor": 0.3}]), _v([{"op": "scale_values", "factor": 0.7}]),
                _v([{"op": "tint", "box": [0.5, 0.5, 1.0, 1.0], "color": [0, 0, 80], "alpha": 0.5}]),
                _v([{"op": "add", "delta": -1}])]},
]

# Pools normalised together (the released eval script normalises over its whole file).
POOLS = {
    "all": [it["id"] for it in ITEMS],
    "local-first-six": [it["id"] for it in ITEMS[:6]],
    "global-only": [it["id"] for it in ITEMS if it.get("global")],
}


# ---------------------------------------------------------------------------
# the released code's fields from a parse (the mapping docs/bpm.md documents)
# ---------------------------------------------------------------------------

RELEASED_SIZE = {"larger": "bigger", "smaller": "smaller", "unchanged": "none"}
RELEASED_POSITION = {"left": "left", "right": "right", "up": "above", "down": "below", "inside": "inside",
                     "near": "none", "unchanged": "unchanged"}
RELEASED_EDIT_TYPE = {"add": "add", "remove": "remove", "replace": "replace", "attribute": "change color",
                      "size": "change size", "position": "other", "global": "other"}


def released_fields(parse: dict) -> dict:
    t = parse["edit_type"]
    return {
        "original_part": "all" if t == "global" else ("none" if t == "add" else parse["source_object"]),
        "edited_part": "all" if t == "global" else ("none" if t == "remove" else parse["target_object"]),
        "edit_type": RELEASED_EDIT_TYPE[t],
        "being_added": (parse["reference_object"] or "") if t == "add" else "",
        "added_object": parse["target_object"] if t == "add" else "",
        "size": RELEASED_SIZE[parse["size_change"]],
        "position": RELEASED_POSITION[parse["position_change"]],
    }


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------

def _px(box, w, h):
    cx, cy, bw, bh = box
    return (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h


def ellipse_mask(box, w, h):
    x0, y0, x1, y1 = _px(box, w, h)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-9), max((y1 - y0) / 2, 1e-9)
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0


def rect_mask(box_xyxy, w, h):
    x0, y0, x1, y1 = box_xyxy
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx + 0.5 >= x0) & (xx + 0.5 < x1) & (yy + 0.5 >= y0) & (yy + 0.5 < y1)


def photo(name: str, size) -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    return np.asarray(Image.fromarray(img[..., :3]).convert("RGB").resize(tuple(size), Image.BICUBIC))


def apply_ops(src: np.ndarray, ops) -> np.ndarray:
    from PIL import Image, ImageFilter

    h, w = src.shape[:2]
    out = src.astype(np.float64)
    for op in ops:
        kind = op["op"]
        if kind == "paint":
            out[ellipse_mask(op["box"], w, h)] = op["color"]
        elif kind == "tint":
            m = ellipse_mask(op["box"], w, h) if op["box"][2] < 1 else np.ones((h, w), bool)
            out[m] = (1 - op["alpha"]) * out[m] + op["alpha"] * np.asarray(op["color"], float)
        elif kind == "stripes":
            m = ellipse_mask(op["box"], w, h)
            stripe = (np.arange(w)[None, :] // op["period"]) % 2 == 0
            out[m & stripe] = op["color"]
        elif kind == "noise":
            rng = np.random.default_rng(op["seed"])
            out = out + rng.normal(0, op["sigma"], out.shape)
        elif kind == "add":
            out = out + op["delta"]
        elif kind == "scale_values":
            out = out * op["factor"]
        elif kind == "invert":
            out = 255 - out
        elif kind == "posterize":
            step = 256 / op["levels"]
            out = np.floor(out / step) * step + step / 2
        elif kind == "blur":
            img = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
            out = np.asarray(img.filter(ImageFilter.GaussianBlur(op["radius"]))).astype(np.float64)
        elif kind in ("move", "scale"):
            x0, y0, x1, y1 = (int(round(v)) for v in _px(op["box"], w, h))
            patch = np.clip(np.rint(out[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
            fill = out[max(0, y0 - 2):y0, x0:x1].mean(axis=(0, 1)) if y0 >= 2 else np.array([128.0] * 3)
            out[y0:y1, x0:x1] = fill
            if kind == "move":
                cx, cy = op["to"][0] * w, op["to"][1] * h
                pw, ph = x1 - x0, y1 - y0
            else:
                pw, ph = int(round((x1 - x0) * op["factor"])), int(round((y1 - y0) * op["factor"]))
                patch = np.asarray(Image.fromarray(patch).resize((pw, ph), Image.BILINEAR))
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            nx0, ny0 = int(round(cx - pw / 2)), int(round(cy - ph / 2))
            sx0, sy0 = max(0, -nx0), max(0, -ny0)
            ex, ey = min(w, nx0 + pw), min(h, ny0 + ph)
            out[max(0, ny0):ey, max(0, nx0):ex] = patch[sy0:sy0 + ey - max(0, ny0), sx0:sx0 + ex - max(0, nx0)]
        else:
            raise ValueError(kind)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render(item: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 RGB source and the four edited images of one item."""
    src = photo(item["photo"], item["size"])
    return src, [apply_ops(src, v["ops"]) for v in item["edited"]]


def digest(image: np.ndarray) -> str:
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:20]


# ---------------------------------------------------------------------------
# stub detector / segmenter tables (the same on both sides)
# ---------------------------------------------------------------------------

def caption(phrase: str) -> str:
    """GroundingDINO's caption normalisation (lower case, stripped, final period)."""
    c = phrase.lower().strip()
    return c if c.endswith(".") else c + "."


class StubTables:
    """Detection table {(image digest, caption): [normalised cxcywh boxes]} and
    object regions {image digest: [normalised boxes of ellipses]} for every image
    of the given items; ``segment`` gives the stub SAM mask."""

    def __init__(self, items):
        self.detect: dict[tuple[str, str], list] = {}
        self.regions: dict[str, list] = {}
        self.frame_regions: dict[str, list] = {}  # digest of the 500x500 resize -> regions
        for item in items:
            src, edited = render(item)
            fields = released_fields(item["parse"])
            d_src = digest(src)
            self.regions[d_src] = item["source_regions"]
            self.frame_regions[digest(resize500(src))] = item["source_regions"]
            if item["parse"]["edit_type"] != "global":
                phrase = item["parse"]["reference_object"] if item["parse"]["edit_type"] == "add" \
                    else fields["original_part"]
                if phrase:
                    self._put((d_src, caption(phrase)), item["source_detect"])
            for v, img in zip(item["edited"], edited):
                d = digest(img)
                self.regions[d] = v["regions"]
                self.frame_regions[digest(resize500(img))] = v["regions"]
                if item["parse"]["target_object"] and item["parse"]["edit_type"] != "global":
                    self._put((d, caption(item["parse"]["target_object"])), v["detect"])

    def _put(self, key, boxes):
        if key in self.detect and self.detect[key] != boxes:
            raise ValueError(f"two images with the same pixels and phrase get different boxes: {key}")
        self.detect[key] = boxes

    def boxes(self, image: np.ndarray, phrase: str) -> list:
        return self.detect.get((digest(image), caption(phrase)), [])

    def segment(self, image500: np.ndarray, box_xyxy) -> np.ndarray:
        """Object region of a 500x500 image inside a box (500-frame pixels)."""
        regions = self.frame_regions[digest(image500)]
        h, w = image500.shape[:2]
        obj = np.zeros((h, w), bool)
        for r in regions:
            obj |= ellipse_mask(r, w, h)
        return obj & rect_mask(box_xyxy, w, h)


def resize500(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(image, (FRAME, FRAME))


def _nudge(boxes):
    # Round numbers put crop edges exactly on whole pixels, where float32 (the
    # released code's torch boxes) and float64 truncate differently; a small
    # irregular offset keeps every edge away from a pixel boundary.
    return [[round(b[0] + 0.00137, 6), round(b[1] + 0.00071, 6), round(b[2] + 0.00053, 6), round(b[3] + 0.00029, 6)]
            for b in boxes]


for _item in ITEMS:
    _item["source_detect"] = _nudge(_item["source_detect"])
    for _v_ in _item["edited"]:
        _v_["detect"] = _nudge(_v_["detect"])
