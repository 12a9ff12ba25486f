"""The Definitions that `dagster dev` / `dg dev` load (see [tool.dagster] in pyproject.toml).

`build_definitions(settings)` is what the CLI calls with its flags; the module-level
`defs` reads the environment once, through `Settings.from_env()`.
"""

from __future__ import annotations

import dagster as dg

from dagster_project.jobs import ALL_JOBS
from dagster_project.sensors import continue_rest_loop
from restem_assets.assets import ALL_ASSETS
from restem_assets.assets.resources import Settings, build_resources


def build_definitions(settings: Settings | None = None, overrides: dict | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """`executor`: where each step runs (default: a process per step on this host); the cluster
    deployments in deploy/ray and deploy/k8s pass dagster-ray's or dagster-k8s' executor."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=ALL_JOBS,
        sensors=[continue_rest_loop],
        resources=build_resources(settings or Settings.from_env(), overrides),
        executor=executor,
    )


defs = build_definitions()
