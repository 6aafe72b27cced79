"""InstructPix2Pix-family editors on diffusers, and R-SIE's region-wise diffusion.

Models (weights from local diffusers folders only; see docs/models.md):

- ``ip2p``: InstructPix2Pix (Brooks et al. 2023), setting ``ip2p``.
- ``magicbrush``: MagicBrush's fine-tuned InstructPix2Pix, setting ``magicbrush``
  (same pipeline class, other weights).
- ``r-sie``: an InstructPix2Pix-architecture checkpoint (R-SIE's fine-tune)
  run with the region-wise diffusion process, setting ``rsie``.

Every one of them runs either the standard diffusers pipeline
(``mode=standard``) or the Region-wise Diffusion Process of R-SIE
(``mode=rwdp``, paper section 4.1), which needs the record's ``source_mask``
or else ``mask`` (the source object). RwDP, as implemented in ``rwdp_sample``:

1. z_reconst,0 = E(X) (scaled VAE latent); eps_reconst ~ N(0, I);
   z_reconst,T = scheduler.add_noise(z_reconst,0, eps_reconst, t_first).
2. alpha: a preliminary backward pass with the same scheduler and number of
   steps uses alpha * eps_reconst as the noise prediction at every step (no
   network); alpha starts at 1 and takes ``alpha_steps`` Adam steps on
   ||z_reconst,0 - z_hat_0(alpha)||^2 (Eq. 7). The best alpha seen is kept.
3. z_T = (1 - m) z_reconst,T + m z_gen,T with z_gen,T ~ N(0, I) scaled by the
   scheduler's initial sigma (Eq. 6); m is the mask at latent resolution.
4. each step: eps = m * eps_gen + (1 - m) * alpha * eps_reconst (Eqs. 8-9),
   eps_gen the InstructPix2Pix classifier-free guidance of the UNet.

Because the scheduler step is elementwise, the background of the final
latent is exactly the preliminary reconstruction z_hat_0(alpha*), which the
alpha fit brings close to E(X).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.data.images import resize, resize_mask
from editmetrics.contract.metric import Param
from editmetrics.contract.model import Model, ModelError, Weight

# scheduler names -> diffusers classes; the ones that inject fresh noise at
# every step cannot reproduce the background and are refused by RwDP.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "ddpm": "DDPMScheduler",
}
STOCHASTIC = {"EulerAncestralDiscreteScheduler", "DDPMScheduler", "KDPM2AncestralDiscreteScheduler"}
# Stable Diffusion 1.x's own settings for these schedulers. A class built
# from another scheduler's config would otherwise take the diffusers defaults
# or that scheduler's values: DDIM's clip_sample=True clips latents to [-1, 1]
# and ruins them; IP2P's Euler config carries "linspace" timesteps, with which
# DDIM steps back by 1000/steps between timesteps 999/(steps-1) apart, a
# mismatch a single alpha cannot fully absorb.
SD_OVERRIDES = {
    "ddim": {"clip_sample": False, "set_alpha_to_one": False, "timestep_spacing": "leading"},
    "pndm": {"skip_prk_steps": True, "set_alpha_to_one": False, "timestep_spacing": "leading"},
    "ddpm": {"clip_sample": False},
}
RWDP_DEFAULT_SCHEDULER = "ddim"


# ---------------------------------------------------------------------------
# Region-wise diffusion process (scheduler-level pieces are model-free)
# ---------------------------------------------------------------------------


def reconstruct(scheduler, z_t, eps, alpha, steps: int):
    """Backward pass that uses ``alpha * eps`` as every step's noise
    prediction: the preliminary reconstruction of R-SIE (differentiable in
    ``alpha``; the scheduler's timesteps are reset first)."""
    scheduler.set_timesteps(steps, device=z_t.device)
    z = z_t
    for t in scheduler.timesteps:
        # marks the step as prepared (Euler-type schedulers track it); the
        # scaled copy is what a UNet would see, and no UNet is involved here
        scheduler.scale_model_input(z, t)
        z = scheduler.step(alpha * eps, t, z, return_dict=False)[0]
    return z


def fit_alpha(scheduler, z_t, eps, z0, steps: int, iters: int = 100, lr: float = 0.01) -> dict[str, float]:
    """Fit the scale of the reused reconstruction noise (R-SIE Eq. 7).

    Starts at 1 and takes ``iters`` Adam steps on the mean squared error
    between z_hat_0(alpha) and z0. Returns the best alpha seen (alpha = 1
    included, so the fit never makes the reconstruction worse) with its loss
    and the loss at alpha = 1.
    """
    import torch

    z_t, eps, z0 = z_t.detach().float(), eps.detach().float(), z0.detach().float()
    alpha = torch.tensor(1.0, device=z_t.device, requires_grad=True)
    optimizer = torch.optim.Adam([alpha], lr=lr)
    best_alpha, best_loss, loss_at_one = 1.0, math.inf, math.nan
    with torch.enable_grad():
        for i in range(iters + 1):
            optimizer.zero_grad()
            loss = torch.mean((reconstruct(scheduler, z_t, eps, alpha, steps) - z0) ** 2)
            value = loss.item()
            if i == 0:
                loss_at_one = value
            if value < best_loss:
                best_alpha, best_loss = alpha.item(), value
            if i == iters:
                break
            loss.backward()
            optimizer.step()
    return {"alpha": best_alpha, "recon_mse": best_loss, "recon_mse_alpha1": loss_at_one}


def latent_mask(mask, factor: int):
    """Pixel mask (1, 1, H, W) -> latent mask (1, 1, H/f, W/f): a latent cell is
    in the source region when any of its pixels is, so no part of the object
    is pinned to the reconstruction."""
    import torch.nn.functional as F

    return F.max_pool2d(mask.float(), kernel_size=factor, stride=factor)


def rwdp_sample(unet, scheduler, embeds, image_latents, z0, mask, *, steps: int, guidance_scale: float,
                image_guidance_scale: float, generator, alpha_steps: int = 100, alpha_lr: float = 0.01):
    """R-SIE's region-wise diffusion for an InstructPix2Pix-family UNet.

    ``embeds``: text embeddings (3, L, D) ordered [instruction, empty, empty];
    ``image_latents``: the unscaled image condition (1, C, h, w);
    ``z0``: E(X) scaled by the VAE scaling factor (1, C, h, w);
    ``mask``: the source region at latent resolution (1, 1, h, w), 1 inside.
    ``generator`` (a CPU ``torch.Generator``) gives eps_reconst, then z_gen.
    Returns the final latent (float32) and a dict of diagnostics.
    """
    import torch

    device = z0.device
    z0 = z0.float()
    eps_reconst = torch.randn(z0.shape, generator=generator, dtype=torch.float32).to(device)
    z_gen = torch.randn(z0.shape, generator=generator, dtype=torch.float32).to(device)

    scheduler.set_timesteps(steps, device=device)
    z_reconst = scheduler.add_noise(z0, eps_reconst, scheduler.timesteps[:1])
    fit_scheduler = type(scheduler).from_config(scheduler.config)  # the same scheduler, own state
    fit = fit_alpha(fit_scheduler, z_reconst, eps_reconst, z0, steps, alpha_steps, alpha_lr)
    alpha = fit["alpha"]

    m = mask.to(device=device, dtype=torch.float32)
    z = (1 - m) * z_reconst + m * (z_gen * scheduler.init_noise_sigma)
    condition = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)]).to(unet.dtype)
    embeds = embeds.to(unet.dtype)
    background_eps = alpha * eps_reconst
    scheduler.set_timesteps(steps, device=device)
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([z] * 3), t)
            model_input = torch.cat([model_input.to(unet.dtype), condition], dim=1)
            pred = unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0].float()
            e_text, e_image, e_uncond = pred.chunk(3)
            e_gen = e_uncond + guidance_scale * (e_text - e_image) + image_guidance_scale * (e_image - e_uncond)
            eps = m * e_gen + (1 - m) * background_eps
            z = scheduler.step(eps, t, z, return_dict=False)[0]
    info = dict(fit, mask_fraction=float(m.mean().item()), scheduler=type(scheduler).__name__)
    return z, info


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

