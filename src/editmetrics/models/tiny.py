"""Tiny random diffusion models built offline, for tests and smoke runs.

Real architectures (diffusers ``UNet2DConditionModel``, ``AutoencoderKL``,
transformers ``CLIPTextModel`` and ``CLIPTokenizer`` with the real CLIP BPE
vocabulary) at toy sizes with random weights: they load through the very
same code paths as the full-size weights and run on a CPU in well under a
second per step. Their outputs are noise, not edits.

No model hub is touched: the CLIP vocabulary is rebuilt from the BPE merges
file that ``open_clip`` ships (``vocab.json`` + ``merges.txt`` for a
``CLIPTokenizer``), as transformers cannot fetch one offline.

    python -m editmetrics.models.tiny ip2p DIR    # writes a diffusers IP2P folder
"""

from __future__ import annotations

import gzip
import json
import os
import sys

CLIP_VOCAB_SIZE = 49408


def write_clip_vocab(folder: str) -> tuple[str, str]:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (49,408 tokens) into ``folder``."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    # CLIP keeps the first 48,894 merges: 256 bytes x 2 (with and without
    # the end-of-word marker) + merges + 2 specials = 49,408 tokens.
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE
    os.makedirs(folder, exist_ok=True)
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    with open(vocab_path, "w", encoding="utf-8") as fh:
        json.dump({token: i for i, token in enumerate(vocab)}, fh)
    with open(merges_path, "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_path, merges_path


def clip_tokenizer(folder: str, max_length: int = 77):
    """A transformers ``CLIPTokenizer`` with the real vocabulary, as Stable Diffusion uses it."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_vocab(folder)
    return CLIPTokenizer(vocab_path, merges_path, model_max_length=max_length, pad_token="<|endoftext|>")


def tiny_text_encoder(hidden: int = 32, seed: int = 0):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0):
    """An ``AutoencoderKL`` with 4 latent channels and a downsampling factor of 2."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32).eval()


def tiny_unet(in_channels: int = 8, cross_attention_dim: int = 32, seed: int = 0):
    """A ``UNet2DConditionModel``; 8 input channels (noisy latent + image latent) is InstructPix2Pix's layout."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4,
    ).eval()


def sd_scheduler_config() -> dict:
    """The noise schedule of Stable Diffusion 1.x (and so of InstructPix2Pix)."""
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "steps_offset": 1}


def tiny_ip2p_pipeline(folder: str, seed: int = 0):
    """An InstructPix2Pix pipeline of tiny random models (tokenizer files go into ``folder``)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    return StableDiffusionInstructPix2PixPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(seed=seed),
        tokenizer=clip_tokenizer(os.path.join(folder, "_vocab")), unet=tiny_unet(seed=seed),
        scheduler=EulerAncestralDiscreteScheduler(**sd_scheduler_config()),  # what timbrooks/instruct-pix2pix ships
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def save_tiny_ip2p(folder: str, seed: int = 0) -> str:
    """Write a tiny InstructPix2Pix pipeline as a diffusers folder (``save_pretrained``)."""
    import shutil

    pipe = tiny_ip2p_pipeline(folder, seed)
    pipe.save_pretrained(folder)
    shutil.rmtree(os.path.join(folder, "_vocab"), ignore_errors=True)
    return folder


if __name__ == "__main__":  # pragma: no cover - a convenience for smoke runs
    if len(sys.argv) != 3 or sys.argv[1] != "ip2p":
        sys.exit("usage: python -m editmetrics.models.tiny ip2p DIR")
    print(save_tiny_ip2p(sys.argv[2]))
