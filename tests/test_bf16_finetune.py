"""bf16 fine-tuning is mixed precision: float32 master weights, bf16 compute (issue 23, item 1).

The project's own `finetune()` on a tiny random-weight model of SmolLM2's architecture (Llama,
tied embeddings, grouped key/value heads) with a character-level tokenizer and SmolLM2's chat
template: the real model in emulated bf16 is far too slow for a CPU test, and a 49k vocabulary
would make the tiny model's head most of its cost.

Weights are drawn with std 0.3 (SmolLM2's own weights: median |w| 0.11) and trained at lr 3e-4,
so a step is smaller than half of bf16's rounding step for the two thirds of the weights above
0.125, as lr 2e-5 is for 96% of SmolLM2's weights. Updating bf16 weights directly (the old
code) then loses those steps: 32% of the weights moved and the loss ended 82% above fp32's.
"""

from __future__ import annotations

import random
import string

import pytest
import torch

from restem_assets.tasks.prompts import build_messages
from restem_assets.training.finetune import FinetuneSettings, finetune

pytestmark = pytest.mark.slow

# SmolLM2's chat template (ChatML, as in its tokenizer config)
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INIT_STD = 0.3
LR = 3e-4
STEPS = 20


def char_tokenizer():
    """One token per printable character, plus ChatML's special tokens (103 in all)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(string.printable)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(path, bf16_exact: bool):
    """A random 2-layer Llama (hidden 64) saved in float32; with `bf16_exact` every weight is a bf16
    value, so loading it in bf16 (as the old code did) is exact and any change is training's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                      max_position_embeddings=1024, initializer_range=INIT_STD, bos_token_id=1, eos_token_id=2,
                      pad_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    if bf16_exact:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def chain_sum_records(n: int = 16) -> list[dict]:
    rng = random.Random(0)
    records = []
    for _ in range(n):
        a, b, c = rng.randint(1, 50), rng.randint(1, 50), rng.randint(1, 50)
        question = f"State the final answer to the following arithmetic problem: {a} + {b} - {c} ="
        answer = f"{a} + {b} - {c} = {a + b - c}\nAnswer: {a + b - c}"
        records.append({"prompt": build_messages({"question": question, "task": "chain_sum"}),
                        "completion": [{"role": "assistant", "content": answer}]})
    return records


def weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{path}/model.safetensors")


def changed_fraction(before: dict, after: dict, keys=None) -> float:
    keys = list(before) if keys is None else keys
    changed = sum(int((after[k].float() != before[k].float()).sum()) for k in keys)
    return changed / sum(before[k].numel() for k in keys)


@pytest.fixture(scope="module")
def bf16_exact_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny-bf16-exact"), bf16_exact=True)


def run(init, out, dtype: str, steps: int, method: str = "full"):
    settings = FinetuneSettings(finetune_dtype=dtype, learning_rate=LR, finetune_max_steps=steps, batch_size=8,
                                seed=0, finetune_method=method, lora_rank=4)
    return finetune(init, chain_sum_records(), out, settings)


def test_bf16_and_fp32_end_within_15_percent_of_each_others_loss(bf16_exact_model, tmp_path, record_property):
    fp32 = run(bf16_exact_model, tmp_path / "fp32", "fp32", STEPS)
    bf16 = run(bf16_exact_model, tmp_path / "bf16", "bf16", STEPS)
    for name, r in (("fp32", fp32), ("bf16", bf16)):
        per_step = r.seconds / r.steps
        record_property(f"{name}_first_loss", r.log[0]["loss"])
        record_property(f"{name}_final_loss", r.final_loss)
        record_property(f"{name}_seconds_per_step", round(per_step, 3))
        print(f"{name}: loss {r.log[0]['loss']:.4f} -> {r.final_loss:.4f} in {r.steps} steps, {per_step:.3f} s/step, "
              f"{r.shared_prefix_tokens} shared-prefix tokens")
    assert fp32.steps == bf16.steps == STEPS
    assert fp32.final_loss < 0.6 * fp32.log[0]["loss"], "fp32 must learn for the comparison to mean anything"
    # the bf16 run really computed in bf16 (autocast on the prefix-sharing path too): its first loss,
    # same weights and batch, differs from fp32's in the low digits
    assert bf16.shared_prefix_tokens > 0
    assert bf16.log[0]["loss"] != fp32.log[0]["loss"]
    assert abs(bf16.log[0]["loss"] - fp32.log[0]["loss"]) < 0.01 * fp32.log[0]["loss"]
    assert abs(bf16.final_loss - fp32.final_loss) <= 0.15 * min(bf16.final_loss, fp32.final_loss), \
        (bf16.final_loss, fp32.final_loss)
    assert weights(tmp_path / "bf16")["model.embed_tokens.weight"].dtype == torch.float32


def test_a_few_bf16_steps_move_nearly_every_weight(bf16_exact_model, tmp_path):
    run(bf16_exact_model, tmp_path / "bf16", "bf16", 3)
    before, after = weights(bf16_exact_model), weights(tmp_path / "bf16")
    fraction = changed_fraction(before, after)
    print(f"bf16, 3 steps: {fraction:.2%} of the weights changed")
    assert fraction > 0.99, f"only {fraction:.1%} of the weights changed: bf16 updates were lost"
    assert all(t.dtype == torch.float32 for t in after.values())  # the master weights are what is saved


def test_lora_in_bf16_merges_into_the_float32_base(tmp_path):
    """LoRA holds its frozen base in bf16; the saved model is the float32 base from disk (not rounded to
    bf16) with the adapters merged in float32, so even 3 small steps change every adapted weight."""
    init = tiny_model(tmp_path / "init", bf16_exact=False)
    run(init, tmp_path / "lora", "bf16", 3, method="lora")
    before, after = weights(init), weights(tmp_path / "lora")
    adapted = [k for k in before if k.endswith("proj.weight")]  # all-linear: attention and MLP projections
    frozen = [k for k in before if k not in adapted]
    assert adapted and frozen
    fraction = changed_fraction(before, after, adapted)
    print(f"LoRA in bf16, 3 steps: {fraction:.2%} of the adapted weights changed")
    assert fraction > 0.99, f"only {fraction:.1%} of the adapted weights changed: merged updates were rounded away"
    for k in frozen:  # embeddings and norms: exactly the float32 base, not rounded to bf16
        assert torch.equal(after[k], before[k]), k
    assert set(after) == set(before) and all(t.dtype == torch.float32 for t in after.values())
