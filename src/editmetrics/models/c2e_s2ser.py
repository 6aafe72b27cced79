"""C2E-S2SER plugin: the recoverer model and `editmetrics train c2e-s2ser`.

Surrogate-to-source edit recovery (SPPE task 2, paper section 5): given the
private source X, its surrogate S, the cloud-edited surrogate S', the
surrogate mask M and the instruction P, produce the edited source. The network
lives in ``c2e_s2ser_net``; training in ``c2e_s2ser_train``; docs in
docs/c2e_s2ser.md.

Weights (local disk only, never downloaded), resolved by ``Model.weight_path``:
- ``flux_fill``: FLUX.1-Fill-dev in diffusers layout: setting ``flux_fill``
  (``--set flux_fill=PATH``) or the environment variable ``EDITMETRICS_FLUX_FILL``;
- ``c2e_s2ser``: the folder written by ``editmetrics train c2e-s2ser``: setting
  ``c2e_s2ser`` or ``EDITMETRICS_C2E_S2SER``.
"""

from __future__ import annotations

import os
from typing import Any

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.contract.metric import Param
from editmetrics.contract.model import Model, ModelError, Weight

BASE_ENV = "EDITMETRICS_FLUX_FILL"
CKPT_ENV = "EDITMETRICS_C2E_S2SER"
BASE_HINT = (
    "FLUX.1-Fill-dev in diffusers layout (transformer/, vae/, text_encoder/, text_encoder_2/, tokenizer/, "
    "tokenizer_2/, scheduler/), downloaded by you from https://huggingface.co/black-forest-labs/FLUX.1-Fill-dev"
)
CKPT_HINT = "folder written by `editmetrics train c2e-s2ser` (c2e_s2ser.safetensors + config.json)"
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, name)


class C2ES2SERRecoverer(Model):
    id = "c2e-s2ser"
    kind = "recoverer"
    description = ("C2E-S2SER (SPPE paper): FLUX Fill + LoRA recovers the surrogate edit on the source, "
                   "conditioned on (X, S, S') latents and an edit tag")
    inputs = ("source", "surrogate", "edited_surrogate", "instruction")
    optional_inputs = ("mask",)  # absent: the whole image was replaced by the surrogate
    outputs = ("edited",)
    params = {
        "steps": Param(50, "sampling steps (flow-matching Euler)"),
        "guidance": Param(0.0, "FLUX distilled guidance; 0 = the value used in training"),
        "resolution": Param(0, "long side of the working size; 0 = the training resolution"),
        "tag": Param("auto", "edit tag: predicted by the tag head, or forced", ("auto", "object", "attribute", "global")),
        "dtype": Param("auto", "weights dtype (auto: bfloat16 on CUDA, float32 on CPU)", DTYPES),
    }
    weights = (
        Weight("flux_fill", BASE_HINT, setting="flux_fill"),
        Weight("c2e_s2ser", CKPT_HINT, setting="c2e_s2ser"),
    )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net = None

    def _paths(self) -> tuple[str, str]:
        base, ckpt = (self.weight_path(w) or "" for w in self.weights)
        return base, ckpt

    def weights_present(self) -> bool:
        from editmetrics.models.c2e_s2ser_layout import CONFIG_FILE, FILL_SUBFOLDERS, WEIGHTS_FILE  # no torch import here

        base, ckpt = self._paths()
        base_ok = bool(base) and all(os.path.isdir(os.path.join(base, s)) for s in FILL_SUBFOLDERS)
        ckpt_ok = bool(ckpt) and all(os.path.isfile(os.path.join(ckpt, f)) for f in (WEIGHTS_FILE, CONFIG_FILE))
        return base_ok and ckpt_ok

    def load(self, device: str = "cpu") -> None:
        from editmetrics.models.c2e_s2ser_net import (
            C2ES2SER,
            C2EConfig,
            MissingWeightsError,
            check_base_folder,
            load_base,
        )
        from editmetrics.models.c2e_s2ser_train import load_checkpoint, read_checkpoint_config

        base, ckpt = self._paths()
        try:  # both checked before any heavy loading: one clear message naming what is missing and where
            meta = read_checkpoint_config(ckpt)
            check_base_folder(base)
            config = C2EConfig.from_dict(meta["config"])
            dtype = _torch_dtype(self.options["dtype"], device)
            transformer, vae, text, scheduler = load_base(base, device, dtype, config.max_sequence_length)
        except MissingWeightsError as exc:
            raise ModelError(f"model {self.id!r}: {exc}") from None
        net = C2ES2SER(transformer, vae, text, scheduler, config)
        load_checkpoint(net, ckpt, meta)
        net.train(False)
        self.net = net
        self.loaded = {"base": os.path.abspath(os.path.expanduser(base)),
                       "checkpoint": os.path.abspath(os.path.expanduser(ckpt)), "step": meta.get("step")}

    def predict(self, inputs: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        from editmetrics.models.c2e_s2ser_net import (
            TAGS,
            from_model_image,
            to_model_image,
            to_model_mask,
            work_size,
        )

        if self.net is None:
            self.load()
        net = self.net
        source = inputs["source"]
        height, width = source.shape[:2]
        resolution = self.options["resolution"] or net.config.resolution
        size = work_size(width, height, resolution, 2 * net.vae_scale)
        x = to_model_image(source, size)
        s = to_model_image(inputs["surrogate"], size)
        e = to_model_image(inputs["edited_surrogate"], size)
        m = to_model_mask(inputs.get("mask"), size)
        tags = None if self.options["tag"] == "auto" else [TAGS.index(self.options["tag"])]
        if self.options["guidance"] > 0:
            net.config.guidance = float(self.options["guidance"])
        image, used = net.sample(x, s, e, m, [str(inputs.get("instruction") or "")], steps=int(self.options["steps"]),
                                 seed=0 if seed is None else int(seed), tags=tags)
        info = {"edit_tag": TAGS[used[0]], "tag_from": "head" if tags is None else "parameter",
                "work_size": list(size)}
        return {"edited": from_model_image(image[0], (width, height)), "info": info}


# ---------------------------------------------------------------------------
# `editmetrics train c2e-s2ser`
# ---------------------------------------------------------------------------


@hookimpl
def register_models(register):
    register(C2ES2SERRecoverer)
