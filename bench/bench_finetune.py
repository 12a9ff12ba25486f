"""M-step speed: restem's fine-tune against the same TRL fine-tune with yesterday's settings, same data.

baseline: TRL's SFTTrainer as configured before (padded batches, activation recomputation on,
every example's whole prompt through the model); restem: the batch's shared prompt prefix
run once (restem_assets/generation/shared_prefix.py), no recomputation. Same records, seed, epochs and
learning rate; reports examples/s, tokens/s, the final loss of each, and training FLOP/s
(6 x parameters x tokens/s) against the machine's bound (bench_compute).

    python -m bench.bench_finetune [--examples 48] [--epochs 1] [--dtype auto|bf16|fp32]

--dtype is the compute dtype (bf16: float32 master weights, bf16 autocast; issue 23).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.results import parse_args, write_result

CONFIGS = {
    "baseline": {"finetune_prefix_sharing": False, "finetune_gradient_checkpointing": True},
    "restem": {"finetune_prefix_sharing": True, "finetune_gradient_checkpointing": False},
}


def chain_sum_records(n: int) -> list[dict]:
    """SFT records in the demo's exact form: its prompts and correct answers in the taught format."""
    from restem_assets.tasks.prompts import build_messages
    from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems
    from restem_assets.tasks.spec import TaskSpec

    rows = [r for r in reasoning_gym_problems(TaskSpec(train_size=n, test_size=1, seed=5)) if r["split"] == "train"]
    records = []
    for r in rows[:n]:
        expression = r["question"].rsplit(":", 1)[-1].strip().rstrip("=").strip()
        answer = f"{expression} = {r['answer']}\nAnswer: {r['answer']}"
        records.append({"prompt": build_messages(r), "completion": [{"role": "assistant", "content": answer}]})
    return records


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, examples=48, epochs=1.0, configs="baseline,restem",
                      dtype={"choices": ["auto", "bf16", "fp32"], "default": "auto"})
    from bench.bench_compute import model_parameters
    from restem_assets.training.finetune import FinetuneSettings, finetune
    from restem_assets.models.model_cache import ensure_default_model

    model = str(ensure_default_model())
    records = chain_sum_records(args.examples)
    params = model_parameters()
    results = {}
    for name in args.configs.split(","):
        work = Path(tempfile.mkdtemp(prefix="restem-bench-ft-"))
        try:
            settings = FinetuneSettings(epochs=args.epochs, finetune_dtype=args.dtype, **CONFIGS[name])
            r = finetune(model, records, work / "model", settings)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results[name] = {"seconds": r.seconds, "steps": r.steps, "examples_per_s": r.examples_per_second,
                         "tokens_per_s": r.tokens_per_second, "final_loss": r.final_loss,
                         "train_flops_per_s": 6 * params * r.tokens_per_second,
                         "shared_prefix_tokens": r.shared_prefix_tokens, **CONFIGS[name]}
        print(f"{name:<10} {r.seconds:6.1f} s  {r.examples_per_second:5.2f} examples/s  {r.tokens_per_second:6.1f} tok/s"
              f"  final loss {r.final_loss:.4f}", flush=True)
    out = {"args": vars(args), "parameters": params, "results": results}
    if {"baseline", "restem"} <= results.keys():
        b, n = results["baseline"], results["restem"]
        out["speedup"] = n["examples_per_s"] / b["examples_per_s"]
        out["loss_ratio"] = n["final_loss"] / b["final_loss"]
        print(f"restem / baseline: {out['speedup']:.2f}x examples/s, final loss ratio {out['loss_ratio']:.4f}")
    write_result("finetune", out)
    return out


if __name__ == "__main__":
    main()
