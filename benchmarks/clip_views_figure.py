"""The centre crop's blind spot: figure and numbers for docs/semantic.md ("Views").

A 4:3 photograph (skimage.data chelsea, 320x240) is edited by inverting a
vertical strip over its left 11% (a border edit) or, for comparison, the same
strip in the middle. The script scores clip_gc (edit region: a box on the cat,
away from both strips) and clip_i under the three views and draws what the
model sees under each view.

    python benchmarks/clip_views_figure.py                     # tiny random CLIP, 224 px input
    python benchmarks/clip_views_figure.py --clip ViT-L-14:openai --no-figure

Without ``--clip`` the CLIP is a random tiny open_clip model with CLIP's 224 px
input: its preprocessing geometry (the part under test) is the real one, its
scores' magnitudes mean nothing. With real weights the numbers are meaningful.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (320, 240)  # 4:3
STRIP = 0.11
BOX = [150, 40, 250, 200]  # clip_gc's edit region (removed from both images)
VIEWS = ("crop", "pad", "squash")


def photo() -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.chelsea()).resize(SIZE, Image.BICUBIC))


def strip_edit(img: np.ndarray, left: int) -> np.ndarray:
    out = img.copy()
    width = round(img.shape[1] * STRIP)
    out[:, left:left + width] = 255 - out[:, left:left + width]
    return out


def scores(spec: str, folder: str) -> dict[str, dict[str, float]]:
    from editmetrics import score_records

    src = photo()
    edits = {"border": strip_edit(src, 0), "middle": strip_edit(src, 100)}  # middle strip: x 100-135, off the box
    Image.fromarray(src).save(os.path.join(folder, "source.png"))
    records = []
    for name, img in edits.items():
        Image.fromarray(img).save(os.path.join(folder, f"{name}.png"))
        records.append({"id": name, "source": "source.png", "edited": f"{name}.png", "bbox": BOX})
    metrics = [f"{m}(view={v})" for m in ("clip_gc", "clip_i") for v in VIEWS]
    rows = score_records(records, metrics, base_dir=folder, settings={"clip": spec})
    out = {}
    for row in rows:
        if row["errors"]:
            sys.exit(f"scoring failed: {row['errors']}")
        out[row["id"]] = row["scores"]
    return out


def crop_view(img: Image.Image, size: int = 224) -> Image.Image:
    """open_clip's evaluation geometry: shortest side to ``size``, centre crop."""
    w, h = img.size
    scale = size / min(w, h)
    r = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    left, top = (r.width - size) // 2, (r.height - size) // 2
    return r.crop((left, top, left + size, top + size))


def figure(path: str, result: dict, size: int = 224) -> None:
    from editmetrics.weights.views import square_view

    mean = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation mean: the pad colour
    edited = Image.fromarray(strip_edit(photo(), 0))
    shown = edited.resize((round(edited.width * size / edited.height), size), Image.BICUBIC)
    draw = ImageDraw.Draw(shown)
    margin = (shown.width - size) // 2
    draw.rectangle([margin, 0, margin + size - 1, size - 1], outline=(255, 40, 40), width=3)  # what crop keeps
    panels = [("edited (4:3); red: crop's window", shown, None),
              ("crop (the papers')", crop_view(edited, size), "crop"),
              ("pad (letterbox)", square_view(edited, "pad", size, mean), "pad"),
              ("squash", square_view(edited, "squash", size), "squash")]
    font = ImageFont.load_default(size=13)
    gap, head, foot = 10, 22, 40
    width = sum(p.width for _, p, _ in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (width, size + head + foot), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for title, panel, view in panels:
        canvas.paste(panel, (x, head))
        draw.text((x, 4), title, fill="black", font=font)
        if view:
            border = result["border"]
            draw.text((x, head + size + 4), f"clip_gc {border[f'clip_gc(view={view})']:.4f}", fill="black", font=font)
            draw.text((x, head + size + 20), f"clip_i  {border[f'clip_i(view={view})']:.6f}", fill="black", font=font)
        x += panel.width + gap
    canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # a small file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", help="CLIP spec (default: a random tiny CLIP with a 224 px input)")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "clip_views.png"))
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.clip
        if not spec:
            from editmetrics.testing.tiny import write_open_clip

            spec = write_open_clip(os.path.join(tmp, "clip"), name="tinyclip_views_fig", seed=0, image_size=224)
        result = scores(spec, tmp)
    print(f"CLIP: {args.clip or 'random tiny open_clip, 224 px input (seed 0)'}")
    print("| edit | " + " | ".join(f"clip_gc {v}" for v in VIEWS) + " | "
          + " | ".join(f"clip_i {v}" for v in VIEWS) + " |")
    print("|---" * (1 + 2 * len(VIEWS)) + "|")
    for name, s in result.items():
        print(f"| {name} strip | " + " | ".join(f"{s[f'clip_gc(view={v})']:.4f}" for v in VIEWS) + " | "
              + " | ".join(f"{s[f'clip_i(view={v})']:.6f}" for v in VIEWS) + " |")
    if not args.no_figure:
        figure(args.out, result)
        print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
