"""M-step asset: fine-tune on iteration i's SFT set; reports policy[i]."""

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import dagster as dg

from restem_assets.assets.partitions import iteration_partitions
from restem_assets.assets.resources import ReSTResource, StorageResource
from restem_assets.assets.common import TORCH_POOL, markdown_table, metered, partition_lock, read_problems
from restem_assets.assets.namespace import prefix_of
from restem_assets.assets.policy_lineage import lookup_policy, report_policy
from restem_assets.store.atomic import is_local, upload_dir
from restem_assets.training.distributed import LAUNCHERS, accelerate_command, read_result, worker_env, write_request
from restem_assets.training.finetune import FinetuneResult, FinetuneSettings, conversational_records
from restem_assets.training.finetune import finetune as run_finetune
from restem_assets.generation.engine_pool import POOL
from restem_assets.models.model_cache import resolve_model
from restem_assets.models.policies import init_policy_iteration
from restem_assets.store.schemas import FINETUNE_LOG


Trainer = Callable[[str, list[dict], Path, FinetuneSettings], FinetuneResult]


def train_into(store, local_init: str, records: list[dict], target: str, settings: FinetuneSettings,
               trainer: Trainer = run_finetune) -> FinetuneResult:
    """Fine-tune into `target` under the data root: directly on local disk, else locally and then
    uploaded under a temporary name and moved into place."""
    if is_local(store.fs):
        return trainer(local_init, records, Path(target), settings)
    staging = Path(tempfile.mkdtemp(prefix="restem-finetune-"))
    try:
        result = trainer(local_init, records, staging / "model", settings)
        upload_dir(store.fs, staging / "model", target)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def trainer_for(context: dg.AssetExecutionContext, rest: ReSTResource, pipes_metadata: dict) -> Trainer:
    """The configured launcher's Trainer: this process, or `accelerate launch` through Dagster Pipes."""
    if rest.finetune_launcher not in LAUNCHERS:
        raise ValueError(f"rest.finetune_launcher must be one of {LAUNCHERS}, got {rest.finetune_launcher!r}")
    return accelerate_trainer(context, rest, pipes_metadata) if rest.finetune_launcher == "accelerate" else run_finetune


def accelerate_trainer(context: dg.AssetExecutionContext, rest: ReSTResource, pipes_metadata: dict) -> Trainer:
    """A Trainer that runs the fine-tune under `accelerate launch` through Dagster Pipes: the workers'
    output and per-step losses stream into this run's log; their reported metadata lands in `pipes_metadata`."""

    def train(init: str, records: list[dict], out_dir: Path, settings: FinetuneSettings) -> FinetuneResult:
        work = Path(tempfile.mkdtemp(prefix="restem-accelerate-"))
        try:
            request = write_request(work, init, records, out_dir, settings)
            command = accelerate_command(request, rest.finetune_processes, rest.finetune_accelerate_config)
            threads = max(1, (os.cpu_count() or 1) // rest.finetune_processes)
            context.log.info("launching: %s", " ".join(command))
            invocation = dg.PipesSubprocessClient().run(command=command, context=context, env=worker_env(threads))
            for result in invocation.get_results():
                pipes_metadata.update(result.metadata or {})
            return read_result(request)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return train


class FinetuneStage:
    """The block of every stage that fine-tunes (finetune, the human baseline). Made first: it refuses an unknown
    launcher before anything is read. `run` trains with the configured launcher (`trainer_for`) after the
    sampler's memory is given back, under the partition's lock (`lock`; None: the caller holds one), metered
    into `stage_costs` with the trained tokens, and writes the loss log; `pipes_metadata` then holds what the
    launcher's workers reported through Pipes."""

    def __init__(self, context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource):
        self.context, self.storage, self.rest = context, storage, rest
        self.pipes_metadata: dict = {}
        self.trainer = trainer_for(context, rest, self.pipes_metadata)

    def run(self, stage: str, iteration: int, lock: str | None, init: str, records: list[dict], target: str,
            settings: FinetuneSettings, log_table: str = "finetune_log") -> FinetuneResult:
        """Fine-tune the model `init` on `records` into `target`; the loss log goes to `log_table`[iteration]."""
        store = self.storage.store()
        local_init = resolve_model(init)
        POOL.before_finetune()  # the sampler's memory back (a CPU vLLM engine stays: restarting it costs more)
        with partition_lock(self.context, self.storage.root, lock) if lock else nullcontext(), \
                metered(self.context, store, stage, iteration, self.rest) as meter:
            result = train_into(store, local_init, records, target, settings, self.trainer)
            store.write_table(log_table, result.log, FINETUNE_LOG, iteration)
            meter.add_tokens(trained=result.completion_tokens)
        return result


@dg.asset(
    partitions_def=iteration_partitions,
    deps=["sft_set", "problems"],
    group_name="mstep",
    pool=TORCH_POOL,
    description="Supervised fine-tune (loss on completion tokens only) of the base model (or the previous iterate) "
    "on the SFT set; writes <root>/models/iteration=<i>/version=<run>/ (never over a model something sampled "
    "from) and reports policy[i].",
)
def finetune(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource) -> dg.MaterializeResult:
    iteration = int(context.partition_key)
    tuner = FinetuneStage(context, storage, rest)
    store = storage.store()
    init = lookup_policy(context.instance, init_policy_iteration(rest.init_from, iteration), prefix_of(context),
                         data_root=storage.shared_root())
    rows = store.read_table("sft_set", iteration).to_pylist()
    problems_by_id = {p["problem_id"]: p for p in read_problems(store)}
    records = conversational_records(rows, problems_by_id)
    settings = rest.finetune_settings(iteration)
    version = context.run.run_id.split("-")[0]
    target = f"{store.table_dir('models', iteration)}/version={version}"
    context.log.info("iteration %d: fine-tuning %s (%s) on %d examples -> %s", iteration, init.policy_id,
                     init.path, len(records), store.url(target))
    result = tuner.run("finetune", iteration, f"iteration={iteration}", init.path, records, target, settings)
    model_url = store.url(target)
    # Recorded relative to the data root (models/iteration=i/version=<run>), read back under the reader's root.
    report_policy(context, iteration, model_url, version=version, data_root=storage.shared_root(),
                  init_from=init.policy_id, init_version=init.version, examples=result.examples)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(model_url),
            "version": version,
            "init_from": init.policy_id,
            "method": settings.finetune_method,
            "examples": result.examples,
            "completion_tokens": result.completion_tokens,
            "optimizer_steps": result.steps,
            "final_loss": result.final_loss if result.final_loss is not None else float("nan"),
            "wall_seconds": round(result.seconds, 1),
            "loss_curve": dg.MetadataValue.md(markdown_table(result.log, ["step", "epoch", "loss"], limit=200)),
            "launcher": rest.finetune_launcher,
            "processes": result.processes,
            "samples_per_second": result.samples_per_second or 0.0,
            "examples_per_second": round(result.examples_per_second, 3),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "shared_prefix_tokens": result.shared_prefix_tokens,
            **{f"pipes/{k}": v for k, v in tuner.pipes_metadata.items()},
        }
    )
