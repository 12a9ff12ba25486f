"""The persistent Dagster instance inside the project's data folder.

The CLI driver and `dagster dev` (via `make ui`) share DAGSTER_HOME, so every
materialization the CLI records shows up in the webserver afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from dagster_project.resources import PROJECT_ROOT

DAGSTER_YAML = """\
# Written by restem. One torch-heavy step at a time: two on 2 cores slow each other 3x.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def default_dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / "data" / "dagster_home").resolve()


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Create DAGSTER_HOME with restem's dagster.yaml (kept if the user wrote their own)."""
    home = (home or default_dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def persistent_instance(home: Path | None = None) -> dg.DagsterInstance:
    prepare_dagster_home(home)
    return dg.DagsterInstance.get()
