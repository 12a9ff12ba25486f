"""Resources: thin Dagster views of the library's typed settings.

Each configurable resource is generated from one library class (`settings_resource`): `task` from
TaskSpec, `rest` from ReSTSettings (which inherits the fine-tune's FinetuneSettings), `engine` from
EngineSettings. A field added there is a launchpad field, a `--set` key and part of the experiment
record with no other edit; `.settings()` gives the library object back. The environment is read in
restem_assets/environment.py only; a profile (restem_assets/profiles.py) lists what differs from the
class defaults; `build_resources(settings, overrides)` merges overrides onto it, validating every
field before the first step runs.
"""

import copy
import dataclasses
import typing
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pydantic
from pydantic import Field

from restem_assets.environment import Settings, absolute_root
from restem_assets.experiments import experiment_root
from restem_assets.generation.engine_pool import EngineSettings, open_engine
from restem_assets.models.model_cache import resolve_model
from restem_assets.profiles import PROFILES, ConfigError
from restem_assets.rest_settings import ReSTSettings
from restem_assets.store.tables import DEFAULT_DATA_ROOT, ParquetStore
from restem_assets.tasks.spec import TaskSpec


def settings_resource(settings_cls: type, doc: str) -> type[dg.ConfigurableResource]:
    """A ConfigurableResource whose fields are `settings_cls`'s dataclass fields (type, default, help),
    with `settings()` returning the validated library object."""
    hints = typing.get_type_hints(settings_cls)
    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": doc, "__annotations__": {}}
    for f in dataclasses.fields(settings_cls):
        namespace["__annotations__"][f.name] = hints[f.name]
        default = (dict(default_factory=f.default_factory) if f.default_factory is not dataclasses.MISSING
                   else dict(default=f.default))
        namespace[f.name] = Field(**default, description=f.metadata.get("help"))

    def settings(self):
        return settings_cls(**{f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(settings_cls)})

    namespace["settings"] = settings
    return type(f"{settings_cls.__name__}Resource", (dg.ConfigurableResource,), namespace)


class StorageResource(dg.ConfigurableResource):
    """The fsspec root under which every table and model of every iteration lives."""

    root: str = Field(default_factory=lambda: absolute_root(DEFAULT_DATA_ROOT), description="local path or fsspec URL")
    storage_options: dict[str, Any] = Field(default_factory=dict)
    experiment: str = Field("default", description="the experiment whose tables live under `root` (restem_assets/experiments.py)")
    data_root: str = Field("", description="the data root every experiment shares ('' = root: the default experiment)")

    def store(self) -> ParquetStore:
        return ParquetStore(self.root, self.storage_options)

    def shared_root(self) -> str:
        """The data root of every experiment (SQL across experiments reads from here)."""
        return self.data_root or self.root

    def models_dir(self) -> str:
        return self.store().url(self.store().table_dir("models"))


class ModelResource(dg.ConfigurableResource):
    """The base model: "default" (embedded SmolLM2), a local directory, or an fsspec URL."""

    base_model: str = "default"

    def resolve_base(self) -> str:
        return resolve_model(self.base_model)


class TaskResource(settings_resource(TaskSpec, "Which problems to train and evaluate on (TaskSpec).")):
    def spec(self) -> TaskSpec:
        return self.settings()


class ReSTResource(settings_resource(ReSTSettings, "ReST^EM settings (restem_assets/rest_settings.py).")):
    """The `rest` resource; its methods are ReSTSettings'."""

    def finetune_settings(self, iteration: int):
        return self.settings().finetune_settings(iteration)

    def estep_params(self, iteration: int):
        return self.settings().estep_params(iteration)

    def strategy_settings(self):
        return self.settings().strategy_settings()

    def greedy_params(self):
        return self.settings().greedy_params()

    def transfer_params(self):
        return self.settings().transfer_params()

    def eval_sampling_params(self):
        return self.settings().eval_sampling_params()


