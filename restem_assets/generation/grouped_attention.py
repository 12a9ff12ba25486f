"""Decode-step attention for grouped-query models without copying keys and values per query head.

SmolLM2-135M has 9 query heads over 3 key/value heads. With an attention mask (every
batch of rows with different prompt lengths has one), transformers' SDPA path first copies
each layer's whole key/value cache out to all 9 heads (`repeat_kv`) and then runs the
masked math kernel: on 2 CPU cores that was a third of a decoding step. For one query token
the same result is two batched matmuls over the 3 key/value heads, each holding its 3 query
heads as rows. Prefill (several query tokens) and training keep SDPA.
"""

from __future__ import annotations

import torch

NAME = "restem_grouped_decode"


def grouped_decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs):
    """transformers attention-interface function: query [B, H, Q, D], key/value [B, KV, T, D] ->
    ([B, Q, H, D], None). Same result as SDPA (to float rounding) for Q == 1."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1 or module.training or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    b, heads, _, d = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(b, kv_heads, heads // kv_heads, d)  # head h = kv * groups + g, as repeat_kv orders them
    scores = torch.matmul(q, key.transpose(-1, -2)) * (scaling if scaling is not None else d ** -0.5)
    if attention_mask is not None:  # [B, 1, 1, T]: True = attend, or an additive float mask
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs, value)  # [B, KV, groups, D]
    return out.reshape(b, heads, 1, d).transpose(1, 2), None


def register() -> str:
    """Make NAME a transformers attention implementation (SDPA's masks); idempotent. Returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_grouped_decode(model) -> bool:
    """Switch a loaded model to the grouped decode attention where it runs SDPA (else leave it)."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return True
