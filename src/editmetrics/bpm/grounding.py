"""Grounding (phrase -> boxes and masks) behind ``register_grounders``, and the
run's batched grounding service.

A grounder class has ``id``, ``description``, ``__init__(settings, device,
box_threshold, text_threshold)`` and ``ground(items) -> list[list[Detection]]``
where ``items`` is a list of ``(image, phrase)`` with ``image`` float32 HxWx3
in [0, 1]. Boxes are ``(x0, y0, x1, y1)`` in that image's pixels, masks bool
HxW at the same size, detections sorted by score (highest first).

Default: ``gdino-sam``, transformers' GroundingDINO + SAM loaded from local
folders saved with ``save_pretrained`` (settings ``bpm_groundingdino`` and
``bpm_sam``; env ``EDITMETRICS_BPM_GROUNDINGDINO`` / ``EDITMETRICS_BPM_SAM``).
The paper's thresholds (box 0.3, text 0.25) are the defaults. SAM predicts one
mask per box (``multimask_output=False``), as the authors' code did.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from editmetrics.data.images import to_pil
from editmetrics.contract.metric import MetricError
from editmetrics.contract.model import Weight

BOX_THRESHOLD = 0.3
TEXT_THRESHOLD = 0.25


@dataclass
class Detection:
    box: tuple[float, float, float, float]
    score: float
    label: str
    mask: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "label": self.label}


def _model_dir(settings: dict, key: str, model: str, example: str) -> str:
    path = settings.get(key)
    if not path:
        raise MetricError(
            f"BPM grounding needs {model}: set {key}=DIR (--set {key}=DIR, env EDITMETRICS_{key.upper()}) to a "
            f"folder saved with save_pretrained (e.g. {example}); or supply source_bbox/target_bbox/masks in the records"
        )
    path = os.path.expanduser(str(path))
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise MetricError(
            f"{model} not found: {os.path.join(path, 'config.json')} is missing (setting {key}); put a "
            f"save_pretrained folder of {example} there"
        )
    return path


class DetectThenSegment:
    """Batching shared by detector + segmenter grounders: subclasses set
    ``self.batch`` and implement ``_detect(items) -> list[list[Detection]]``
    and ``_segment(images, dets)`` (which fills each detection's mask)."""

    def __init__(self, settings: dict | None = None, device: str = "cpu", box_threshold: float = BOX_THRESHOLD,
                 text_threshold: float = TEXT_THRESHOLD):
        settings = settings or {}
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.device = device
        self.batch = int(settings.get("bpm_grounding_batch_size", 8))
        # The paper keeps every box above the threshold; a cap bounds SAM's work
        # (and memory) when a detector fires everywhere. 0 = no cap.
        self.max_detections = int(settings.get("bpm_max_detections", 0))

    def keep(self, dets: list[Detection]) -> list[Detection]:
        """Highest score first, at most ``bpm_max_detections``."""
        dets = sorted(dets, key=lambda d: -d.score)
        return dets[:self.max_detections] if self.max_detections > 0 else dets

    def ground(self, items: list[tuple[np.ndarray, str]]) -> list[list[Detection]]:
        """Detect, then segment, in batches of ``bpm_grounding_batch_size``.

        Detector batches hold images of one size only: a batch of mixed sizes
        is padded, and padding changes the backbone's features near the
        border, so batched boxes would differ from one-by-one boxes. A record's
        source and edited images share a size, so batches stay full in practice.
        SAM always resizes and pads to its square input, so any images batch.
        """
        out: list[list[Detection] | None] = [None] * len(items)
        by_size: dict[tuple, list[int]] = {}
        for i, (image, _) in enumerate(items):
            by_size.setdefault(image.shape[:2], []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch):
                chunk = indices[start:start + self.batch]
                for i, dets in zip(chunk, self._detect([items[i] for i in chunk])):
                    out[i] = dets
        with_boxes = [i for i, dets in enumerate(out) if dets]
        for start in range(0, len(with_boxes), self.batch):
            chunk = with_boxes[start:start + self.batch]
            self._segment([items[i][0] for i in chunk], [out[i] for i in chunk])
        return out  # type: ignore[return-value]

    def segment(self, items: list[tuple[np.ndarray, list[tuple]]]) -> list[list[np.ndarray]]:
        """Masks for given boxes (one per box), in batches: BPM's released
        arithmetic segments an image with boxes found in another image."""
        dets = [[Detection(tuple(float(v) for v in b), 1.0, "") for b in boxes] for _, boxes in items]
        todo = [i for i, ds in enumerate(dets) if ds]
        for start in range(0, len(todo), self.batch):
            chunk = todo[start:start + self.batch]
            self._segment([items[i][0] for i in chunk], [dets[i] for i in chunk])
        return [[d.mask for d in ds] for ds in dets]

    def _detect(self, items) -> list[list[Detection]]:
        raise NotImplementedError

    def _segment(self, images: list[np.ndarray], dets: list[list[Detection]]) -> None:
        raise NotImplementedError


class HFGroundingDinoSam(DetectThenSegment):
    """GroundingDINO (detector) + SAM (segmenter) through transformers."""

    id = "gdino-sam"
    description = "transformers GroundingDINO + SAM from local folders (bpm_groundingdino, bpm_sam)"
    weights = (
        Weight("groundingdino", "a save_pretrained folder of a transformers GroundingDINO "
               "(e.g. IDEA-Research/grounding-dino-tiny)", setting="bpm_groundingdino"),
        Weight("sam", "a save_pretrained folder of a transformers SAM (e.g. facebook/sam-vit-huge)",
               setting="bpm_sam"),
    )

    def __init__(self, settings: dict | None = None, device: str = "cpu", box_threshold: float = BOX_THRESHOLD,
                 text_threshold: float = TEXT_THRESHOLD):
        settings = settings or {}
        super().__init__(settings, device, box_threshold, text_threshold)
        gdir = _model_dir(settings, "bpm_groundingdino", "GroundingDINO", "IDEA-Research/grounding-dino-tiny")
        sdir = _model_dir(settings, "bpm_sam", "SAM", "facebook/sam-vit-huge")
        import torch
        from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel, SamProcessor

        self.torch = torch
        self.det_proc = AutoProcessor.from_pretrained(gdir)
        self.det = GroundingDinoForObjectDetection.from_pretrained(gdir).to(device).eval()
        self.seg_proc = SamProcessor.from_pretrained(sdir)
        self.seg = SamModel.from_pretrained(sdir).to(device).eval()
        self.identity = f"{self.id}:{os.path.realpath(gdir)}:{os.path.realpath(sdir)}"

    def _detect(self, items) -> list[list[Detection]]:
        torch = self.torch
        images = [to_pil(im) for im, _ in items]
        # GroundingDINO expects lower-case phrases ending with a period.
        texts = [phrase.strip().lower().rstrip(".") + "." for _, phrase in items]
        inputs = self.det_proc(images=images, text=texts, return_tensors="pt", padding=True).to(self.device)
        with torch.no_grad():
            outputs = self.det(**inputs)
        sizes = [(im.height, im.width) for im in images]
        results = self.det_proc.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=sizes,
        )
        out = []
        for (h, w), res in zip(sizes, results):
            labels = res["text_labels"] if "text_labels" in res else res["labels"]
            dets = []
            for box, score, label in zip(res["boxes"].tolist(), res["scores"].tolist(), labels):
                x0, y0, x1, y1 = max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3])
                if x1 > x0 and y1 > y0:
                    dets.append(Detection((x0, y0, x1, y1), float(score), str(label)))
            out.append(self.keep(dets))
        return out

    def _segment(self, images: list[np.ndarray], dets: list[list[Detection]]) -> None:
        """One SAM pass for several images; each image's box list is padded to
        the longest by repeating its last box, and the extra masks dropped."""
        torch = self.torch
        most = max(len(d) for d in dets)
        boxes = [[list(d.box) for d in ds] + [list(ds[-1].box)] * (most - len(ds)) for ds in dets]
        inputs = self.seg_proc(images=[to_pil(im) for im in images], input_boxes=boxes,
                               return_tensors="pt").to(self.device)
        with torch.no_grad():
            outputs = self.seg(**inputs, multimask_output=False)
        masks = self.seg_proc.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
        )  # per image: (n_boxes, 1, H, W) bool
        for ds, image_masks in zip(dets, masks):
            for det, mask in zip(ds, image_masks):
                det.mask = np.asarray(mask[0].numpy(), dtype=bool)


