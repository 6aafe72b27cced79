"""C2E-S2SER network: FLUX Fill transformer + LoRA, edit-tag head, losses, sampler.

Paper: "SPPE / ERMA / C2E-S2SER", section 5 (see docs/c2e_s2ser.md for every
choice the paper leaves open). In short, for a record (X source, S surrogate,
S' edited surrogate, M mask, P instruction, Y ground-truth edited source):

- all images go through the FLUX VAE; latents are packed into 2x2 patch tokens
  exactly like diffusers' Flux pipelines do;
- the *visual condition* c_v = [z_X; z_S; z_S'] is concatenated to the noisy
  image tokens along the sequence (eq. 9-10). Every image token keeps the FLUX
  Fill input layout (noisy latent | masked-image latent | pixel mask), so the
  pretrained ``x_embedder`` is reused unchanged: a condition token reads
  (z_c | z_c | 0), "a fully known image"; the noisy tokens read
  (z_t | z_X with M blanked | M), the Fill convention. RoPE ids keep the
  spatial (h, w) axes aligned and use the first axis as the image index
  (0 = generated, 1 = X, 2 = S, 3 = S');
- the edit-tag head predicts object / attribute / global from (z_S, z_S'); the
  tag becomes a special token prepended to the instruction (eq. 7);
- forward loss: rectified-flow matching on Y (eq. 12); cycle loss: the same
  model, empty text, conditions [z_Y_hat; z_S'; z_S], target X (eq. 11), where
  z_Y_hat is the forward one-step estimate x_t - sigma * v (not detached, so
  the cycle term also shapes the forward path); tag loss: cross-entropy with
  weak labels (eq. 8). The cycle term is added only after the warm-up steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TAGS = ("object", "attribute", "global")
# T5 sentinel tokens: already in the T5 vocabulary with trained embeddings, so
# the frozen text encoder can carry them without resizing its vocabulary; the
# LoRA-adapted transformer learns what each one means.
DEFAULT_TAG_TOKENS = ("<extra_id_0>", "<extra_id_1>", "<extra_id_2>")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
from editmetrics.models.c2e_s2ser_layout import FILL_SUBFOLDERS  # noqa: E402 - torch-free, shared with `editmetrics models`
FLUX_FILL_HINT = (
    "a local copy of black-forest-labs/FLUX.1-Fill-dev in diffusers layout (folders "
    + ", ".join(FILL_SUBFOLDERS)
    + "); download it yourself from https://huggingface.co/black-forest-labs/FLUX.1-Fill-dev and pass its folder "
    "with --base (training), the setting flux_fill (--set flux_fill=PATH) or the environment variable "
    "EDITMETRICS_FLUX_FILL"
)


class MissingWeightsError(FileNotFoundError):
    """A weight file or folder the model needs is not on local disk."""


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


@dataclass
class C2EConfig:
    """Everything needed to rebuild the trainable part; saved as JSON beside the weights."""

    lora_rank: int = 256  # paper: rank 256
    lora_alpha: float = 256.0  # paper silent: alpha = rank (scale 1)
    lora_targets: tuple[str, ...] = LORA_TARGETS  # paper: "attention layers"
    tag_hidden: int = 128
    tag_tokens: tuple[str, ...] = DEFAULT_TAG_TOKENS
    guidance: float = 30.0  # FLUX Fill's distilled-guidance default
    cycle_weight: float = 1.0
    tag_weight: float = 1.0
    warmup_steps: int = 3000  # paper: 3000 forward-only steps
    timestep_sampling: str = "logit_normal"  # or "uniform"
    max_sequence_length: int = 512
    resolution: int = 512

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        out["tag_tokens"] = list(self.tag_tokens)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> C2EConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("lora_targets", "tag_tokens"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


# ---------------------------------------------------------------------------
# weak tag labels (eq. 8) and the tag head
# ---------------------------------------------------------------------------

_GLOBAL = re.compile(
    r"\b(style|styled|painting|painted by|sketch|drawing|cartoon|anime|watercolou?r|oil|monet|van gogh|picasso|"
    r"impressionis\w*|cubis\w*|pixel art|comic|sepia|vintage|retro|black and white|grayscale|greyscale|filter|"
    r"tone|lighting|night|daytime|sunset|sunrise|winter|summer|autumn|fall|spring|snowy|rainy|foggy|weather|"
    r"season|background|scene|whole image|entire image|photo(graph)?|look like|futuristic|modern|old|ancient)\b",
    re.IGNORECASE,
)
_OBJECT = re.compile(
    r"\b(add|adding|put|place|insert|include|remove|removing|delete|erase|get rid of|take away|take out|"
    r"eliminate|replace|swap|without)\b",
    re.IGNORECASE,
)


def weak_tag(instruction: str) -> int:
    """Prompt-template weak label (paper 5.2): an index into ``TAGS``.

    Global/scene vocabulary wins over object verbs ("add snow to the scene" is
    a global change); then object insertion/removal/replacement verbs; every
    other instruction is a local attribute change.
    """
    text = instruction or ""
    if _GLOBAL.search(text):
        return TAGS.index("global")
    if _OBJECT.search(text):
        return TAGS.index("object")
    return TAGS.index("attribute")


def tag_index(value: Any) -> int:
    """A record's ``edit_tag`` field (name or index) as an index into ``TAGS``."""
    if isinstance(value, int) and 0 <= value < len(TAGS):
        return value
    text = str(value).strip().lower()
    aliases = {"obj": "object", "local": "attribute", "attr": "attribute", "style": "global"}
    text = aliases.get(text, text)
    if text not in TAGS:
        raise ValueError(f"edit_tag {value!r} is not one of {list(TAGS)}")
    return TAGS.index(text)


