"""Run groundingdino-py's BERT wrapper on transformers 5.

groundingdino-py 0.4.0 wraps its text encoder in ``BertModelWarper``
(``groundingdino/models/GroundingDINO/bertwarper.py``), a copy of
transformers 4's ``BertModel.forward``. transformers 5 removed what that copy
calls: ``get_extended_attention_mask``, ``invert_attention_mask`` and
``get_head_mask`` no longer exist (the wrapper fails in its ``__init__``), the
embeddings take ``cache_length`` instead of ``past_key_values_length``, and the
encoder takes no head mask. So the detector cannot even be built beside this
project's transformers.

``BertWarper4`` takes the wrapper's place while the model is built: the same
sub-modules under the same names (``embeddings``, ``encoder``, ``pooler``, so
checkpoint keys ``bert.*`` load unchanged) and a forward with transformers 4's
semantics for what GroundingDINO passes (input ids, token types, its
sub-sentence position ids and a 2-D or 3-D 0/1 attention mask): the mask becomes
the additive mask ``(1 - mask) * finfo.min`` broadcast over heads, exactly what
``get_extended_attention_mask`` returned for an encoder, and the encoder runs
without a head mask (transformers 4 passed ``None`` per layer). It is applied
only when the installed ``BertModel`` lacks ``get_extended_attention_mask``; on
transformers 4 groundingdino-py's own wrapper runs untouched. Nothing in
site-packages is edited: the name ``BertModelWarper`` in groundingdino's model
module is swapped for the duration of the build only.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def needed() -> bool:
    from transformers import BertModel

    return not hasattr(BertModel, "get_extended_attention_mask")


def extended_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """transformers 4's ``get_extended_attention_mask`` for an encoder: a 0/1
    mask of shape (batch, keys) or (batch, queries, keys) -> an additive mask
    (batch, 1, 1 or queries, keys): 0 where attended, the dtype's minimum elsewhere."""
    if mask.dim() == 3:
        ext = mask[:, None, :, :]
    elif mask.dim() == 2:
        ext = mask[:, None, None, :]
    else:
        raise ValueError(f"attention mask of shape {tuple(mask.shape)}: expected 2 or 3 dimensions")
    ext = ext.to(dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


class BertWarper4(nn.Module):
    """Drop-in for groundingdino-py's ``BertModelWarper`` on transformers 5."""

    def __init__(self, bert_model):
        super().__init__()
        self.config = bert_model.config
        self.embeddings = bert_model.embeddings
        self.encoder = bert_model.encoder
        self.pooler = bert_model.pooler

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, **unused):
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        # GroundingDINO never passes embeddings, caches or cross-attention inputs
        if any(v is not None for v in unused.values()):
            raise TypeError(f"BertWarper4 does not support {sorted(k for k, v in unused.items() if v is not None)}")
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.embeddings(input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids)
        mask = extended_attention_mask(attention_mask, hidden.dtype)
        sequence = self.encoder(hidden, attention_mask=mask)[0]
        pooled = self.pooler(sequence) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=sequence, pooler_output=pooled)


@contextlib.contextmanager
def patched_build():
    """While building a GroundingDINO: use ``BertWarper4`` when transformers lacks
    what groundingdino-py's wrapper needs; otherwise change nothing."""
    if not needed():
        yield False
        return
    from groundingdino.models.GroundingDINO import groundingdino as gd_module

    original = gd_module.BertModelWarper
    gd_module.BertModelWarper = BertWarper4
    try:
        yield True
    finally:
        gd_module.BertModelWarper = original
