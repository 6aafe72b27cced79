"""``editreward``: TIGER-AI-Lab's EditReward reward model (Qwen2.5-VL / MiMo-VL
backbone, two reward heads), run locally with transformers.

What the released inference (``EditRewardInferencer``, config
``EditReward-Qwen2.5-7B-VL.yaml``: ranknet_multi_head, special reward token,
output_dim 2, pooling mean) does, and this module reimplements:

- the tokenizer gains the special token ``<|Reward|>``; the embeddings are
  resized to the tokenizer's length before the checkpoint is loaded (strict);
- per head, one user turn: source image, edited image (each resized with
  Qwen's smart_resize to about ``editreward_pixels`` = 256*28*28 pixels,
  bicubic), then the head's prompt (instruction following, visual quality)
  ending in ``<|Reward|>``; the chat template's generation prompt is added;
- image features replace the image placeholder tokens; the language model runs
  with plain sequential positions (the released forward calls the language
  model without the multimodal rope index, so image tokens get 1-D positions);
- each head (Linear-ReLU-Dropout-Linear-ReLU-Linear, float32) maps the hidden
  state at ``<|Reward|>`` to (mean, log sigma); the two heads are averaged; the
  reward is the averaged mean (``rewards[0][0]``).

Settings: ``editreward_base`` (folder of the backbone: config, processor,
chat template, e.g. Qwen2.5-VL-7B-Instruct), ``editreward_checkpoint`` (folder
with EditReward's ``model.safetensors`` or ``model.pth``), ``editreward_device``
(default cpu), ``editreward_dtype`` (default float32), ``editreward_pixels``
(default 200704).
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

from editmetrics.contract.metric import Metric, MetricError, Score
from editmetrics.judges.prompts import load_prompt

REWARD_TOKEN = "<|Reward|>"
DEFAULT_PIXELS = 256 * 28 * 28
HEADS = (("following", "editreward_following_v1"), ("quality", "editreward_quality_v1"))


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = DEFAULT_PIXELS,
                 max_pixels: int = DEFAULT_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's size rule: sides multiples of ``factor``, area within bounds, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise MetricError(f"aspect ratio {max(height, width) / min(height, width):.0f} is above 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def rename_checkpoint_keys(state: dict) -> dict:
    """Map a checkpoint saved with transformers < 4.52 (``model.layers``,
    ``visual.``) onto today's layout (``model.language_model``, ``model.visual``)."""
    if any(k.startswith("model.language_model.") for k in state):
        return state
    out = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "model." + key
        elif key.startswith("model."):
            key = "model.language_model." + key[len("model."):]
        out[key] = value
    return out


def build_model(config, vocab_size: int):
    """EditReward's network: the Qwen2.5-VL model plus two float32 reward heads,
    named so that the released state dict loads strictly."""
    import torch
    from torch import nn
    from transformers import Qwen2_5_VLForConditionalGeneration

    class EditRewardNet(Qwen2_5_VLForConditionalGeneration):
        def __init__(self, cfg):
            super().__init__(cfg)
            hidden = cfg.text_config.hidden_size
            self.rm_heads = nn.ModuleDict({
                f"head_{i}": nn.Sequential(nn.Linear(hidden, 1024), nn.ReLU(), nn.Dropout(0.05),
                                           nn.Linear(1024, 16), nn.ReLU(), nn.Linear(16, 2))
                for i in range(2)})

    model = EditRewardNet(config)
    model.resize_token_embeddings(vocab_size)
    model.rm_heads.to(torch.float32)
    return model


