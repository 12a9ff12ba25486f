"""Evaluation of policy[i] on the held-out split (partition 0 = the base model)."""

import contextlib
import dataclasses
import time

import dagster as dg

from restem_assets.assets.partitions import policy_partitions
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.assets.common import (TORCH_POOL, markdown_table, metered, partition_lock, progress_logger,
                                         read_problems)
from restem_assets.reporting.costs import count_prompt_tokens, local_model_dir
from restem_assets.generation.engine_pool import expected_tokens
from restem_assets.assets.policy_lineage import POLICY_KEY, require_policy
from restem_assets.evaluation.held_out import SCORED_COLUMNS, evaluate_greedy, evaluate_policy
from restem_assets.store.schemas import EVAL_SAMPLES, EVALUATIONS, TRANSFER_EVALUATIONS, TRANSFER_SAMPLES
from restem_assets.evaluation.transfer_benchmarks import transfer_problems
from restem_assets.store.staging import ChunkStaging


def evaluate_into(context, store, rest: ReSTResource, engine: EngineResource, meter, table: str, partition: int,
                  policy, test: list[dict], by_id: dict, label: str):
    """Greedy and sampled completions of `policy` on `test`, staged in crash-safe chunks and published as
    `table`[partition], scored; their tokens go to `meter`. A re-run keeps the chunks an interrupted one
    wrote and starts no engine when nothing is missing. Returns (per-problem rows, summary, kept rows)."""
    greedy, sampled = rest.greedy_params(), rest.eval_sampling_params()
    staging = ChunkStaging(store, table, partition, EVAL_SAMPLES, request={
        "policy": policy.path, "test": len(test), "greedy": dataclasses.asdict(greedy),
        "sampled": dataclasses.asdict(sampled)}, flush_rows=rest.checkpoint_rows, flush_seconds=rest.checkpoint_seconds)
    done = list(staging.rows(columns=SCORED_COLUMNS))
    if done:
        context.log.info("%s: %d completions kept from an interrupted run", label, len(done))
    needed = len(test) * (greedy.n + sampled.n)
    expected = expected_tokens(needed - len(done), max(greedy.max_new_tokens, sampled.max_new_tokens))
    with engine.open(policy.path, expected) if len(done) < needed else contextlib.nullcontext() as eng:
        rows, summary = evaluate_policy(eng, test, greedy, sampled, policy, by_id, staging,
                                        progress=lambda mode: progress_logger(context, f"{label} {mode}"),
                                        done_rows=done)
    staging.publish()
    tokens = store.read_table(table, partition, columns=["prompt", "n_tokens"])
    meter.add_tokens(generated=sum(n or 0 for n in tokens.column("n_tokens").to_pylist()),
                     prompt=count_prompt_tokens(sorted(set(tokens.column("prompt").to_pylist())),
                                                local_model_dir(policy.path)))
    return rows, summary, done


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
    with partition_lock(context, storage.root, f"evaluation={iteration}"), \
            metered(context, store, "evaluation", iteration, rest) as meter:
        rows, summary, done = evaluate_into(context, store, rest, engine, meter, "eval_samples", iteration, policy,
                                            test, by_id, label=f"evaluation[{iteration}]")
        store.write_table("evaluations", rows, EVALUATIONS, iteration)
    seconds = time.perf_counter() - t0
    maj = "n/a (code)" if summary.maj_at_k is None else f"{summary.maj_at_k:.3f}"
    context.log.info("evaluation[%d] (%s): greedy pass@1 %.3f, pass@%d %.3f, maj@%d %s", iteration,
                     policy.policy_id, summary.greedy_pass_at_1, summary.k, summary.pass_at_k, summary.k, maj)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "policy": policy.policy_id,
            "policy_version": policy.version,
            "resumed_completions": len(done),
            "greedy_pass_at_1": summary.greedy_pass_at_1,
            "pass_at_1": summary.pass_at_1,
            f"pass_at_{summary.k}": summary.pass_at_k,
            "pass_at_k": summary.pass_at_k,  # k-independent names: the asset page plots them per partition
            **({"maj_at_k": summary.maj_at_k} if summary.maj_at_k is not None else {}),
            **({f"maj_at_{summary.k}": summary.maj_at_k} if summary.maj_at_k is not None else {}),
            "greedy_format_rate": summary.greedy_format_rate,
            "wall_seconds": round(seconds, 1),
            "preview": dg.MetadataValue.md(markdown_table(rows[:10], ["problem_id", "greedy_answer", "greedy_correct",
                                                                     "n_correct", "majority_answer"])),
        }
    )


@dg.asset(
    partitions_def=policy_partitions,
    deps=[POLICY_KEY],
    group_name="evaluation",
    pool=TORCH_POOL,
    description="Greedy pass@1 of policy[i] on benchmarks outside the task (rest.transfer_benchmarks, e.g. HumanEval).",
)
def transfer_evaluation(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
                        engine: EngineResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    if not rest.transfer_benchmarks:
        raise ValueError("rest.transfer_benchmarks is empty: name at least one benchmark, e.g. ['humaneval']")
    store = storage.store()
    policy = require_policy(context, iteration)
    problems = transfer_problems(rest.transfer_benchmarks, rest.transfer_limit)
    params = rest.transfer_params()
    t0 = time.perf_counter()
    rows: list[dict] = []
    with partition_lock(context, storage.root, f"transfer_evaluation={iteration}"):
        staging = ChunkStaging(store, "transfer_samples", iteration, TRANSFER_SAMPLES, request={
            "policy": policy.path, "benchmarks": rest.transfer_benchmarks, "greedy": dataclasses.asdict(params)},
            flush_rows=rest.checkpoint_rows, flush_seconds=rest.checkpoint_seconds)
        done = list(staging.rows(columns=SCORED_COLUMNS))
        needed = sum(len(p) for p in problems.values())
        with engine.open(policy.path, expected_tokens(needed - len(done), params.max_new_tokens)) \
                if len(done) < needed else contextlib.nullcontext() as eng:
            for name, bench in problems.items():
                ids = {p["problem_id"] for p in bench}
                scored = evaluate_greedy(eng, bench, params, policy, staging,
                                         progress_logger(context, f"transfer_evaluation[{iteration}] {name}"),
                                         done_rows=[r for r in done if r["problem_id"] in ids])
                rows += [{"benchmark": name, **r} for r in scored]
        staging.publish()
        store.write_table("transfer_evaluations", rows, TRANSFER_EVALUATIONS, iteration)
    summary = {name: sum(r["greedy_correct"] for r in rows if r["benchmark"] == name) / len(bench)
               for name, bench in problems.items()}
    for name, rate in summary.items():
        context.log.info("transfer_evaluation[%d] (%s): %s greedy pass@1 %.3f", iteration, policy.policy_id, name, rate)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "policy": policy.policy_id,
        "resumed_completions": len(done),
        **{f"{name}_greedy_pass_at_1": rate for name, rate in summary.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    })
