"""Feature backbones (CLIP, DINO) built from local weights, chosen by a spec.

Spec grammar (settings ``clip`` / ``dino``; ``--clip`` / ``--dino``; env
``EDITMETRICS_CLIP`` / ``EDITMETRICS_DINO``):

- ``ARCH:WEIGHTS`` -- open_clip: ``ARCH`` is an open_clip architecture name
  (``ViT-L-14``) or a path to an open_clip model-config JSON file (its stem is
  the architecture name); ``WEIGHTS`` is an open_clip pretrained tag
  (``openai``, looked up on local disk only, see ``weights.locate_open_clip``)
  or a path to a checkpoint (``.safetensors``, ``.pt``/``.bin`` state dict).
- ``hf:MODEL`` (or just ``MODEL``, without a colon) -- transformers: ``MODEL`` is a local folder saved with
  ``save_pretrained`` (or a hub id already in the local cache / under
  ``<weights_dir>/hf/<id>``). ``model_type`` ``clip`` gives a CLIP backbone
  (image and text), ``dinov2`` / ``dino`` / ``vit`` an image-only backbone.
- ``NAME:REST`` where ``NAME`` is a backbone registered by a plugin through
  ``register_backbones(register)`` -> ``register(NAME, factory)``, and
  ``factory(spec, device, settings)`` returns an ``Encoder``.

Every encoder maps float32 RGB arrays in [0, 1] through its model's own
evaluation preprocessing and returns L2-normalised float32 embeddings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from editmetrics.data.images import to_pil
from editmetrics.contract.metric import MetricError
from editmetrics.weights.views import VIEWS, square_side, square_view
from editmetrics.weights.resolver import (
    Located,
    WeightsMissing,
    downloads_allowed,
    file_identity,
    known_sha256,
    load_state_dict,
    locate_hf,
    locate_open_clip,
    missing_message,
)

# Our default CLIP: ViT-L/14, as BPM's released code; SPPE and R-SIE name no variant (docs/semantic.md).
DEFAULT_SPECS = {"clip": "ViT-L-14:openai", "dino": "hf:facebook/dinov2-base"}


def resolve_spec_setting(name_or_spec: str, settings: dict) -> str:
    """``clip``/``dino`` (a settings key) -> the configured spec; a spec -> itself."""
    if name_or_spec in DEFAULT_SPECS:
        return str(settings.get(name_or_spec) or DEFAULT_SPECS[name_or_spec]).strip()
    return name_or_spec.strip()


class Encoder:
    """What the feature store needs from a backbone."""

    spec: str = ""
    identity: str = ""  # cache identity: spec + weight-file identity + preprocessing
    has_text: bool = False
    fill: tuple[float, float, float] = (0.5, 0.5, 0.5)  # colour of erased pixels, [0, 1]
    logit_scale: float = 100.0  # temperature of zero-shot classification (CLIP's learned value)
    # views (editmetrics.weights.views) this encoder takes in encode_images(images, view=...); a plugin
    # encoder without the ``view`` argument supports "crop" only
    views: tuple[str, ...] = ("crop",)

    def encode_images(self, images: list[np.ndarray], normalise: bool = True, view: str = "crop") -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def encode_texts(self, texts: list[str], normalise: bool = True) -> np.ndarray:
        raise MetricError(f"backbone {self.spec!r} has no text encoder")


def _normalise(x, normalise: bool = True) -> np.ndarray:
    x = x.detach().float().cpu().numpy().astype(np.float32)
    if not normalise:  # raw projected features (BPM's released S_modify uses them)
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------
# open_clip
# ---------------------------------------------------------------------------


class OpenClipEncoder(Encoder):
    has_text = True

    def __init__(self, spec: str, device: str, settings: dict):
        import open_clip
        import torch
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.spec, self.device = spec, device
        if ":" not in spec:
            raise MetricError(f"CLIP spec {spec!r}: expected ARCH:WEIGHTS, e.g. ViT-L-14:openai or ViT-B-32:/models/clip.safetensors")
        arch, weights = spec.split(":", 1)
        if arch.endswith(".json"):
            # A local model config: register it, its file stem is the architecture name.
            if not os.path.isfile(os.path.expanduser(arch)):
                raise WeightsMissing(f"CLIP spec {spec!r}: model config file {arch} not found")
            open_clip.add_model_config(os.path.expanduser(arch))
            arch = os.path.splitext(os.path.basename(arch))[0]
        if arch not in open_clip.list_models():
            raise MetricError(f"CLIP spec {spec!r}: unknown open_clip architecture {arch!r}")
        tag_cfg: dict = {}
        path = os.path.expanduser(weights)
        if not os.path.isfile(path):
            from open_clip.pretrained import get_pretrained_cfg

            tag_cfg = get_pretrained_cfg(arch, weights)
            if not tag_cfg:
                if os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
                    raise WeightsMissing(
                        f"CLIP {spec!r}: checkpoint file {path} not found; put the open_clip {arch} "
                        "weights there or change --clip / EDITMETRICS_CLIP"
                    )
                raise MetricError(f"CLIP spec {spec!r}: {weights!r} is neither a file nor an open_clip tag of {arch}")
            found = locate_open_clip(arch, weights, settings)
            path = found.path or _download_open_clip(arch, weights, tag_cfg, found, settings, spec)
        force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        with _quiet_logging():  # open_clip logs "initialized randomly": we load the weights next
            model = open_clip.create_model(
                arch, pretrained=None, device="cpu", force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                force_preprocess_cfg=force_pp or None,
            )
        _load_open_clip_weights(model, path, spec)
        self.model = model.to(device).eval()
        pp = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
        self.preprocess = image_transform_v2(pp, is_train=False)
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.logit_scale = float(model.logit_scale.exp().item())
        self.fill = tuple(float(m) for m in pp.mean)
        self.image_size = square_side(pp.size)  # pad/squash hand it exactly this square: resize and crop are no-ops
        self.views = VIEWS if self.image_size else ("crop",)
        self._resample = _pil_filter(pp.interpolation)
        self.identity = f"open_clip|{arch}|{file_identity(path)}|{json.dumps(open_clip.get_model_preprocess_cfg(model), sort_keys=True, default=str)}"
        self.path = path
        self._torch = torch

    def encode_images(self, images, normalise=True, view: str = "crop"):
        torch = self._torch
        pils = [to_pil(im) for im in images]
        if view != "crop":
            pils = [square_view(p, view, self.image_size, self.fill, self._resample) for p in pils]
        batch = torch.stack([self.preprocess(p) for p in pils]).to(self.device)
        with torch.inference_mode():
            return _normalise(self.model.encode_image(batch), normalise)

    def encode_texts(self, texts, normalise=True):
        torch = self._torch
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            return _normalise(self.model.encode_text(tokens), normalise)


def _pil_filter(name):
    from PIL import Image

    if isinstance(name, int):
        return Image.Resampling(name)
    return {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}.get(str(name).lower(), Image.BICUBIC)


class _quiet_logging:
    def __enter__(self):
        import logging

        self.logger = logging.getLogger()
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _load_open_clip_weights(model, path: str, spec: str) -> None:
    """Safe load (weights.load_state_dict) plus open_clip's small key fixes."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    state = load_state_dict(path)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        from open_clip.model import convert_to_custom_text_state_dict

        state = convert_to_custom_text_state_dict(state)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    state.pop("text.transformer.embeddings.position_ids", None)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MetricError(f"CLIP {spec!r}: {path} does not fit this architecture: {str(exc)[:300]}") from None


