"""BPM's arithmetic as the authors' released code computes it (docs/bpm.md,
"Released code, default and corrected"), as pure functions on arrays.

Written from our reading of github.com/joyli-x/BPM (commit de6e4c3); nothing
is copied. Everything works in the released code's 500x500 frame: images are
resized to 500x500 with OpenCV's bilinear resize, boxes are GroundingDINO's
normalised boxes times 500.

The released code takes the LLM's free-text fields (``original_part``,
``edited_part``, ``edit_type``, ``being_added``, ``added_object``, ``size``,
``position``); ``fields`` maps the project's parse onto them. The substring
tests of the release (``'all' in original_part``, ``relation == 'bigger'``
against the prompt's ``'bigger.'``, a truthy ``'none.'``) are not reproduced:
fields are compared as whole values (known bugs, docs/bpm.md).
"""

from __future__ import annotations

import numpy as np

FRAME = 500
EXPAND = 1.5  # the crop of S_modify: the box scaled x1.5 about its centre
BIGGER, SMALLER = 1.2, 0.8  # size thresholds on the area ratio edited/source
IOU_MAX = 0.4  # left/right/above/below: IoU must stay below this
L1_UNCHANGED = 40.0  # "unchanged": |dx| + |dy| of the centres below this (500 frame)

SIZE_WORD = {"larger": "bigger", "smaller": "smaller", "unchanged": "none"}
POSITION_WORD = {"left": "left", "right": "right", "up": "above", "down": "below", "inside": "inside",
                 "near": "none", "unchanged": "unchanged"}
EDIT_TYPE_WORD = {"add": "add", "remove": "remove", "replace": "replace", "attribute": "change color",
                  "size": "change size", "position": "other", "global": "other"}

Box = tuple  # (x0, y0, x1, y1)


def fields(edit: dict) -> dict:
    """The released code's parse fields for one of our edit descriptions."""
    t = edit["edit_type"]
    return {
        "original_part": "all" if t == "global" else ("none" if t == "add" else edit["source_object"]),
        "edited_part": "all" if t == "global" else ("none" if t == "remove" else edit["target_object"]),
        "edit_type": EDIT_TYPE_WORD[t],
        "being_added": (edit["reference_object"] or "") if t == "add" else "",
        "added_object": edit["target_object"] if t == "add" else "",
        "size": SIZE_WORD[edit["size_change"]],
        "position": POSITION_WORD[edit["position_change"]],
    }


def frame(image_u8: np.ndarray) -> np.ndarray:
    """The 500x500 working image (OpenCV bilinear, as ``cv2.resize`` defaults)."""
    import cv2

    return cv2.resize(np.ascontiguousarray(image_u8), (FRAME, FRAME))


def to_frame(box: Box, width: int, height: int) -> Box:
    sx, sy = FRAME / width, FRAME / height
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


# -- region judge ---------------------------------------------------------------

def _area(b: Box) -> float:
    return (b[2] - b[0]) * (b[3] - b[1])


def size_ok(edited: Box, source: Box, relation: str) -> float:
    """Area ratio edited/source against 'bigger' / 'smaller' / 'unchanged'; 1 otherwise."""
    ratio = _area(edited) / _area(source)
    if relation == "bigger":
        return float(ratio > BIGGER)
    if relation == "smaller":
        return float(ratio < SMALLER)
    if relation == "unchanged":
        return float(SMALLER <= ratio <= BIGGER)
    return 1.0


def s_size(edited: list[Box], source: list[Box], f: dict, every_edit: bool = False) -> float:
    """Released: judged only for size edits, on the first box of each side; 1
    when a side has no box. ``every_edit`` (opt-in): judged for every edit."""
    if not edited or not source:
        return 1.0
    if f["edit_type"] != "change size" and not every_edit:
        return 1.0
    # opt-in: an edit that names no size change should keep the size
    relation = "unchanged" if every_edit and f["size"] == "none" else f["size"]
    return size_ok(edited[0], source[0], relation)


