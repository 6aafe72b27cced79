"""Edit regions of a record, in the pixel frame of the image they are applied to.

A record describes its edit region with any of these fields (ground truth, or
written by a grounding step -- the metrics cannot tell and need not):

- ``target_bbox`` / ``target_mask``: where the object is in the output
  image, in the edited image's pixels (BPM's convention; R-SIE's b_target);
- ``source_bbox`` / ``source_mask``: where the source object is in the source;
- ``bbox`` / ``mask``: the edit region, in source pixels.

Boxes are ``[x0, y0, x1, y1]`` pixels. When the image a region is applied to
has another size than the image the region was given for (its *frame*), the box
is scaled by the size ratio and the mask resized (nearest).
"""

from __future__ import annotations

import numpy as np

from editmetrics.data.images import bbox_of_mask, resize_mask, size_of
from editmetrics.contract.metric import MetricError

# field -> the image field whose pixels its coordinates refer to
FRAME = {
    "target_bbox": "edited", "target_mask": "edited",
    "source_bbox": "source", "source_mask": "source",
    "bbox": "source", "mask": "source",
}
BOX_FIELDS = ("target_bbox", "source_bbox", "bbox")
REGION_MASK_FIELDS = ("target_mask", "source_mask", "mask")
REGION_FIELDS = BOX_FIELDS + REGION_MASK_FIELDS


def _frame_size(rec, name: str, fallback: tuple[int, int]) -> tuple[int, int]:
    frame = FRAME[name]
    try:
        return size_of(rec.image(frame))
    except MetricError:
        return fallback  # frame image not loaded: the box is taken as given


def box_in(rec, name: str, image: np.ndarray) -> tuple[float, float, float, float]:
    """Box field ``name`` (or the bounding box of mask field ``name``) in the
    pixels of ``image``."""
    size = size_of(image)
    if name in REGION_MASK_FIELDS:
        mask = mask_in(rec, name, image)
        box = bbox_of_mask(mask)
        if box is None:
            raise MetricError(f"region {name!r} is empty")
        return tuple(float(v) for v in box)
    value = rec.get(name)
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise MetricError(f"field {name!r} must be [x0, y0, x1, y1], got {value!r}")
    fw, fh = _frame_size(rec, name, size)
    sx, sy = size[0] / fw, size[1] / fh
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise MetricError(f"field {name!r} must hold four numbers, got {value!r}") from None
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def mask_in(rec, name: str, image: np.ndarray) -> np.ndarray:
    """A region (mask field, or box field drawn as a filled rectangle) as an
    HxW bool array of ``image``'s size."""
    h, w = image.shape[:2]
    if name in BOX_FIELDS:
        x0, y0, x1, y1 = box_in(rec, name, image)
        out = np.zeros((h, w), bool)
        out[max(0, int(np.floor(y0))):max(0, int(np.ceil(y1))), max(0, int(np.floor(x0))):max(0, int(np.ceil(x1)))] = True
        return out
    mask = rec.image(name)
    if mask.shape != (h, w):
        mask = resize_mask(mask, (w, h))
    return mask


def first_present(rec, names) -> str | None:
    for name in names:
        if rec.has(name):
            return name
    return None


def union_mask(rec, names, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Union of every present region field among ``names``, in ``image``'s pixels."""
    used = [n for n in names if rec.has(n)]
    out = np.zeros(image.shape[:2], bool)
    for name in used:
        out |= mask_in(rec, name, image)
    return out, used