def make_grounder(grounder_id: str, settings: dict, device: str, box_threshold: float, text_threshold: float,
                  registry=None):
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    cls = registry.get("grounders", grounder_id)
    return cls(settings, device=device, box_threshold=box_threshold, text_threshold=text_threshold)


class GroundingService:
    """Queues (image, phrase) requests during ``prepare`` and grounds them all
    at ``flush`` in batches; afterwards it runs callbacks registered by the
    metric (which queue the CLIP crops that depend on the boxes, so those are
    batched by the feature store too). The grounder loads on first need, once."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self._grounder = None
        self._failed: str | None = None
        self._pending: list[tuple[int, np.ndarray, str]] = []
        self._results: dict[int, list[Detection]] = {}
        self._errors: dict[int, str] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._seg_pending: list[tuple[int, np.ndarray, list]] = []
        self._seg_results: dict[int, list[np.ndarray]] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.timings = {"grounding": 0.0}
        self.counts = {"phrases": 0, "detections": 0}  # for benchmarks: boxes per phrase drive SAM's cost

    def grounder(self):
        if self._grounder is None:
            if self._failed:
                raise MetricError(self._failed)
            try:
                self._grounder = self.factory()
            except MetricError as exc:
                self._failed = str(exc)
                raise
            except Exception as exc:  # noqa: BLE001 - one clear reason, attempted once
                self._failed = f"grounder failed to load: {type(exc).__name__}: {exc}"
                raise MetricError(self._failed) from exc
        return self._grounder

    def request(self, image: np.ndarray, phrase: str) -> int:
        self.grounder()  # a missing model fails the record in prepare, with its message
        with self._lock:
            key = self._next
            self._next += 1
            self._pending.append((key, image, phrase))
        return key

    def after_flush(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def flush(self) -> None:
        import time

        with self._lock:
            pending, self._pending = self._pending, []
            callbacks, self._callbacks = self._callbacks, []
        if pending:
            start = time.perf_counter()
            try:
                results = self.grounder().ground([(im, ph) for _, im, ph in pending])
                for (key, _, _), dets in zip(pending, results):
                    self._results[key] = dets
                self.counts["phrases"] += len(results)
                self.counts["detections"] += sum(len(d) for d in results)
            except Exception as exc:  # noqa: BLE001 - fails these requests, not the run
                for key, _, _ in pending:
                    self._errors[key] = f"grounding failed: {type(exc).__name__}: {exc}"
            self.timings["grounding"] += time.perf_counter() - start
        for callback in callbacks:
            callback()

    def request_segment(self, image: np.ndarray, boxes: list) -> int:
        """Queue masks of ``boxes`` (pixels of ``image``); all queued requests are
        segmented together at the first ``get_segment``."""
        grounder = self.grounder()
        if not hasattr(grounder, "segment"):
            raise MetricError(f"grounder {getattr(grounder, 'id', grounder)!r} cannot segment given boxes "
                              "(no segment() method), which BPM's released arithmetic needs")
        with self._lock:
            key = self._next
            self._next += 1
            self._seg_pending.append((key, image, list(boxes)))
        return key

    def get_segment(self, key: int) -> list[np.ndarray]:
        with self._lock:
            pending, self._seg_pending = self._seg_pending, []
        if pending:
            try:
                results = self.grounder().segment([(im, boxes) for _, im, boxes in pending])
                for (k, _, _), masks in zip(pending, results):
                    self._seg_results[k] = masks
            except Exception as exc:  # noqa: BLE001 - fails these requests, not the run
                for k, _, _ in pending:
                    self._errors[k] = f"segmentation failed: {type(exc).__name__}: {exc}"
        if key in self._errors:
            raise MetricError(self._errors.pop(key))
        return self._seg_results.pop(key)

    def get(self, key: int) -> list[Detection]:
        if key in self._errors:
            raise MetricError(self._errors.pop(key))
        if key not in self._results:
            self.flush()
        return self._results.pop(key)
