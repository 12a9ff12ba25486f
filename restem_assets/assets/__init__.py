"""Every Dagster definition restem has: assets, their checks, resources and partitions.

This package is the only Dagster code outside `dagster_project/`; the asset
functions are thin and call the plain modules of `restem_assets`, which import no
Dagster. `dagster_project` wires these into Definitions, jobs and sensors.
"""

from restem_assets.assets import estep, evaluate, human_baseline, mstep, policy_lineage, problems, progress

ALL_ASSETS = [
    problems.problems,
    policy_lineage.policy,
    policy_lineage.base_model,
    estep.samples,
    estep.rewards,
    estep.sft_set,
    mstep.finetune,
    evaluate.evaluation,
    evaluate.transfer_evaluation,
    human_baseline.human_baseline,
    progress.progress,
]


def experiment_assets(experiment: str = "default") -> list:
    """ALL_ASSETS as experiment `experiment` has them: unprefixed for `default`, else under the key prefix
    `experiment/` (restem_assets/experiments.py, assets/namespace.py)."""
    from restem_assets.assets.namespace import prefix_assets
    from restem_assets.experiments import key_prefix

    return prefix_assets(ALL_ASSETS, key_prefix(experiment))