def _download_open_clip(arch, tag, tag_cfg, found: Located, settings, spec) -> str:
    if not downloads_allowed(settings):
        raise WeightsMissing(missing_message(f"CLIP {spec!r} (open_clip {arch}, pretrained {tag!r})", found, "clip"))
    import shutil

    from open_clip.pretrained import download_pretrained

    os.makedirs(found.home, exist_ok=True)
    fetched = download_pretrained(tag_cfg, cache_dir=os.path.join(found.home, ".download"))
    # keep a plain copy where the next (offline) run looks first
    dest = os.path.join(found.home, os.path.basename(fetched))
    if not os.path.isfile(dest):
        shutil.copyfile(os.path.realpath(fetched), dest + ".tmp")
        os.replace(dest + ".tmp", dest)
    return dest


# ---------------------------------------------------------------------------
# transformers (CLIP, DINOv2)
# ---------------------------------------------------------------------------


def check_tokenizer(tokenizer, where: str) -> None:
    """Offline, ``CLIPTokenizer.from_pretrained(hub_id)`` can return a 2-token
    tokenizer mapping every word to one id: refuse it loudly."""
    size = len(tokenizer)
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in ("cat", "dog", "photograph")]
    if size < 1000 or len({tuple(i) for i in ids}) < 3:
        raise MetricError(
            f"the tokenizer in {where} is broken ({size} tokens; 'cat', 'dog', 'photograph' -> {ids}): "
            "its vocabulary files (vocab.json, merges.txt) are missing or empty; copy them next to the model"
        )


