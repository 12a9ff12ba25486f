"""The policy lineage: which model each iteration samples from.

`policy` is an external asset partitioned 0..N: policy[0] is the base model,
policy[i] the fine-tune of iteration i. `base_model` and `finetune[i]` report its
materializations (with the model's path); `samples[i]` reads policy[i-1] from the
instance. That keeps the asset graph acyclic while the webserver still shows where
each iteration's policy came from.

A model under the data root is recorded by its path relative to it (`models/iteration=1/version=<run>`)
and read back under the data root of the step that reads it (`storage.shared_root()`), so a data root
copied or moved with its instance uses its own models; see `models/policies.py`.
"""


import dagster as dg

from restem_assets.assets.namespace import Prefix, key, prefix_of
from restem_assets.assets.partitions import policy_partitions
from restem_assets.assets.resources import ModelResource, StorageResource
from restem_assets.models.policies import (
    Policy,
    PolicyNotFoundError,
    check_policy_model,
    directory_fingerprint,
    is_relative_location,
    policy_id,
    policy_location,
    resolve_location,
)

POLICY_KEY = dg.AssetKey("policy")

# The event tag Dagster reads an asset event's data version from (what `MaterializeResult(data_version=...)`
# writes). Dagster exports no name for it, only a private one (DATA_VERSION_TAG in dagster/_core/definitions/
# data_version.py); the value is in every stored event log, so it is stable. tests/test_dagster_internals.py
# checks that Dagster still reads it.
DATA_VERSION_TAG = "dagster/data_version"


# A run queued, starting, running, suspended or being canceled: it may still materialize what it selected.
# Dagster's private NOT_FINISHED_STATUSES (dagster/_core/storage/dagster_run.py) from the public enum;
# tests/test_dagster_internals.py fails when Dagster adds a status or classifies one differently.
NOT_FINISHED_STATUSES = tuple(s for s in dg.DagsterRunStatus
                              if s.name in ("NOT_STARTED", "QUEUED", "STARTING", "STARTED", "SUSPENDED", "CANCELING"))

policy = dg.AssetSpec(
    POLICY_KEY,
    partitions_def=policy_partitions,
    group_name="policy",
    description="The model sampled by the next iteration: partition 0 is the base model, i the fine-tune of iteration i. "
    "Reported by `base_model` and `finetune`.",
)


def report_policy(context: dg.AssetExecutionContext, iteration: int, path: str, version: str,
                  data_root: str | None = None, **metadata) -> None:
    """Record policy[iteration] (a model directory) as materialized by the running step.

    `version` identifies this model (the producing run); it is the policy's data version,
    so Dagster marks what sampled or evaluated an older version of policy[iteration] stale.
    With `data_root`, a model under it is recorded by its path relative to it (metadata `path`;
    `data_root` keeps the root it was recorded under, for readers that know none); without, as given.
    """
    if data_root is not None:
        path = policy_location(path, data_root)
        if is_relative_location(path):
            metadata["data_root"] = data_root
    # Dagster takes an external asset's data version from observations: this is what turns
    # samples[i+1] and evaluation[i] STALE when policy[i] is replaced. The observation goes
    # first, so a consumer's recorded input (the materialization) is never older than it.
    policy_key = key("policy", prefix_of(context))
    context.log_event(dg.AssetObservation(asset_key=policy_key, partition=str(iteration), tags={DATA_VERSION_TAG: version}))
    context.log_event(
        dg.AssetMaterialization(
            asset_key=policy_key,
            partition=str(iteration),
            metadata={"path": dg.MetadataValue.path(path), "policy_id": policy_id(iteration), "version": version,
                      **metadata},
            tags={DATA_VERSION_TAG: version},
        )
    )


def producer_in_flight(instance: dg.DagsterInstance, iteration: int, exclude_run_id: str | None = None,
                       prefix: Prefix = ()) -> str | None:
    """The id of a queued or running run that will (re)materialize policy[iteration] (of the experiment
    with key prefix `prefix`), if any."""
    producer = key("base_model" if iteration == 0 else "finetune", prefix)
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(NOT_FINISHED_STATUSES)))
    for run in runs:
        if run.run_id == exclude_run_id or producer not in (run.asset_selection or set()):
            continue
        if iteration == 0 or run.tags.get("dagster/partition") == str(iteration):
            return run.run_id
    return None


