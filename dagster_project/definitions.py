"""The Definitions that `dagster dev` / `dg dev` load (see [tool.dagster] in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from dagster_project.jobs import ALL_JOBS
from dagster_project.resources import default_resources
from dagster_project.sensors import continue_rest_loop
from restem_assets.assets import estep, evaluation, mstep, policy, problems, progress

all_assets = [
    problems.problems,
    policy.policy,
    policy.base_model,
    estep.samples,
    estep.rewards,
    estep.sft_set,
    mstep.finetune,
    evaluation.evaluation,
    progress.progress,
]

defs = dg.Definitions(
    assets=all_assets,
    jobs=ALL_JOBS,
    sensors=[continue_rest_loop],
    resources=default_resources(),
)