class TagHead(nn.Module):
    """Edit-conditioned tag generator: (z_S, z_S') -> logits over ``TAGS``.

    Sees the two surrogate latents and their difference; average pooling gives
    the spatial extent of the change (global vs local), max pooling its peak.
    """

    def __init__(self, latent_channels: int, hidden: int = 128, num_tags: int = len(TAGS)):
        super().__init__()
        c = latent_channels
        self.body = nn.Sequential(
            nn.Conv2d(3 * c, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.out = nn.Linear(2 * hidden, num_tags)

    def forward(self, z_s: torch.Tensor, z_e: torch.Tensor) -> torch.Tensor:
        h = self.body(torch.cat([z_s, z_e, z_e - z_s], dim=1))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.out(pooled)


# ---------------------------------------------------------------------------
# text conditioning: FLUX's CLIP (pooled) + T5 (sequence)
# ---------------------------------------------------------------------------


class FluxTextEncoder:
    """CLIP pooled embedding + T5 token embeddings, as FLUX pipelines compute them.

    Frozen; any Hugging Face tokenizer/model pair with the same interfaces works
    (the tests use tiny random CLIP/T5 models with a small word-level tokenizer).
    """

    def __init__(self, clip_tokenizer, clip_model, t5_tokenizer, t5_model, max_sequence_length: int = 512,
                 clip_max_length: int | None = None):
        self.clip_tokenizer, self.clip_model = clip_tokenizer, clip_model.eval().requires_grad_(False)
        self.t5_tokenizer, self.t5_model = t5_tokenizer, t5_model.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length
        self.clip_max_length = clip_max_length or min(getattr(clip_tokenizer, "model_max_length", 77), 77)

    @property
    def device(self):
        return next(self.t5_model.parameters()).device

    def to(self, device=None, dtype=None):
        self.clip_model.to(device=device, dtype=dtype)
        self.t5_model.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = list(prompts)
        clip_ids = self.clip_tokenizer(prompts, padding="max_length", max_length=self.clip_max_length,
                                       truncation=True, return_tensors="pt").input_ids
        pooled = self.clip_model(clip_ids.to(self.clip_model.device), output_hidden_states=False).pooler_output
        t5_ids = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_sequence_length,
                                   truncation=True, return_tensors="pt").input_ids
        seq = self.t5_model(t5_ids.to(self.t5_model.device), output_hidden_states=False)[0]
        return seq, pooled


# ---------------------------------------------------------------------------
# loading the base model (local folders only)
# ---------------------------------------------------------------------------


def check_base_folder(base: str | None) -> str:
    """Return the expanded base folder or raise ``MissingWeightsError`` naming what is missing."""
    if not base:
        raise MissingWeightsError(f"C2E-S2SER needs the base model FLUX.1-Fill-dev: no folder given; it must be {FLUX_FILL_HINT}")
    path = os.path.expanduser(base)
    if not os.path.isdir(path):
        raise MissingWeightsError(f"C2E-S2SER base model FLUX.1-Fill-dev not found at {path}; it must be {FLUX_FILL_HINT}")
    missing = [sub for sub in FILL_SUBFOLDERS if not os.path.isdir(os.path.join(path, sub))]
    if missing:
        raise MissingWeightsError(
            f"C2E-S2SER base model FLUX.1-Fill-dev at {path} lacks {', '.join(s + '/' for s in missing)}; it must be {FLUX_FILL_HINT}"
        )
    return path


def load_base(base: str, device: str = "cpu", dtype: torch.dtype = torch.float32, max_sequence_length: int = 512):
    """Load transformer, VAE, text encoders and scheduler from a local FLUX Fill folder."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxTransformer2DModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    path = check_base_folder(base)

    def load(what, fn):
        try:
            return fn()
        except (OSError, ValueError) as exc:  # diffusers/transformers report missing files as OSError
            raise MissingWeightsError(f"C2E-S2SER: cannot load {what} of FLUX.1-Fill-dev from {path}: {exc}") from exc

    kw = {"local_files_only": True}
    transformer = load("transformer/", lambda: FluxTransformer2DModel.from_pretrained(path, subfolder="transformer", torch_dtype=dtype, **kw))
    vae = load("vae/", lambda: AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, **kw))
    clip = load("text_encoder/", lambda: CLIPTextModel.from_pretrained(os.path.join(path, "text_encoder"), dtype=dtype, **kw))
    t5 = load("text_encoder_2/", lambda: T5EncoderModel.from_pretrained(os.path.join(path, "text_encoder_2"), dtype=dtype, **kw))
    clip_tok = load("tokenizer/", lambda: AutoTokenizer.from_pretrained(os.path.join(path, "tokenizer"), **kw))
    t5_tok = load("tokenizer_2/", lambda: AutoTokenizer.from_pretrained(os.path.join(path, "tokenizer_2"), **kw))
    scheduler = load("scheduler/", lambda: FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler", **kw))
    text = FluxTextEncoder(clip_tok, clip, t5_tok, t5, max_sequence_length=max_sequence_length)
    text.to(device)
    return transformer.to(device), vae.to(device), text, scheduler


# ---------------------------------------------------------------------------
# the recovery model
# ---------------------------------------------------------------------------


@dataclass
class Batch:
    """Training batch: images (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) in {0, 1}."""

    source: torch.Tensor
    surrogate: torch.Tensor
    edited_surrogate: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    instructions: list[str]
    tag_labels: torch.Tensor  # (B,) long; -1 = no label


class C2ES2SER:
    """FLUX Fill transformer with LoRA + tag head; training losses and sampling."""

    def __init__(self, transformer, vae, text: FluxTextEncoder, scheduler, config: C2EConfig | None = None):
        from peft import LoraConfig

        self.config = config or C2EConfig()
        self.transformer, self.vae, self.text, self.scheduler = transformer, vae, text, scheduler
        self.vae.eval().requires_grad_(False)
        self.transformer.requires_grad_(False)
        self.latent_channels = vae.config.latent_channels
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        expected = 8 * self.latent_channels + 4 * self.vae_scale**2
        if transformer.config.in_channels != expected:
            raise ValueError(
                f"transformer in_channels={transformer.config.in_channels} is not a FLUX Fill layout for this VAE "
                f"(expected {expected} = 2 x 4 x {self.latent_channels} latent + 4 x {self.vae_scale}^2 mask channels)"
            )
        cfg = self.config
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, init_lora_weights="gaussian",
                          target_modules=list(cfg.lora_targets))
        self.transformer.add_adapter(lora)
        # LoRA weights train in float32 whatever the base dtype (peft casts inputs to their dtype)
        for p in self.transformer.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        device = next(transformer.parameters()).device
        self.tag_head = TagHead(self.latent_channels, cfg.tag_hidden).to(device)
        self._blank: dict[tuple, torch.Tensor] = {}
        self._empty_text = None

    # -- parameters ------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.transformer.named_parameters() if "lora_" in n]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.lora_parameters() + list(self.tag_head.parameters())

    def train(self, mode: bool = True):
        self.transformer.train(mode)
        self.tag_head.train(mode)
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        out = {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.transformer).items()}
        out.update({f"tag_head.{k}": v for k, v in self.tag_head.state_dict().items()})
        return {k: v.detach().float().contiguous().cpu() for k, v in out.items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        lora = {k[5:]: v for k, v in state.items() if k.startswith("lora.")}
        tag = {k[9:]: v for k, v in state.items() if k.startswith("tag_head.")}
        if not lora or not tag:
            raise ValueError("checkpoint lacks LoRA ('lora.*') or tag head ('tag_head.*') tensors")
        from peft import get_peft_model_state_dict

        expected = set(get_peft_model_state_dict(self.transformer))
        if set(lora) != expected:  # a partial load would silently run half-adapted
            odd = sorted(set(lora) ^ expected)
            raise ValueError(f"checkpoint LoRA tensors do not fit this transformer and LoRA config "
                             f"({len(lora)} in the file, {len(expected)} expected; e.g. {odd[:2]})")
        set_peft_model_state_dict(self.transformer, lora)
        self.tag_head.load_state_dict(tag)

    # -- latents -----------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled FLUX latents (B, C, H/s, W/s); deterministic (posterior mode)."""
        vae = self.vae
        z = vae.encode(images.to(self.device, vae.dtype)).latent_dist.mode()
        shift = vae.config.shift_factor or 0.0
        return ((z - shift) * vae.config.scaling_factor).float()

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        shift = vae.config.shift_factor or 0.0
        z = z / vae.config.scaling_factor + shift
        return vae.decode(z.to(vae.dtype), return_dict=False)[0].float().clamp(-1, 1)

    @staticmethod
    def pack(z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, h/2 * w/2, 4C): FLUX's 2x2 patch tokens."""
        b, c, h, w = z.shape
        z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return z.reshape(b, (h // 2) * (w // 2), c * 4)

    @staticmethod
    def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, ch = tokens.shape
        z = tokens.view(b, h // 2, w // 2, ch // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return z.reshape(b, ch // 4, h, w)

    def mask_tokens(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel mask (B, 1, H, W) -> FLUX Fill's packed mask channels (B, N, 4 s^2)."""
        s = self.vae_scale
        b, _, height, width = mask.shape
        h, w = height // s, width // s
        m = mask[:, 0].reshape(b, h, s, w, s).permute(0, 2, 4, 1, 3).reshape(b, s * s, h, w)
        return self.pack(m.to(self.device).float())

    def latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel mask -> latent-resolution mask (B, 1, h, w): a latent cell is masked if any pixel is."""
        return F.max_pool2d(mask.to(self.device).float(), self.vae_scale)

    def blank_latent(self, height: int, width: int) -> torch.Tensor:
        """Latent of the mid-grey image Fill sees inside its hole (image 0 in [-1, 1])."""
        key = (height, width)
        if key not in self._blank:
            self._blank[key] = self.encode_images(torch.zeros(1, 3, height, width))
        return self._blank[key]

    def condition_tokens(self, z_src, z_sur, z_edit, mask: torch.Tensor):
        """Fill channels of the noisy tokens and the three condition tokens.

        ``z_*`` are unpacked latents (B, C, h, w); ``z_src`` may carry gradients
        (the cycle path feeds the forward estimate through it).
        Returns (fill_channels (B, N, 4C + 4s^2), cond_tokens (B, 3N, in_channels)).
        """
        h, w = z_src.shape[-2:]
        m_lat = self.latent_mask(mask)
        blank = self.blank_latent(h * self.vae_scale, w * self.vae_scale)
        # Fill convention: the hole is blanked in the masked-image latent. Done in
        # latent space so the cycle path (whose source is a latent) builds it the same way.
        masked = z_src * (1 - m_lat) + blank * m_lat
        fill = torch.cat([self.pack(masked), self.mask_tokens(mask)], dim=-1)
        zero_mask = torch.zeros_like(fill[..., 4 * self.latent_channels:])
        conds = []
        for z in (z_src, z_sur, z_edit):
            t = self.pack(z)
            conds.append(torch.cat([t, t, zero_mask], dim=-1))
        return fill, torch.cat(conds, dim=1)

    def image_ids(self, h: int, w: int) -> torch.Tensor:
        """RoPE ids of the generated tokens (index 0) and the X, S, S' tokens (1, 2, 3)."""
        ids = torch.zeros(h // 2, w // 2, 3)
        ids[..., 1] = torch.arange(h // 2)[:, None]
        ids[..., 2] = torch.arange(w // 2)[None, :]
        ids = ids.reshape(-1, 3)
        parts = []
        for k in range(4):
            part = ids.clone()
            part[:, 0] = k
            parts.append(part)
        return torch.cat(parts).to(self.device)

    # -- transformer ------------------------------------------------------
    def velocity(self, x_t, sigma, fill, cond, text, h: int, w: int) -> torch.Tensor:
        """Predicted flow velocity (eps - x0) for the generated tokens."""
        seq, pooled = text
        tr = self.transformer
        dtype = tr.dtype
        n = x_t.shape[1]
        hidden = torch.cat([torch.cat([x_t, fill], dim=-1), cond], dim=1)
        guidance = None
        if tr.config.guidance_embeds:
            guidance = torch.full((x_t.shape[0],), self.config.guidance, device=self.device, dtype=torch.float32)
        txt_ids = torch.zeros(seq.shape[1], 3, device=self.device)
        out = tr(
            hidden_states=hidden.to(dtype),
            timestep=sigma.to(self.device, dtype),
            guidance=guidance,
            pooled_projections=pooled.to(self.device, dtype),
            encoder_hidden_states=seq.to(self.device, dtype),
            txt_ids=txt_ids,
            img_ids=self.image_ids(h, w),
            return_dict=False,
        )[0]
        return out[:, :n].float()

    # -- prompts ------------------------------------------------------------
    def tagged_prompts(self, tags: Sequence[int], instructions: Sequence[str]) -> list[str]:
        return [f"{self.config.tag_tokens[t]} {p}".strip() for t, p in zip(tags, instructions)]

    def empty_text(self, batch: int):
        if self._empty_text is None:
            self._empty_text = self.text.encode([""])
        seq, pooled = self._empty_text
        return seq.expand(batch, -1, -1), pooled.expand(batch, -1)

    # -- training -------------------------------------------------------------
    def sample_sigmas(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        if self.config.timestep_sampling == "uniform":
            return torch.rand(batch, generator=generator)
        return torch.sigmoid(torch.randn(batch, generator=generator))  # logit-normal(0, 1)

    def losses(self, batch: Batch, step: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """The three objectives of eq. 12 for one batch at (0-based) optimisation ``step``.

        The cycle term is active when ``step >= warmup_steps`` (the paper's
        t > T_w with 1-based steps) and ``cycle_weight > 0``.
        """
        cfg = self.config
        gen = generator or torch.Generator().manual_seed(0)
        b = batch.source.shape[0]
        z_x, z_s, z_e, z_y = (self.encode_images(t) for t in
                              (batch.source, batch.surrogate, batch.edited_surrogate, batch.target))
        h, w = z_x.shape[-2:]
        mask = batch.mask

        logits = self.tag_head(z_s, z_e)
        labels = batch.tag_labels.to(self.device)
        known = labels >= 0
        tag_loss = F.cross_entropy(logits[known], labels[known]) if known.any() else logits.sum() * 0.0
        # teacher forcing: the weak label names the tag token when known, else the head's guess
        tags = torch.where(known, labels, logits.detach().argmax(-1)).tolist()
        text = self.text.encode(self.tagged_prompts(tags, batch.instructions))

        y0 = self.pack(z_y)
        sigma = self.sample_sigmas(b, gen).to(self.device)
        eps = torch.randn(y0.shape, generator=gen).to(self.device)
        s = sigma.view(b, 1, 1)
        x_t = (1 - s) * y0 + s * eps
        fill, cond = self.condition_tokens(z_x, z_s, z_e, mask)
        v = self.velocity(x_t, sigma, fill, cond, text, h, w)
        forward = F.mse_loss(v, eps - y0)

        total = forward + cfg.tag_weight * tag_loss
        cycle = None
        if step >= cfg.warmup_steps and cfg.cycle_weight > 0:
            y_hat = self.unpack(x_t - s * v, h, w)  # forward estimate of the edited source, kept in the graph
            x0 = self.pack(z_x)
            sigma2 = self.sample_sigmas(b, gen).to(self.device)
            eps2 = torch.randn(x0.shape, generator=gen).to(self.device)
            s2 = sigma2.view(b, 1, 1)
            x_t2 = (1 - s2) * x0 + s2 * eps2
            fill2, cond2 = self.condition_tokens(y_hat, z_e, z_s, mask)  # reversed evidence: S' -> S
            v2 = self.velocity(x_t2, sigma2, fill2, cond2, self.empty_text(b), h, w)
            cycle = F.mse_loss(v2, eps2 - x0)
            total = total + cfg.cycle_weight * cycle
        return {"total": total, "forward": forward, "cycle": cycle, "tag": tag_loss, "tag_logits": logits}

    # -- inference ------------------------------------------------------------
    @torch.no_grad()
    def sample(self, source, surrogate, edited_surrogate, mask, instructions: Sequence[str], steps: int = 50,
               seed: int = 0, tags: Sequence[int] | None = None) -> tuple[torch.Tensor, list[int]]:
        """Recover the edited source: images (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        z_x, z_s, z_e = (self.encode_images(t) for t in (source, surrogate, edited_surrogate))
        b, c, h, w = z_x.shape
        if tags is None:
            tags = self.tag_head(z_s, z_e).argmax(-1).tolist()
        text = self.text.encode(self.tagged_prompts(tags, instructions))
        fill, cond = self.condition_tokens(z_x, z_s, z_e, mask)
        gen = torch.Generator().manual_seed(int(seed))  # CPU noise: the same on every device
        latents = torch.randn((b, c, h, w), generator=gen).to(self.device)
        latents = self.pack(latents)
        sch = self.scheduler
        sigmas = np.linspace(1.0, 1.0 / steps, steps)
        kwargs = {}
        if sch.config.get("use_dynamic_shifting", False):
            kwargs["mu"] = calculate_shift(
                latents.shape[1], sch.config.get("base_image_seq_len", 256), sch.config.get("max_image_seq_len", 4096),
                sch.config.get("base_shift", 0.5), sch.config.get("max_shift", 1.15),
            )
        sch.set_timesteps(sigmas=sigmas, device=self.device, **kwargs)
        for t in sch.timesteps:
            sigma = (t / 1000.0).expand(b)
            v = self.velocity(latents, sigma, fill, cond, text, h, w)
            latents = sch.step(v, t, latents, return_dict=False)[0]
        image = self.decode_latents(self.unpack(latents, h, w))
        return image, list(tags)


def work_size(width: int, height: int, resolution: int, multiple: int) -> tuple[int, int]:
    """Aspect-preserving size whose long side is about ``resolution``, both sides multiples of ``multiple``."""
    scale = resolution / max(width, height)
    w = max(multiple, round(width * scale / multiple) * multiple)
    h = max(multiple, round(height * scale / multiple) * multiple)
    return w, h


def to_model_image(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """float32 HxWx3 in [0, 1] -> (1, 3, H', W') in [-1, 1] at ``size`` (w, h)."""
    from editmetrics.data.images import resize

    if (image.shape[1], image.shape[0]) != tuple(size):
        image = resize(image.astype(np.float32), size)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1


def to_model_mask(mask: np.ndarray | None, size: tuple[int, int]) -> torch.Tensor:
    """bool HxW (None = whole image) -> (1, 1, H', W') float in {0, 1}."""
    from editmetrics.data.images import resize_mask

    w, h = size
    if mask is None:
        return torch.ones(1, 1, h, w)
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    mask = mask.astype(bool)
    if (mask.shape[1], mask.shape[0]) != (w, h):
        mask = resize_mask(mask, (w, h))
    return torch.from_numpy(mask.astype(np.float32))[None, None]


def from_model_image(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(3, H', W') in [-1, 1] -> float32 HxWx3 in [0, 1] at ``size`` (w, h)."""
    from editmetrics.data.images import resize

    arr = ((image.float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(np.float32)
    if (arr.shape[1], arr.shape[0]) != tuple(size):
        arr = resize(arr, size)
    return np.clip(arr, 0.0, 1.0)
