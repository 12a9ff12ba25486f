"""M-step asset: fine-tune on iteration i's SFT set; reports policy[i]."""

import shutil
import tempfile
from pathlib import Path

import dagster as dg

from restem_assets.assets.partitions import iteration_partitions
from restem_assets.assets.resources import ReSTResource, StorageResource
from restem_assets.assets.common import TORCH_POOL, markdown_table, read_problems
from restem_assets.assets.policy import lookup_policy, report_policy
from restem_assets.atomic import is_local, upload_dir
from restem_assets.finetune import FinetuneSettings, conversational_records, finetune as run_finetune
from restem_assets.model_cache import resolve_model
from restem_assets.policy import init_policy_iteration
from restem_assets.schemas import FINETUNE_LOG


@dg.asset(
    partitions_def=iteration_partitions,
    deps=["sft_set", "problems"],
    group_name="mstep",
    pool=TORCH_POOL,
    description="Supervised fine-tune (loss on completion tokens only) of the base model (or the previous iterate) "
    "on the SFT set; writes <root>/models/iteration=<i>/ and reports policy[i].",
)
def finetune(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    store = storage.store()
    init = lookup_policy(context.instance, init_policy_iteration(rest.init_from, iteration))
    rows = store.read_table("sft_set", iteration).to_pylist()
    problems_by_id = {p["problem_id"]: p for p in read_problems(store)}
    records = conversational_records(rows, problems_by_id)
    settings = FinetuneSettings(method=rest.finetune_method, learning_rate=rest.learning_rate, epochs=rest.epochs,
                                batch_size=rest.batch_size, max_steps=rest.finetune_max_steps,
                                lora_rank=rest.lora_rank, seed=rest.seed + iteration)
    target = store.table_dir("models", iteration)
    context.log.info("iteration %d: fine-tuning %s (%s) on %d examples -> %s", iteration, init.policy_id,
                     init.path, len(records), store.url(target))
    local_init = resolve_model(init.path)
    if is_local(store.fs):
        result = run_finetune(local_init, records, Path(target), settings)
    else:  # remote root: train locally, then upload under a temporary name and move into place
        staging = Path(tempfile.mkdtemp(prefix="restem-finetune-"))
        try:
            result = run_finetune(local_init, records, staging / "model", settings)
            upload_dir(store.fs, staging / "model", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    store.write_table("finetune_log", result.log, FINETUNE_LOG, iteration)
    model_url = store.url(target)
    report_policy(context, iteration, model_url, init_from=init.policy_id, examples=result.examples)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(model_url),
            "init_from": init.policy_id,
            "method": settings.method,
            "examples": result.examples,
            "completion_tokens": result.completion_tokens,
            "optimizer_steps": result.steps,
            "final_loss": result.final_loss if result.final_loss is not None else float("nan"),
            "wall_seconds": round(result.seconds, 1),
            "loss_curve": dg.MetadataValue.md(markdown_table(result.log, ["step", "epoch", "loss"], limit=200)),
        }
    )
