"""Box helpers used by the ``bpm`` metric (``box_mask``), and the region and
preservation judges of our earlier reading of the paper, kept as a library:
the metric itself computes the released code's arithmetic (``released.py``,
docs/bpm.md). BPM's judges as pure functions (numpy only, no models): region judge
(``f_size``, ``f_position``) and the preservation half of the semantic judge
(``s_preserve``), plus the directional similarity of ``S_modify`` on given
embeddings. Choices where the paper is silent are documented in docs/bpm.md.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the source image (the edited image
is aligned to it first). Position thresholds are in the authors' 500x500 frame:
boxes are rescaled to it before the position judge, so a 40-pixel threshold
means 8% of the image side whatever the resolution.
"""

from __future__ import annotations

import numpy as np

FRAME = 500.0  # authors' working frame for boxes (position thresholds)
LARGER_RATIO = 1.2
SMALLER_RATIO = 0.8
SALIENCY_IOU = 0.4  # left/right/up/down: IoU must stay below this
UNCHANGED_DIST = 40.0  # unchanged: centre distance below this (500-frame pixels)
NEAR_GAP = 40.0  # near: edge-to-edge gap below this (500-frame pixels); our choice
MODIFY_EXPAND = 1.5  # S_modify crops the union box expanded x1.5 (authors' code)

Box = tuple[float, float, float, float]


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def to_frame(box: Box, width: int, height: int) -> Box:
    sx, sy = FRAME / width, FRAME / height
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def gap(a: Box, b: Box) -> float:
    """Edge-to-edge distance between two boxes (0 when they overlap or touch)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def f_size(area_origin: float, area_edit: float, size_change: str, edit_type: str) -> float:
    """1 when the area ratio edit/origin matches ``size_change``, else 0.

    larger: ratio > 1.2; smaller: ratio < 0.8; unchanged: 0.8 <= ratio <= 1.2.
    An ``add`` edit gets full score (paper, appendix A.4: no source object).
    """
    if edit_type == "add":
        return 1.0
    if area_origin <= 0:
        raise ValueError("the source region is empty: cannot judge its size change")
    ratio = area_edit / area_origin
    if size_change == "larger":
        return float(ratio > LARGER_RATIO)
    if size_change == "smaller":
        return float(ratio < SMALLER_RATIO)
    return float(SMALLER_RATIO <= ratio <= LARGER_RATIO)


def position_ok(anchor: Box, moved: Box, change: str) -> bool:
    """One (anchor, edited-object) box pair in the 500 frame against ``change``.

    left/right/up/down: the centre moves that way, along the dominant axis of
    the displacement, and the boxes overlap little (IoU < 0.4, the paper's
    saliency check); inside: the edited box lies strictly inside the anchor;
    near: the boxes overlap or their gap is < 40; unchanged: centres < 40 apart.
    """
    (ax, ay), (mx, my) = centre(anchor), centre(moved)
    dx, dy = mx - ax, my - ay  # image y grows downwards
    if change == "unchanged":
        return float(np.hypot(dx, dy)) < UNCHANGED_DIST
    if change == "inside":
        return anchor[0] < moved[0] and anchor[1] < moved[1] and moved[2] < anchor[2] and moved[3] < anchor[3]
    if change == "near":
        return gap(anchor, moved) < NEAR_GAP
    salient = iou(anchor, moved) < SALIENCY_IOU
    if change == "left":
        return dx < 0 and abs(dx) > abs(dy) and salient
    if change == "right":
        return dx > 0 and abs(dx) > abs(dy) and salient
    if change == "up":
        return dy < 0 and abs(dy) > abs(dx) and salient
    if change == "down":
        return dy > 0 and abs(dy) > abs(dx) and salient
    raise ValueError(f"unknown position change {change!r}")


def f_position(anchors: list[Box], moved: list[Box], change: str, edit_type: str, width: int, height: int) -> float:
    """1 when every (anchor, moved) pair passes, 0.5 when some do, 0 when none.

    A ``remove`` edit gets full score (paper, appendix A.4: no target object).
    """
    if edit_type == "remove":
        return 1.0
    if not anchors or not moved:
        return 0.0
    results = [position_ok(to_frame(a, width, height), to_frame(m, width, height), change)
               for a in anchors for m in moved]
    if all(results):
        return 1.0
    return 0.5 if any(results) else 0.0


def s_preserve(source: np.ndarray, edited: np.ndarray, edit_region: np.ndarray) -> float:
    """1 - mean over pixels outside ``edit_region`` of the per-pixel RMS of
    the RGB difference, images in [0, 1] (the authors' /255 on 8-bit values).

    Computed in float64: the authors subtract uint8 arrays, which wraps around
    modulo 256 (a pixel darker by 1 counts as 255 brighter); we do not.
    """
    keep = ~np.asarray(edit_region, dtype=bool)
    if not keep.any():
        raise ValueError("the edit region covers the whole image: nothing left to preserve")
    diff = np.asarray(edited, dtype=np.float64) - np.asarray(source, dtype=np.float64)
    rms = np.sqrt(np.mean(diff * diff, axis=2))
    return float(1.0 - rms[keep].mean())


def union_box(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def expand(box: Box, factor: float, width: int, height: int) -> Box:
    """Scale a box about its centre and clip it to the image."""
    cx, cy = centre(box)
    hw, hh = (box[2] - box[0]) * factor / 2.0, (box[3] - box[1]) * factor / 2.0
    return max(0.0, cx - hw), max(0.0, cy - hh), min(float(width), cx + hw), min(float(height), cy + hh)


def box_mask(box: Box, width: int, height: int) -> np.ndarray:
    """A filled box as a mask (pixels whose centre lies inside the box)."""
    mask = np.zeros((height, width), dtype=bool)
    x0, y0 = int(np.floor(box[0] + 0.5)), int(np.floor(box[1] + 0.5))
    x1, y1 = int(np.floor(box[2] + 0.5)), int(np.floor(box[3] + 0.5))
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return mask


def directional(img_origin: np.ndarray, img_edit: np.ndarray, txt_origin: np.ndarray | None,
                txt_edit: np.ndarray | None) -> float:
    """cos(CLIP_I(edit) - CLIP_I(origin), CLIP_T(o2) - CLIP_T(o1)); a missing
    text side (add: no o1, remove: no o2) drops out of the text direction."""
    di = np.asarray(img_edit, np.float64) - np.asarray(img_origin, np.float64)
    dt = np.zeros_like(di)
    if txt_edit is not None:
        dt = dt + np.asarray(txt_edit, np.float64)
    if txt_origin is not None:
        dt = dt - np.asarray(txt_origin, np.float64)
    ni, nt = np.linalg.norm(di), np.linalg.norm(dt)
    if ni == 0 or nt == 0:
        # identical crops (nothing changed) or identical texts: no direction
        return 0.0
    return float(di @ dt / (ni * nt))
