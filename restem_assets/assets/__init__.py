"""Every Dagster definition restem has: assets, their checks, resources and partitions.

This package is the only Dagster code outside `dagster_project/`; the asset
functions are thin and call the plain modules of `restem_assets`, which import no
Dagster. `dagster_project` wires these into Definitions, jobs and sensors.
"""

from restem_assets.assets import estep, evaluation, mstep, policy, problems, progress

ALL_ASSETS = [
    problems.problems,
    policy.policy,
    policy.base_model,
    estep.samples,
    estep.rewards,
    estep.sft_set,
    mstep.finetune,
    evaluation.evaluation,
    evaluation.transfer_evaluation,
    progress.progress,
]
