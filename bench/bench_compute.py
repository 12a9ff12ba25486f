"""The compute bound of this machine: peak matmul FLOP/s in fp32 and bf16, and what they mean in tokens/s.

A decoder forward pass costs about 2 x parameters FLOPs per token (training: 6 x), so
peak matmul FLOP/s / (2 x parameters) is the most tokens/s any engine can generate here.
Also reports whether bf16 is native (the dtype restem picks follows it).

    python -m bench.bench_compute [--seconds 2]
"""

from __future__ import annotations

import time

from bench.results import parse_args, write_result


def peak_matmul_flops(dtype, seconds: float) -> dict:
    """Best FLOP/s of square matmuls, growing the size while one product takes under 0.2 s."""
    import torch

    best, size = 0.0, 256
    while True:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # warm-up
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 4 or n < 2:
            a @ b
            n += 1
        took = (time.perf_counter() - t0) / n
        best = max(best, 2 * size**3 / took)
        if took > 0.2 or size >= 4096:
            return {"flops": best, "largest_size": size}
        size *= 2


def model_parameters() -> int:
    import json

    from restem_assets.models.model_cache import ensure_default_model

    cfg = json.loads((ensure_default_model() / "config.json").read_text())
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter  # q, o, k, v, gate/up/down (norms are negligible)
    return layers * per_layer + vocab * h  # tied embedding = the LM head's matmul


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, seconds=2.0)
    import torch

    from restem_assets.generation.dtype import cpu_native_bf16, pick_dtype

    params = model_parameters()
    out = {"threads": torch.get_num_threads(), "parameters": params, "bf16_native": cpu_native_bf16(),
           "dtype_chosen": str(pick_dtype("auto")).removeprefix("torch."), "dtypes": {}}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        r = peak_matmul_flops(dtype, args.seconds)
        r["generation_bound_tok_s"] = r["flops"] / (2 * params)
        r["training_bound_tok_s"] = r["flops"] / (6 * params)
        out["dtypes"][name] = r
        print(f"{name}: {r['flops'] / 1e9:.1f} GFLOP/s (n={r['largest_size']}) -> generation bound "
              f"{r['generation_bound_tok_s']:.0f} tok/s, training bound {r['training_bound_tok_s']:.0f} tok/s", flush=True)
    chosen = out["dtype_chosen"].replace("float32", "fp32").replace("bfloat16", "bf16")
    out["bound_dtype"] = chosen
    out["generation_bound_tok_s"] = out["dtypes"][chosen]["generation_bound_tok_s"]
    out["training_bound_tok_s"] = out["dtypes"][chosen]["training_bound_tok_s"]
    print(f"bf16 native: {out['bf16_native']}; restem picks {out['dtype_chosen']}")
    write_result("compute", out)
    return out


if __name__ == "__main__":
    main()
