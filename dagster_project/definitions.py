"""The Definitions that `dagster dev` / `dg dev` load (see [tool.dagster] in pyproject.toml).

`build_definitions(settings)` is what the CLI calls with its flags; the module-level
`defs` reads the environment once, through `Settings.from_env()`.
"""

from __future__ import annotations

import json

import dagster as dg

from dagster_project.jobs import build_jobs
from dagster_project.sensors import build_continue_rest_loop
from restem_assets.assets import experiment_assets
from restem_assets.assets.resources import build_resources, resolved_config
from restem_assets.environment import Settings, absolute_root
from restem_assets.experiments import DEFAULT_EXPERIMENT, changed_defaults, key_prefix, read_registry
from restem_assets.store.tables import ParquetStore


def recorded_settings(settings: Settings) -> tuple[dict, dict]:
    """(overrides, kept) that run `settings.experiment` as it was recorded, for a command or code location
    that sets nothing itself. overrides: a named experiment's recorded ones (what `restem run --experiment NAME
    --set ...` gave it; none for `default`), plus `kept`. kept: under the profile it was recorded with, the
    recorded value of each setting whose default changed since (e.g. `rest.hints`), so a data root made
    before the change goes on as it began instead of mixing the two. ({}, {}) for a new experiment."""
    old = read_registry(ParquetStore(absolute_root(settings.data_root))).get(settings.experiment)
    if old is None:
        return {}, {}
    overrides = {} if settings.experiment == DEFAULT_EXPERIMENT else old.overrides
    if settings.profile != old.profile:  # another profile asked for: the registry refuses it, naming both
        return overrides, {}
    changed = changed_defaults(old, resolved_config(build_resources(settings, overrides)))
    changed.pop("model", None)  # model.base_model is the environment's choice (RESTEM_BASE_MODEL), not a default
    kept = {resource: {f: v for f, v in fields.items() if f not in old.overrides.get(resource, {})}
            for resource, fields in changed.items()}
    kept = {resource: fields for resource, fields in kept.items() if fields}
    merged = {resource: {**overrides.get(resource, {}), **kept.get(resource, {})} for resource in {*overrides, *kept}}
    return merged, kept


def registered_overrides(settings: Settings) -> dict:
    """What the webserver and a command without --set give `settings.experiment` (`recorded_settings`)."""
    return recorded_settings(settings)[0]


def describe_kept(kept: dict) -> str:
    """`rest.hints=false`-style flags for the settings `recorded_settings` kept."""
    return " ".join(f"{resource}.{field}={value if isinstance(value, str) else json.dumps(value)}"
                    for resource, fields in sorted(kept.items()) for field, value in sorted(fields.items()))


def build_definitions(settings: Settings | None = None, overrides: dict | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """`executor`: where each step runs (default: a process per step on this host); the cluster
    deployments in deploy/ray and deploy/k8s pass dagster-ray's or dagster-k8s' executor.

    The assets, jobs and sensor are those of `settings.experiment` (RESTEM_EXPERIMENT): unprefixed for
    `default`, under the key prefix NAME/ for experiment NAME (restem_assets/experiments.py)."""
    settings = settings or Settings.from_env()
    if overrides is None:  # the webserver's code location: the launchpad's resource defaults show what is kept
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