_PARAMS = {
    "mode": Param("standard", "standard (the diffusers pipeline) or rwdp (R-SIE region-wise diffusion; needs mask)",
                  choices=("standard", "rwdp")),
    "steps": Param(100, "denoising steps (R-SIE: 100)"),
    "guidance_scale": Param(7.5, "text guidance scale"),
    "image_guidance_scale": Param(1.5, "image guidance scale"),
    "scheduler": Param("default", "default: the weights' own scheduler (standard) or DDIM (rwdp)",
                       choices=("default", *SCHEDULERS)),
    "resolution": Param(512, "long side the source is resized to (multiple of 8) before editing; 0 keeps it"),
    "alpha_steps": Param(100, "rwdp: Adam steps fitting alpha"),
    "alpha_lr": Param(0.01, "rwdp: Adam learning rate for alpha"),
    "dtype": Param("auto", "auto: float16 on CUDA, float32 elsewhere",
                   choices=("auto", "float32", "float16", "bfloat16")),
}


class InstructPix2PixFamily(Model):
    """An editor on ``StableDiffusionInstructPix2PixPipeline`` weights."""

    kind = "editor"
    inputs = ("source", "instruction")
    optional_inputs = ("mask", "source_mask")
    params: ClassVar[dict[str, Param]] = _PARAMS

    def load(self, device: str = "cpu") -> None:
        paths = self.require_weights()
        try:
            import diffusers
            import torch
        except ImportError as exc:  # pragma: no cover - the extra is part of "all"
            raise ModelError(f"model {self.id!r} needs diffusers: pip install 'editmetrics[diffusion]' ({exc})") from None
        o = self.options
        dtype_name = o["dtype"] if o["dtype"] != "auto" else ("float16" if str(device).startswith("cuda") else "float32")
        path = next(iter(paths.values()))
        try:
            pipe = diffusers.StableDiffusionInstructPix2PixPipeline.from_pretrained(
                path, dtype=getattr(torch, dtype_name), safety_checker=None,
                requires_safety_checker=False, local_files_only=True,
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"model {self.id!r}: cannot load an InstructPix2Pix pipeline from {path}: {exc}") from None
        latent = pipe.vae.config.latent_channels
        if pipe.unet.config.in_channels != 2 * latent:
            raise ModelError(f"model {self.id!r}: {path} has a UNet with {pipe.unet.config.in_channels} input channels; "
                             f"an InstructPix2Pix-family UNet takes {2 * latent} (noisy latent + image latent)")
        name = o["scheduler"]
        if name == "default" and o["mode"] == "rwdp":
            name = RWDP_DEFAULT_SCHEDULER
        if name != "default":
            pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(
                pipe.scheduler.config, **SD_OVERRIDES.get(name, {}))
        if o["mode"] == "rwdp" and type(pipe.scheduler).__name__ in STOCHASTIC:
            raise ModelError(f"model {self.id!r}: mode=rwdp needs a deterministic scheduler, not "
                             f"{type(pipe.scheduler).__name__} (it adds fresh noise, so the background cannot be "
                             "reconstructed); use scheduler=ddim, pndm, euler or dpmsolver")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        self.device = device

    # -- helpers ---------------------------------------------------------
    def _working_size(self, width: int, height: int) -> tuple[int, int]:
        """Resize so the long side is ``resolution`` (when set), then round
        down to a multiple of the VAE's downsampling factor."""
        factor = self.pipe.vae_scale_factor
        long_side = self.options["resolution"]
        scale = long_side / max(width, height) if long_side > 0 else 1.0
        w = max(factor, int(round(width * scale)) // factor * factor)
        h = max(factor, int(round(height * scale)) // factor * factor)
        return w, h

    def _encode_text(self, prompt: str):
        import torch

        tok = self.pipe.tokenizer
        ids = tok([prompt, ""], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        with torch.no_grad():
            text, empty = self.pipe.text_encoder(ids)[0].chunk(2)
        return torch.cat([text, empty, empty])  # InstructPix2Pix's order: text, image-only, unconditional

    def predict(self, inputs: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        import torch
        from PIL import Image

        source = inputs["source"]
        height, width = source.shape[:2]
        size = self._working_size(width, height)
        image = resize(source, size) if size != (width, height) else source
        generator = torch.Generator("cpu").manual_seed(0 if seed is None else seed)
        o = self.options
        info: dict[str, Any] = {"working_size": list(size)}
        if o["mode"] == "standard":
            pil = Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
            out = self.pipe(prompt=inputs["instruction"], image=pil, num_inference_steps=o["steps"],
                            guidance_scale=o["guidance_scale"], image_guidance_scale=o["image_guidance_scale"],
                            generator=generator, output_type="np").images[0]
        else:
            # m_source: the source object's mask; records whose edit region is
            # given only as `mask` use that
            field = "source_mask" if inputs.get("source_mask") is not None else "mask"
            if inputs.get(field) is None:
                raise ModelError(f"model {self.id!r} in mode=rwdp needs a 'mask' (or 'source_mask') field: "
                                 "the source object's region")
            out, rwdp_info = self._rwdp(image, resize_mask(inputs[field], size), inputs["instruction"], generator)
            info.update(rwdp_info, region_field=field)
        out = np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)
        if out.shape[:2] != (height, width):
            out = resize(out, (width, height))  # outputs live on the source's pixel grid
        return {"edited": out, "info": info}

    def _rwdp(self, image: np.ndarray, mask: np.ndarray, instruction: str, generator):
        import torch

        pipe, o = self.pipe, self.options
        vae = pipe.vae
        x = torch.from_numpy(image).permute(2, 0, 1)[None].to(self.device, vae.dtype) * 2 - 1
        with torch.no_grad():
            image_latents = vae.encode(x).latent_dist.mode()  # IP2P's image condition: unscaled mode
        z0 = image_latents.float() * vae.config.scaling_factor
        m = latent_mask(torch.from_numpy(mask)[None, None].to(self.device), pipe.vae_scale_factor)
        z, info = rwdp_sample(pipe.unet, pipe.scheduler, self._encode_text(instruction), image_latents, z0, m,
                              steps=o["steps"], guidance_scale=o["guidance_scale"],
                              image_guidance_scale=o["image_guidance_scale"], generator=generator,
                              alpha_steps=o["alpha_steps"], alpha_lr=o["alpha_lr"])
        with torch.no_grad():
            decoded = vae.decode((z / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]
        out = (decoded[0].float().permute(1, 2, 0).cpu().numpy() + 1) / 2
        return out, info


class InstructPix2Pix(InstructPix2PixFamily):
    id = "ip2p"
    description = "InstructPix2Pix (diffusers); mode=rwdp runs R-SIE's region-wise diffusion"
    weights = (Weight("instruct-pix2pix", "a diffusers folder of timbrooks/instruct-pix2pix", setting="ip2p"),)


class MagicBrush(InstructPix2PixFamily):
    id = "magicbrush"
    description = "MagicBrush fine-tuned InstructPix2Pix (diffusers); mode=rwdp runs R-SIE's region-wise diffusion"
    weights = (Weight("magicbrush", "a diffusers folder of MagicBrush's InstructPix2Pix fine-tune "
                      "(e.g. vinesmsuic/magicbrush-jul7)", setting="magicbrush"),)


class RSIE(InstructPix2PixFamily):
    id = "r-sie"
    description = "R-SIE: an InstructPix2Pix-architecture checkpoint with region-wise diffusion (needs mask)"
    weights = (Weight("r-sie", "a diffusers InstructPix2Pix-architecture folder fine-tuned on R-SIE's data",
                      setting="rsie"),)
    params = {
        **_PARAMS,
        "mode": Param("rwdp", _PARAMS["mode"].help, choices=("standard", "rwdp")),
        "image_guidance_scale": Param(1.2, "image guidance scale (R-SIE section 5.3: 1.2)"),
    }


@hookimpl
def register_models(register):
    for cls in (InstructPix2Pix, MagicBrush, RSIE):
        register(cls)
