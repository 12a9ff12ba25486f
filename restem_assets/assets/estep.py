"""E-step assets, one partition per iteration: samples -> rewards -> sft_set."""


import dataclasses
import time

import dagster as dg

from restem_assets.assets.partitions import iteration_partitions, previous_policy_mapping
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.assets.common import (TORCH_POOL, generation_stage, markdown_table, metered, partition_lock,
                                         partition_policy, progress_logger, read_problems)
from restem_assets.assets.policy_lineage import POLICY_KEY
from restem_assets.generation.sampling import estep_done_columns, estep_rows_planned, sample_estep
from restem_assets.generation.sampling_strategy import HINTED
from restem_assets.rewards import RewardStats, accumulate, score_samples
from restem_assets.rewards.audit import audit_rows
from restem_assets.rewards.audit import summarize as summarize_audit
from restem_assets.store.schemas import REWARD_AUDIT, REWARDS, SAMPLES, SFT_SET
from restem_assets.training.sft_selection import SftSelector

@dg.asset(
    partitions_def=iteration_partitions,
    deps=["problems", dg.AssetDep(POLICY_KEY, partition_mapping=previous_policy_mapping)],
    group_name="estep",
    pool=TORCH_POOL,
    description="Sampled completions per train problem from policy[i-1] (the base model for iteration 1): "
    "K each (rest.sampling=fixed), or in rounds that give unsolved problems more tries (uniform, prop2diff).",
)
def samples(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
            engine: EngineResource) -> dg.MaterializeResult:
    iteration, policy = partition_policy(context, -1)
    store = storage.store()
    train = read_problems(store, "train")
    if not train:
        raise ValueError("the problems table has no train split: nothing to sample")
    params = rest.estep_params(iteration)
    strategy = rest.strategy_settings()
    request = {"policy": policy.path, "problems": len(train), **dataclasses.asdict(params)}
    if strategy.rounds:  # staged rows of another strategy are not this E-step's
        request["strategy"] = dataclasses.asdict(strategy)
    problems_by_id = {p["problem_id"]: p for p in train}

    def score(rows):
        return [r["reward"] == 1.0 for r in score_samples(rows, problems_by_id)]

    with generation_stage(context, storage, rest, engine, "samples", iteration, f"iteration={iteration}",
                          f"samples[{iteration}]", table="samples", schema=SAMPLES, policy=policy, request=request,
                          needed=estep_rows_planned(train, params, strategy), max_new_tokens=params.max_new_tokens,
                          done_columns=estep_done_columns(strategy)) as gen:
        context.log.info("iteration %d: sampling %d problems (%s) from %s (%s)", iteration, len(train),
                         "K=%d" % params.n if not strategy.rounds else f"{strategy.strategy}, hints={strategy.hints}",
                         policy.policy_id, policy.path)
        stats = sample_estep(gen, train, params, policy, strategy, score, progress_logger(context, f"samples[{iteration}]"))
        for r in getattr(stats, "rounds", []):
            context.log.info("samples[%d] round %d (%s): %d samples over %d problems, %d tokens", iteration,
                             r["round"], r["source"], r["samples"], r["problems"], r["tokens"])
    preview = store.head("samples", iteration, 5)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": gen.rows,
            "resumed_samples": stats.resumed,
            "problems": len(train),
            "samples_per_problem": params.n,
            "sampling": strategy.strategy,
            "hints": strategy.hints,
            "rounds_run_now": dg.MetadataValue.json(getattr(stats, "rounds", [])),
            "policy": policy.policy_id,
            "policy_version": policy.version,
            "policy_path": dg.MetadataValue.path(policy.path),
            "engine": gen.engine_name,
            "completion_tokens": stats.tokens,
            "truncated_share": stats.truncated / max(1, stats.samples),
            "tokens_per_second": round(stats.tokens_per_second, 1),
            "wall_seconds": round(stats.seconds, 1),
            "path": dg.MetadataValue.path(store.url(store.table_path("samples", iteration))),
            "preview": dg.MetadataValue.md(markdown_table(preview, ["problem_id", "sample_idx", "completion", "finish_reason"])),
        }
    )


@dg.asset(
    partitions_def=iteration_partitions,
    deps=["samples", "problems"],
    group_name="estep",
    description="Binary reward per sample: the extracted final answer checked against the gold answer "
    "(or the program run against every test).",
)
def rewards(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    store = storage.store()
    problems_by_id = {p["problem_id"]: p for p in read_problems(store)}
    stats = RewardStats()
    t0 = time.perf_counter()
    with partition_lock(context, storage.root, f"iteration={iteration}"), metered(context, store, "rewards", iteration), \
            store.writer("rewards", REWARDS, iteration) as writer:
        for batch in store.iter_batches("samples", iteration, batch_size=2048,
                                        columns=["problem_id", "sample_idx", "completion"]):
            rows = score_samples(batch.to_pylist(), problems_by_id)
            writer.write(rows)
            accumulate(stats, rows)
    seconds = time.perf_counter() - t0
    preview = store.head("rewards", iteration, 8)
    context.log.info("rewards[%d]: %d/%d correct (%.2f%%)", iteration, stats.correct, stats.scored, 100 * stats.pass_rate)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats.scored,
            "correct": stats.correct,
            "pass_rate": stats.pass_rate,
            "reasons": dg.MetadataValue.json(dict(stats.reasons)),
            "rows_per_second": round(stats.scored / seconds, 1) if seconds else 0.0,
            "wall_seconds": round(seconds, 2),
            "path": dg.MetadataValue.path(store.url(store.table_path("rewards", iteration))),
            "preview": dg.MetadataValue.md(markdown_table(preview, ["problem_id", "sample_idx", "extracted_answer", "reward", "reason"])),
        }
    )