def position_ok(edited: Box, source: Box, relation: str) -> bool:
    c1 = ((edited[0] + edited[2]) / 2, (edited[1] + edited[3]) / 2)
    c2 = ((source[0] + source[2]) / 2, (source[1] + source[3]) / 2)
    dx, dy = c1[0] - c2[0], c1[1] - c2[1]
    inter = max(0.0, min(edited[2], source[2]) - max(edited[0], source[0])) * \
        max(0.0, min(edited[3], source[3]) - max(edited[1], source[1]))
    iou = inter / (_area(edited) + _area(source) - inter)
    if relation == "right":
        return dx > 0 and abs(dx) > abs(dy) and iou < IOU_MAX
    if relation == "left":
        return dx < 0 and abs(dx) > abs(dy) and iou < IOU_MAX
    if relation == "above":
        return dy < 0 and abs(dy) > abs(dx) and iou < IOU_MAX
    if relation == "below":
        return dy > 0 and abs(dy) > abs(dx) and iou < IOU_MAX
    if relation == "inside":
        return edited[0] > source[0] and edited[1] > source[1] and edited[2] < source[2] and edited[3] < source[3]
    if relation == "unchanged":
        return abs(dx) + abs(dy) < L1_UNCHANGED  # L1 distance of the centres
    return True


def s_position(edited: list[Box], source: list[Box], f: dict, moves: bool = False) -> float:
    """Released: judged only for adds with a reference object (``being_added``),
    every edited box against the first reference box: all pass 1, some 0.5,
    none 0; 1 when a side has no box. ``moves`` (opt-in): also for move edits."""
    if not edited or not source:
        return 1.0
    judged = (f["original_part"] == "none" and bool(f["being_added"])) or (moves and f["edit_type"] == "other"
                                                                           and f["original_part"] != "all")
    if not judged:
        return 1.0
    results = [position_ok(b, source[0], f["position"]) for b in edited]
    if all(results):
        return 1.0
    return 0.5 if any(results) else 0.0


# -- semantic judge ---------------------------------------------------------------

def crop_box(boxes: list[Box]) -> tuple[float, float, float, float]:
    """The enclosing box of ``boxes`` scaled x1.5 about its centre, clipped to the frame."""
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * EXPAND / 2, (y1 - y0) * EXPAND / 2
    return max(0.0, cx - hw), max(0.0, cy - hh), min(float(FRAME), cx + hw), min(float(FRAME), cy + hh)


def crop(image: np.ndarray, box) -> np.ndarray:
    """Pixels of ``box`` with every edge truncated toward zero (``int()``)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return image[y0:y1, x0:x1]


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), eps))


def directional(img_source, img_edited, txt_source, txt_edited, f: dict) -> float:
    """cos(I(edited crop) - I(source crop), text direction) on the RAW (not
    L2-normalised) projected CLIP features. Text direction: T(edited_part) -
    T(original_part); add: T(edited_part); remove: -T(original_part)."""
    if f["original_part"] == "none":
        dt = np.asarray(txt_edited, np.float64)
    elif f["edited_part"] == "none":
        dt = -np.asarray(txt_source, np.float64)
    else:
        dt = np.asarray(txt_edited, np.float64) - np.asarray(txt_source, np.float64)
    return cosine(np.asarray(img_edited, np.float64) - np.asarray(img_source, np.float64), dt)


def l2(source500: np.ndarray, edited500: np.ndarray, mask: np.ndarray | None, uint8: bool = True) -> float:
    """Mean over pixels outside ``mask`` of the per-pixel RMS over channels of
    the difference, divided by 255; 0 when the mask covers every pixel.

    ``uint8=True`` (released): the difference and its square are taken in
    uint8, so each squared channel difference is (d * d) mod 256: exact for
    |d| < 16, aliased above, and the result never exceeds sqrt(255)/255.
    """
    if uint8:
        diff = source500.astype(np.uint8) - edited500.astype(np.uint8)
        sq = diff ** 2  # stays uint8: mod 256
    else:
        diff = source500.astype(np.float64) - edited500.astype(np.float64)
        sq = diff * diff
    per_pixel = np.sqrt(np.mean(sq, axis=2))
    keep = per_pixel if mask is None else per_pixel[~np.asarray(mask, bool)]
    if keep.size == 0:
        return 0.0
    return float(np.mean(keep) / 255)
