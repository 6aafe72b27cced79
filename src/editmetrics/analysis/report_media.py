"""Pictures of the HTML report: thumbnails, full-size panels, boxes, mask overlays.

Boxes come from two places, each drawn on the image whose pixels it is in:

- record fields: ``source_bbox`` and ``bbox`` (source pixels), ``target_bbox``
  (edited-image pixels, BPM's and R-SIE's convention; also drawn on the
  ground-truth target, which shares the edit's geometry);
- metric details: any ``[x0, y0, x1, y1]`` list (or list of them) under a key
  containing ``box``. Where such a key holds an object keyed by side, as
  BPM's ``details.bpm.boxes = {"source": [...], "target": [...],
  "reference": [...], "modify_crop": [...]}``, the ``target`` side is drawn on
  the edited image and the others on the source. A ``frame: [w, h]`` next to
  the boxes (BPM's) gives their pixel frame; they are scaled from it to the
  image shown. Loose boxes (not keyed by side) are in source pixels unless the
  details say otherwise with ``box_image: "edited"`` (or ``"target"``), or
  the metric is listed in ``DETAIL_BOX_IMAGE`` (``clip_rc`` crops the edit).

Images go through ``editmetrics.data.images`` (EXIF orientation, alpha over white,
16-bit), so the report shows what the metrics saw.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from editmetrics.data.images import ImageLoadError, load_image, load_mask, to_pil

THUMB_SIZE = 96  # longest side of a thumbnail, in pixels
FULL_SIZE = 1024  # longest side of a full-size view (larger images are scaled down, and say so)
THUMB_FIELDS = ("source", "edited", "target")
BOX_FIELDS = ("source_bbox", "target_bbox", "bbox")
BOX_COLOURS = {"source_bbox": (0, 160, 255), "target_bbox": (255, 170, 0), "bbox": (255, 0, 200),
               "crop": (0, 190, 90)}
TARGET_SIDES = ("target", "edit", "edited", "output")  # detail keys naming the edited image's side
MASK_LAYERS = {"source": ("mask", "source_mask"), "edited": ("target_mask",)}
# metric -> the image its loose detail boxes are in, for metrics whose details do not say (box_image)
DETAIL_BOX_IMAGE = {"clip_rc": "edited"}


@dataclass(frozen=True)
class Box:
    kind: str  # colour key of BOX_COLOURS
    coords: tuple[float, float, float, float]
    image: str  # field it is drawn on: "source" or "edited" (target_bbox: also "target")
    label: str  # legend text, e.g. "bpm: target"
    frame: tuple[int, int] | None = None  # (w, h) of the coordinates' frame; None: the image's own pixels


def _is_box(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def _box_list(value) -> list:
    if _is_box(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if _is_box(v)]
    return []


def _frame(node: dict) -> tuple[int, int] | None:
    frame = node.get("frame") if isinstance(node, dict) else None
    if (isinstance(frame, (list, tuple)) and len(frame) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in frame)):
        return int(frame[0]), int(frame[1])
    return None


def find_boxes(row: dict) -> list[Box]:
    """Every box of a result row, record fields first, then metric details."""
    found: list[Box] = []
    for name in BOX_FIELDS:
        value = row.get(name)
        if _is_box(value):
            image = "edited" if name == "target_bbox" else "source"
            found.append(Box(name if name != "bbox" else "source_bbox", tuple(value), image, name))

    def walk(node, path: str, frame, image: str) -> None:
        if isinstance(node, dict):
            frame = _frame(node) or frame
            if str(node.get("box_image", "")).lower() in ("edited", "target", "source"):
                image = "edited" if str(node["box_image"]).lower() != "source" else "source"
            for key, value in node.items():
                key = str(key)
                if "box" in key.lower() and isinstance(value, dict):  # boxes keyed by side (BPM)
                    for side, boxes in value.items():
                        image = "edited" if str(side).lower() in TARGET_SIDES else "source"
                        kind = "crop" if "crop" in str(side).lower() else "bbox"
                        for box in _box_list(boxes):
                            found.append(Box(kind, tuple(box), image, f"{path}: {side}", frame))
                elif "box" in key.lower() and _box_list(value):
                    for box in _box_list(value):
                        found.append(Box("bbox", tuple(box), image, f"{path}: {key}", frame))
                else:
                    walk(value, path, frame, image)
        elif isinstance(node, list):
            for item in node:
                walk(item, path, frame, image)

    for spec, details in (row.get("details") or {}).items():
        walk(details, str(spec), None, DETAIL_BOX_IMAGE.get(_metric_name(str(spec)), "source"))
    return found


def _metric_name(spec: str) -> str:
    from editmetrics.contract.metric import MetricSpec, SpecError

    try:
        return MetricSpec.parse(spec).name
    except SpecError:
        return spec


def boxes_on(boxes: list[Box], field: str) -> list[Box]:
    """The boxes drawn on one picture."""
    if field == "source":
        return [b for b in boxes if b.image == "source"]
    if field == "edited":
        return [b for b in boxes if b.image == "edited"]
    if field == "target":  # the ground truth shares the edit's geometry: record target boxes only
        return [b for b in boxes if b.kind == "target_bbox"]
    return []


def _scaled(box: Box, size: tuple[int, int], natural: tuple[int, int]) -> tuple[float, ...]:
    """Box coordinates in a picture shown at ``size`` whose image is ``natural``."""
    frame = box.frame or natural
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    x0, y0, x1, y1 = box.coords
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def _resized(img: Image.Image, size: int) -> tuple[Image.Image, float]:
    """A copy at most ``size`` px on its longest side and the scale applied."""
    scale = min(1.0, size / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return img, scale


def data_uri(img: Image.Image, fmt: str = "JPEG", quality: int = 82) -> str:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format=fmt, optimize=True)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _draw(img: Image.Image, boxes: list[Box], natural: tuple[int, int]) -> None:
    draw = ImageDraw.Draw(img)
    for box in boxes:
        draw.rectangle(list(_scaled(box, img.size, natural)), outline=BOX_COLOURS[box.kind], width=2)


def _mask_overlay(base: Image.Image, mask: np.ndarray, size: int) -> Image.Image:
    if mask.shape != (base.height, base.width):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(base.size, Image.NEAREST)) > 0
    pixels = np.asarray(base.convert("RGB"), dtype=np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    pixels = np.where(mask[..., None], 0.45 * pixels + 0.55 * red, 0.6 * pixels + 0.4 * 255.0)
    return _resized(Image.fromarray(pixels.astype(np.uint8)), size)[0]


class Pictures:
    """Decodes a row's images once; gives thumbnails and full-size panels."""

    def __init__(self, row: dict):
        self.row = row
        self.boxes = find_boxes(row)
        self.images: dict[str, Image.Image | str] = {}  # field -> image, or the load error

    def image(self, field: str) -> Image.Image | str | None:
        path = self.row.get(field)
        if not isinstance(path, str) or not path:
            return None
        if field not in self.images:
            try:
                self.images[field] = load_mask_image(path) if field.endswith("mask") else to_pil(load_image(path))
            except ImageLoadError as exc:
                self.images[field] = str(exc)
        return self.images[field]

    def mask(self, field: str) -> np.ndarray | None:
        img = self.image(field)
        return np.asarray(img) > 0 if isinstance(img, Image.Image) else None

    def thumbnails(self, size: int = THUMB_SIZE, fields=THUMB_FIELDS, labels: dict | None = None,
                   with_mask: bool = True) -> list[tuple[str, str | None, str | None]]:
        """(label, data URI or None, problem or None) per picture; boxes drawn
        in; ``mask`` as a red overlay on the source."""
        out = []
        for field in fields:
            img = self.image(field)
            label = (labels or {}).get(field, field)
            if img is None:
                continue
            if isinstance(img, str):
                out.append((label, None, img))
                continue
            thumb, _ = _resized(img, size)
            _draw(thumb, boxes_on(self.boxes, field), img.size)
            out.append((label, data_uri(thumb), None))
        mask = self.image("mask") if with_mask else None
        if isinstance(mask, str):
            out.append(("mask", None, mask))
        elif mask is not None:
            source = self.image("source")
            base = source if isinstance(source, Image.Image) else Image.new("RGB", mask.size, (128, 128, 128))
            out.append(("mask", data_uri(_mask_overlay(base, np.asarray(mask) > 0, size)), None))
        return out

    def panel(self, field: str, full_size: int = FULL_SIZE, label: str | None = None,
              boxes: list[Box] | None = None) -> dict | None:
        """A full-size view: image, its size, and overlays (boxes in the shown
        image's pixels; mask layers as transparent PNGs). ``boxes`` replaces
        the row's own boxes (a comparison shows every run's on the source)."""
        img = self.image(field)
        label = label or field
        if img is None:
            return None
        if isinstance(img, str):
            return {"label": label, "problem": img}
        shown, scale = _resized(img, full_size)
        panel = {"label": label, "uri": data_uri(shown if field.endswith("mask") else shown.convert("RGB"),
                                                 "PNG" if field.endswith("mask") else "JPEG", quality=88),
                 "size": shown.size, "natural": img.size, "scaled": scale < 1.0, "boxes": [], "masks": []}
        if field.endswith("mask"):
            return panel
        for box in boxes_on(self.boxes if boxes is None else boxes, field):
            panel["boxes"].append((box, _scaled(box, shown.size, img.size)))
        for name in MASK_LAYERS.get(field, ()):
            mask = self.mask(name)
            if mask is not None:
                panel["masks"].append((name, data_uri(_mask_layer(mask, shown.size), "PNG")))
        return panel


