"""Former home of the tiny diffusion builders, kept as an import path.

Every tiny random-weight builder now lives in ``editmetrics.tiny`` (see
``editmetrics demo-weights``); this module re-exports the InstructPix2Pix ones.

    python -m editmetrics.models.tiny ip2p DIR    # writes a diffusers IP2P folder
"""

from __future__ import annotations

import sys

from ..tiny import (  # noqa: F401 - re-exported
    CLIP_VOCAB_SIZE,
    clip_tokenizer,
    save_tiny_ip2p,
    sd_scheduler_config,
    tiny_ip2p_pipeline,
    tiny_text_encoder,
    tiny_unet,
    tiny_vae,
    write_clip_vocab,
)

if __name__ == "__main__":  # pragma: no cover - a convenience for smoke runs
    if len(sys.argv) != 3 or sys.argv[1] != "ip2p":
        sys.exit("usage: python -m editmetrics.models.tiny ip2p DIR")
    print(save_tiny_ip2p(sys.argv[2]))
