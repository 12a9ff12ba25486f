"""Evaluation of policy[i] on the held-out split (partition 0 = the base model)."""

import contextlib
import dataclasses
import time

import dagster as dg

from restem_assets.assets.partitions import policy_partitions
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.assets.common import TORCH_POOL, markdown_table, partition_lock, progress_logger, read_problems
from restem_assets.assets.policy import POLICY_KEY, require_policy
from restem_assets.evaluation import SCORED_COLUMNS, evaluate_policy
from restem_assets.schemas import EVAL_SAMPLES, EVALUATIONS
from restem_assets.staging import ChunkStaging


@dg.asset(
    partitions_def=policy_partitions,
    deps=["problems", POLICY_KEY],
    group_name="evaluation",
    pool=TORCH_POOL,
    description="Greedy pass@1, pass@k (unbiased, T=1.0, top-p 0.95) and maj@k of policy[i] on the test split.",
)
def evaluation(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
               engine: EngineResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    store = storage.store()
    policy = require_policy(context, iteration)
    all_problems = read_problems(store)
    test = [p for p in all_problems if p["split"] == "test"]
    if not test:
        raise ValueError("the problems table has no test split: nothing to evaluate on")
    by_id = {p["problem_id"]: p for p in all_problems}
    t0 = time.perf_counter()
    greedy, sampled = rest.greedy_params(), rest.eval_sampling_params()
    with partition_lock(context, storage.root, f"evaluation={iteration}"):
        staging = ChunkStaging(store, "eval_samples", iteration, EVAL_SAMPLES, request={
            "policy": policy.path, "test": len(test), "greedy": dataclasses.asdict(greedy),
            "sampled": dataclasses.asdict(sampled)}, flush_rows=rest.checkpoint_rows, flush_seconds=rest.checkpoint_seconds)
        done = list(staging.rows(columns=SCORED_COLUMNS))
        if done:
            context.log.info("evaluation[%d]: %d completions kept from an interrupted run", iteration, len(done))
        needed = len(test) * (greedy.n + sampled.n)
        with engine.open(policy.path) if len(done) < needed else contextlib.nullcontext() as eng:
            rows, summary = evaluate_policy(eng, test, greedy, sampled, policy, by_id, staging,
                                            progress=lambda mode: progress_logger(context, f"evaluation[{iteration}] {mode}"),
                                            done_rows=done)
        staging.publish()
        store.write_table("evaluations", rows, EVALUATIONS, iteration)
    seconds = time.perf_counter() - t0
    context.log.info("evaluation[%d] (%s): greedy pass@1 %.3f, pass@%d %.3f, maj@%d %.3f", iteration,
                     policy.policy_id, summary.greedy_pass_at_1, summary.k, summary.pass_at_k, summary.k, summary.maj_at_k)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "policy": policy.policy_id,
            "policy_version": policy.version,
            "resumed_completions": len(done),
            "greedy_pass_at_1": summary.greedy_pass_at_1,
            "pass_at_1": summary.pass_at_1,
            f"pass_at_{summary.k}": summary.pass_at_k,
            f"maj_at_{summary.k}": summary.maj_at_k,
            "greedy_format_rate": summary.greedy_format_rate,
            "wall_seconds": round(seconds, 1),
            "preview": dg.MetadataValue.md(markdown_table(rows[:10], ["problem_id", "greedy_answer", "greedy_correct",
                                                                     "n_correct", "majority_answer"])),
        }
    )
