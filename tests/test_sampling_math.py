"""The token sampler alone (no model): greedy, top-k and top-p restrict the support as specified."""

import torch

from restem_assets.generation import SamplingParams
from restem_assets.generation.transformers_engine import sample_next


def draws(logits, params, n=400):
    g = torch.Generator().manual_seed(0)
    return {int(sample_next(logits, params, g)[0]) for _ in range(n)}


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, SamplingParams(n=1, temperature=0.0), None).tolist() == [1, 0]


def test_top_k_limits_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert draws(logits, SamplingParams(n=2, temperature=5.0, top_k=2)) == {0, 1}


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # cumulative mass before token 2 is 0.8 < 0.9: tokens 0..2 stay, token 3 goes
    assert draws(logits, SamplingParams(n=2, temperature=1.0, top_k=0, top_p=0.9)) == {0, 1, 2}
    # top_p 0.45: token 0 alone already covers it
    assert draws(logits, SamplingParams(n=2, temperature=1.0, top_k=0, top_p=0.45)) == {0}
    # with top-k as well, top-p applies to the renormalized top-k distribution
    assert draws(logits, SamplingParams(n=2, temperature=1.0, top_k=2, top_p=0.7)) == {0, 1}


def test_sampling_params_validation():
    import pytest

    with pytest.raises(ValueError, match="greedy"):
        SamplingParams(n=4, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
