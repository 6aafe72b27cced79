"""The shared feature store: every embedding computed once, in batches, cached.

Metrics (and models, training code) never load CLIP/DINO themselves; they ask
the run's store::

    from editmetrics.engine.features import features_for

    store = features_for(ctx)                    # one per run (a ctx service)
    # in Metric.prepare(rec): queue what compute() will need
    k1 = store.request_image("clip", rec, "edited")
    k2 = store.request_image("clip", rec, "source", box=(10, 20, 90, 120))
    k3 = store.request_image("clip", rec, "source", erase=mask)   # mask filled
    k4 = store.request_text("clip", "a photo of a cat")
    k5 = store.request_image("clip", rec, "edited", view="pad")   # letterboxed (views.py)
    # the runner calls store.flush() once per batch; then in compute(rec):
    vec = store.get(k1)                          # float32 (D,), L2-normalised

    # direct batch helpers (training code, no records):
    store.encode_images("clip", [array, ...])    # (N, D), L2-normalised
    store.encode_texts("clip", ["text", ...])    # (N, D)

``backbone`` is ``"clip"`` / ``"dino"`` (the run's settings, with documented
defaults) or a full spec (``ViT-B-32:/models/b32.safetensors``).

An embedding's key is (backbone identity, hash of the image content, region,
preprocessing, view), so two metrics asking for the same crop of the same image
under the same view share one forward pass (and two views never share one).
With the setting ``feature_cache=DIR`` embeddings are also
written to ``DIR`` as ``.npy`` files named by that key, and a later run (or
``--resume``) reads them instead of encoding.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from editmetrics.weights.backbones import Encoder, build_encoder, resolve_spec_setting
from editmetrics.contract.metric import MetricError
from editmetrics.weights.views import VIEWS

SERVICE = "features"
DEFAULT_CHUNK = 32
DEFAULT_MEMORY = 200_000


def features_for(ctx) -> FeatureStore:
    """The run's feature store (created on first use, flushed by the runner)."""
    return ctx.service(SERVICE, FeatureStore.from_context)


