"""Peak memory of the `samples` and `rewards` assets as the number of samples grows 10x.

Both assets stream: samples are written chunk by chunk as the engine yields them,
rewards are scored batch by batch. This checks that their memory stays flat when
an iteration has 10x more samples. Each (size, asset) runs in a fresh process
through `dg.materialize` on a real instance, and reports the peak RSS (ru_maxrss)
above the process's RSS just before materializing.

The engine is a stand-in that returns canned completions instantly (half right,
half wrong, some without an answer): model memory does not depend on the number of
samples, and a real model would take hours for 320k samples on this CPU. What is
measured is the assets' own data path: prompts, chunks, Parquet writing, reading
and scoring.

    python -m bench.bench_memory [--problems 1000] [--k 32] [--scale 10]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bench.results import parse_args, write_result

import dagster as dg

from restem_assets.assets.resources import EngineResource
from restem_assets.generation import Completion

CHUNK_PROMPTS = 64


class CannedEngine:
    """Instant completions with the shape and size of real ones."""

    name = "canned"

    def render_prompt(self, messages) -> str:
        return "\n".join(m["content"] for m in messages)

    def generate(self, prompts, params, progress=None, seeds=None):
        for start in range(0, len(prompts), CHUNK_PROMPTS):
            chunk = []
            for i in range(start, min(len(prompts), start + CHUNK_PROMPTS)):
                for j in range(params.n):
                    answer = "" if j % 5 == 4 else f"\nAnswer: {i % 100 + (j % 2)}"
                    text = f"Adding the terms of problem {i} one by one, the running total ends at {i % 100}.{answer}"
                    chunk.append(Completion(prompt_index=i, sample_idx=j, text=text, n_tokens=30, finish_reason="stop"))
            yield chunk
            if progress:
                progress(min(len(prompts), start + CHUNK_PROMPTS), len(prompts))

    def close(self) -> None:
        pass


class CannedEngineResource(EngineResource):
    @contextmanager
    def open(self, model: str, expected_tokens: int | None = None, planned_tokens: int = 0):
        yield CannedEngine()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(asset: str, root: str, home: str, problems: int, k: int) -> dict:
    """Run in a fresh process: materialize one asset, report its peak memory."""
    from dagster_project.instance import persistent_instance
    from restem_assets.assets.resources import ModelResource, ReSTResource, StorageResource
    from restem_assets.assets import estep, policy_lineage
    from restem_assets.models.model_cache import ensure_default_model
    from restem_assets.store.schemas import PROBLEMS
    from restem_assets.store.tables import ParquetStore

    instance = persistent_instance(Path(home))
    res = {"storage": StorageResource(root=root), "model": ModelResource(base_model=str(ensure_default_model())),
           "rest": ReSTResource(samples_per_problem=k), "engine": CannedEngineResource()}
    if asset == "samples":
        rows = [{"problem_id": f"p{i:06d}", "split": "train", "task": "chain_sum", "domain": "math", "verifier": "math",
                 "question": f"What is {i % 100} + 0?", "answer": str(i % 100), "solution": None, "metadata": "{}"}
                for i in range(problems)]
        ParquetStore(root).write_table("problems", rows, PROBLEMS)
        dg.materialize([policy_lineage.policy, policy_lineage.base_model], resources=res, instance=instance)
        assets = [policy_lineage.policy, estep.samples]
    else:
        assets = [estep.rewards]
    before = _rss_bytes()
    result = dg.materialize(assets, resources=res, instance=instance, partition_key="1",
                            selection=[assets[-1].key])
    assert result.success
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = ParquetStore(root).num_rows(asset, 1)
    return {"asset": asset, "rows": rows, "rss_before_mb": before / 2**20, "peak_rss_mb": peak / 2**20,
            "peak_growth_mb": max(0, peak - before) / 2**20}


def measure(problems: int, k: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="restem-bench-mem-") as work:
        out = []
        for asset in ("samples", "rewards"):
            proc = subprocess.run([sys.executable, "-m", "bench.bench_memory", "--child", asset, "--root", f"{work}/data",
                                   "--home", f"{work}/home", "--problems", str(problems), "--k", str(k)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{asset} at {problems} problems failed:\n{proc.stderr[-3000:]}")
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        return out


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, problems=1000, k=32, scale=10, child={"choices": ["samples", "rewards"]},
                      root={}, home={})
    if args.child:
        print(json.dumps(child(args.child, args.root, args.home, args.problems, args.k)))
        return {}
    small = measure(args.problems, args.k)
    large = measure(args.problems * args.scale, args.k)
    print(f"{'asset':<9}{'rows':>9}{'peak RSS MB':>13}{'growth MB':>11}")
    for r in small + large:
        print(f"{r['asset']:<9}{r['rows']:>9}{r['peak_rss_mb']:>13.0f}{r['peak_growth_mb']:>11.1f}")
    ratios = {s["asset"]: l["peak_rss_mb"] / s["peak_rss_mb"] for s, l in zip(small, large)}
    result = {"small": small, "large": large, "scale": args.scale, "peak_rss_ratio": ratios}
    print(f"peak RSS ratio at {args.scale}x samples: " + ", ".join(f"{a} {r:.2f}x" for a, r in ratios.items()))
    write_result("memory", result)
    return result


if __name__ == "__main__":
    main()
