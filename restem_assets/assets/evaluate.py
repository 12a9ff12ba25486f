"""Evaluation of policy[i] on the held-out split (partition 0 = the base model)."""

import dataclasses
import time

import dagster as dg

from restem_assets.assets.partitions import policy_partitions
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.assets.common import (TORCH_POOL, generation_stage, markdown_table, partition_policy,
                                         progress_logger, read_problems)
from restem_assets.assets.policy_lineage import POLICY_KEY
from restem_assets.evaluation.held_out import SCORED_COLUMNS, evaluate_greedy, evaluate_policy, greedy_pass_rates
from restem_assets.store.schemas import EVAL_SAMPLES, EVALUATIONS, TRANSFER_EVALUATIONS, TRANSFER_SAMPLES
from restem_assets.evaluation.transfer_benchmarks import transfer_problems


def evaluate_into(context, storage: StorageResource, rest: ReSTResource, engine: EngineResource, stage: str,
                  partition: int, lock: str | None, policy, test: list[dict], by_id: dict, label: str,
                  tables: tuple[str, str] = ("eval_samples", "evaluations")):
    """Stage `stage`: greedy and sampled completions of `policy` on `test` (generation_stage: crash-safe,
    resumable, metered) published as `tables[0]`[partition], scored, one row per problem in
    `tables[1]`[partition]. Returns (per-problem rows, summary, rows kept from an interrupted run)."""
    greedy, sampled = rest.greedy_params(), rest.eval_sampling_params()
    with generation_stage(context, storage, rest, engine, stage, partition, lock, label, table=tables[0],
                          schema=EVAL_SAMPLES, policy=policy, done_columns=SCORED_COLUMNS,
                          request={"policy": policy.path, "test": len(test), "greedy": dataclasses.asdict(greedy),
                                   "sampled": dataclasses.asdict(sampled)},
                          needed=len(test) * (greedy.n + sampled.n),
                          max_new_tokens=max(greedy.max_new_tokens, sampled.max_new_tokens)) as gen:
        with gen.open_engine() as eng:
            rows, summary = evaluate_policy(eng, test, greedy, sampled, policy, by_id, gen.sink,
                                            progress=lambda mode: progress_logger(context, f"{label} {mode}"),
                                            done_rows=gen.done)
        gen.publish()
        gen.store.write_table(tables[1], rows, EVALUATIONS, partition)
    return rows, summary, gen.done


@dg.asset(
    partitions_def=policy_partitions,
    deps=["problems", POLICY_KEY],
    group_name="evaluation",
    pool=TORCH_POOL,
    description="Greedy pass@1, pass@k (unbiased, T=1.0, top-p 0.95) and maj@k of policy[i] on the test split.",
)
def evaluation(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
               engine: EngineResource) -> dg.MaterializeResult:
    iteration, policy = partition_policy(context)
    store = storage.store()
    all_problems = read_problems(store)
    test = [p for p in all_problems if p["split"] == "test"]
    if not test:
        raise ValueError("the problems table has no test split: nothing to evaluate on")
    by_id = {p["problem_id"]: p for p in all_problems}
    t0 = time.perf_counter()
    rows, summary, done = evaluate_into(context, storage, rest, engine, "evaluation", iteration,
                                        f"evaluation={iteration}", policy, test, by_id, f"evaluation[{iteration}]")
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
    if not rest.transfer_benchmarks:
        raise ValueError("rest.transfer_benchmarks is empty: name at least one benchmark, e.g. ['humaneval']")
    iteration, policy = partition_policy(context)
    store = storage.store()
    problems = transfer_problems(rest.transfer_benchmarks, rest.transfer_limit)
    params = rest.transfer_params()
    t0 = time.perf_counter()
    label = f"transfer_evaluation[{iteration}]"
    with generation_stage(context, storage, rest, engine, "transfer_evaluation", iteration,
                          f"transfer_evaluation={iteration}", label,
                          planned_tokens=rest.settings().planned_transfer_tokens(sum(len(p) for p in problems.values())),
                          table="transfer_samples", schema=TRANSFER_SAMPLES,
                          policy=policy, done_columns=SCORED_COLUMNS,
                          request={"policy": policy.path, "benchmarks": rest.transfer_benchmarks,
                                   "greedy": dataclasses.asdict(params)},
                          needed=sum(len(p) for p in problems.values()), max_new_tokens=params.max_new_tokens) as gen:
        with gen.open_engine() as eng:
            rows = evaluate_greedy(eng, problems, params, policy, gen.sink, done_rows=gen.done,
                                   progress=lambda name: progress_logger(context, f"{label} {name}"))
        gen.publish()
        store.write_table("transfer_evaluations", rows, TRANSFER_EVALUATIONS, iteration)
    summary = greedy_pass_rates(rows, problems)
    for name, rate in summary.items():
        context.log.info("transfer_evaluation[%d] (%s): %s greedy pass@1 %.3f", iteration, policy.policy_id, name, rate)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "policy": policy.policy_id,
        "resumed_completions": len(gen.done),
        **{f"{name}_greedy_pass_at_1": rate for name, rate in summary.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    })
