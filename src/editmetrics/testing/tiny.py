"""Tiny random-weight models of the real architectures, written to local folders.

One place that builds every model editmetrics loads, at toy sizes and with
seeded random weights: an open_clip CLIP, a transformers CLIP and DINOv2, a
transformers GroundingDINO + SAM pair (BPM's grounding), and a diffusers
InstructPix2Pix pipeline. Each is saved in the format the real weights come
in, so it goes through the very same loading code; none needs a download.
The weights are RANDOM: scores computed with them only check the plumbing
(identities such as CLIP-I of an image with itself still hold exactly).

    editmetrics demo-weights DIR    # writes all of them + DIR/editmetrics.toml

Used by the tests (tests/test_*.py) and by ``editmetrics sppe synth``.
Heavy imports (torch, open_clip, transformers, diffusers) happen inside the
functions, so loading this plugin costs nothing.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys


CLIP_VOCAB_SIZE = 49408

# open_clip model config: 3.4M parameters, the real ViT + text transformer layout.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": CLIP_VOCAB_SIZE, "width": 64, "heads": 2, "layers": 2},
}

# GroundingDINO's text side is a BERT with its own vocabulary: a small word list
# is enough (other words become [UNK]); these cover the tests and examples/.
GROUNDING_WORDS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "the", "astronaut", "blue", "cat",
                   "helmet", "red", "rocket", "coffee", "cup", "photograph", "background", "person", "dog")

RANDOM_NOTE = ("RANDOM WEIGHTS: these tiny models are untrained; every score computed with them is "
               "meaningless except as a plumbing check (CLIP-I of an image with itself is still 1).")


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# -- open_clip CLIP ------------------------------------------------------------

def write_open_clip(folder: str, *, name: str = "tinyclip", seed: int = 0, arch: str | None = None,
                    image_size: int | None = None) -> str:
    """Write a random tiny open_clip CLIP as ``NAME.json`` (model config) +
    ``NAME.safetensors``; return its backbone spec ``CONFIG:WEIGHTS`` (setting ``clip``).

    With ``arch`` (an open_clip model name such as ``ViT-L-14``) the model has
    that architecture's full size instead, still random, and the spec is
    ``ARCH:WEIGHTS`` (used to time the paper's models where no weights exist).
    ``image_size`` changes the tiny model's input side (default 64; e.g. 224,
    CLIP's, where the geometry of its preprocessing matters)."""
    import open_clip
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    cfg = os.path.abspath(os.path.join(folder, f"{name}.json"))
    weights = os.path.abspath(os.path.join(folder, f"{name}.safetensors"))
    if arch:
        name = arch
    else:
        config = TINY_CLIP if image_size is None else {
            **TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "image_size": image_size}}
        with open(cfg, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        open_clip.add_model_config(cfg)  # open_clip names a config file's model after its stem
    _seed(seed)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs "randomly initialised": intended here
    try:
        model = open_clip.create_model(name, pretrained=None)
    finally:
        logging.getLogger().setLevel(level)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return f"{arch}:{weights}" if arch else f"{cfg}:{weights}"


def load_open_clip(spec: str):
    """``(model, preprocess, tokenizer)`` of a spec written by ``write_open_clip``,
    loaded with plain open_clip + safetensors (independent of editmetrics'
    backbone code, for direct comparisons in tests)."""
    import open_clip
    from safetensors.torch import load_file

    cfg, weights = spec.split(":", 1)
    name = os.path.splitext(os.path.basename(cfg))[0]
    open_clip.add_model_config(cfg)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.load_state_dict(load_file(weights))
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


# -- CLIP tokenizer vocabulary (for transformers models) ------------------------

def write_clip_vocab(folder: str) -> tuple[str, str]:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (49,408 tokens) into ``folder``.

    transformers cannot fetch a CLIP vocabulary offline, and silently builds a
    2-token tokenizer instead; open_clip ships the BPE merges, from which the
    vocabulary is rebuilt exactly as CLIP builds it."""
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


# -- transformers CLIP and DINOv2 ----------------------------------------------

def write_hf_clip(folder: str, *, seed: int = 0) -> str:
    """A random tiny transformers ``CLIPModel`` + image processor + real-vocabulary
    tokenizer saved with ``save_pretrained``; returns the spec ``hf:DIR``."""
    import transformers as tf

    tok = clip_tokenizer(folder)
    _seed(seed)
    cfg = tf.CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    tf.CLIPModel(cfg).eval().save_pretrained(folder)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    tok.save_pretrained(folder)
    return f"hf:{os.path.abspath(folder)}"


def write_dinov2(folder: str, *, seed: int = 0) -> str:
    """A random tiny transformers ``Dinov2Model`` + its processor (DINOv2's
    resize-then-crop and ImageNet statistics); returns the spec ``hf:DIR`` (setting ``dino``)."""
    import transformers as tf

    _seed(seed)
    cfg = tf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    tf.Dinov2Model(cfg).eval().save_pretrained(folder)
    tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                         do_convert_rgb=True).save_pretrained(folder)
    return f"hf:{os.path.abspath(folder)}"


# -- GroundingDINO + SAM (BPM grounding) ----------------------------------------

BERT_VOCAB_SIZE = 30522  # bert-base-uncased


def write_bert_vocab(path: str, words: tuple[str, ...] = GROUNDING_WORDS, size: int | None = None) -> str:
    """A WordPiece ``vocab.txt``: ``words``, padded with ``[unusedN]`` to ``size``
    entries when given (BERT-base's embedding shape needs 30,522); returns ``path``."""
    lines = list(words) + [f"[unused{i}]" for i in range(max(0, (size or 0) - len(words)))]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def write_grounding(folder: str, *, seed: int = 0, words: tuple[str, ...] = GROUNDING_WORDS,
                    paper_sized: bool = False) -> dict[str, str]:
    """Random tiny transformers GroundingDINO (Swin + 1-layer BERT, about 400k
    parameters) and SAM (about 100k) folders under ``folder``; returns the
    settings ``{"bpm_groundingdino": DIR, "bpm_sam": DIR}``.

    ``paper_sized=True`` builds the paper's architectures at full size instead
    (GroundingDINO Swin-T OGC with BERT-base, 800/1333 input; SAM ViT-H, 1024
    input), still with random weights: for timing where no weights exist
    (``benchmarks/bench_bpm.py --random-paper-sized``). The BERT vocabulary is
    ``words`` padded with ``[unusedN]`` to BERT's 30,522 entries."""
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SamConfig, SamImageProcessor,
                              SamModel, SamProcessor, SwinConfig)

    gdir, sdir = os.path.join(folder, "groundingdino"), os.path.join(folder, "sam")
    os.makedirs(gdir, exist_ok=True)
    vocab = write_bert_vocab(os.path.join(folder, "bert-vocab.txt"), words,
                             size=BERT_VOCAB_SIZE if paper_sized else None)
    tok = BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    if paper_sized:
        _seed(seed)
        GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(gdir)  # defaults = Swin-T OGC
        GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tok).save_pretrained(gdir)
        os.remove(vocab)
        vit_h = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_dim=5120,
                     global_attn_indexes=[7, 15, 23, 31])
        SamModel(SamConfig(vision_config=vit_h)).save_pretrained(sdir)
        SamProcessor(image_processor=SamImageProcessor()).save_pretrained(sdir)
        return {"bpm_groundingdino": os.path.abspath(gdir), "bpm_sam": os.path.abspath(sdir)}
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64),
        # decoder_layers=1 fails to build in transformers 5.24 (tied weights); 2 works
        d_model=32, num_feature_levels=3, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, max_text_len=32,
        use_pretrained_backbone=False)
    _seed(seed)
    GroundingDinoForObjectDetection(cfg).save_pretrained(gdir)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(
        size={"shortest_edge": 96, "longest_edge": 160}), tokenizer=tok).save_pretrained(gdir)
    os.remove(vocab)  # the processor saved its own copy
    scfg = SamConfig(
        # num_pos_feats must be half the prompt encoder's hidden size, or box prompts fail
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64, image_size=256,
                           patch_size=16, output_channels=32, global_attn_indexes=[0], window_size=4,
                           num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64,
                                 iou_head_hidden_dim=32))
    SamModel(scfg).save_pretrained(sdir)
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 256},
                                                   pad_size={"height": 256, "width": 256})).save_pretrained(sdir)
    return {"bpm_groundingdino": os.path.abspath(gdir), "bpm_sam": os.path.abspath(sdir)}


