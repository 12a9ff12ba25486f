"""GPU figures without downloading weights: the transformers engine and the M-step loss on one GPU,
with a randomly initialised model of a 0.5B-1.5B shape and the embedded model's tokenizer.

Needs only torch and transformers (the device image has no TRL, vLLM or Dagster): generation
runs restem's TransformersEngine with and without prefix sharing; training runs the M-step's
loss (restem_assets/generation/shared_prefix.py) against the plain forward with labels, in a bare AdamW
loop, on the demo's chain-sum prompts with synthetic completions. bf16 on GPU.

    python bench/bench_gpu.py --tokenizer DIR [--shape 1b] [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Llama-style shapes (no weights needed): hidden, layers, heads, kv heads, intermediate
SHAPES = {
    "tiny": (128, 2, 4, 2, 256),  # CPU smoke run
    "0.5b": (1024, 24, 16, 4, 2816),
    "1b": (2048, 16, 32, 8, 8192),
}

QUESTIONS = [f"State the final answer to the following arithmetic problem: {a} + {b} - {c} ="
             for a, b, c in ((12, 7, 3), (45, 9, 11), (8, 88, 5), (31, 2, 17), (64, 13, 40), (5, 6, 7), (90, 1, 22),
                             (17, 17, 9))]


def build_model(shape: str, tokenizer_dir: str, dtype, device: str) -> tuple[str, int]:
    """A random model of `shape` saved with the tokenizer into a temporary directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, inter = SHAPES[shape]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=inter, tie_word_embeddings=True,
                         max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dtype)
    out = Path(tempfile.mkdtemp(prefix="restem-gpu-model-"))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out), sum(p.numel() for p in model.parameters())


def bench_generation(model_dir: str, device: str, dtype_name: str, prompts: int, k: int, max_new: int) -> dict:
    from restem_assets.generation import SamplingParams
    from restem_assets.generation.transformers_engine import TransformersEngine
    from restem_assets.tasks.prompts import build_messages

    out = {}
    for name, sharing in (("baseline", False), ("prefix_sharing", True)):
        engine = TransformersEngine(model_dir, batch_size=256, dtype=dtype_name, device=device, prefix_sharing=sharing)
        msgs = [build_messages({"question": QUESTIONS[i % len(QUESTIONS)] + f" {i}", "task": "chain_sum"})
                for i in range(prompts)]
        texts = [engine.render_prompt(m) for m in msgs]
        list(engine.generate(texts[:2], SamplingParams(n=1, temperature=0.0, max_new_tokens=4)))  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        comps = [c for chunk in engine.generate(texts, SamplingParams(n=k, temperature=0.7, top_k=40,
                                                                       max_new_tokens=max_new, seed=0)) for c in chunk]
        _sync(device)
        seconds = time.perf_counter() - t0
        tokens = sum(c.n_tokens for c in comps)
        out[name] = {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}
        print(f"generation {name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tok/s", flush=True)
        engine.close()
    return out


def bench_training(model_dir: str, device: str, dtype, steps: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from restem_assets.tasks.prompts import build_messages
    from restem_assets.generation.shared_prefix import prefix_shared_loss

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for i in range(batch):
        q = QUESTIONS[i % len(QUESTIONS)]
        prompt = tok.apply_chat_template(build_messages({"question": q, "task": "chain_sum"}), tokenize=False,
                                         add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(f"{q.rsplit(':', 1)[-1]} {i}\nAnswer: {i}<|im_end|>", add_special_tokens=False)["input_ids"]
        rows.append((p_ids, c_ids))
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((batch, width), tok.pad_token_id or 0)
    mask = torch.zeros((batch, width), dtype=torch.long)
    labels = torch.full((batch, width), -100)
    for r, (p, c) in enumerate(rows):
        seq = p + c
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
        labels[r, len(p):len(seq)] = torch.tensor(c)
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    tokens_per_step = int(mask.sum())
    out = {}
    for name in ("baseline", "prefix_sharing"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        losses = []
        for step in range(steps + 1):  # step 0 is a warm-up, not timed
            if step == 1:
                _sync(device)
                t0 = time.perf_counter()
            if name == "baseline":
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            else:
                loss, _ = prefix_shared_loss(model, ids, mask, labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
        _sync(device)
        seconds = time.perf_counter() - t0
        out[name] = {"seconds": seconds, "examples_per_s": steps * batch / seconds,
                     "tokens_per_s": steps * tokens_per_step / seconds, "losses": losses}
        print(f"training {name}: {steps * batch / seconds:.1f} examples/s, "
              f"{steps * tokens_per_step / seconds:.0f} tok/s, losses {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
        del model, opt
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="a directory with the embedded model's tokenizer files")
    ap.add_argument("--shape", default="1b", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    import torch

    dtype, dtype_name = (torch.bfloat16, "bfloat16") if args.device.startswith("cuda") else (torch.float32, "float32")
    model_dir, params = build_model(args.shape, args.tokenizer, dtype, args.device)
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"{args.shape}: {params / 1e9:.2f}B parameters on {device_name} in {dtype_name}", flush=True)
    result = {"shape": args.shape, "parameters": params, "device": device_name, "dtype": dtype_name,
              "generation": bench_generation(model_dir, args.device, dtype_name, args.prompts, args.k, args.max_new_tokens),
              "training": bench_training(model_dir, args.device, dtype, args.train_steps, args.train_batch)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
