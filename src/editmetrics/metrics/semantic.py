"""Built-in plugin: CLIP/DINO semantic metrics on the shared feature store.

All embeddings come from ``editmetrics.engine.features`` (L2-normalised, each image
through its backbone's own evaluation preprocessing, computed once per run and
batched). Definitions, scales and every choice the papers leave open are in
``docs/semantic.md``. Notation: E = CLIP image embedding, T = CLIP text embedding.

- ``clip_i``   cos(E(edited), E(ref))                      (ref: source; @target = CLIP-I / SPPE CLIP-Sim (GT))
- ``clip_t``   cos(E(edited), T(text)); scale=clipscore: 2.5*max(cos, 0) with "A photo depicts " (Hessel et al.)
- ``clip_dir`` cos(E(edited) - E(source), T(target_caption) - T(source_caption))   (InstructPix2Pix)
- ``dir_i``    cos(E(edited) - E(source), E(target) - E(source))                    (SPPE DirI)
- ``dir_s``    cos(E(edited) - E(source), E(edited_surrogate) - E(surrogate))       (SPPE DirS)
- ``editability_label`` (1 + cos(E(edited_surrogate) - E(surrogate), E(target) - E(source))) / 2   (SPPE task 1)
- ``clip_rc``  100 * zero-shot P(class | crop of the target region of edited)      (R-SIE)
- ``clip_gc``  100 * cos(E(edited minus region), E(source minus region))           (R-SIE)
- ``dino_i``   cos(D(edited), D(ref)), D = DINO (v2) CLS embedding

Every metric here takes ``view`` (``crop`` default, ``pad``, ``squash``;
``editmetrics.weights.views``): how each image (or region) meets the model's square
input. ``crop`` is the papers' standard preprocessing and hides the borders of
non-square images; ``pad`` sees every pixel (recommended for preservation).
"""

from __future__ import annotations

import numpy as np

from editmetrics.engine.features import features_for
from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.contract.metric import Metric, MetricError, Param, Score
from editmetrics.weights.views import VIEW_HELP, VIEWS
from editmetrics.metrics import regions

EPS = 1e-6

# MS COCO's 80 object categories (the R-SIE test set's classes).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
RC_TEMPLATE = "a photo of a {}."
VIEW = Param("crop", VIEW_HELP, VIEWS)
DELETE_OPS = ("delete", "remove", "removal")


def cosine(a: np.ndarray, b: np.ndarray, what: str = "") -> float:
    """Cosine in float64; a zero-length direction has no angle: an error, not 0."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < EPS or nb < EPS:
        raise MetricError(f"{what or 'a direction'} is zero (the two images have the same embedding): no angle")
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two unit vectors, in float64, clipped to [-1, 1] (rounding)."""
    return float(np.clip(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64)), -1.0, 1.0))


class _Embedding(Metric):
    """Base: takes the feature store in setup (loading the backbone once, so a
    missing weight is one clear per-metric error), queues in prepare."""

    backbone = "clip"
    backbones: tuple[str, ...] = ("clip",)
    params = {"view": VIEW}

    def setup(self, ctx) -> None:
        self.store = features_for(ctx)
        self.encoder = self.store.backbone(self.backbone)
        self._keys: dict = {}

    def image_key(self, rec, field, **region) -> str:
        return self.store.request_image(self.backbone, rec, field, view=self.options["view"], **region)

    def text_key(self, text: str) -> str:
        return self.store.request_text(self.backbone, text)

    def prepare(self, rec) -> None:
        # keyed by the view object (alive for the whole batch): ids need not be unique in score_records
        self._keys[id(rec)] = self.requests(rec)

    def compute(self, rec):
        keys = self._keys.pop(id(rec))
        vecs = {name: self._get(value) for name, value in keys.items() if not name.startswith("_")}
        return self.score(rec, vecs, keys)

    def _get(self, value):
        if isinstance(value, list):
            return np.stack([self.store.get(k) for k in value])
        return self.store.get(value)

    def requests(self, rec) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, rec, v: dict, keys: dict):  # pragma: no cover - abstract
        raise NotImplementedError


class ClipI(_Embedding):
    id = "clip_i"
    description = "CLIP image similarity: cosine of edited and reference image embeddings (@target: CLIP-I)"
    higher_is_better = True
    range = (-1.0, 1.0)
    fields = ("edited",)
    reference = "source"

    def requests(self, rec):
        return {"a": self.image_key(rec, "edited"), "b": self.image_key(rec, self.ref)}

    def score(self, rec, v, keys):
        return dot(v["a"], v["b"])


