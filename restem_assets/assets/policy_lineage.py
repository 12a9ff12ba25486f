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

from datetime import datetime, timedelta, timezone
from typing import NoReturn

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


# Dagster's run-retry tags (string values of MAX_RETRIES_TAG, RETRY_NUMBER_TAG, RETRY_ON_ASSET_OR_OP_FAILURE_TAG,
# WILL_RETRY_TAG and AUTO_RETRY_RUN_ID_TAG in dagster/_core/storage/tags.py; the first three are documented,
# user-editable run tags). tests/test_ordering.py compares them with Dagster's own.
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_NUMBER_TAG = "dagster/retry_number"
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"

# A run in one of these holds a run slot: the run queue counts it against its limits (Dagster's private
# ACTIVE_RUN_STATUSES; tests/test_ordering.py compares). A producer in any other unfinished status (NOT_STARTED,
# QUEUED, SUSPENDED) holds none, and a step waiting in its own run for it may hold the very slot it needs.
SLOT_HOLDING_STATUSES = tuple(s for s in dg.DagsterRunStatus if s.name in ("STARTING", "STARTED", "CANCELING"))
# How often one run gives its slot back and is re-queued behind a producer before it fails for good.
MAX_REQUEUES = 50
# How long after it failed a run marked for an automatic retry still counts as the producer while the daemon
# (which launches the retry within seconds) has not launched it yet.
RETRY_LAUNCH_GRACE_S = 300


def _awaiting_retry(record, now: float) -> bool:
    """Whether the failed run of `record` is about to be re-queued by Dagster's automatic run retries: marked
    `will_retry` (or, in the instant before Dagster marks it, carrying the retry tags `policy_when_ready` adds),
    its retry not launched yet, and recently ended."""
    run = record.dagster_run
    if run.status != dg.DagsterRunStatus.FAILURE or AUTO_RETRY_RUN_ID_TAG in run.tags:
        return False
    will_retry = run.tags.get(WILL_RETRY_TAG)
    if will_retry == "false" or (will_retry is None and run.tags.get(RETRY_ON_FAILURE_TAG) != "true"):
        return False
    ended = record.end_time or record.update_timestamp.timestamp()
    return now - ended < RETRY_LAUNCH_GRACE_S


def pending_producer(instance: dg.DagsterInstance, iteration: int, exclude_run_id: str | None = None,
                     prefix: Prefix = ()) -> dg.DagsterRun | None:
    """A run that will (re)materialize policy[iteration] (of the experiment with key prefix `prefix`):
    one queued or running, or one failed whose automatic retry Dagster is about to launch. A running one
    (it holds its run slot) is preferred to a queued one, and that to one awaiting its retry."""
    producer = key("base_model" if iteration == 0 else "finetune", prefix)

    def produces(run: dg.DagsterRun) -> bool:
        return (run.run_id != exclude_run_id and producer in (run.asset_selection or set())
                and (iteration == 0 or run.tags.get("dagster/partition") == str(iteration)))

    runs = [r for r in instance.get_runs(filters=dg.RunsFilter(statuses=list(NOT_FINISHED_STATUSES))) if produces(r)]
    running = [r for r in runs if r.status in SLOT_HOLDING_STATUSES]
    if running or runs:
        return (running or runs)[0]
    now = datetime.now(timezone.utc)
    failed = instance.get_run_records(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE], updated_after=now - timedelta(seconds=RETRY_LAUNCH_GRACE_S)))
    return next((r.dagster_run for r in failed if produces(r.dagster_run) and _awaiting_retry(r, now.timestamp())),
                None)