@dg.asset(
    partitions_def=iteration_partitions,
    deps=["samples", "rewards", "problems"],
    group_name="estep",
    description="The M-step's training set: correct samples, identical completions once, at most max_per_problem "
    "per problem; hinted ones only if the reward audit finds nothing, with the hint removed from the prompt.",
    check_specs=[
        dg.AssetCheckSpec("sft_set_not_empty", asset="sft_set", blocking=True,
                          description="an empty SFT set would fine-tune on nothing"),
        dg.AssetCheckSpec("no_test_problems", asset="sft_set", blocking=True,
                          description="no test-split problem leaks into training"),
        dg.AssetCheckSpec("reward_audit", asset="sft_set", blocking=True,
                          description="accepted samples that look like reward hacks (rewards.audit); warns, "
                          "or stops the chain with rest.audit_blocking"),
    ],
)
def sft_set(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    t0 = time.perf_counter()
    store = storage.store()
    selector = SftSelector(rest.max_per_problem)
    columns = ["problem_id", "sample_idx", "prompt", "completion", "n_tokens"]
    has_source = "source" in store.schema("samples", iteration).names  # absent in tables written before rounds
    sample_batches = store.iter_batches("samples", iteration, batch_size=2048,
                                        columns=columns + (["source"] if has_source else []))
    reward_batches = store.iter_batches("rewards", iteration, batch_size=2048, columns=["problem_id", "sample_idx", "reward"])
    correct = {(r["problem_id"], r["sample_idx"]) for b in reward_batches for r in b.to_pylist() if r["reward"] == 1.0}
    plain_prompt: dict[str, str] = {}
    for batch in sample_batches:
        for s in batch.to_pylist():
            if s.get("source", "self") != HINTED:
                plain_prompt.setdefault(s["problem_id"], s["prompt"])
            if (s["problem_id"], s["sample_idx"]) in correct:
                selector.add(s, 1.0)
    rows = selector.rows()
    for r in rows:
        if r["source"] == HINTED:  # trained without the hint: the prompt every other sample of it had
            r["prompt"] = plain_prompt[r["problem_id"]]
    problems_by_id = {p["problem_id"]: p for p in read_problems(store)}
    splits = {pid: p["split"] for pid, p in problems_by_id.items()}
    flagged = audit_rows(rows, problems_by_id)
    # A hinted completion is kept only if the audit finds nothing (an echoed hint is not a solution).
    dropped = {(f["problem_id"], f["sample_idx"]) for f in flagged} & {
        (r["problem_id"], r["sample_idx"]) for r in rows if r["source"] == HINTED}
    hinted_accepted = sum(r["source"] == HINTED for r in rows)
    rows = [r for r in rows if (r["problem_id"], r["sample_idx"]) not in dropped]
    kept_flagged = [f for f in flagged if (f["problem_id"], f["sample_idx"]) not in dropped]
    with partition_lock(context, storage.root, f"iteration={iteration}"), \
            metered(context, store, "sft_set", iteration, rest):
        store.write_table("sft_set", rows, SFT_SET, iteration)
        store.write_table("reward_audit", flagged, REWARD_AUDIT, iteration)
    audit = summarize_audit(kept_flagged)
    leaked = sorted({r["problem_id"] for r in rows if splits.get(r["problem_id"]) != "train"})
    n_problems = len({r["problem_id"] for r in rows})
    context.log.info("sft_set[%d]: %d examples over %d problems (%d correct, %d duplicates dropped)", iteration,
                     len(rows), n_problems, len(correct), selector.duplicates)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "problems_covered": n_problems,
            "correct_samples": len(correct),
            "duplicates_dropped": selector.duplicates,
            "max_per_problem": rest.max_per_problem,
            "hinted_examples": sum(r["source"] == HINTED for r in rows),
            "hinted_dropped_by_audit": len(dropped),
            "hinted_flag_rate": len(dropped) / hinted_accepted if hinted_accepted else 0.0,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "path": dg.MetadataValue.path(store.url(store.table_path("sft_set", iteration))),
            "preview": dg.MetadataValue.md(markdown_table(rows[:5], ["problem_id", "sample_idx", "completion"])),
        },
        check_results=[
            dg.AssetCheckResult(check_name="sft_set_not_empty", passed=len(rows) > 0, metadata={"rows": len(rows)}),
            dg.AssetCheckResult(check_name="no_test_problems", passed=not leaked,
                                metadata={"leaked_problems": dg.MetadataValue.json(leaked[:20])}),
            dg.AssetCheckResult(
                check_name="reward_audit", passed=not kept_flagged,
                severity=dg.AssetCheckSeverity.ERROR if rest.audit_blocking else dg.AssetCheckSeverity.WARN,
                metadata={"flagged": len(kept_flagged), "flagged_share": len(kept_flagged) / max(1, len(rows)),
                          "hinted_dropped": len(dropped),
                          **{f"rule/{rule}": n for rule, n in audit["counts"].items()},
                          "examples": dg.MetadataValue.json(audit["examples"]),
                          "query": "restem sql reward_audit"}),
        ],
    )
