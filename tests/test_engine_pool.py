"""One engine per run: later policies' weights swapped into the running engine give what a fresh engine gives."""

from __future__ import annotations

import os

import pytest
import torch

from restem_assets.generation import SamplingParams, make_engine, vllm_available
from restem_assets.generation.engine_pool import EnginePool, architecture
from restem_assets.tasks.prompts import build_messages
from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems
from restem_assets.tasks.spec import TaskSpec

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def changed_model(model_path, tmp_path_factory):
    """A copy of the base model with different weights (two MLPs zeroed): a stand-in for a fine-tuned policy
    that answers differently, saved the way the M-step saves policies."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    with torch.no_grad():
        for layer in (3, 7):
            model.model.layers[layer].mlp.down_proj.weight.zero_()
    out = tmp_path_factory.mktemp("policy") / "model"
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def prompts(model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    rows = reasoning_gym_problems(TaskSpec(train_size=12, test_size=1, seed=21))
    return [tok.apply_chat_template(build_messages(r), tokenize=False, add_generation_prompt=True)
            for r in rows if r["split"] == "train"][:12]


def _greedy(engine, prompts) -> list[str]:
    done = sorted((c for chunk in engine.generate(prompts, GREEDY) for c in chunk), key=lambda c: c.prompt_index)
    return [c.text for c in done]


def _fresh_greedy(model: str, prompts) -> list[str]:
    engine = make_engine("transformers", model, batch_size=16)
    try:
        return _greedy(engine, prompts)
    finally:
        engine.close()


def test_fine_tuned_copy_shares_the_architecture(model_path, changed_model):
    assert architecture(model_path) == architecture(changed_model)


def test_transformers_engine_swaps_weights_and_gives_a_fresh_engines_outputs(model_path, changed_model, prompts):
    pool = EnginePool()
    options = {"batch_size": 16}
    try:
        first = pool.acquire("transformers", options, model_path)
        base_out = _greedy(first, prompts)
        second = pool.acquire("transformers", options, changed_model)
        assert second is first and (pool.starts, pool.swaps) == (1, 1)
        swapped_out = _greedy(second, prompts)
        assert pool.acquire("transformers", options, changed_model) is first and pool.swaps == 1  # same model: no-op
        pool.acquire("transformers", {"batch_size": 8}, changed_model)  # other settings: a new engine
        assert pool.starts == 2
        pool.before_finetune()  # the transformers engine gives its memory back
        assert pool.acquire("transformers", options, changed_model) is not first and pool.starts == 3
    finally:
        pool.close()
    assert swapped_out == _fresh_greedy(changed_model, prompts)
    assert sum(a != b for a, b in zip(swapped_out, base_out)) >= len(prompts) // 2, "the copy must answer differently"


@pytest.mark.skipif(not vllm_available() and os.environ.get("RESTEM_SKIP_VLLM") == "1", reason="no vLLM")
def test_vllm_engine_loads_new_weights_in_place_and_forgets_cached_prefixes(model_path, changed_model, prompts):
    """The same prompts (one shared prefix, cached by vLLM) before and after the swap: the new answers agree
    with the transformers engine on the new weights, not with the old ones (stale prefix blocks would)."""
    if not vllm_available():
        pytest.skip("vllm is not installed")
    pool = EnginePool()
    try:
        engine = pool.acquire("vllm", {"enforce_eager": True}, model_path)
        base_out = _greedy(engine, prompts)
        assert pool.acquire("vllm", {"enforce_eager": True}, changed_model) is engine
        assert (pool.starts, pool.swaps) == (1, 1) and engine.model_path == changed_model
        swapped_out = _greedy(engine, prompts)
        pool.before_finetune()  # a CPU vLLM engine is kept: restarting it is the cost the pool avoids
        assert engine.platform != "cpu" or pool.acquire("vllm", {"enforce_eager": True}, changed_model) is engine
    finally:
        pool.close()
    assert engine._proc.poll() is not None, "close() ends the worker"
    reference = _fresh_greedy(changed_model, prompts)
    agree = sum(a == b for a, b in zip(swapped_out, reference))
    assert agree >= 0.75 * len(prompts), list(zip(swapped_out, reference))
    assert sum(a != b for a, b in zip(swapped_out, base_out)) >= len(prompts) // 2
