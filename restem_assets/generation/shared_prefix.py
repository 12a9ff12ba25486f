"""Compute the prompt tokens every row of a batch shares once, not once per row.

ReST^EM prompts of one task are mostly the same tokens: the system message and the
worked exemplar are 108 of about 121 prompt tokens for chain sums, and an SFT
example's completion is about 20 more. Both the sampler's prefill and the M-step's
forward pass spend most of their compute on that common prefix. Running it once
(batch of 1) and letting every row attend to its key/value cache gives the same
logits and, because the cache stays in the autograd graph, the same gradients: the
prefix's contribution from each row is summed through the broadcast.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward pass


def shared_prefix_length(token_ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix, kept one token short of the shortest
    sequence so each still has a token of its own (which gives its first logits)."""
    if not token_ids:
        return 0
    first, limit = token_ids[0], min(len(t) for t in token_ids) - 1
    n = 0
    while n < limit and all(t[n] == first[n] for t in token_ids):
        n += 1
    return n


def batch_prefix_length(input_ids, attention_mask, labels) -> int:
    """The shared prefix of a right-padded training batch that may be computed once: common to
    every row, unpadded, and ending before the first scored token (labels != -100) so that the
    prefix's own last logit is never needed. 0 when that is shorter than MIN_SHARED_PREFIX."""
    import torch

    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == 1).all(dim=0)
    common = int(same.long().cumprod(0).sum())
    scored = (labels != -100).any(dim=0).nonzero()
    first_scored = int(scored[0]) if scored.numel() else input_ids.shape[1]
    # position p's hidden state predicts label p+1: the prefix [0, n) must leave label n unscored
    n = min(common, first_scored - 1, input_ids.shape[1] - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def broadcast_cache(prefix, rows: int, copy: bool = False):
    """A DynamicCache holding `prefix` (a one-row cache) for `rows` rows. Without `copy` the rows are
    broadcast views of the prefix (training: gradients of every row sum into it); with `copy` each row
    owns its memory (sampling: later steps append to the cache in place)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, layer in enumerate(prefix.layers):
        keys, values = layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)
        cache.update(keys.clone() if copy else keys, values.clone() if copy else values, i)
    return cache


def prefix_shared_loss(model, input_ids, attention_mask, labels, num_items_in_batch=None):
    """Mean next-token cross-entropy over the scored tokens (labels != -100), with the batch's
    shared prefix run once. Returns (loss, prefix length); `None` for the loss when the batch
    has no prefix worth sharing (the caller then runs the plain forward pass).

    `num_items_in_batch` (scored tokens over the whole accumulated batch, as Trainer passes it)
    normalizes the sum the way Trainer's own loss does."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    n = batch_prefix_length(input_ids, attention_mask, labels)
    if not n:
        return None, 0
    rows = input_ids.shape[0]
    backbone, head = model.get_decoder(), model.get_output_embeddings()
    prefix = DynamicCache()
    backbone(input_ids=input_ids[:1, :n], past_key_values=prefix, use_cache=True)
    shared = broadcast_cache(prefix, rows)  # views: gradients of all rows sum into the prefix
    positions = torch.arange(n, input_ids.shape[1], device=input_ids.device).expand(rows, -1)
    hidden = backbone(input_ids=input_ids[:, n:], attention_mask=attention_mask, position_ids=positions,
                      past_key_values=shared, use_cache=True).last_hidden_state
    targets = labels[:, n + 1:]  # hidden state at position n + j predicts the token at n + j + 1
    scored = targets != -100
    logits = head(hidden[:, :-1][scored])
    loss_sum = F.cross_entropy(logits.float(), targets[scored], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else scored.sum()
    return loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1), n