class HFEncoder(Encoder):
    def __init__(self, spec: str, device: str, settings: dict):
        import torch
        import transformers

        self.spec, self.device, self._torch = spec, device, torch
        model_id = spec.split(":", 1)[1] if spec.startswith("hf:") else spec
        found = locate_hf(model_id, settings)
        if found.path is None:
            if not downloads_allowed(settings):
                raise WeightsMissing(missing_message(f"backbone {spec!r} (transformers {model_id})", found,
                                                     _setting_of(spec)))
            from huggingface_hub import snapshot_download

            # the one place a download may happen: into <weights_dir>/hf/<id>, found offline next time
            found.path = snapshot_download(model_id, local_dir=found.home)
        source = found.path
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
        self.kind = config.model_type
        kw = {"local_files_only": True}
        self.processor = transformers.AutoImageProcessor.from_pretrained(source, **kw)
        if self.kind == "clip":
            self.model = transformers.CLIPModel.from_pretrained(source, use_safetensors=None, **kw)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kw)
            check_tokenizer(self.tokenizer, source)
            self.has_text = True
            self.logit_scale = float(self.model.logit_scale.exp().item())
        elif self.kind in ("dinov2", "dinov2_with_registers", "vit", "dino"):
            self.model = transformers.AutoModel.from_pretrained(source, **kw)
        else:
            raise MetricError(f"backbone {spec!r}: model_type {self.kind!r} is not supported (clip, dinov2, vit)")
        self.model = self.model.to(device).eval()
        mean = getattr(self.processor, "image_mean", None) or (0.5, 0.5, 0.5)
        self.fill = tuple(float(m) for m in mean)
        # the square the model sees (after the processor's crop, else its resize); pad/squash produce it directly
        self.image_size = square_side(getattr(self.processor, "crop_size", None)
                                      if getattr(self.processor, "do_center_crop", False)
                                      else getattr(self.processor, "size", None))
        self.views = VIEWS if self.image_size else ("crop",)
        self._resample = _pil_filter(getattr(self.processor, "resample", "bicubic"))
        self.identity = f"hf|{self.kind}|{file_identity(source)}|{json.dumps(self.processor.to_dict(), sort_keys=True, default=str)}"
        self.path = source

    def encode_images(self, images, normalise=True, view: str = "crop"):
        torch = self._torch
        pils, kw = [to_pil(im) for im in images], {}
        if view != "crop":  # the square input as the model sees it: only the processor's normalisation is left
            pils = [square_view(p, view, self.image_size, self.fill, self._resample) for p in pils]
            kw = {"do_resize": False, "do_center_crop": False}
        pixels = self.processor(images=pils, return_tensors="pt", **kw)["pixel_values"]
        pixels = pixels.to(self.device)
        with torch.inference_mode():
            if self.kind == "clip":
                out = self.model.get_image_features(pixel_values=pixels)
                feats = out if torch.is_tensor(out) else out.pooler_output
            else:
                # DINO: the CLS token after the final layer norm, the embedding
                # DINO-I uses (DreamBooth). Dinov2Model's pooler_output is the same
                # tensor; ViTModel's pooler_output is an extra dense+tanh head, not used.
                feats = self.model(pixel_values=pixels).last_hidden_state[:, 0]
        return _normalise(feats, normalise)

    def encode_texts(self, texts, normalise=True):
        if not self.has_text:
            return super().encode_texts(texts)
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode():
            out = self.model.get_text_features(**tokens)
            feats = out if torch.is_tensor(out) else out.pooler_output
        return _normalise(feats, normalise)