def producer_in_flight(instance: dg.DagsterInstance, iteration: int, exclude_run_id: str | None = None,
                       prefix: Prefix = ()) -> str | None:
    """The id of the run `pending_producer` finds, if any."""
    run = pending_producer(instance, iteration, exclude_run_id, prefix)
    return run.run_id if run is not None else None


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
    """policy[iteration], once no run that will produce it is queued or running; a backfill over several
    iterations (and one of `evaluation` beside it) then runs them in order whatever the instance's run
    concurrency.

    While the producer runs (it holds its own run slot and will finish), the step waits in its run: it is
    retried every `wait_s`, holding no pool slot. While the producer is still queued (or awaiting its
    automatic retry), waiting in the run could hold the very run slot the producer needs (the queue's
    `max_concurrent_runs`, or its one-run-per-partition limit: evaluation[i] and finetune[i] share
    partition i), so the run gives its slot back instead: see `requeue_behind`.

    Only a run launched from a code location (the webserver, a sensor, a backfill) can be re-queued: a run
    executed in-process (`execute_in_process`, the `restem` CLI's driver) has no origin to relaunch from,
    and keeps waiting in place."""
    producer = pending_producer(instance, iteration, exclude_run_id=run_id, prefix=prefix)
    if producer is None:
        return lookup_policy(instance, iteration, prefix, data_root)
    if producer.status in SLOT_HOLDING_STATUSES:
        if log is not None:
            log.info("policy[%d] is being produced by run %s: waiting %d s", iteration, producer.run_id, wait_s)
        raise dg.RetryRequested(max_retries=10_000, seconds_to_wait=wait_s)
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None or run.remote_job_origin is None:
        if log is not None:
            log.info("policy[%d] is produced by run %s, still %s; this run was not launched through the run "
                     "queue, so it waits in place: %d s", iteration, producer.run_id, _state(producer), wait_s)
        raise dg.RetryRequested(max_retries=10_000, seconds_to_wait=wait_s)
    requeue_behind(instance, iteration, run, producer, log, prefix)


def _state(run: dg.DagsterRun) -> str:
    if run.status == dg.DagsterRunStatus.FAILURE:
        return "waiting for its automatic retry"
    return "suspended" if run.status == dg.DagsterRunStatus.SUSPENDED else "queued"


def requeue_behind(instance: dg.DagsterInstance, iteration: int, run: dg.DagsterRun, producer: dg.DagsterRun,
                   log=None, prefix: Prefix = ()) -> NoReturn:
    """Fail the running step so that `run` gives its run slot back and Dagster's automatic run retries
    re-queue it (FROM_FAILURE) behind `producer`, the queued run that will produce policy[iteration].

    The run asks for exactly one more retry (`dagster/max_retries` = its retries so far + 1, on a step failure:
    `dagster/retry_on_asset_or_op_failure`), so the instance's `run_retries` need `enabled: true` but no default
    `max_retries` (restem's dagster.yaml: 0, only runs that ask are retried). An asset backfill waits for the
    retry and counts its materializations. After MAX_REQUEUES re-queues the run fails for good."""
    where = f" of experiment {prefix[0]!r}" if prefix else ""
    what = f"policy[{iteration}]{where} is produced by run {producer.run_id}, still {_state(producer)}"
    run_id = run.run_id
    if not instance.run_retries_enabled:
        raise dg.Failure(description=(
            f"{what}: run {run_id} cannot wait for it here without holding a run slot it may need (a deadlock "
            f"under any finite run concurrency), and this instance cannot re-queue it: enable run retries in "
            f"$DAGSTER_HOME/dagster.yaml (`run_retries: {{enabled: true, max_retries: 0}}`, as restem's own "
            f"dagster.yaml has; only runs that ask are then retried), restart the daemon, and re-execute "
            f"this run"), allow_retries=False)
    tags = run.tags
    group = instance.get_run_group(run_id)  # this run, the run it re-executes and their other re-executions
    requeues = max(_int(tags.get(RETRY_NUMBER_TAG)), len(group[1]) - 1 if group else 0)
    if requeues >= MAX_REQUEUES:
        instance.add_run_tags(run_id, {MAX_RETRIES_TAG: "0"})  # no further automatic retry
        raise dg.Failure(description=(
            f"{what}: run {run_id} has given its slot back and been re-queued {requeues} times waiting for it "
            f"(limit {MAX_REQUEUES}); giving up. Look at why run {producer.run_id} does not start (the run "
            f"queue's limits, other runs holding them), then re-execute this run"), allow_retries=False)
    # Dagster retries a failed run while its run group (this run and its retries so far) has at most
    # max_retries runs: requeues + 1 allows exactly one more.
    instance.add_run_tags(run_id, {MAX_RETRIES_TAG: str(max(requeues + 1, _int(tags.get(MAX_RETRIES_TAG)))),
                                   RETRY_ON_FAILURE_TAG: "true"})
    message = (f"{what}: this run gives up its slot and Dagster re-queues it behind run {producer.run_id} "
               f"(re-queue {requeues + 1} of at most {MAX_REQUEUES})")
    if log is not None:
        log.warning(message)
    raise dg.Failure(description=message, allow_retries=False)


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


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