# -- InstructPix2Pix family (diffusers) ------------------------------------------

def tiny_text_encoder(hidden: int = 32, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed(seed)
    config = CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0):
    """An ``AutoencoderKL`` with 4 latent channels and a downsampling factor of 2."""
    from diffusers import AutoencoderKL

    _seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32).eval()


def tiny_unet(in_channels: int = 8, cross_attention_dim: int = 32, seed: int = 0):
    """A ``UNet2DConditionModel``; 8 input channels (noisy latent + image latent) is InstructPix2Pix's layout."""
    from diffusers import UNet2DConditionModel

    _seed(seed)
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
    """Write a tiny InstructPix2Pix pipeline as a diffusers folder (``save_pretrained``);
    usable for the settings ``ip2p``, ``magicbrush`` and ``rsie``."""
    import shutil

    pipe = tiny_ip2p_pipeline(folder, seed)
    pipe.save_pretrained(folder)
    shutil.rmtree(os.path.join(folder, "_vocab"), ignore_errors=True)
    return folder


# -- everything at once ------------------------------------------------------------

def write_demo_weights(folder: str, *, seed: int = 0, ip2p: bool = True) -> dict[str, str]:
    """Write every tiny model under ``folder`` and ``folder/editmetrics.toml``
    pointing at them (absolute paths: settings paths resolve against the
    working directory, not the config file). Returns the settings."""
    folder = os.path.abspath(folder)
    settings = {"clip": write_open_clip(os.path.join(folder, "clip"), seed=seed),
                "dino": write_dinov2(os.path.join(folder, "dinov2"), seed=seed)}
    settings.update(write_grounding(os.path.join(folder, "grounding"), seed=seed))
    if ip2p:
        path = os.path.abspath(save_tiny_ip2p(os.path.join(folder, "ip2p"), seed=seed))
        settings.update({"ip2p": path, "magicbrush": path, "rsie": path})
    lines = [f"# Written by `editmetrics demo-weights` (seed {seed}).", f"# {RANDOM_NOTE}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]  # a JSON string is a TOML string
    with open(os.path.join(folder, "editmetrics.toml"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return settings


if __name__ == "__main__":  # pragma: no cover
    from editmetrics.cli.demo import demo_weights

    sys.exit(demo_weights())
