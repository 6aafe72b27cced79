"""The ``bpm`` metric: parse -> locate -> region judge + semantic judge.

Per record (docs/bpm.md has every choice; ``released.py`` the arithmetic):
1. the instruction is parsed (cached per text) unless the record supplies
   ``source_object`` / ``target_object`` / ``edit_type`` (and optionally
   ``size_change`` / ``position_change`` / ``reference_object``), which override
   the parse; the parse is mapped onto the released code's fields;
2. boxes: ``source_bbox`` / ``source_mask`` (``reference_bbox`` for adds),
   ``target_bbox`` / ``target_mask``, else the record's ``mask``, else grounding
   (batched over the batch at flush time), mapped to the 500x500 frame;
3. the released code's branches: global edit, source object not found, target
   object not found, normal; ``s_size`` / ``s_position`` (region judge),
   ``s_preserve`` (1 - L2 outside the masks of the 500x500 images) and
   ``s_modify`` (directional similarity of raw CLIP features of the crop).
   ``variant=corrected``: float L2 and the union of source and edited masks.

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

from editmetrics.data.images import bbox_of_mask, resize_mask, to_uint8, validate_bbox
from editmetrics.contract.metric import Metric, MetricError, Param, Score
from editmetrics.bpm import judges, released
from editmetrics.bpm.grounding import BOX_THRESHOLD, TEXT_THRESHOLD, Detection, GroundingService, make_grounder
from editmetrics.bpm.parsing import parse_service
from editmetrics.bpm.schema import KEYS, ParseFailure, validate_parse

ALPHA = 0.7  # BPM = 0.7 * S_semantic + 0.3 * S_region (paper, Sec. 4.1 and Table 9)


def fixed_semantic(s_modify: float, s_preserve: float) -> float:
    """Fixed-range Norm: cosine [-1, 1] -> [0, 1]; S_preserve is already in [0, 1]."""
    return (s_modify + 1.0) / 2.0 + s_preserve


def combine(s_semantic: float, s_region: float | None, alpha: float) -> float:
    """BPM from its halves (the released code gives global edits s_region = 2;
    a row without region scores uses S_semantic alone)."""
    return s_semantic if s_region is None else alpha * s_semantic + (1.0 - alpha) * s_region


@dataclass
class _Side:
    """One located object: boxes in its image's pixels, mask (500 frame) if supplied."""

    boxes: list[tuple] = field(default_factory=list)
    mask: np.ndarray | None = None  # 500x500 bool, only for record-supplied regions
    origin: str = ""
    scores: list[float] = field(default_factory=list)
    pending: int | None = None  # grounding request key
    phrase: str | None = None
    size: tuple[int, int] = (0, 0)  # (width, height) of the image the boxes are in

    def frame_boxes(self) -> list[tuple]:
        return [released.to_frame(b, *self.size) for b in self.boxes]


@dataclass
class _State:
    rec: Any
    edit: dict
    fields: dict
    parse_info: dict
    source: np.ndarray
    edited: np.ndarray
    sides: dict[str, _Side] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    modify_error: str | None = None
    branch: str = "normal"
    clip_keys: dict[str, str | None] = field(default_factory=dict)
    crop: tuple | None = None
    masks: list = field(default_factory=list)  # 500x500 bool arrays or segmentation keys (int)
    frames: tuple | None = None  # (source500, edited500) uint8
    s_size: float = 1.0
    s_position: float = 1.0


