"""The policy lineage: which model each iteration samples from.

`policy` is an external asset partitioned 0..N: policy[0] is the base model,
policy[i] the fine-tune of iteration i. `base_model` and `finetune[i]` report its
materializations (with the model's path); `samples[i]` reads policy[i-1] from the
instance. That keeps the asset graph acyclic while the webserver still shows where
each iteration's policy came from.
"""


import dagster as dg

from restem_assets.assets.partitions import policy_partitions
from restem_assets.assets.resources import ModelResource
from restem_assets.policy import Policy, PolicyNotFoundError, policy_id

POLICY_KEY = dg.AssetKey("policy")

policy = dg.AssetSpec(
    POLICY_KEY,
    partitions_def=policy_partitions,
    group_name="policy",
    description="The model sampled by the next iteration: partition 0 is the base model, i the fine-tune of iteration i. "
    "Reported by `base_model` and `finetune`.",
)


def report_policy(context: dg.AssetExecutionContext, iteration: int, path: str, **metadata) -> None:
    """Record policy[iteration] (a model directory) as materialized by the running step."""
    context.log_event(
        dg.AssetMaterialization(
            asset_key=POLICY_KEY,
            partition=str(iteration),
            metadata={"path": dg.MetadataValue.path(path), "policy_id": policy_id(iteration), **metadata},
        )
    )


def lookup_policy(instance: dg.DagsterInstance, iteration: int) -> Policy:
    """The model recorded for policy[iteration]; fails clearly when its producer never ran."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=POLICY_KEY, asset_partitions=[str(iteration)]), limit=1
    ).records
    if not records:
        producer = "the `base_model` asset" if iteration == 0 else f"iteration {iteration}'s `finetune` partition"
        raise PolicyNotFoundError(
            f"policy[{iteration}] has never been materialized: materialize {producer} first "
            f"(iteration {iteration + 1} samples from it; restem never falls back to another model)"
        )
    meta = records[0].asset_materialization.metadata
    return Policy(policy_id=policy_id(iteration), path=meta["path"].value)


@dg.asset(group_name="policy", description="Resolve (and on first use, build) the base model directory; reports policy[0].")
def base_model(context: dg.AssetExecutionContext, model: ModelResource) -> dg.MaterializeResult:
    path = model.resolve_base()
    report_policy(context, 0, path, source=model.base_model)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(path), "source": model.base_model})