class DinoI(ClipI):
    id = "dino_i"
    description = "DINO image similarity: cosine of edited and reference DINO(v2) CLS embeddings"
    backbone = "dino"
    backbones = ("dino",)


class ClipT(_Embedding):
    id = "clip_t"
    description = "CLIP text-image similarity of edited image and a text field (scale=clipscore: Hessel's CLIPScore)"
    higher_is_better = True
    range = (-1.0, 2.5)
    fields = ("edited",)
    reference = None
    params = {
        "text": Param("target_caption", "record field holding the text (target_caption, instruction, ...)"),
        "scale": Param("cos", "cos: raw cosine; clipscore: 2.5*max(cos,0) with prefix 'A photo depicts '",
                       ("cos", "clipscore")),
        "view": VIEW,
    }

    def required_fields(self):
        return ("edited", self.options["text"])

    def requests(self, rec):
        text = str(rec.get(self.options["text"]))
        if self.options["scale"] == "clipscore":
            text = "A photo depicts " + text  # Hessel et al. 2021, sec. 3
        return {"img": self.image_key(rec, "edited"), "txt": self.text_key(text)}

    def score(self, rec, v, keys):
        cos = dot(v["img"], v["txt"])
        return 2.5 * max(cos, 0.0) if self.options["scale"] == "clipscore" else cos


class ClipDir(_Embedding):
    id = "clip_dir"
    description = "CLIP directional similarity: cos(E(edited)-E(source), T(target_caption)-T(source_caption))"
    higher_is_better = True
    range = (-1.0, 1.0)
    fields = ("edited", "source_caption", "target_caption")
    reference = "source"

    def requests(self, rec):
        return {"e": self.image_key(rec, "edited"), "s": self.image_key(rec, self.ref),
                "ts": self.text_key(str(rec.get("source_caption"))),
                "tt": self.text_key(str(rec.get("target_caption")))}

    def score(self, rec, v, keys):
        return cosine(v["e"] - v["s"], v["tt"] - v["ts"], "image direction E(edited)-E(source) or caption direction")


class DirI(_Embedding):
    id = "dir_i"
    description = "SPPE DirI: cos(E(edited)-E(source), E(target)-E(source))"
    higher_is_better = True
    range = (-1.0, 1.0)
    fields = ("edited", "target")
    reference = "source"

    def requests(self, rec):
        return {"e": self.image_key(rec, "edited"), "s": self.image_key(rec, self.ref),
                "t": self.image_key(rec, "target")}

    def score(self, rec, v, keys):
        return cosine(v["e"] - v["s"], v["t"] - v["s"], "E(edited)-E(source) or E(target)-E(source)")


class DirS(_Embedding):
    id = "dir_s"
    description = "SPPE DirS: cos(E(edited)-E(source), E(edited_surrogate)-E(surrogate))"
    higher_is_better = True
    range = (-1.0, 1.0)
    fields = ("edited", "surrogate", "edited_surrogate")
    reference = "source"

    def requests(self, rec):
        return {"e": self.image_key(rec, "edited"), "s": self.image_key(rec, self.ref),
                "g": self.image_key(rec, "surrogate"), "ge": self.image_key(rec, "edited_surrogate")}

    def score(self, rec, v, keys):
        return cosine(v["e"] - v["s"], v["ge"] - v["g"], "E(edited)-E(source) or E(edited_surrogate)-E(surrogate)")


class EditabilityLabel(_Embedding):
    id = "editability_label"
    description = "SPPE editability label: (1 + cos(E(edited_surrogate)-E(surrogate), E(target)-E(source))) / 2"
    higher_is_better = True
    range = (0.0, 1.0)
    fields = ("surrogate", "edited_surrogate", "target")
    reference = "source"

    def requests(self, rec):
        return {"s": self.image_key(rec, self.ref), "t": self.image_key(rec, "target"),
                "g": self.image_key(rec, "surrogate"), "ge": self.image_key(rec, "edited_surrogate")}

    def score(self, rec, v, keys):
        c = cosine(v["ge"] - v["g"], v["t"] - v["s"], "E(edited_surrogate)-E(surrogate) or E(target)-E(source)")
        return (1.0 + c) / 2.0


