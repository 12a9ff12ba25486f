"""The Definitions that `dagster dev` / `dg dev` load (see [tool.dagster] in pyproject.toml).

`build_definitions(settings)` is what the CLI calls with its flags; the module-level
`defs` reads the environment once, through `Settings.from_env()`.
"""

from __future__ import annotations

import dagster as dg

from dagster_project.jobs import build_jobs
from dagster_project.sensors import build_continue_rest_loop
from restem_assets.assets import experiment_assets
from restem_assets.assets.resources import build_resources
from restem_assets.environment import Settings, absolute_root
from restem_assets.experiments import DEFAULT_EXPERIMENT, key_prefix, read_registry
from restem_assets.store.tables import ParquetStore


def registered_overrides(settings: Settings) -> dict:
    """A named experiment's recorded overrides (what `restem run --experiment NAME --set ...` gave it), so
    the webserver and later commands run it with its own configuration; {} for `default` or a new name."""
    if settings.experiment == DEFAULT_EXPERIMENT:
        return {}
    known = read_registry(ParquetStore(absolute_root(settings.data_root)))
    return known[settings.experiment].overrides if settings.experiment in known else {}


def build_definitions(settings: Settings | None = None, overrides: dict | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """`executor`: where each step runs (default: a process per step on this host); the cluster
    deployments in deploy/ray and deploy/k8s pass dagster-ray's or dagster-k8s' executor.

    The assets, jobs and sensor are those of `settings.experiment` (RESTEM_EXPERIMENT): unprefixed for
    `default`, under the key prefix NAME/ for experiment NAME (restem_assets/experiments.py)."""
    settings = settings or Settings.from_env()
    if overrides is None:
        overrides = registered_overrides(settings)
    prefix = key_prefix(settings.experiment)
    jobs = build_jobs(prefix)
    return dg.Definitions(
        assets=experiment_assets(settings.experiment),
        jobs=list(jobs.values()),
        sensors=[build_continue_rest_loop(jobs, prefix)],
        resources=build_resources(settings, overrides),
        executor=executor,
    )


defs = build_definitions()


def experiment_definitions(name: str) -> dg.Definitions:
    """Experiment `name`'s Definitions with the environment's other settings (its recorded profile unless the
    environment picks one): the code location `restem serve` gives each experiment (dagster_project/serve.py)."""
    settings = Settings.from_env(experiment=name)
    if name != DEFAULT_EXPERIMENT and "profile" not in Settings.environment_fields():
        known = read_registry(ParquetStore(absolute_root(settings.data_root)))
        if name in known:
            settings = Settings.from_env(experiment=name, profile=known[name].profile)
    return build_definitions(settings)
