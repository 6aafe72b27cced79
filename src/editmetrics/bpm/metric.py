"""The ``bpm`` metric: parse -> locate -> region judge + semantic judge.

Per record (docs/bpm.md has every choice):
1. the instruction is parsed (cached per text) unless the record supplies
   ``source_object`` / ``target_object`` / ``edit_type`` (and optionally
   ``size_change`` / ``position_change`` / ``reference_object``), which override
   the parse;
2. regions: ``source_mask`` / ``source_bbox`` (source image) and
   ``target_mask`` / ``target_bbox`` (edited image), else the record's ``mask``
   for both sides, else grounding (batched over the batch at flush time);
3. ``s_size`` / ``s_position`` (region judge), ``s_preserve`` (float L2
   outside the union of masks) and ``s_modify`` (CLIP directional similarity
   on the union box expanded x1.5, embeddings from the shared feature store).

Scores are written with fixed-range normalisation (``s_modify`` from [-1, 1]
to [0, 1], ``s_preserve`` as is), so one pair can be scored on its own. The
paper's pool min-max normalisation runs after the pass: ``editmetrics bpm pool``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..images import bbox_of_mask, validate_bbox
from ..metric import Metric, MetricError, Param, Score
from . import judges
from .grounding import BOX_THRESHOLD, TEXT_THRESHOLD, Detection, GroundingService, make_grounder
from .parsing import parse_service
from .schema import KEYS, ParseFailure, validate_parse

ALPHA = 0.7  # BPM = 0.7 * S_semantic + 0.3 * S_region (paper, Sec. 4.1 and Table 9)


def fixed_semantic(s_modify: float, s_preserve: float) -> float:
    """Fixed-range Norm: cosine [-1, 1] -> [0, 1]; S_preserve is already in [0, 1]."""
    return (s_modify + 1.0) / 2.0 + s_preserve


def combine(s_semantic: float, s_region: float | None, alpha: float) -> float:
    """BPM from its halves; global edits (no region) use S_semantic alone."""
    return s_semantic if s_region is None else alpha * s_semantic + (1.0 - alpha) * s_region


@dataclass
class _Side:
    """One located object: boxes in source pixels, union mask, provenance."""

    boxes: list[tuple] = field(default_factory=list)
    mask: np.ndarray | None = None
    origin: str = ""
    scores: list[float] = field(default_factory=list)
    pending: int | None = None  # grounding request key
    phrase: str | None = None


@dataclass
class _State:
    rec: Any
    edit: dict
    parse_info: dict
    source: np.ndarray
    edited: np.ndarray
    sides: dict[str, _Side] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    modify_error: str | None = None
    clip_keys: dict[str, str | None] = field(default_factory=dict)
    crop: tuple | None = None
    target_found: bool = True


class BPM(Metric):
    id = "bpm"
    description = ("BPM (Li et al., ICML 2025): region-aware size/position judge + CLIP directional modification "
                   "+ preservation outside the edit region (fixed-range; pool with `editmetrics bpm pool`)")
    higher_is_better = True
    range = (0.0, 2.0)
    fields = ("edited",)
    optional_fields = ("mask", "source_mask", "target_mask")
    reference = "source"
    params = {
        "parser": Param("", "instruction parser id (default: setting bpm_parser, else 'rules')"),
        "grounder": Param("", "grounder id (default: setting bpm_grounder, else 'gdino-sam')"),
        "box_threshold": Param(BOX_THRESHOLD, "GroundingDINO box threshold (paper: 0.3)"),
        "text_threshold": Param(TEXT_THRESHOLD, "GroundingDINO text threshold (paper: 0.25)"),
        "alpha": Param(ALPHA, "weight of S_semantic (paper: 0.7)"),
        "size_area": Param("mask", "areas compared by f_size: mask (paper) or first box (authors' code)",
                           ("mask", "box")),
        "backbone": Param("clip", "feature-store backbone for S_modify (setting name or spec)"),
    }

    def setup(self, ctx) -> None:
        self.ctx = ctx
        self.alpha = float(self.options["alpha"])
        self.parser_id = self.options["parser"] or str(ctx.settings.get("bpm_parser", "rules"))
        self.grounder_id = self.options["grounder"] or str(ctx.settings.get("bpm_grounder", "gdino-sam"))
        self.mask_dir = ctx.settings.get("bpm_mask_dir")
        self.states: dict[int, _State] = {}
        self.timings = {"parse": 0.0, "judges": 0.0, "locate": 0.0}
        self.parses = parse_service(ctx, self.parser_id) if self.parser_id else None

    # -- services ---------------------------------------------------------
    def grounding(self) -> GroundingService:
        opts = self.options
        name = f"bpm.grounder:{self.grounder_id}:{opts['box_threshold']}:{opts['text_threshold']}"
        return self.ctx.service(name, lambda c: GroundingService(lambda: make_grounder(
            self.grounder_id, c.settings, c.device, opts["box_threshold"], opts["text_threshold"], c.registry)))

    def store(self):
        from ..features import features_for

        return features_for(self.ctx)

    # -- parse ------------------------------------------------------------
    def _edit(self, rec) -> tuple[dict, dict]:
        supplied = {k: rec.get(k) for k in KEYS if rec.has(k)}
        parsed: dict | None = None
        info: dict[str, Any] = {}
        if rec.has("instruction") and not all(k in supplied for k in KEYS):
            start = time.perf_counter()
            result = self.parses.parse(str(rec.get("instruction")))
            self.timings["parse"] += time.perf_counter() - start
            info = result.to_json()
            if result.ok:
                parsed = dict(result.parse)
            elif not {"edit_type", "source_object", "target_object"} <= set(supplied):
                raise MetricError(f"instruction parse failed ({result.parser}): {result.error}")
        if supplied:
            info["supplied"] = sorted(supplied)
        if parsed is None:
            if "edit_type" not in supplied:
                raise MetricError("no 'instruction' to parse and no 'edit_type' in the record")
            parsed = {"source_object": None, "target_object": None, "size_change": "unchanged",
                      "position_change": "unchanged", "reference_object": None}
        parsed.update(supplied)
        try:
            return validate_parse(parsed), info
        except ParseFailure as exc:
            raise MetricError(f"edit description invalid: {exc}") from None

    # -- prepare ----------------------------------------------------------
    def prepare(self, rec) -> None:
        edit, info = self._edit(rec)
        source = rec.image(self.ref)
        edited, _ = rec.pair("edited", self.ref)
        state = _State(rec, edit, info, source, edited)
        start = time.perf_counter()
        if edit["edit_type"] != "global":
            self._locate(state)
        self.timings["locate"] += time.perf_counter() - start
        if any(s.pending is not None for s in state.sides.values()):
            self.grounding().after_flush(lambda: self._after_grounding(state))
        else:
            self._queue_clip(state)
        self.states[id(rec)] = state

    def _locate(self, state: _State) -> None:
        rec, edit = state.rec, state.edit
        height, width = state.source.shape[:2]
        wanted = {"source": edit["source_object"] if edit["edit_type"] != "add" else None,
                  "target": edit["target_object"] if edit["edit_type"] != "remove" else None}
        ref = edit["reference_object"]
        if ref and edit["position_change"] != "unchanged" and edit["edit_type"] != "remove":
            wanted["reference"] = ref
        for side, phrase in wanted.items():
            if phrase is None:
                continue
            state.sides[side] = self._supplied(rec, side, width, height) or self._ground(state, side, phrase)

    def _supplied(self, rec, side: str, width: int, height: int) -> _Side | None:
        if side == "reference":
            if not rec.has("reference_bbox"):
                return None
            box = _box(rec.get("reference_bbox"), width, height, "reference_bbox")
            return _Side([box], judges.box_mask(box, width, height), "record:reference_bbox")
        mask_key, box_key = f"{side}_mask", f"{side}_bbox"
        image_field = self.ref if side == "source" else "edited"
        mask = rec.mask(mask_key, like=self.ref) if rec.has(mask_key) else None
        box = None
        if rec.has(box_key):
            img = rec.image(image_field)
            box = _box(rec.get(box_key), img.shape[1], img.shape[0], box_key)
            if img.shape[:2] != (height, width):  # edited image of another size: to source pixels
                sx, sy = width / img.shape[1], height / img.shape[0]
                box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        origin = [f"record:{k}" for k, v in ((mask_key, mask), (box_key, box)) if v is not None]
        if mask is None and box is None and rec.has("mask"):
            mask, origin = rec.mask("mask", like=self.ref), ["record:mask"]
        if mask is None and box is None:
            return None
        if mask is not None and not mask.any():
            raise MetricError(f"the {side} mask is empty")
        if box is None:
            box = bbox_of_mask(mask)
        if mask is None:
            mask = judges.box_mask(box, width, height)
        return _Side([tuple(float(v) for v in box)], mask, "+".join(origin))

    def _ground(self, state: _State, side: str, phrase: str) -> _Side:
        image = state.edited if side == "target" else state.source
        key = self.grounding().request(image, phrase)
        return _Side(origin="grounding", pending=key, phrase=phrase)

    def _after_grounding(self, state: _State) -> None:
        """Runs after the batch's grounding: fill the sides, queue CLIP crops."""
        try:
            height, width = state.source.shape[:2]
            for side, info in state.sides.items():
                if info.pending is None:
                    continue
                dets: list[Detection] = self.grounding().get(info.pending)
                info.pending = None
                info.scores = [d.score for d in dets]
                info.boxes = [d.box for d in dets]
                if dets:
                    masks = [d.mask if d.mask is not None else judges.box_mask(d.box, width, height) for d in dets]
                    info.mask = np.logical_or.reduce(masks)
                elif side == "target":
                    state.target_found = False
                    state.notes.append(f"target object {info.phrase!r} not detected in the edited image: "
                                       "s_size = s_position = 0, the source region stands in for it")
                else:
                    where = "source image"
                    raise MetricError(
                        f"{side} object {info.phrase!r} not detected in the {where} (box threshold "
                        f"{self.options['box_threshold']}); supply {side}_bbox or {side}_mask"
                        if side == "source" else
                        f"reference object {info.phrase!r} not detected in the source image; supply reference_bbox"
                    )
        except MetricError as exc:
            state.error = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a callback failure is this record's, not the batch's
            state.error = f"{type(exc).__name__}: {exc}"
            return
        self._queue_clip(state)

    # -- S_modify: queue the crops in the feature store ---------------------
    def _regions(self, state: _State) -> tuple[_Side | None, _Side | None]:
        src, tgt = state.sides.get("source"), state.sides.get("target")
        if tgt is not None and not state.target_found:
            tgt = None
        if src is None:  # add: the source region is the target's (paper, Sec. 3.2)
            src = tgt
        if tgt is None:  # remove (or target not found): the target region is the source's
            tgt = src
        return src, tgt

    def _queue_clip(self, state: _State) -> None:
        edit = state.edit
        height, width = state.source.shape[:2]
        if edit["edit_type"] == "global":
            state.crop = None
        else:
            src, tgt = self._regions(state)
            if src is None:
                state.error = "no edit region could be located"
                return
            union = judges.union_box(src.boxes + tgt.boxes)
            state.crop = judges.expand(union, judges.MODIFY_EXPAND, width, height)
        try:
            store = self.store()
            backbone = self.options["backbone"]
            box = state.crop
            o1 = None if edit["edit_type"] in ("add", "global") else edit["source_object"]
            o2 = None if edit["edit_type"] == "remove" else edit["target_object"]
            state.clip_keys = {
                "image_origin": store.request_image(backbone, state.source, box=box),
                "image_edit": store.request_image(backbone, state.edited, box=box),
                "text_origin": store.request_text(backbone, o1) if o1 else None,
                "text_edit": store.request_text(backbone, o2) if o2 else None,
            }
        except MetricError as exc:
            state.modify_error = f"S_modify not computed: {exc}"

    # -- compute ----------------------------------------------------------
    def compute(self, rec):
        state = self.states.pop(id(rec), None)
        if state is None:
            raise MetricError("internal: record was not prepared")
        if any(s.pending is not None for s in state.sides.values()):
            self.grounding().flush()  # grounding was not flushed by the runner (direct use)
        if state.error:
            raise MetricError(state.error)
        start = time.perf_counter()
        edit = state.edit
        height, width = state.source.shape[:2]
        details: dict[str, Any] = {"parse": state.parse_info, "edit": edit, "frame": [width, height],
                                   "normalisation": "fixed", "alpha": self.alpha}
        comps: dict[str, float | None] = {}
        if edit["edit_type"] == "global":
            region_mask = np.zeros((height, width), dtype=bool)
            s_region = None
            comps["s_size"] = comps["s_position"] = comps["s_region"] = None
            details["regions"] = "global edit: no region excluded, whole images compared"
        else:
            src, tgt = self._regions(state)
            region_mask = src.mask | tgt.mask
            s_size, s_position = self._region_judge(state, src, tgt, details)
            s_region = s_size + s_position
            comps.update(s_size=s_size, s_position=s_position, s_region=s_region)
            details["boxes"] = {side: [[round(float(v), 2) for v in b] for b in s.boxes]
                                for side, s in state.sides.items()}
            details["regions"] = {side: s.origin for side, s in state.sides.items()}
            details["detection_scores"] = {side: [round(x, 4) for x in s.scores]
                                           for side, s in state.sides.items() if s.origin == "grounding"}
            if state.crop is not None:
                details["boxes"]["modify_crop"] = [round(float(v), 2) for v in state.crop]
            if self.mask_dir:
                details["mask_files"] = self._save_masks(rec, src.mask, tgt.mask)
        try:
            s_preserve = judges.s_preserve(state.source, state.edited, region_mask)
        except ValueError as exc:
            raise MetricError(str(exc)) from None
        comps["s_preserve"] = s_preserve
        self.timings["judges"] += time.perf_counter() - start
        s_modify, reason = None, state.modify_error
        if reason is None:
            try:
                store, keys = self.store(), state.clip_keys
                vec = {k: (store.get(v) if v else None) for k, v in keys.items()}
                s_modify = judges.directional(vec["image_origin"], vec["image_edit"], vec["text_origin"],
                                              vec["text_edit"])
            except MetricError as exc:
                reason = f"S_modify not computed: {exc}"
        comps["s_modify"] = s_modify
        if state.notes:
            details["notes"] = state.notes
        if s_modify is None:
            comps["s_semantic"] = None
            return Score(None, comps, details, reason=reason)
        comps["s_semantic"] = fixed_semantic(s_modify, s_preserve)
        return Score(combine(comps["s_semantic"], s_region, self.alpha), comps, details)

    def _region_judge(self, state: _State, src: _Side, tgt: _Side, details: dict) -> tuple[float, float]:
        edit = state.edit
        height, width = state.source.shape[:2]
        if not state.target_found:
            return 0.0, 0.0
        if self.options["size_area"] == "box":
            a0, a1 = judges.area(src.boxes[0]), judges.area(tgt.boxes[0])
        else:
            a0, a1 = float(src.mask.sum()), float(tgt.mask.sum())
        details["areas"] = {"source": a0, "target": a1, "from": self.options["size_area"]}
        try:
            s_size = judges.f_size(a0, a1, edit["size_change"], edit["edit_type"])
        except ValueError as exc:
            raise MetricError(str(exc)) from None
        if "reference" in state.sides:
            anchors = state.sides["reference"].boxes
        elif edit["edit_type"] == "add" and edit["position_change"] != "unchanged":
            # "add a bird on the left": no reference object, so the image is the anchor
            anchors = [(0.0, 0.0, float(width), float(height))]
            state.notes.append("position judged against the whole image (add without a reference object)")
        else:
            anchors = src.boxes
        s_position = judges.f_position(anchors, tgt.boxes, edit["position_change"], edit["edit_type"],
                                       width, height)
        return s_size, s_position

    def _save_masks(self, rec, source_mask: np.ndarray, target_mask: np.ndarray) -> dict[str, str]:
        from PIL import Image

        os.makedirs(self.mask_dir, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(rec.id))
        out = {}
        for side, mask in (("source", source_mask), ("target", target_mask)):
            path = os.path.abspath(os.path.join(self.mask_dir, f"{safe}.{side}.png"))
            Image.fromarray(mask.astype(np.uint8) * 255).save(path)
            out[side] = path
        return out


def _box(value, width: int, height: int, name: str) -> tuple:
    try:
        return validate_bbox(value, width, height)
    except ValueError as exc:
        raise MetricError(f"{name}: {exc}") from None