def step_data_root(context: dg.AssetExecutionContext) -> str | None:
    """The data root of the running step's `storage` resource (None for a step without one)."""
    storage = getattr(context.resources, "storage", None)
    return storage.shared_root() if hasattr(storage, "shared_root") else None


def require_policy(context: dg.AssetExecutionContext, iteration: int, wait_s: int = 30) -> Policy:
    """policy[iteration] for the running step, its model under the step's data root (see `policy_when_ready`)."""
    return policy_when_ready(context.instance, iteration, context.run.run_id, context.log, wait_s, prefix_of(context),
                             data_root=step_data_root(context))


def policy_when_ready(instance: dg.DagsterInstance, iteration: int, run_id: str | None, log=None,
                      wait_s: int = 30, prefix: Prefix = (), data_root: str | None = None) -> Policy:
    """policy[iteration], waiting (the step is retried every `wait_s`, holding no pool slot) while a run
    that will produce it is queued or running: a backfill over several iterations then runs them in
    order whatever the instance's run concurrency."""
    pending = producer_in_flight(instance, iteration, exclude_run_id=run_id, prefix=prefix)
    if pending is not None:
        if log is not None:
            log.info("policy[%d] is being produced by run %s: waiting %d s", iteration, pending, wait_s)
        raise dg.RetryRequested(max_retries=10_000, seconds_to_wait=wait_s)
    return lookup_policy(instance, iteration, prefix, data_root)


def lookup_policy(instance: dg.DagsterInstance, iteration: int, prefix: Prefix = (),
                  data_root: str | None = None) -> Policy:
    """The model recorded for policy[iteration] (of the experiment with key prefix `prefix`); fails clearly
    when its producer never ran.

    A model recorded relative to the data root is looked for under `data_root` (the reader's; without one,
    the root it was recorded under) and must be there, whole: a missing directory raises PolicyNotFoundError,
    a local one without config, weights or tokenizer ModelDirError, each naming it. A model recorded by
    absolute path or URL (outside the data root, or recorded before relative paths) is returned as recorded."""
    policy_key = key("policy", prefix)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=policy_key, asset_partitions=[str(iteration)]), limit=1
    ).records
    if not records:
        producer = "the `base_model` asset" if iteration == 0 else f"iteration {iteration}'s `finetune` partition"
        where = f" of experiment {prefix[0]!r}" if prefix else ""
        raise PolicyNotFoundError(
            f"policy[{iteration}]{where} has never been materialized: materialize {producer} first "
            f"(iteration {iteration + 1} samples from it; restem never falls back to another model)"
        )
    meta = records[0].asset_materialization.metadata
    version = meta["version"].value if "version" in meta else records[0].run_id
    recorded = str(meta["path"].value)
    path = recorded
    if is_relative_location(recorded):
        root = data_root or (str(meta["data_root"].value) if "data_root" in meta else None)
        where = f" of experiment {prefix[0]!r}" if prefix else ""
        if not root:
            raise PolicyNotFoundError(f"policy[{iteration}]{where} is recorded relative to the data root "
                                      f"({recorded}), but no data root is known to find it under")
        path = resolve_location(recorded, root)
        check_policy_model(path, f"policy[{iteration}]{where} (recorded as {recorded} "
                                 f"under the data root {root})")
    return Policy(policy_id=policy_id(iteration), path=path, version=str(version))


@dg.asset(group_name="policy", description="Resolve (and on first use, build) the base model directory; reports policy[0].")
def base_model(context: dg.AssetExecutionContext, model: ModelResource,
               storage: StorageResource) -> dg.MaterializeResult:
    try:
        path = model.resolve_base()
    except FileNotFoundError as exc:  # a missing or unusable model directory: fail at set-up, saying what and where
        raise dg.Failure(description=f"base_model: {exc}") from exc
    # The embedded model (in the model cache) or a directory outside the data root is recorded as is;
    # one under the data root relative to it, like the fine-tunes.
    report_policy(context, 0, path, version=directory_fingerprint(path), data_root=storage.shared_root(),
                  source=model.base_model)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(path), "source": model.base_model})