class BPM(Metric):
    id = "bpm"
    description = ("BPM (Li et al., ICML 2025) with the authors' released arithmetic: region judge (size, position) "
                   "+ CLIP directional modification + preservation outside the edit masks (fixed-range; pool with "
                   "`editmetrics bpm pool`)")
    higher_is_better = True
    range = (0.0, 2.0)
    fields = ("edited",)
    optional_fields = ("mask", "source_mask", "target_mask")
    reference = "source"
    backbones = ("clip",)  # S_modify's default backbone (param `backbone`); grounder weights: weight_rows
    params = {
        "parser": Param("", "instruction parser id (default: setting bpm_parser, else 'rules')"),
        "grounder": Param("", "grounder id (default: setting bpm_grounder, else 'gdino-sam')"),
        "box_threshold": Param(BOX_THRESHOLD, "GroundingDINO box threshold (paper: 0.3)"),
        "text_threshold": Param(TEXT_THRESHOLD, "GroundingDINO text threshold (paper: 0.25)"),
        "alpha": Param(ALPHA, "weight of S_semantic (paper: 0.7; the authors' global set used 1.0)"),
        "variant": Param("released", "released: the authors' released arithmetic; corrected: float L2 and the "
                         "union of source and edited masks", ("released", "corrected")),
        "position_moves": Param(False, "also judge position for move edits (the authors' planned extension)"),
        "size_all": Param(False, "judge size for every edit, not only size edits (planned extension)"),
        "backbone": Param("clip", "feature-store backbone for S_modify (setting name or spec)"),
    }

    def setup(self, ctx) -> None:
        self.ctx = ctx
        self.alpha = float(self.options["alpha"])
        self.variant = self.options["variant"]
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
        from editmetrics.engine.features import features_for

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
        state = _State(rec, edit, released.fields(edit), info, source, edited)
        self.states[id(rec)] = state
        if edit["edit_type"] == "global":
            if not rec.has("instruction"):
                raise MetricError("a global edit is scored with CLIP-T against the instruction: the record has none")
            state.branch = "global"
            self._queue_clip(state)
            return
        start = time.perf_counter()
        self._locate(state)
        self.timings["locate"] += time.perf_counter() - start
        if any(s.pending is not None for s in state.sides.values()):
            self.grounding().after_flush(lambda: self._after_grounding(state))
        else:
            self._plan(state)

    def _locate(self, state: _State) -> None:
        rec, edit, f = state.rec, state.edit, state.fields
        # the released code grounds the reference object (being_added) in the
        # source image for adds, the source object otherwise
        wanted = {"source": (edit["reference_object"] if edit["edit_type"] == "add" else edit["source_object"]),
                  "target": f["edited_part"] if f["edited_part"] != "none" else None}
        for side, phrase in wanted.items():
            if not phrase:
                continue
            key = "reference" if side == "source" and edit["edit_type"] == "add" else side
            image = state.edited if side == "target" else state.source
            state.sides[side] = (self._supplied(rec, key, image) or self._ground(state, side, phrase, image))

    def _supplied(self, rec, side: str, image: np.ndarray) -> _Side | None:
        height, width = image.shape[:2]
        if side == "reference":
            if not rec.has("reference_bbox"):
                return None
            box = _box(rec.get("reference_bbox"), width, height, "reference_bbox")
            return _Side([box], None, "record:reference_bbox", size=(width, height))
        mask_key, box_key = f"{side}_mask", f"{side}_bbox"
        like = self.ref if side == "source" else "edited"
        mask = rec.mask(mask_key, like=like) if rec.has(mask_key) else None
        box = None
        if rec.has(box_key):
            img = rec.image(like)
            box = _box(rec.get(box_key), img.shape[1], img.shape[0], box_key)
            if img.shape[:2] != (height, width):  # edited image of another size: to the aligned pixels
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
        if mask is None:  # a box alone stands for its filled rectangle (nothing to segment it with)
            mask = judges.box_mask(released.to_frame(box, width, height), released.FRAME, released.FRAME)
        else:
            mask = resize_mask(mask, (released.FRAME, released.FRAME))
        return _Side([tuple(float(v) for v in box)], mask, "+".join(origin), size=(width, height))

    def _ground(self, state: _State, side: str, phrase: str, image: np.ndarray) -> _Side:
        key = self.grounding().request(image, phrase)
        return _Side(origin="grounding", pending=key, phrase=phrase, size=(image.shape[1], image.shape[0]))

    def _after_grounding(self, state: _State) -> None:
        """Runs after the batch's grounding: fill the sides, then plan the record."""
        try:
            for info in state.sides.values():
                if info.pending is None:
                    continue
                dets: list[Detection] = self.grounding().get(info.pending)
                info.pending = None
                info.scores = [d.score for d in dets]
                info.boxes = [d.box for d in dets]
            self._plan(state)
        except MetricError as exc:
            state.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a callback failure is this record's, not the batch's
            state.error = f"{type(exc).__name__}: {exc}"

    # -- the released code's branches --------------------------------------
    def _plan(self, state: _State) -> None:
        edit, f = state.edit, state.fields
        src = state.sides.get("source", _Side())
        tgt = state.sides.get("target", _Side())
        src_boxes, tgt_boxes = src.frame_boxes(), tgt.frame_boxes()
        state.s_size = released.s_size(tgt_boxes, src_boxes, f, every_edit=self.options["size_all"])
        state.s_position = released.s_position(tgt_boxes, src_boxes, f, moves=self.options["position_moves"])
        is_add = edit["edit_type"] == "add"
        if not is_add and not src_boxes:
            state.branch = "source-not-found"
            state.notes.append(f"source object {edit['source_object']!r} not found: S_modify = CLIP-T(edited image, "
                               f"{f['edited_part']!r}), whole images compared (released code)")
        elif "target" in state.sides and not tgt_boxes:
            state.branch = "target-not-found"
            state.notes.append(f"target object {edit['target_object']!r} not found in the edited image: "
                               "S_modify = 0, whole images compared (released code)")
        else:
            state.frames = (released.frame(to_uint8(state.source)), released.frame(to_uint8(state.edited)))
            state.crop = released.crop_box(tgt_boxes if is_add else src_boxes)
            self._queue_masks(state, src, tgt, src_boxes, tgt_boxes)
        self._queue_clip(state)

    def _queue_masks(self, state, src: _Side, tgt: _Side, src_boxes, tgt_boxes) -> None:
        src500, edi500 = state.frames
        f = state.fields

        def segment(image, side: _Side, boxes):
            if side.mask is not None:
                return side.mask
            return self.grounding().request_segment(image.astype(np.float32) / 255.0, boxes)

        if state.edit["edit_type"] == "add":
            state.masks.append(segment(edi500, tgt, tgt_boxes))
            return
        state.masks.append(segment(src500, src, src_boxes))
        if f["edited_part"] == "none":
            return
        if self.variant == "corrected":  # the edited object's own region in the edited image
            state.masks.append(segment(edi500, tgt, tgt_boxes))
        elif src.mask is None:  # released: the edited image segmented with the SOURCE boxes
            state.masks.append(segment(edi500, src, src_boxes))

    def _queue_clip(self, state: _State) -> None:
        f = state.fields
        try:
            store = self.store()
            backbone = self.options["backbone"]
            if state.branch == "global":
                state.clip_keys = {"image": store.request_image(backbone, state.edited),
                                   "text": store.request_text(backbone, str(state.rec.get("instruction")))}
            elif state.branch == "source-not-found":
                state.clip_keys = {"image": store.request_image(backbone, state.edited),
                                   "text": store.request_text(backbone, f["edited_part"])}
            elif state.branch == "normal":
                src500, edi500 = state.frames
                crops = [released.crop(im, state.crop).astype(np.float32) / 255.0 for im in (src500, edi500)]
                if min(crops[0].shape[:2]) == 0:
                    raise MetricError(f"the S_modify crop {state.crop} is empty")
                state.clip_keys = {
                    "image_origin": store.request_image(backbone, crops[0], raw=True),
                    "image_edit": store.request_image(backbone, crops[1], raw=True),
                    "text_origin": (store.request_text(backbone, f["original_part"], raw=True)
                                    if f["original_part"] != "none" else None),
                    "text_edit": (store.request_text(backbone, f["edited_part"], raw=True)
                                  if f["edited_part"] != "none" else None),
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
        f = state.fields
        details: dict[str, Any] = {"parse": state.parse_info, "edit": state.edit, "released_fields": f,
                                   "variant": self.variant, "branch": state.branch, "normalisation": "fixed",
                                   "alpha": self.alpha}
        if state.branch == "global":
            s_preserve = 1.0  # released: preservation hard-coded perfect for global edits
        else:
            details["boxes_500"] = {side: [[round(float(v), 2) for v in b] for b in s.frame_boxes()]
                                    for side, s in state.sides.items()}
            details["frame"] = [500, 500]  # the pixel frame of boxes_500 (the report scales from it)
            details["regions"] = {side: s.origin for side, s in state.sides.items()}
            details["detection_scores"] = {side: [round(x, 4) for x in s.scores]
                                           for side, s in state.sides.items() if s.origin == "grounding"}
            if state.crop is not None:
                details["modify_crop_500"] = [round(float(v), 2) for v in state.crop]
            if state.frames is None:  # the not-found branches compare the whole images
                frames = (released.frame(to_uint8(state.source)), released.frame(to_uint8(state.edited)))
                mask = None
            else:
                frames = state.frames
                mask = np.zeros((released.FRAME, released.FRAME), bool)
                for m in state.masks:
                    for part in (self.grounding().get_segment(m) if isinstance(m, int) else [m]):
                        mask |= np.asarray(part, bool)
                if self.mask_dir:
                    details["mask_file"] = self._save_mask(rec, mask)
            s_preserve = 1.0 - released.l2(frames[0], frames[1], mask, uint8=self.variant == "released")
        comps: dict[str, float | None] = {"s_size": state.s_size, "s_position": state.s_position,
                                          "s_region": state.s_size + state.s_position, "s_preserve": s_preserve}
        self.timings["judges"] += time.perf_counter() - start
        s_modify, reason = None, state.modify_error
        if state.branch == "target-not-found":
            s_modify = 0.0
        elif reason is None:
            try:
                store, keys = self.store(), state.clip_keys
                vec = {k: (store.get(v) if v else None) for k, v in keys.items()}
                if state.branch == "normal":
                    s_modify = released.directional(vec["image_origin"], vec["image_edit"], vec["text_origin"],
                                                    vec["text_edit"], f)
                else:  # CLIP-T: cosine of the normalised embeddings
                    s_modify = released.cosine(vec["image"], vec["text"])
            except MetricError as exc:
                reason = f"S_modify not computed: {exc}"
        comps["s_modify"] = s_modify
        if state.notes:
            details["notes"] = state.notes
        if s_modify is None:
            comps["s_semantic"] = None
            return Score(None, comps, details, reason=reason)
        comps["s_semantic"] = fixed_semantic(s_modify, s_preserve)
        return Score(combine(comps["s_semantic"], comps["s_region"], self.alpha), comps, details)

    def _save_mask(self, rec, mask: np.ndarray) -> str:
        from PIL import Image

        os.makedirs(self.mask_dir, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(rec.id))
        path = os.path.abspath(os.path.join(self.mask_dir, f"{safe}.mask500.png"))
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        return path


def _box(value, width: int, height: int, name: str) -> tuple:
    try:
        return validate_bbox(value, width, height)
    except ValueError as exc:
        raise MetricError(f"{name}: {exc}") from None