class ClipRC(_Embedding):
    id = "clip_rc"
    description = ("R-SIE CLIP-RC: 100 x CLIP zero-shot probability of the target class on the crop of the "
                   "target region (delete: of the source class, lower is better)")
    higher_is_better = True
    range = (0.0, 100.0)
    fields = ("edited",)
    optional_fields = ("source", "target_mask", "source_mask", "mask")
    reference = None

    def requests(self, rec):
        # R-SIE's ``operation``, or BPM's ``edit_type`` (add/remove/replace/...)
        op = str(rec.get("operation") or rec.get("edit_type") or "replace").strip().lower()
        deleting = op in DELETE_OPS
        side = "source" if deleting else "target"
        class_field = regions.first_present(rec, (f"{side}_class", f"{side}_object"))
        if class_field is None:
            raise MetricError(f"clip_rc needs field {side}_class (or {side}_object) for operation {op!r}")
        # delete: the object's place is where the source object was
        names = (("source_bbox", "bbox", "source_mask", "mask") if deleting
                 else ("target_bbox", "bbox", "target_mask", "mask"))
        region = regions.first_present(rec, names)
        if region is None:
            raise MetricError(f"clip_rc needs a region: one of {', '.join(names)}")
        edited = rec.image("edited")
        box = regions.box_in(rec, region, edited)
        vocab = vocabulary(rec)
        cls = str(rec.get(class_field)).strip()
        return {"crop": self.image_key(rec, "edited", box=box),
                "vocab": [self.text_key(RC_TEMPLATE.format(c)) for c in vocab],
                "_index": _find(vocab, cls), "_details": {"class": cls, "operation": op, "region": region,
                                                          "box": [round(b, 2) for b in box],
                                                          "lower_is_better": deleting, "vocabulary": len(vocab)}}

    def score(self, rec, v, keys):
        logits = self.encoder.logit_scale * (v["vocab"].astype(np.float64) @ v["crop"].astype(np.float64))
        logits -= logits.max()
        probs = np.exp(logits) / np.exp(logits).sum()
        return Score(100.0 * float(probs[keys["_index"]]), details=keys["_details"])


def vocabulary(rec) -> list[str]:
    """COCO's 80 classes plus the record's classes, de-duplicated (case-insensitive)."""
    out, seen = [], set()
    fields = ("source_class", "target_class", "source_object", "target_object")
    for name in COCO_CLASSES + tuple(str(rec.get(f)).strip() for f in fields if rec.has(f)):
        low = name.lower()
        if low not in seen:
            seen.add(low)
            out.append(name)
    return out


def _find(vocab: list[str], cls: str) -> int:
    low = [c.lower() for c in vocab]
    return low.index(cls.lower())


class ClipGC(_Embedding):
    id = "clip_gc"
    description = ("R-SIE CLIP-GC: 100 x cosine of edited and source CLIP embeddings with the edit regions "
                   "filled (background preservation)")
    higher_is_better = True
    range = (-100.0, 100.0)
    fields = ("edited",)
    optional_fields = ("source", "target_mask", "source_mask", "mask")
    reference = "source"

    def requests(self, rec):
        edited, ref = rec.image("edited"), rec.image(self.ref)
        m_edit, used = regions.union_mask(rec, regions.REGION_FIELDS, edited)
        if not used:
            raise MetricError(f"clip_gc needs a region: one of {', '.join(regions.REGION_FIELDS)}")
        m_ref, _ = regions.union_mask(rec, regions.REGION_FIELDS, ref)
        if m_edit.all() or m_ref.all():
            raise MetricError("clip_gc: the edit region covers the whole image (no background)")
        return {"e": self.image_key(rec, "edited", erase=m_edit), "s": self.image_key(rec, self.ref, erase=m_ref),
                "_details": {"regions": used, "removed_fraction": round(float(m_ref.mean()), 4)}}

    def score(self, rec, v, keys):
        return Score(100.0 * dot(v["e"], v["s"]), details=keys["_details"])


METRICS = (ClipI, ClipT, ClipDir, DirI, DirS, EditabilityLabel, ClipRC, ClipGC, DinoI)


@hookimpl
def register_metrics(register):
    for cls in METRICS:
        register(cls)


@hookimpl
def register_backbones(register):
    from editmetrics.weights.backbones import HFEncoder, OpenClipEncoder

    register("open_clip", lambda spec, device, settings: OpenClipEncoder(spec.split(":", 1)[1], device, settings))
    register("hf", HFEncoder)
