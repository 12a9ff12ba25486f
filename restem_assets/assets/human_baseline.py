"""The human-data baseline: the base model fine-tuned on reference solutions, as many as iteration 1's SFT set
has examples, evaluated on the test split like a policy (restem_assets/training/human_solutions.py)."""

import dagster as dg

from restem_assets.assets.common import TORCH_POOL, partition_lock, read_problems
from restem_assets.assets.evaluate import evaluate_into
from restem_assets.assets.mstep import FinetuneStage
from restem_assets.assets.namespace import prefix_of
from restem_assets.assets.policy_lineage import lookup_policy
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.training.finetune import conversational_records
from restem_assets.training.human_solutions import human_sft_rows
from restem_assets.models.policies import Policy
from restem_assets.store.schemas import SFT_SET

MATCHED_ITERATION = 1  # the baseline has as many examples as this iteration's SFT set; its tables' partition


@dg.asset(
    deps=["problems", "sft_set"],
    group_name="human_baseline",
    pool=TORCH_POOL,
    description="Human-data baseline: the base model fine-tuned (same settings as iteration 1) on reference "
    "solutions, subsampled to iteration 1's SFT set size, then evaluated like a policy (greedy pass@1, pass@k, "
    "maj@k). Tables human_sft_set, human_finetune_log, human_eval_samples, human_evaluations.",
)
def human_baseline(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
                   engine: EngineResource) -> dg.MaterializeResult:
    store = storage.store()
    it = MATCHED_ITERATION
    if not store.exists("sft_set", it):
        raise dg.Failure(description=f"human_baseline: sft_set[{it}] is not materialized; the baseline is matched to "
                         "its size (run iteration 1 first)")
    n_examples = store.num_rows("sft_set", it)
    problems = read_problems(store)
    by_id = {p["problem_id"]: p for p in problems}
    test = [p for p in problems if p["split"] == "test"]
    rows = human_sft_rows(problems, n_examples, seed=rest.seed)
    base = lookup_policy(context.instance, 0, prefix_of(context), data_root=storage.shared_root())
    settings = rest.finetune_settings(it)
    tuner = FinetuneStage(context, storage, rest)
    version = context.run.run_id.split("-")[0]
    target = f"{store.table_dir('models')}/human/version={version}"
    context.log.info("human_baseline: fine-tuning %s on %d reference solutions (sft_set[%d] has %d) -> %s",
                     base.policy_id, len(rows), it, n_examples, store.url(target))
    with partition_lock(context, storage.root, "human_baseline"):
        store.write_table("human_sft_set", rows, SFT_SET, it)
        result = tuner.run("human_finetune", it, None, base.path, conversational_records(rows, by_id), target,
                           settings, log_table="human_finetune_log")
        policy = Policy(policy_id="human", path=store.url(target), version=version)
        _, summary, _ = evaluate_into(context, storage, rest, engine, "human_evaluation", it, None, policy, test,
                                      by_id, "human_baseline", tables=("human_eval_samples", "human_evaluations"))
    context.log.info("human_baseline: greedy pass@1 %.3f, pass@%d %.3f", summary.greedy_pass_at_1, summary.k,
                     summary.pass_at_k)
    return dg.MaterializeResult(metadata={
        "examples": len(rows),
        "matched_sft_examples": n_examples,
        "path": dg.MetadataValue.path(policy.path),
        "final_loss": result.final_loss if result.final_loss is not None else float("nan"),
        "greedy_pass_at_1": summary.greedy_pass_at_1,
        "pass_at_k": summary.pass_at_k,
        **({"maj_at_k": summary.maj_at_k} if summary.maj_at_k is not None else {}),
    })
