"""Named experiments: several ReST^EM runs side by side on one data root and one Dagster instance.

An experiment is a name plus its full resolved configuration (task, model, K, temperature,
cap per problem, init_from, fine-tune settings). The experiment `default` is what restem
always wrote: tables under `<root>/<table>/...`, unprefixed asset keys (`samples`,
`policy`, ...), so data written before experiments existed keeps working as `default`.
Any other experiment NAME is a namespace in both places:

* Parquet: `<root>/experiment=NAME/<table>/iteration=<i>/part-0.parquet` (and its models
  under `<root>/experiment=NAME/models/...`); DuckDB reads `experiment` from the hive path.
* Dagster: the asset keys get the prefix NAME (`NAME/samples`, `NAME/policy`, ...), with the
  same iteration partitions, so each experiment has its own materializations, lineage and
  staleness on the shared instance.

The registry (`<root>/experiments/part-0.parquet`, view `experiments`) records each
experiment's profile, overrides and resolved configuration; running an existing experiment
(`default` included) with another identifying configuration is refused (pick a new name or data
root, or redo it with `restem run --force`). Pure: no Dagster here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from restem_assets.profiles import ConfigError
from restem_assets.store.tables import ParquetStore

DEFAULT_EXPERIMENT = "default"
REGISTRY_TABLE = "experiments"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")

# What identifies an experiment's results: fields whose change changes the data. Loop control
# (how many iterations, when to stop), checkpoint cadence, transfer benchmarks and the engine
# (same prompts, same fields; recorded but not compared) are not part of it.
_IGNORED_REST_FIELDS = frozenset({
    "checkpoint_rows", "checkpoint_seconds", "target_iterations", "stop_when_no_improvement", "audit_blocking",
    "transfer_benchmarks", "transfer_max_new_tokens", "transfer_limit", "finetune_launcher", "finetune_processes",
    "finetune_accelerate_config", "cpu_hour_price", "gpu_hour_price",
})
IDENTITY_RESOURCES = ("task", "model", "rest")

EXPERIMENTS = pa.schema([
    pa.field("experiment", pa.string(), nullable=False),
    pa.field("profile", pa.string()),
    pa.field("task", pa.string()),
    pa.field("model", pa.string()),
    pa.field("samples_per_problem", pa.int64()),
    pa.field("temperature", pa.float64()),
    pa.field("max_per_problem", pa.int64()),
    pa.field("init_from", pa.string()),
    pa.field("finetune_method", pa.string()),
    pa.field("learning_rate", pa.float64()),
    pa.field("epochs", pa.float64()),
    pa.field("overrides", pa.string()),  # JSON: what was given on top of the profile
    pa.field("config", pa.string()),  # JSON: the resolved task/model/rest/engine configuration
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
])


class ExperimentConfigError(ValueError):
    """A named experiment asked for with a configuration other than the one it was created with."""


def check_name(name: str) -> str:
    """A valid experiment name (it becomes a Dagster key prefix and a hive path segment)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"experiment name {name!r} is not valid: a letter, then letters, digits or _ (at most 40)")
    return name


def key_prefix(name: str) -> tuple[str, ...]:
    """The Dagster asset-key prefix of an experiment: () for `default`, (name,) otherwise."""
    return () if check_name(name) == DEFAULT_EXPERIMENT else (name,)


def experiment_root(data_root: str, name: str) -> str:
    """Where an experiment's tables live under the data root (the data root itself for `default`)."""
    root = data_root.rstrip("/") or "/"
    return root if check_name(name) == DEFAULT_EXPERIMENT else f"{root}/experiment={name}"


