"""The persistent Dagster instance inside the project's data folder.

The CLI driver and `dagster dev` (via `make ui`) share DAGSTER_HOME, so every
materialization the CLI records shows up in the webserver afterwards.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

MARKER = "# Written by restem."
DAGSTER_YAML = MARKER + """ One torch-heavy step at a time: two at once on a small CPU host slow each other down.
# Never two runs of the same partition at once (whatever max_concurrent_runs says); the assets
# also lock their partition, so this holds for runs this queue does not see (the restem CLI).
# Run monitoring fails runs whose worker process died, freeing their pool slots.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 1
    tag_concurrency_limits:
      - key: dagster/partition
        limit: 1
        value:
          applyLimitPerUniqueValue: true
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
telemetry:
  enabled: false
"""

from restem_assets.environment import DEFAULT_DAGSTER_HOME


def prepare_dagster_home(home: str | Path | None = None) -> Path:
    """Create DAGSTER_HOME with restem's dagster.yaml (kept if the user wrote their own)."""
    home = Path(home or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or (config.read_text().startswith(MARKER) and config.read_text() != DAGSTER_YAML):
        config.write_text(DAGSTER_YAML)  # ours (or an older version of ours): kept current; a user's own: kept
    return home


def persistent_instance(home: str | Path | None = None) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(home)))
