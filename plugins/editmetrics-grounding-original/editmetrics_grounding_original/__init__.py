"""editmetrics plugin: BPM grounding with the paper's original stack.

Grounder ``gdino-sam-original``: IDEA-Research GroundingDINO through
``groundingdino-py`` (the released ``groundingdino_swint_ogc.pth`` with its
python config ``GroundingDINO_SwinT_OGC.py``) and Meta's ``segment-anything``
(``sam_vit_h_4b8939.pth`` through ``sam_model_registry``), the checkpoints the
BPM paper used. Settings (``--set KEY=PATH`` or env ``EDITMETRICS_<KEY>``):

- ``bpm_groundingdino_config``: the model's python config (``.py``);
- ``bpm_groundingdino_checkpoint``: the released ``.pth`` (``{"model": state_dict}``);
- ``bpm_groundingdino_text_encoder``: a local BERT folder (``bert-base-uncased``
  saved with ``save_pretrained``: config, weights, vocabulary); it replaces the
  config's ``text_encoder_type`` so nothing is fetched from a hub;
- ``bpm_sam_checkpoint``: the SAM ``.pth``; ``bpm_sam_type``: its
  ``sam_model_registry`` key (``vit_h``, the paper's, by default);
- ``bpm_groundingdino_size``: the input's shorter side and longest-side cap,
  ``800,1333`` (the authors' ``RandomResize([800], max_size=1333)``) by default.

Pre/post-processing follows groundingdino-py's ``load_image`` / ``predict``:
resize, ImageNet normalisation, captions lower-cased and ending with ``.``, a
query kept when its highest token probability exceeds the box threshold, its
phrase the tokens above the text threshold, boxes (normalised cx, cy, w, h)
scaled to pixels. SAM gets each image once and predicts one mask per box
(``multimask_output=False``). See docs/bpm.md of editmetrics.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

from editmetrics.bpm.grounding import BOX_THRESHOLD, TEXT_THRESHOLD, DetectThenSegment, Detection
from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.data.images import to_pil, to_uint8
from editmetrics.contract.metric import MetricError
from editmetrics.contract.model import Weight

# bert_compat imports torch: it is imported where the model is built, so that
# loading this plugin (every `editmetrics` command) stays free of torch.

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _setting_path(settings: dict, key: str, what: str, where: str, folder: bool = False) -> str:
    """The path a setting names, or one MetricError naming the setting and the file."""
    value = settings.get(key)
    if not value:
        raise MetricError(f"gdino-sam-original needs {what}: set {key}=PATH (--set {key}=PATH, env "
                          f"EDITMETRICS_{key.upper()}); {where}")
    path = os.path.abspath(os.path.expanduser(str(value)))
    probe = os.path.join(path, "config.json") if folder else path
    if not os.path.isfile(probe):
        raise MetricError(f"{what} not found: {probe} is missing (setting {key}); {where}")
    return path


def _load_weights(path: str, what: str) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, no
    code from the file runs (both released checkpoints are such files)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one clear reason
        raise MetricError(f"{what}: {path} does not load as a weights-only torch file "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def resized_size(width: int, height: int, size: int = 800, max_size: int | None = 1333) -> tuple[int, int]:
    """(height, width) after groundingdino-py's ``RandomResize([size], max_size)``:
    the shorter side becomes ``size`` unless the longer would exceed ``max_size``
    (then the shorter side shrinks to fit); sides are truncated to integers."""
    if max_size is not None:
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def caption(phrase: str) -> str:
    """groundingdino-py's ``preprocess_caption``: lower case, stripped, ending with '.'."""
    text = phrase.lower().strip()
    return text if text.endswith(".") else text + "."


