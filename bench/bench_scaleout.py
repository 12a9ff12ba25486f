"""Scale-out measurements for docs/scaling.md: sampling over 1 vs 2 Ray replicas, fine-tuning in 1 vs 2 processes.

    python -m bench.bench_scaleout [--prompts 16 --k 4 --max-new-tokens 48 --train-steps 4 --only replicas,processes,sql]

Sampling: a local Ray cluster (127.0.0.1, --cpus CPUs) and the transformers engine; one
replica holding every CPU vs `--cpus` replicas of one CPU each, the same prompts and
settings. Useful tokens/s = completion tokens / wall seconds of `generate` (replica start-up
is reported apart). Fine-tune: `accelerate launch` (deploy/accelerate/ddp_cpu.yaml) with 1
and 2 processes, the same global batch, Trainer's train_samples_per_second. On a 2-core
machine two replicas or processes share the same cores: expect no speed-up, only the
overhead of splitting; the numbers say how much that overhead is. SQL: every sql/ query
over a MATH-sized iteration, local Parquet vs the same files on S3 (moto) through fsspec.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.results import results_dir


def _problems(n: int) -> list[dict]:
    from restem_assets.tasks.loading import load_problems
    from restem_assets.tasks.spec import TaskSpec

    spec = TaskSpec(kind="reasoning_gym", name="chain_sum", train_size=n, test_size=1,
                    config={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2})
    return [p for p in load_problems(spec).to_pylist() if p["split"] == "train"][:n]


def bench_replicas(model: str, prompts: int, k: int, max_new_tokens: int, cpus: int) -> list[dict]:
    from restem_assets.generation import SamplingParams, make_engine
    from restem_assets.models.policies import Policy
    from restem_assets.generation.sampling import sample_rows
    from tests.cluster_helpers import local_ray_cluster

    problems = _problems(prompts)
    params = SamplingParams(n=k, temperature=0.7, top_k=40, max_new_tokens=max_new_tokens, seed=1)
    out = []
    with tempfile.TemporaryDirectory() as tmp, local_ray_cluster(Path(tmp), num_cpus=cpus, dashboard=False) as (addr, _):
        for replicas in (1, cpus):
            t0 = time.perf_counter()
            engine = make_engine("ray", model, replica_kind="transformers", replicas=replicas, address=addr,
                                 num_cpus_per_replica=cpus // replicas, batch_size=64)
            startup = time.perf_counter() - t0

            class Sink:
                def write(self, rows):
                    pass

            try:
                stats = sample_rows(engine, problems, params, Policy("base", model), Sink())
            finally:
                engine.close()
            row = {"replicas": replicas, "cpus_per_replica": cpus // replicas, "prompts": prompts, "k": k,
                   "samples": stats.samples, "completion_tokens": stats.tokens, "seconds": round(stats.seconds, 2),
                   "tokens_per_second": round(stats.tokens_per_second, 1), "startup_seconds": round(startup, 1)}
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def bench_processes(model: str, steps: int, batch_size: int) -> list[dict]:
    from restem_assets.training.distributed import launch_finetune
    from restem_assets.training.finetune import FinetuneSettings

    records = [{"prompt": [{"role": "user", "content": f"What is {i} + {i + 3}? End with 'Answer: <number>'."}],
                "completion": [{"role": "assistant", "content": f"{i} + {i + 3} = {2 * i + 3}.\nAnswer: {2 * i + 3}"}]}
               for i in range(steps * batch_size)]
    settings = FinetuneSettings(batch_size=batch_size, finetune_max_steps=steps, learning_rate=1e-5)
    out = []
    for processes in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = launch_finetune(model, records, Path(tmp) / "model", settings, Path(tmp) / "work",
                                     processes=processes, config="ddp_cpu")
            wall = time.perf_counter() - t0
        row = {"processes": processes, "global_batch": batch_size, "steps": result.steps,
               "train_seconds": round(result.seconds, 2), "samples_per_second": round(result.samples_per_second or 0, 2),
               "launch_wall_seconds": round(wall, 1), "final_loss": result.final_loss}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def bench_sql_s3(rows: int, repeats: int = 3) -> list[dict]:
    """Every sql/ query over one MATH-sized iteration (`rows` samples + rewards), local disk vs S3 (moto on
    127.0.0.1, through the fsspec filesystem registered with DuckDB): the cost of the fsspec path itself,
    without a network's latency."""
    import os

    import fsspec

    from bench.bench_sql import build_history
    from restem_assets.reporting import analytics
    from tests.cluster_helpers import local_s3_server

    out = []
    with tempfile.TemporaryDirectory() as tmp, local_s3_server(Path(tmp)) as env:
        local = Path(tmp) / "data"
        build_history(local, rows, 1)
        os.environ.update(env)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.put(str(local) + "/", "restem/data", recursive=True)
        fsspec.filesystem("s3").clear_instance_cache()
        for name in analytics.list_queries():
            row = {"query": name, "rows": rows}
            for where, root in (("local", str(local)), ("s3", "s3://restem/data")):
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    analytics.run_query(root, name)
                    times.append(time.perf_counter() - t0)
                row[f"{where}_seconds"] = round(sorted(times)[len(times) // 2], 3)
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sql-rows", type=int, default=240_000, help="samples in the S3 SQL check (MATH: 7.5k x 32)")
    parser.add_argument("--only", default="replicas,processes,sql")
    args = parser.parse_args(argv)
    from restem_assets.models.model_cache import ensure_default_model

    model = str(ensure_default_model())
    result: dict = {"machine_cpus": __import__("os").cpu_count()}
    if "replicas" in args.only:
        result["replicas"] = bench_replicas(model, args.prompts, args.k, args.max_new_tokens, args.cpus)
    if "processes" in args.only:
        result["processes"] = bench_processes(model, args.train_steps, args.batch_size)
    if "sql" in args.only:
        result["sql_s3"] = bench_sql_s3(args.sql_rows)
    path = results_dir() / "scaleout.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
