"""E-step throughput on the same prompts and model, every engine in the same run.

naive: one prompt at a time, `model.generate(num_return_sequences=K)`;
transformers: restem's continuous-batching loop; vllm: restem's vLLM engine (where it imports).
Reports useful tokens/s (completion tokens up to end-of-turn) and samples/s.

    python -m bench.bench_generation [--prompts 32] [--k 8] [--max-new-tokens 96]
"""

from __future__ import annotations

import gc
import platform
import time

from bench.results import parse_args, write_result



def prompts(n: int) -> list[list[dict]]:
    from restem_assets.tasks.prompts import build_messages
    from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems
    from restem_assets.tasks.spec import TaskSpec

    rows = reasoning_gym_problems(TaskSpec(train_size=n, test_size=1, seed=99))
    return [build_messages(r) for r in rows if r["split"] == "train"][:n]


def naive(model_path: str, msgs, k: int, max_new_tokens: int, seed: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from restem_assets.generation.dtype import pick_dtype

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=pick_dtype()).eval()
    torch.manual_seed(seed)
    tokens = samples = 0
    t0 = time.perf_counter()
    for m in msgs:
        enc = tok(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=0.7, top_k=40, max_new_tokens=max_new_tokens,
                                 num_return_sequences=k, pad_token_id=tok.pad_token_id)
        gen = out[:, enc["input_ids"].shape[1]:]
        for row in gen.tolist():
            useful = 0
            for t in row:
                if t in (tok.eos_token_id, tok.pad_token_id):
                    break
                useful += 1
            tokens += useful
            samples += 1
    return {"seconds": time.perf_counter() - t0, "tokens": tokens, "samples": samples}


# bench name -> (engine kind, options): today's defaults, and the configurations they are measured against
CONFIGS = {
    "transformers": ("transformers", {}),
    # before this round: no prefix sharing, SDPA with copied key/value heads, 64 rows
    "transformers-baseline": ("transformers", {"prefix_sharing": False, "grouped_decode": False, "batch_size": 64}),
    "vllm": ("vllm", {}),
    "vllm-eager": ("vllm", {"enforce_eager": True}),  # no torch.compile: faster start, slower steps?
}


def engine_run(name: str, model_path: str, msgs, k: int, max_new_tokens: int, seed: int) -> dict:
    from restem_assets.generation import SamplingParams, make_engine

    kind, options = CONFIGS[name]
    t0 = time.perf_counter()
    eng = make_engine(kind, model_path, **options)
    params = SamplingParams(n=k, temperature=0.7, top_k=40, max_new_tokens=max_new_tokens, seed=seed)
    try:
        prompts = [eng.render_prompt(m) for m in msgs]
        for _ in eng.generate(prompts[:1], SamplingParams(n=1, temperature=0.0, max_new_tokens=4)):
            pass  # warm-up, outside the timing
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        comps = [c for chunk in eng.generate(prompts, params) for c in chunk]
        seconds = time.perf_counter() - t0
        swap = None
        if hasattr(eng, "load_weights"):  # what the engine pool pays per later policy instead of a start-up
            t0 = time.perf_counter()
            eng.load_weights(model_path)
            swap = time.perf_counter() - t0
    finally:
        eng.close()
    out = {"seconds": seconds, "tokens": sum(c.n_tokens for c in comps), "samples": len(comps), "startup_s": startup}
    if swap is not None:
        out["swap_s"] = swap
    return out


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, prompts=32, k=8, max_new_tokens=96,
                      engines="naive,transformers-baseline,transformers,vllm-eager,vllm")
    from restem_assets.generation import vllm_available
    from restem_assets.models.model_cache import ensure_default_model

    model = str(ensure_default_model())
    msgs = prompts(args.prompts)
    results = {}
    for name in args.engines.split(","):
        if name.startswith("vllm") and not vllm_available():
            results[name] = {"skipped": "vllm does not import here"}
            continue
        run = naive if name == "naive" else (lambda *a, _n=name: engine_run(_n, *a))
        r = run(model, msgs, args.k, args.max_new_tokens, 0)
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["samples_per_s"] = r["samples"] / r["seconds"]
        results[name] = r
        gc.collect()
    base = results.get("naive", {}).get("tokens_per_s")
    print(f"{'engine':<14}{'samples':>8}{'tokens':>8}{'seconds':>9}{'tok/s':>8}{'samples/s':>10}{'vs naive':>9}")
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<14}  skipped: {r['skipped']}")
            continue
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        print(f"{name:<14}{r['samples']:>8}{r['tokens']:>8}{r['seconds']:>9.1f}{r['tokens_per_s']:>8.1f}"
              f"{r['samples_per_s']:>10.2f}{ratio:>9}")
    out = {"machine": platform.processor() or platform.machine(), "args": vars(args), "results": results}
    write_result("generation", out)
    return out


if __name__ == "__main__":
    main()