class EngineResource(settings_resource(EngineSettings, "Which generation engine samples (EngineSettings).")):
    @contextmanager
    def open(self, model: str, expected_tokens: int | None = None, planned_tokens: int = 0):
        """An engine on `model` (a local directory or any URL resolve_model accepts); see
        restem_assets.generation.engine_pool.open_engine for `expected_tokens` and `planned_tokens`."""
        with open_engine(self.settings(), resolve_model(model), expected_tokens, planned_tokens,
                         model_url=model if "://" in str(model) else None) as engine:
            yield engine


RESOURCE_CLASSES: dict[str, type[dg.ConfigurableResource]] = {
    "storage": StorageResource, "model": ModelResource, "task": TaskResource, "rest": ReSTResource,
    "engine": EngineResource,
}


def build_resources(settings: Settings | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for a profile: its typed defaults, the settings, then `overrides` merged field by field.

    Every value is checked here, before any step runs: a wrong name, type or value raises ConfigError in
    one line naming `resource.field`."""
    settings = settings or Settings()
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(RESOURCE_CLASSES))
    if unknown:
        raise ConfigError(f"no resource named {', '.join(map(repr, unknown))}; the resources are "
                          f"{', '.join(sorted(RESOURCE_CLASSES))}")
    base: dict[str, dict[str, Any]] = {
        "storage": {"root": experiment_root(absolute_root(settings.data_root), settings.experiment),
                    "experiment": settings.experiment, "data_root": absolute_root(settings.data_root)},
        "model": {"base_model": settings.base_model},
        "engine": {"kind": settings.engine},
    }
    out = {}
    for key, cls in RESOURCE_CLASSES.items():
        bad = sorted(set(overrides.get(key, {})) - set(cls.model_fields))
        if bad:
            raise ConfigError(f"resource '{key}' has no field {', '.join(map(repr, bad))}; its fields: "
                              f"{', '.join(sorted(cls.model_fields))}")
        fields = {**base.get(key, {}), **copy.deepcopy(PROFILES[settings.profile].get(key, {})), **overrides.get(key, {})}
        out[key] = with_defaults(cls, fields, key)()
    return out


def check_resource(key: str, cls: type[dg.ConfigurableResource], values: Mapping[str, Any]):
    """`cls(**values)`, and its library settings object, or ConfigError naming the field."""
    try:
        resource = cls(**values)
    except pydantic.ValidationError as exc:
        problems = [f"{key}.{'.'.join(map(str, e['loc']))}: {e['msg'].lower()} (got {e.get('input')!r})"
                    for e in exc.errors()]
        raise ConfigError("; ".join(problems)) from None
    try:
        if hasattr(resource, "settings"):
            resource.settings()
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return resource


def resolved_config(resources: Mapping[str, dg.ConfigurableResource]) -> dict[str, dict[str, Any]]:
    """Every field of the task, model, rest and engine resources (what an experiment records)."""
    return {key: {name: copy.deepcopy(getattr(resources[key], name)) for name in RESOURCE_CLASSES[key].model_fields}
            for key in ("task", "model", "rest", "engine")}


def with_defaults(cls: type[dg.ConfigurableResource], values: Mapping[str, Any],
                  key: str = "resource") -> type[dg.ConfigurableResource]:
    """`cls` with `values` as its field defaults (validated by `cls`).

    Dagster replaces, not merges, a resource's constructor values when a run's config sets any
    field, so a launchpad override of `task.seed` would silently bring back every other default.
    Defaults are what run config merges onto, so the profile goes there instead.
    """
    check_resource(key, cls, values)  # a wrong type or value fails here, naming the field
    if not values:
        return cls
    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                                 "__annotations__": {}}
    for name, value in values.items():
        field = cls.model_fields[name]
        namespace["__annotations__"][name] = field.annotation
        namespace[name] = Field(default_factory=lambda v=value: copy.deepcopy(v), description=field.description)
    return type(cls.__name__, (cls,), namespace)