def _setting_of(spec: str) -> str:
    return "dino" if "dino" in spec.lower() else "clip"


# ---------------------------------------------------------------------------
# Resolution: spec -> factory
# ---------------------------------------------------------------------------

BUILTIN: dict[str, Callable[[str, str, dict], Encoder]] = {"hf": HFEncoder}


def factory_for(spec: str, registry=None) -> Callable[[str, str, dict], Encoder]:
    """``NAME:REST`` with a registered ``NAME`` -> that factory; else open_clip."""
    head = spec.split(":", 1)[0] if ":" in spec else ""
    if not head:
        if _is_open_clip_arch(spec):
            return OpenClipEncoder  # it will say: expected ARCH:WEIGHTS
        return HFEncoder  # no colon: a transformers folder or hub id (open_clip specs are ARCH:WEIGHTS)
    if registry is not None and head in registry.items.get("backbones", {}):
        return registry.items["backbones"][head]
    if head in BUILTIN:
        return BUILTIN[head]
    return OpenClipEncoder


def _is_open_clip_arch(name: str) -> bool:
    try:
        import open_clip
    except ImportError:  # pragma: no cover
        return False
    return name in open_clip.list_models()


def build_encoder(spec: str, device: str = "cpu", settings: dict | None = None, registry=None) -> Encoder:
    return factory_for(spec, registry)(spec, device, settings or {})


def describe_spec(spec: str, settings: dict, registry=None) -> dict[str, Any]:
    """Where a spec's weights are and whether present, without loading them."""
    head, _, rest = spec.partition(":")
    factory = factory_for(spec, registry)
    if factory is HFEncoder:
        found = locate_hf(rest if head == "hf" else spec, settings)
        return {"path": found.path, "home": found.home, "present": found.path is not None, "sha256": None,
                "hint": missing_message(f"backbone {spec!r}", found, _setting_of(spec), point_to_list=False)}
    if factory is not OpenClipEncoder:
        return {"path": None, "home": None, "present": None, "sha256": None, "hint": f"plugin backbone {head!r}"}
    if not rest:
        return {"path": None, "home": None, "present": False, "sha256": None, "hint": "expected ARCH:WEIGHTS"}
    path = os.path.expanduser(rest)
    if os.path.isfile(path) or os.sep in rest:
        present = os.path.isfile(path)
        return {"path": path, "home": path, "present": present, "sha256": None,
                "hint": "" if present else f"checkpoint file {path} not found"}
    arch = os.path.splitext(os.path.basename(head))[0] if head.endswith(".json") else head
    found = locate_open_clip(arch, rest, settings)
    sha = known_sha256(arch, rest)
    # the published hash is that of the URL file; a hub safetensors copy has none
    if found.path and not found.path.endswith(".pt"):
        sha = None
    return {"path": found.path, "home": found.home, "present": found.path is not None, "sha256": sha,
            "hint": missing_message(f"CLIP {spec!r}", found, "clip", point_to_list=False)}