class OriginalGroundingDinoSam(DetectThenSegment):
    """GroundingDINO (groundingdino-py) + SAM (segment-anything) from the released files."""

    id = "gdino-sam-original"
    description = ("groundingdino-py GroundingDINO + segment-anything SAM from the released .pth files "
                   "(bpm_groundingdino_config/_checkpoint/_text_encoder, bpm_sam_checkpoint)")
    weights = (
        Weight("groundingdino_config", "GroundingDINO_SwinT_OGC.py of the IDEA-Research GroundingDINO release",
               setting="bpm_groundingdino_config"),
        Weight("groundingdino_checkpoint", "groundingdino_swint_ogc.pth of the same release",
               setting="bpm_groundingdino_checkpoint"),
        Weight("text_encoder", "a save_pretrained folder of bert-base-uncased (config.json, weights, vocab.txt)",
               setting="bpm_groundingdino_text_encoder"),
        Weight("sam_checkpoint", "Meta's segment-anything checkpoint (sam_vit_h_4b8939.pth for vit_h)",
               setting="bpm_sam_checkpoint"),
    )

    def __init__(self, settings: dict | None = None, device: str = "cpu", box_threshold: float = BOX_THRESHOLD,
                 text_threshold: float = TEXT_THRESHOLD):
        settings = settings or {}
        super().__init__(settings, device, box_threshold, text_threshold)  # thresholds, batch, max_detections
        try:
            size = [int(v) for v in str(settings.get("bpm_groundingdino_size", "800,1333")).split(",")]
            self.size, self.max_size = size[0], (size[1] if len(size) > 1 else None)
        except ValueError:
            raise MetricError(f"bpm_groundingdino_size={settings['bpm_groundingdino_size']!r}: expected SHORT,MAX "
                              f"pixels such as 800,1333") from None
        gd_where = "the IDEA-Research GroundingDINO release (GroundingDINO_SwinT_OGC.py, groundingdino_swint_ogc.pth)"
        config = _setting_path(settings, "bpm_groundingdino_config", "the GroundingDINO config", gd_where)
        ckpt = _setting_path(settings, "bpm_groundingdino_checkpoint", "the GroundingDINO checkpoint", gd_where)
        text = _setting_path(settings, "bpm_groundingdino_text_encoder", "GroundingDINO's BERT text encoder",
                             "a folder of bert-base-uncased saved with save_pretrained (config.json, weights, "
                             "vocab.txt)", folder=True)
        sam_ckpt = _setting_path(settings, "bpm_sam_checkpoint", "the SAM checkpoint",
                                 "Meta's segment-anything release (sam_vit_h_4b8939.pth for vit_h)")
        self.sam_type = str(settings.get("bpm_sam_type", "vit_h"))
        try:
            import groundingdino  # noqa: F401
            import segment_anything  # noqa: F401
        except ImportError as exc:
            raise MetricError(f"gdino-sam-original needs groundingdino-py and segment-anything ({exc}); see "
                              f"plugins/editmetrics-grounding-original/README.md") from exc
        import torch

        self.torch = torch
        self.detector = self._build_detector(config, ckpt, text)
        self.sam = self._build_sam(sam_ckpt)
        self.identity = f"{self.id}:{os.path.realpath(ckpt)}:{os.path.realpath(text)}:{os.path.realpath(sam_ckpt)}"

    # -- loading -------------------------------------------------------------

    def _build_detector(self, config: str, ckpt: str, text: str):
        from groundingdino.models import build_model
        from groundingdino.util.slconfig import SLConfig

        args = SLConfig.fromfile(config)  # their config format: a python file, executed
        args.device = self.device
        args.text_encoder_type = text  # a local folder: from_pretrained reads it, nothing is fetched
        # activation checkpointing only saves training memory; under no_grad it
        # recomputes nothing and changes no output, so it is switched off
        args.use_checkpoint = False
        args.use_transformer_ckpt = False
        # groundingdino-py prints the text encoder path while building
        from . import bert_compat

        with bert_compat.patched_build(), contextlib.redirect_stdout(io.StringIO()):
            model = build_model(args)
        state = _load_weights(ckpt, "GroundingDINO checkpoint")
        if not (isinstance(state, dict) and isinstance(state.get("model"), dict)):
            raise MetricError(f"GroundingDINO checkpoint {ckpt}: expected {{'model': state_dict}} as released")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state["model"].items()}
        result = model.load_state_dict(state, strict=False)
        # groundingdino-py loads with strict=False; here every parameter must come
        # from the file. Only transformers 4's saved position_ids buffer may be extra.
        unexpected = [k for k in result.unexpected_keys if not k.endswith("embeddings.position_ids")]
        if result.missing_keys or unexpected:
            raise MetricError(f"GroundingDINO checkpoint {ckpt} does not match {config}: missing "
                              f"{result.missing_keys[:5]}, unexpected {unexpected[:5]}")
        return model.to(self.device).eval()

    def _build_sam(self, ckpt: str):
        from segment_anything import sam_model_registry

        if self.sam_type not in sam_model_registry:
            raise MetricError(f"bpm_sam_type={self.sam_type!r}: not one of {sorted(sam_model_registry)}")
        # built empty, then loaded here weights-only and strictly (the registry's
        # own checkpoint= path calls torch.load without weights_only)
        sam = sam_model_registry[self.sam_type](checkpoint=None)
        try:
            sam.load_state_dict(_load_weights(ckpt, "SAM checkpoint"))
        except RuntimeError as exc:
            raise MetricError(f"SAM checkpoint {ckpt} does not match bpm_sam_type={self.sam_type}: "
                              f"{str(exc).splitlines()[0]}") from exc
        return sam.to(self.device).eval()

    # -- grounding -----------------------------------------------------------

    def preprocess(self, image: np.ndarray):
        """groundingdino-py's ``load_image`` transform: resize (PIL, bilinear),
        to [0, 1], ImageNet normalisation. Returns a 3xHxW tensor."""
        import torchvision.transforms.functional as TF

        pil = to_pil(image)
        pil = TF.resize(pil, list(resized_size(pil.width, pil.height, self.size, self.max_size)))
        return TF.normalize(TF.to_tensor(pil), IMAGENET_MEAN, IMAGENET_STD)

    def _detect(self, items) -> list[list[Detection]]:
        torch = self.torch
        captions = [caption(phrase) for _, phrase in items]
        # one size per call (see ground), so the images stack without padding
        batch = torch.stack([self.preprocess(image) for image, _ in items]).to(self.device)
        with torch.no_grad():
            outputs = self.detector(batch, captions=captions)
        probs = outputs["pred_logits"].sigmoid().cpu()  # (B, queries, 256 text positions)
        boxes = outputs["pred_boxes"].cpu()  # (B, queries, 4): cx, cy, w, h in [0, 1]
        tokenizer = self.detector.tokenizer
        out = []
        for b, ((image, _), text) in enumerate(zip(items, captions)):
            h, w = image.shape[:2]
            ids = tokenizer(text)["input_ids"]
            best = probs[b].max(dim=1).values
            dets = []
            for q in torch.nonzero(best > self.box_threshold).flatten().tolist():
                tokens = torch.nonzero(probs[b, q, :len(ids)] > self.text_threshold).flatten().tolist()
                # their get_phrases_from_posmap, less [CLS]/[SEP] (later GroundingDINO drops them too)
                label = tokenizer.decode([ids[t] for t in tokens], skip_special_tokens=True).replace(".", "").strip()
                cx, cy, bw, bh = boxes[b, q].tolist()
                # pixels, clipped to the image (a box may reach past the border)
                x0, y0 = max(0.0, (cx - bw / 2) * w), max(0.0, (cy - bh / 2) * h)
                x1, y1 = min(float(w), (cx + bw / 2) * w), min(float(h), (cy + bh / 2) * h)
                if x1 > x0 and y1 > y0:
                    dets.append(Detection((x0, y0, x1, y1), float(best[q]), label))
            out.append(self.keep(dets))
        return out

    def _segment(self, images: list[np.ndarray], dets: list[list[Detection]]) -> None:
        """segment-anything's batched ``Sam.forward``: each image is encoded once
        (the same ResizeLongestSide + normalisation + padding as ``SamPredictor``),
        every box of it is decoded in one call, one mask per box, thresholded
        at the model's ``mask_threshold`` and returned at the image's size."""
        torch = self.torch
        from segment_anything.utils.transforms import ResizeLongestSide

        resize = ResizeLongestSide(self.sam.image_encoder.img_size)
        batched = []
        for image, ds in zip(images, dets):
            pixels = to_uint8(image)
            resized = resize.apply_image(pixels)
            boxes = torch.tensor([list(d.box) for d in ds], dtype=torch.float32)
            batched.append({
                "image": torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous(),
                "original_size": pixels.shape[:2],
                "boxes": resize.apply_boxes_torch(boxes, pixels.shape[:2]).to(self.device),
            })
        with torch.no_grad():
            results = self.sam(batched, multimask_output=False)
        for ds, res in zip(dets, results):
            for det, mask in zip(ds, res["masks"].cpu().numpy()):
                det.mask = np.asarray(mask[0], dtype=bool)


@hookimpl
def register_grounders(register):
    register(OriginalGroundingDinoSam)


@hookimpl
def register_settings(register):
    from editmetrics.engine.settings import Setting

    gd = "of the IDEA-Research GroundingDINO release (grounder gdino-sam-original)"
    register(Setting("bpm_groundingdino_config", "path", None, f"GroundingDINO config file {gd}", True))
    register(Setting("bpm_groundingdino_checkpoint", "path", None, f"GroundingDINO checkpoint {gd}", True))
    register(Setting("bpm_groundingdino_text_encoder", "path", None,
                     "bert-base-uncased folder saved with save_pretrained (grounder gdino-sam-original)", True))
    register(Setting("bpm_groundingdino_size", "str", "800,1333",
                     "GroundingDINO input size SHORT,MAX in pixels (grounder gdino-sam-original)", True))
    register(Setting("bpm_sam_checkpoint", "path", None, "SAM checkpoint .pth (grounder gdino-sam-original)", True))
    register(Setting("bpm_sam_type", "str", "vit_h", "SAM model type of the checkpoint (grounder gdino-sam-original)",
                     True))
