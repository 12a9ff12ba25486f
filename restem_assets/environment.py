"""The one place restem reads its environment: it picks the profile, the data root, the Dagster
instance, the base model and the engine (plus the experiment the webserver shows, and where the
embedded model is cached). Everything else is a setting of a profile, `--set` or the launchpad.

Read when Definitions are built or a command starts, never at import time. CLI flags build the
same `Settings` explicitly and win over the variables. Pure: no Dagster here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restem_assets.experiments import check_name as check_experiment_name
from restem_assets.profiles import check_profile
from restem_assets.store.tables import DEFAULT_DATA_ROOT

DEFAULT_DAGSTER_HOME = "data/dagster_home"  # relative to the working directory, beside the default data root

# variable -> Settings field
VARIABLES = {
    "RESTEM_PROFILE": "profile",
    "RESTEM_DATA_ROOT": "data_root",
    "DAGSTER_HOME": "dagster_home",
    "RESTEM_BASE_MODEL": "base_model",
    "RESTEM_ENGINE": "engine",
    "RESTEM_EXPERIMENT": "experiment",
}
CACHE_VARIABLE = "RESTEM_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the environment (or the CLI's flags) chooses; see VARIABLES for the names."""

    profile: str = "default"
    data_root: str = DEFAULT_DATA_ROOT
    dagster_home: str = DEFAULT_DAGSTER_HOME
    base_model: str = "default"
    engine: str = "auto"
    experiment: str = "default"

    def __post_init__(self):
        check_profile(self.profile)
        check_experiment_name(self.experiment)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> "Settings":
        """Settings from the environment; `explicit` values that are not None (CLI flags) win."""
        env = os.environ if environ is None else environ
        values = {field: env[var] for var, field in VARIABLES.items() if env.get(var)}
        values.update({k: v for k, v in explicit.items() if v is not None})
        return cls(**values)

    @staticmethod
    def environment_fields(environ: Mapping[str, str] | None = None) -> set[str]:
        """The fields the environment sets (a named experiment's recorded profile applies only when neither
        the environment nor a flag picks one)."""
        env = os.environ if environ is None else environ
        return {field for var, field in VARIABLES.items() if env.get(var)}

    def environ(self) -> dict[str, str]:
        """These settings as the variables a child process (the webserver, a run worker) reads back."""
        return {var: str(getattr(self, field)) for var, field in VARIABLES.items()}


def absolute_root(root: str) -> str:
    """A local data root as an absolute path (so every process agrees on it); URLs pass through."""
    return root if "://" in root else str(Path(root).expanduser().resolve())


def model_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where converted models live: $RESTEM_CACHE_DIR, else ~/.cache/restem."""
    env = os.environ if environ is None else environ
    return Path(env.get(CACHE_VARIABLE) or Path.home() / ".cache" / "restem").expanduser()


PG_DIR_VARIABLE = "RESTEM_PG_DIR"
# The shared instance's PostgreSQL address and login (dagster.yaml names them: `{env: DAGSTER_PG_PASSWORD}`).
PG_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def postgres_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """Where `restem serve` keeps its PostgreSQL cluster: $RESTEM_PG_DIR (None: beside DAGSTER_HOME)."""
    env = os.environ if environ is None else environ
    return env.get(PG_DIR_VARIABLE) or None


def postgres_login(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The DAGSTER_PG_* variables the environment sets."""
    env = os.environ if environ is None else environ
    return {var: env[var] for var in PG_VARIABLES if env.get(var)}
