"""M-step asset: fine-tune on iteration i's SFT set; reports policy[i]."""

import posixpath
import shutil
import tempfile
from pathlib import Path

import dagster as dg

from dagster_project.partitions import iteration_partitions
from dagster_project.resources import ReSTResource, StorageResource
from restem_assets.assets.estep import TORCH_POOL, read_problems
from restem_assets.assets.markdown import markdown_table
from restem_assets.assets.policy import lookup_policy, report_policy
from restem_assets.finetune import FinetuneSettings, conversational_records, finetune as run_finetune
from restem_assets.model_cache import resolve_model
from restem_assets.schemas import FINETUNE_LOG


def init_policy_iteration(init_from: str, iteration: int) -> int:
    """Which policy the M-step starts from: the base model (paper) or the previous iterate."""
    if init_from == "base":
        return 0
    if init_from == "previous":
        return iteration - 1
    raise ValueError(f"init_from must be 'base' or 'previous', got {init_from!r}")


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
    if "file" in store.fs.protocol:
        result = run_finetune(local_init, records, Path(target), settings)
    else:  # remote root: train locally, upload, then move into place
        staging = Path(tempfile.mkdtemp(prefix="restem-finetune-"))
        try:
            result = run_finetune(local_init, records, staging / "model", settings)
            tmp = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.tmp")
            store.fs.put(str(staging / "model"), tmp, recursive=True)
            if store.fs.exists(target):
                store.fs.rm(target, recursive=True)
            store.fs.mv(tmp, target, recursive=True)
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
