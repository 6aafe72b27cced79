"""A tiny random Qwen2.5-VL (model, tokenizer, processor) written to a folder,
for tests of the ``transformers`` judge backend. Built offline in seconds; its
answers are noise (a real judge folder is a downloaded Qwen2.5-VL checkpoint).
"""

from __future__ import annotations

import os

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's chat layout, written here in a minimal form: images where the
# message puts them, each wrapped in vision start/end tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    from editmetrics.judges.prompts import load_prompt

    texts = [load_prompt(n).text for n in ("viescore_tie_sc_v1", "viescore_pq_v1")]
    return texts + ['{"score": [7, 4], "reasoning": "ok"}', "0 1 2 3 4 5 6 7 8 9 10"]


def write_tiny_qwen2_5_vl(folder: str, *, seed: int = 0) -> str:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    os.makedirs(folder, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=400, min_frequency=1, special_tokens=SPECIAL, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2_5_VLConfig(
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 64, "fullatt_block_indexes": [1], "window_size": 56,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    pixels = 14 * 14 * 4  # one merged token per 28x28 pixels
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels * 4, max_pixels=pixels * 16)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder


def write_tiny_editreward(base: str, checkpoint: str, *, seed: int = 0) -> str:
    """A random EditReward checkpoint (``model.safetensors``, the released key
    layout) for the tiny Qwen2.5-VL in ``base``."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoProcessor

    from editmetrics.judges.editreward import REWARD_TOKEN, build_model

    tok = AutoProcessor.from_pretrained(base).tokenizer
    tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    torch.manual_seed(seed)
    model = build_model(AutoConfig.from_pretrained(base), len(tok))
    os.makedirs(checkpoint, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(checkpoint, "model.safetensors"))
    return checkpoint