def parse_override(item: str) -> tuple[str, str, Any]:
    """`resource.field=value` -> (resource, field, value); the value is JSON when it parses, else a string."""
    key, sep, text = item.partition("=")
    resource, dot, field = key.partition(".")
    if not sep or not dot or not resource or not field:
        raise ConfigError(f"an override is resource.field=value (e.g. rest.samples_per_problem=4), got {item!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return resource, field, value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        resource, field, value = parse_override(item)
        out.setdefault(resource, {})[field] = value
    return out


def identity(config: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The part of a resolved configuration that identifies an experiment's results."""
    out = {key: dict(config.get(key, {})) for key in IDENTITY_RESOURCES}
    out["rest"] = {k: v for k, v in out["rest"].items() if k not in _IGNORED_REST_FIELDS}
    out["task"].pop("storage_options", None)
    return out


def _class_defaults() -> dict[str, dict[str, Any]]:
    """Each identifying setting's default in its settings class: what a run made before the setting existed
    ran with (a new setting defaults to the old behaviour; a profile may set it otherwise only later)."""
    from restem_assets.rest_settings import ReSTSettings
    from restem_assets.tasks.spec import TaskSpec

    def of(cls) -> dict[str, Any]:
        return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}

    return {"rest": of(ReSTSettings), "task": of(TaskSpec), "model": {}}


def recorded_identity(config: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """`identity` of a recorded configuration, a setting it lacks (added after it was written) at its class
    default: the default profile's `rest.hints` is true, but a record from before hints existed ran without."""
    out = identity(config)
    for resource, defaults in _class_defaults().items():
        out[resource] = {**identity({resource: defaults})[resource], **out[resource]}
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`resource.field: old -> new` for each identifying field that differs. A field the old record lacks
    (written before the setting existed) counts at its class default, what ran then."""
    a, b = recorded_identity(old), identity(new)
    out = []
    for resource in IDENTITY_RESOURCES:
        for field in sorted(set(a[resource]) & set(b[resource])):
            if a[resource].get(field) != b[resource].get(field):
                out.append(f"{resource}.{field}: {a[resource].get(field)!r} -> {b[resource].get(field)!r}")
    return out


@dataclass(frozen=True)
class Experiment:
    name: str
    profile: str
    overrides: dict[str, dict[str, Any]]
    config: dict[str, dict[str, Any]]


def read_registry(store: ParquetStore) -> dict[str, Experiment]:
    """Every registered experiment, by name (empty when none is)."""
    if not store.exists(REGISTRY_TABLE):
        return {}
    out = {}
    for row in store.read_table(REGISTRY_TABLE).to_pylist():
        out[row["experiment"]] = Experiment(row["experiment"], row["profile"], json.loads(row["overrides"] or "{}"),
                                            json.loads(row["config"] or "{}"))
    return out


def _row(exp: Experiment, created_at: dt.datetime) -> dict[str, Any]:
    task, rest = exp.config.get("task", {}), exp.config.get("rest", {})
    return {
        "experiment": exp.name, "profile": exp.profile,
        "task": f"{task.get('kind')}:{task.get('name')}", "model": exp.config.get("model", {}).get("base_model"),
        "samples_per_problem": rest.get("samples_per_problem"), "temperature": rest.get("temperature"),
        "max_per_problem": rest.get("max_per_problem"), "init_from": rest.get("init_from"),
        "finetune_method": rest.get("finetune_method"), "learning_rate": rest.get("learning_rate"),
        "epochs": rest.get("epochs"),
        "overrides": json.dumps(exp.overrides, sort_keys=True), "config": json.dumps(exp.config, sort_keys=True, default=str),
        "created_at": created_at,
    }


def changed_defaults(old: Experiment, config: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The recorded value of each identifying field that `config` sets otherwise. With `config` the record's
    own profile and overrides resolved today, these are the defaults that changed after the experiment was
    recorded (the default profile's `rest.hints`, true since 2026-12-07)."""
    a, b = recorded_identity(old.config), identity(config)
    out: dict[str, dict[str, Any]] = {}
    for resource in IDENTITY_RESOURCES:
        for field in sorted(set(a[resource]) & set(b[resource])):
            if a[resource][field] != b[resource][field]:
                out.setdefault(resource, {})[field] = a[resource][field]
    return out


def _own_settings(name: str, old: Experiment, new: Experiment) -> str:
    """The flags that run experiment `name` with its recorded settings: its recorded overrides, plus the
    recorded value of each field that differs without the new command asking for it (a profile's or a
    setting's default changed since it was recorded, e.g. the default profile's `rest.hints`)."""
    wanted = identity(old.overrides)
    drifted = False
    for resource, fields in changed_defaults(old, new.config).items():
        for field, value in fields.items():
            if field not in new.overrides.get(resource, {}) and field not in wanted[resource]:
                wanted[resource][field] = value
                drifted = True
    if name != DEFAULT_EXPERIMENT and not drifted:  # later commands take its recorded profile and overrides
        return f"`--experiment {name}` with no --set"
    sets = [f"--set {resource}.{field}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
            for resource in IDENTITY_RESOURCES for field, value in sorted(wanted[resource].items())]
    first = f"--profile {old.profile}" if name == DEFAULT_EXPERIMENT else f"--experiment {name}"
    return f"`{' '.join([first, *sets])}`"


def register(store: ParquetStore, exp: Experiment, replace: bool = False) -> Experiment:
    """Record `exp` in the registry at `store` (the top data root), or check it against its record.

    An experiment (`default` included) that exists with another identifying configuration is refused,
    naming the fields that differ and the ways out, unless `replace` (`restem run --force`, which redoes
    everything from set-up with the new configuration) says to record the new one.
    """
    check_name(exp.name)
    known = read_registry(store)
    old = known.get(exp.name)
    if old is not None:
        diff = differences(old.config, exp.config)
        if not diff:
            return old
        if not replace:
            other = "`--experiment NAME`" if exp.name == DEFAULT_EXPERIMENT else "a new `--experiment` name"
            raise ExperimentConfigError(
                f"experiment {exp.name!r} was created with another configuration ({'; '.join(diff)}) and its "
                f"results are of that one: run it with its own settings ({_own_settings(exp.name, old, exp)}), or "
                f"put the new settings under {other} or another --data-root, or add --force to redo everything "
                f"from set-up with them (which then replaces its record)")
    previous = store.read_table(REGISTRY_TABLE).to_pylist() if known else []
    created = None if replace else next((r["created_at"] for r in previous if r["experiment"] == exp.name), None)
    rows = [r for r in previous if r["experiment"] != exp.name]
    rows.append(_row(exp, created or dt.datetime.now(dt.timezone.utc)))
    store.write_table(REGISTRY_TABLE, sorted(rows, key=lambda r: r["experiment"]), EXPERIMENTS)
    return exp