def content_hash(image: np.ndarray) -> str:
    """Hash of an array's values, shape and dtype (not of the file it came from)."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.data)
    return digest.hexdigest()


@dataclass
class _Pending:
    key: str
    backbone: str
    image: np.ndarray | None = None
    text: str | None = None
    view: str = "crop"
    raw: bool = False  # the encoder's output as is, not L2-normalised (BPM's released S_modify)


class FeatureStore:
    """Batched, de-duplicated, optionally disk-cached CLIP/DINO embeddings."""

    def __init__(self, settings: dict | None = None, device: str = "cpu", registry=None,
                 cache_dir: str | None = None, chunk: int | None = None):
        self.settings = dict(settings or {})
        self.device = device
        self.registry = registry
        cache_dir = cache_dir or self.settings.get("feature_cache")
        self.cache_dir = os.path.expanduser(str(cache_dir)) if cache_dir else None
        self.chunk = int(chunk or self.settings.get("feature_batch_size") or DEFAULT_CHUNK)
        self._encoders: dict[str, Encoder] = {}
        self._failed: dict[str, str] = {}  # spec -> reason: one load attempt per run
        # in-memory vectors, least recently used dropped beyond ``feature_memory``
        # entries (setting; default 200000, ~600 MB of ViT-L/14 vectors)
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self.capacity = int(self.settings.get("feature_memory") or DEFAULT_MEMORY)
        self._pending: dict[str, _Pending] = {}
        self._errors: dict[str, str] = {}  # key -> why it could not be computed
        self._memo: dict[tuple, tuple] = {}  # per batch: request -> (arrays, region pixels, hash)
        self._requested: set[str] = set()  # keys asked for since the last flush
        self._lock = threading.RLock()
        # counters (benchmarks, tests): forward passes actually run, cache hits
        self.stats = {"images_encoded": 0, "texts_encoded": 0, "batches": 0, "disk_hits": 0, "memory_hits": 0}

    @classmethod
    def from_context(cls, ctx) -> FeatureStore:
        return cls(settings=ctx.settings, device=ctx.device, registry=ctx.registry)

    # -- backbones ------------------------------------------------------
    def spec(self, backbone: str) -> str:
        return resolve_spec_setting(backbone, self.settings)

    def backbone(self, backbone: str) -> Encoder:
        """The loaded encoder; a load failure raises the same MetricError each time
        (so every metric that needs it reports it, and it is tried only once)."""
        spec = self.spec(backbone)
        with self._lock:
            if spec in self._encoders:
                return self._encoders[spec]
            if spec in self._failed:
                raise MetricError(self._failed[spec])
            try:
                encoder = build_encoder(spec, self.device, self.settings, self.registry)
            except MetricError as exc:
                self._failed[spec] = str(exc)
                raise
            except Exception as exc:
                self._failed[spec] = f"backbone {spec!r} failed to load: {type(exc).__name__}: {exc}"
                raise MetricError(self._failed[spec]) from exc
            self._encoders[spec] = encoder
            return encoder

    # -- requests -------------------------------------------------------
    def request_image(self, backbone: str, rec_or_image: Any, field: str | None = None, *,
                      box=None, mask: np.ndarray | None = None, erase: np.ndarray | None = None,
                      view: str = "crop", raw: bool = False) -> str:
        """Queue one image embedding and return its key.

        ``rec_or_image``: a ``RecordView`` (then ``field`` names the image) or
        an HxWx3 float array. ``box`` = (x0, y0, x1, y1) in that image's pixels:
        the crop is encoded. ``mask`` (HxW bool, same size): pixels outside it
        are filled; ``erase``: pixels inside it are filled. The fill colour is
        the backbone's normalisation mean, i.e. zero after normalisation.
        Masks are applied before cropping. ``view`` (``crop``, ``pad``,
        ``squash``; editmetrics.weights.views) fits the resulting region to the
        model's square input; it is part of the key. ``raw``: the embedding is
        returned without L2 normalisation (a separate key).
        """
        encoder = self.backbone(backbone)
        if view not in VIEWS:
            raise MetricError(f"view {view!r}: expected one of {', '.join(VIEWS)}")
        if view not in encoder.views:
            raise MetricError(f"backbone {encoder.spec!r} does not support view={view} "
                              f"(it takes {', '.join(encoder.views)})")
        source = rec_or_image.image(field) if field is not None else np.asarray(rec_or_image)
        if source.ndim != 3 or source.shape[2] != 3:
            raise MetricError(f"expected an HxWx3 image, got shape {source.shape}")
        # Several metrics request the same array: hash it once per batch. The
        # memo holds the arrays themselves, so an id() cannot be reused meanwhile.
        memo_key = (id(source), encoder.fill, _box_key(box), id(mask), id(erase))
        with self._lock:
            memo = self._memo.get(memo_key)
        if memo is not None:
            image, digest = memo[1], memo[2]
        else:
            image = self._region(source, encoder, box, mask, erase)
            digest = content_hash(image)
            with self._lock:
                self._memo[memo_key] = (source, image, digest, mask, erase)
        # The key hashes the region's final pixels, so it covers image, box and fill;
        # "crop" keeps the key it had before views existed (disk caches stay valid).
        kind = "image-raw" if raw else "image"
        key = _key(encoder.identity, kind if view == "crop" else f"{kind}|view={view}", digest)
        with self._lock:
            self._requested.add(key)
            if key not in self._vectors and key not in self._pending:
                self._pending[key] = _Pending(key, self.spec(backbone), image=image, view=view, raw=raw)
            elif key in self._vectors:
                self._vectors.move_to_end(key)
                self.stats["memory_hits"] += 1
        return key

    @staticmethod
    def _region(image, encoder, box, mask, erase) -> np.ndarray:
        if mask is not None or erase is not None:
            fill = np.asarray(encoder.fill, dtype=np.float32)
            image = image.copy()
            if mask is not None:
                image[~_fit_mask(mask, image)] = fill
            if erase is not None:
                image[_fit_mask(erase, image)] = fill
        if box is not None:
            x0, y0, x1, y1 = _int_box(box, image.shape[1], image.shape[0])
            image = image[y0:y1, x0:x1]
        return image

    def request_text(self, backbone: str, text: str, raw: bool = False) -> str:
        encoder = self.backbone(backbone)
        if not encoder.has_text:
            raise MetricError(f"backbone {encoder.spec!r} has no text encoder")
        key = _key(encoder.identity, "text-raw" if raw else "text",
                   hashlib.blake2b(str(text).encode(), digest_size=16).hexdigest())
        with self._lock:
            self._requested.add(key)
            if key not in self._vectors and key not in self._pending:
                self._pending[key] = _Pending(key, self.spec(backbone), text=str(text), raw=raw)
            elif key in self._vectors:
                self._vectors.move_to_end(key)
                self.stats["memory_hits"] += 1
        return key

    # -- computing ------------------------------------------------------
    def flush(self) -> None:
        """Compute every queued embedding: disk cache first, then in batches
        of ``feature_batch_size`` (setting, default 32) per backbone."""
        with self._lock:
            pending, self._pending = self._pending, {}
            protected, self._requested = self._requested, set()
            self._memo.clear()
        todo: dict[tuple[str, str, str, bool], list[_Pending]] = {}
        for item in pending.values():
            cached = self._read_disk(item.key)
            if cached is not None:
                self._keep(item.key, cached)
                self.stats["disk_hits"] += 1
                continue
            kind = "image" if item.image is not None else "text"
            todo.setdefault((item.backbone, kind, item.view, item.raw), []).append(item)
        for (spec, kind, view, raw), items in todo.items():
            encoder = self._encoders[spec]
            for start in range(0, len(items), self.chunk):
                part = items[start:start + self.chunk]
                try:
                    # raw (unnormalised) only on request: encoders of plugins need not support it
                    extra = {"normalise": False} if raw else {}
                    if kind == "image":
                        if view != "crop":  # plugin encoders may lack the argument
                            extra["view"] = view
                        vecs = encoder.encode_images([p.image for p in part], **extra)
                        self.stats["images_encoded"] += len(part)
                    else:
                        vecs = encoder.encode_texts([p.text for p in part], **extra)
                        self.stats["texts_encoded"] += len(part)
                except Exception as exc:  # noqa: BLE001 - fails those keys only
                    reason = f"{spec}: encoding failed: {type(exc).__name__}: {exc}"
                    for p in part:
                        self._errors[p.key] = reason
                    continue
                self.stats["batches"] += 1
                for p, vec in zip(part, vecs):
                    self._keep(p.key, vec)
                    self._write_disk(p.key, vec)

        self._evict(protected)

    def _keep(self, key: str, vec: np.ndarray) -> None:
        with self._lock:
            self._vectors[key] = vec
            self._vectors.move_to_end(key)

    def _evict(self, protected: set[str]) -> None:
        """Drop the least recently used vectors beyond capacity, never one
        requested since the previous flush (its get() is still to come)."""
        with self._lock:
            excess = len(self._vectors) - self.capacity
            if excess <= 0:
                return
            victims = []
            for key in self._vectors:  # oldest first; stops as soon as enough are found
                if key not in protected:
                    victims.append(key)
                    if len(victims) == excess:
                        break
            for key in victims:
                del self._vectors[key]

    def get(self, key: str) -> np.ndarray:
        """The L2-normalised embedding of a requested key (flushes if needed)."""
        if key in self._pending:
            self.flush()
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        if key in self._errors:
            raise MetricError(self._errors[key])
        raise MetricError(f"embedding {key} was never requested")

    # -- direct helpers (no records) --------------------------------------
    def encode_images(self, backbone: str, images: list[np.ndarray], **region) -> np.ndarray:
        """(N, D) embeddings of float RGB arrays, through the same cache."""
        keys = [self.request_image(backbone, im, box=region.get("box"), mask=region.get("mask"),
                                   erase=region.get("erase"), view=region.get("view", "crop")) for im in images]
        self.flush()
        return np.stack([self.get(k) for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def encode_texts(self, backbone: str, texts: list[str]) -> np.ndarray:
        keys = [self.request_text(backbone, t) for t in texts]
        self.flush()
        return np.stack([self.get(k) for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def forget(self) -> None:
        """Drop in-memory vectors (long runs: the disk cache still has them)."""
        with self._lock:
            self._vectors.clear()
            self._errors.clear()

    # -- disk cache -----------------------------------------------------
    def _path(self, key: str) -> str:
        return os.path.join(self.cache_dir, key[:2], key + ".npy")

    def _read_disk(self, key: str) -> np.ndarray | None:
        if not self.cache_dir:
            return None
        path = self._path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def _write_disk(self, key: str, vec: np.ndarray) -> None:
        if not self.cache_dir:
            return
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(vec, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all or nothing


def _key(identity: str, kind: str, content: str) -> str:
    return hashlib.blake2b(f"{identity}\n{kind}\n{content}".encode(), digest_size=20).hexdigest()


def _box_key(box):
    return None if box is None else tuple(float(v) for v in box)


def _fit_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        from editmetrics.data.images import resize_mask

        mask = resize_mask(mask, (image.shape[1], image.shape[0]))
    return mask


def _int_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Clip to the image and round outwards to whole pixels."""
    from editmetrics.data.images import validate_bbox

    try:
        x0, y0, x1, y1 = validate_bbox(box, width, height)
    except ValueError as exc:
        raise MetricError(str(exc)) from None
    import math

    return math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