def run_boxes(pictures: list["Pictures | None"], labels: list[str]) -> list[Box]:
    """The boxes of several runs' rows for one record: the record's own boxes
    once, each run's detail boxes with the run's label in front."""
    present = [p for p in pictures if p is not None]
    out = [b for b in present[0].boxes if b.label in BOX_FIELDS]
    for label, pic in zip(labels, pictures):
        if pic is not None:
            out += [replace(b, label=f"{label} · {b.label}") for b in pic.boxes if b.label not in BOX_FIELDS]
    return out


def load_mask_image(path: str) -> Image.Image:
    """A mask as an 8-bit image (255 inside), decoded by ``load_mask``."""
    return Image.fromarray(load_mask(path).astype(np.uint8) * 255)


def _mask_layer(mask: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Semi-transparent red where the mask is set, transparent elsewhere."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if img.size != size:
        img = img.resize(size, Image.NEAREST)
    alpha = np.asarray(img)
    rgba = np.zeros(alpha.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = (alpha > 0) * 110
    return Image.fromarray(rgba, "RGBA")


def record_thumbnails(row: dict, size: int = THUMB_SIZE) -> list[tuple[str, str | None, str | None]]:
    """(label, data URI or None, problem or None) for each picture of a row."""
    return Pictures(row).thumbnails(size)