def load_state(path: str) -> dict:
    import torch

    for name in ("model.safetensors", "model.pth"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(file, device="cpu")
            else:
                state = torch.load(file, map_location="cpu", weights_only=True)
            return state.get("model", state) if isinstance(state, dict) else state
    raise MetricError(f"editreward: no model.safetensors or model.pth in {path} (setting editreward_checkpoint)")


class EditRewardScorer:
    """The loaded model and processor; ``score(source, edited, instruction)``."""

    def __init__(self, base: str, checkpoint: str, device: str = "cpu", dtype: str = "float32",
                 pixels: int = DEFAULT_PIXELS):
        import torch
        from transformers import AutoConfig, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(base, padding_side="right")
        tok = self.processor.tokenizer
        if REWARD_TOKEN not in tok.get_vocab():
            tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        self.reward_id = tok.convert_tokens_to_ids(REWARD_TOKEN)
        config = AutoConfig.from_pretrained(base)
        model = build_model(config, len(tok))
        missing, unexpected = model.load_state_dict(rename_checkpoint_keys(load_state(checkpoint)), strict=False)
        # lm_head is tied to the embeddings in some configs; nothing else may be missing
        missing = [k for k in missing if not k.startswith("lm_head.")]
        if missing or unexpected:
            raise MetricError(f"editreward: checkpoint does not match the model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
        model.to(getattr(torch, dtype))
        model.rm_heads.to(torch.float32)
        self.model = model.to(device).eval()
        self.device = device
        self.pixels = pixels
        self.prompts = [(name, load_prompt(file)) for name, file in HEADS]
        self._lock = threading.Lock()

    def _image(self, image: np.ndarray):
        from PIL import Image

        from editmetrics.data.images import to_pil

        pil = to_pil(image)
        h, w = smart_resize(pil.height, pil.width, min_pixels=self.pixels, max_pixels=self.pixels)
        return pil.resize((w, h), Image.BICUBIC)

    def inputs(self, prompt_text: str, images: list):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                 {"type": "text", "text": prompt_text}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.processor(text=[text], images=images, return_tensors="pt").to(self.device)

    def head_output(self, batch, head) -> "np.ndarray":
        """(mean, log sigma) of one head for one tokenised turn."""
        import torch

        model = self.model
        ids = batch["input_ids"]
        positions = (ids[0] == self.reward_id).nonzero().flatten()
        if positions.numel() != 1:
            raise MetricError(f"editreward: {positions.numel()} reward tokens in the prompt (expected 1)")
        embeds = model.get_input_embeddings()(ids)
        feats = model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"]).pooler_output
        feats = torch.cat(list(feats), dim=0).to(embeds.dtype)
        mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats)
        hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]
                                            ).last_hidden_state  # sequential positions, as released
        out = head(hidden[0, positions[0]].float())
        return out.detach().cpu().numpy().astype(np.float64)

    def score(self, source: np.ndarray, edited: np.ndarray, instruction: str) -> dict:
        import torch

        images = [self._image(source), self._image(edited)]
        outs = {}
        with self._lock, torch.inference_mode():
            for i, (name, prompt) in enumerate(self.prompts):
                text = prompt.text.replace("{text_prompt}", instruction)
                outs[name] = self.head_output(self.inputs(text, images), self.model.rm_heads[f"head_{i}"])
        mean = np.mean([o for o in outs.values()], axis=0)
        return {"reward": float(mean[0]), "heads": {k: [float(v[0]), float(v[1])] for k, v in outs.items()}}


_SCORERS: dict[tuple, EditRewardScorer] = {}
_SCORERS_LOCK = threading.Lock()


class EditReward(Metric):
    id = "editreward"
    description = "EditReward reward model (Qwen2.5-VL/MiMo-VL, two heads), local (editreward_base/_checkpoint)"
    higher_is_better = True
    range = (None, None)
    fields = ("edited", "instruction")
    reference = "source"

    def setup(self, ctx) -> None:
        s = ctx.settings
        base, ckpt = s.get("editreward_base"), s.get("editreward_checkpoint")
        for key, value in (("editreward_base", base), ("editreward_checkpoint", ckpt)):
            if not value or not os.path.isdir(os.path.expanduser(str(value))):
                raise MetricError(f"editreward needs {key}=FOLDER (got {value!r}); see docs/judges.md")
        device = str(s.get("editreward_device") or ctx.device or "cpu")
        dtype = str(s.get("editreward_dtype") or "float32")
        pixels = int(s.get("editreward_pixels") or DEFAULT_PIXELS)
        key = (os.path.abspath(os.path.expanduser(str(base))), os.path.abspath(os.path.expanduser(str(ckpt))),
               device, dtype, pixels)
        with _SCORERS_LOCK:  # one model per process and configuration
            if key not in _SCORERS:
                _SCORERS[key] = EditRewardScorer(key[0], key[1], device, dtype, pixels)
        self.scorer = _SCORERS[key]
        self.identity = {"base": os.path.basename(key[0]), "checkpoint": key[1], "dtype": dtype, "pixels": pixels,
                         "prompts": {name: {"name": p.name, "sha256": p.sha256} for name, p in self.scorer.prompts}}

    def compute(self, rec) -> Score:
        out = self.scorer.score(rec.image(self.ref), rec.image("edited"), str(rec.get("instruction")))
        return Score(out["reward"], components={name: v[0] for name, v in out["heads"].items()},
                     details={**self.identity, "heads": out["heads"]})
