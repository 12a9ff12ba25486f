"""Running a batch's shared prompt prefix once: same logits, loss and gradients as the plain forward."""

import pytest
import torch

from restem_assets.generation.shared_prefix import MIN_SHARED_PREFIX, batch_prefix_length, prefix_shared_loss, shared_prefix_length


def test_shared_prefix_length_leaves_every_sequence_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter one keeps its last token
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0
    assert shared_prefix_length([[7, 8, 9]]) == 2
    assert shared_prefix_length([]) == 0


def _batch(prefix: int, own: list[list[int]], scored_from: list[int], width: int):
    """Right-padded rows: `prefix` shared tokens, then each row's own tokens; labels scored from `scored_from[r]`."""
    ids, mask, labels = [], [], []
    for r, tokens in enumerate(own):
        row = list(range(100, 100 + prefix)) + tokens
        pad = width - len(row)
        ids.append(row + [0] * pad)
        mask.append([1] * len(row) + [0] * pad)
        labels.append([-100 if i < scored_from[r] else t for i, t in enumerate(row)] + [-100] * pad)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def test_batch_prefix_stops_before_the_first_scored_token_and_before_padding():
    ids, mask, labels = _batch(20, [[1, 2, 3], [4, 5]], scored_from=[21, 22], width=24)
    assert batch_prefix_length(ids, mask, labels) == 20  # label 21 scored: prefix [0, 20) leaves label 20 free
    ids, mask, labels = _batch(20, [[1, 2, 3], [4, 5]], scored_from=[15, 22], width=24)
    assert batch_prefix_length(ids, mask, labels) == 14  # a row scored from 15: the prefix must end at 14
    ids, mask, labels = _batch(MIN_SHARED_PREFIX - 1, [[1, 2], [3, 4]], scored_from=[8, 8], width=10)
    assert batch_prefix_length(ids, mask, labels) == 0  # too short to be worth a separate pass
    ids, mask, labels = _batch(20, [[1, 2, 3]], scored_from=[21], width=23)
    assert batch_prefix_length(ids, mask, labels) == 0  # one row: nothing to share


@pytest.mark.slow
def test_loss_and_gradients_equal_the_plain_forward(model_path):
    """On the real model, a right-padded batch with a 40-token shared prompt: the shared-prefix loss and
    every parameter's gradient match the ordinary forward pass with labels."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    own = [[int(t) for t in torch.randint(200, 5000, (n,))] for n in (12, 7, 19, 3)]
    scored_from = [40 + 5, 40 + 2, 40 + 10, 40 + 1]
    ids, mask, labels = _batch(40, own, scored_from, width=40 + 19)
    assert batch_prefix_length(ids, mask, labels) == 40

    model.zero_grad()
    ours, n = prefix_shared_loss(model, ids, mask, labels)
    ours.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    assert n == 40

    model.zero_grad()
    plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    plain.backward()
    assert ours.item() == pytest.approx(plain.item(), rel=1e-5)
    worst = max((grads[k] - p.grad).abs().max().item() / (p.grad.abs().max().item() + 1e-12)
                for k, p in model.named_parameters())
    assert worst < 1e-3, f"largest relative gradient difference {worst:.2e}"
