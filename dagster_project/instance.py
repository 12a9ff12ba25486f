"""The persistent Dagster instance inside the project's data folder.

The CLI driver and `dagster dev` (via `make ui`) share DAGSTER_HOME, so every
materialization the CLI records shows up in the webserver afterwards.

restem writes the instance's `dagster.yaml` and keeps it current, but only while the file is
exactly one restem wrote: its first line records the sha256 of the rest, so an edit (e.g.
`max_concurrent_runs: 4`) is seen, and the user's file is kept, with one line saying which of
restem's settings it lacks.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import dagster as dg
import yaml

from restem_assets.environment import DEFAULT_DAGSTER_HOME

DAGSTER_YAML_BODY = """\
# One torch-heavy step at a time: two at once on a small CPU host slow each other down.
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
# Run retries on, retrying no run by default (max_retries: 0): a step whose policy's producer run is still
# queued gives its run slot back by failing with dagster/max_retries set on its own run, and the daemon
# re-queues it behind the producer (restem_assets/assets/policy_lineage.py, requeue_behind). Waiting in
# the run instead deadlocks a backfill under any finite run concurrency (issue 23).
run_retries:
  enabled: true
  max_retries: 0
telemetry:
  enabled: false
"""

# The shared deployment's instance storage (`restem serve`, docs/deploy.md): runs, event logs and schedules on
# PostgreSQL. The one definition of these settings: deploy/ray/dagster.yaml and deploy/k8s/values.yaml carry
# the same variables (tests/test_instance_yaml.py checks them against this block).
POSTGRES_STORAGE = """\
# Runs, event logs and schedules on PostgreSQL (dagster-postgres), shared by the webserver, the daemon,
# every run and the restem CLI. The address and the login come from each process's environment (restem
# serve keeps them in postgres.env beside this file, mode 0600): none is written here.
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
      scheme: postgresql+psycopg2   # the driver dagster-postgres retries on (SQLAlchemy 2.1's default is psycopg 3)
"""
STORAGE_KINDS = ("sqlite", "postgres")

# First line of a file restem wrote: the sha256 of everything after it.
_STAMP = re.compile(r"# Written by restem \(sha256:([0-9a-f]{64})\)[^\n]*\n")
# Versions written before the stamp (first line `# Written by restem.`), by the sha256 of the whole file
# (git history of this module: 2405246, a3b3ee1, d7794f5). Any other file with that first line was edited.
_UNSTAMPED_VERSIONS = frozenset({
    "66239e40bec8f2d94873a02e3f4759c6fede96ba92850b279b6df33aa8cbc39f",
    "63589188bd67658fdd091784eb459567eb7a224844d38d91f6f546b23715cb52",
    "466e6cc41d64165abd8586cb0a60f9885a8444553151415925ecea911a48262e",
})


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stamped(body: str) -> str:
    """`body` as restem writes it: a first line recording its sha256."""
    return f"# Written by restem (sha256:{_sha256(body)}); edit it and restem keeps your version.\n" + body


def dagster_yaml(storage: str = "sqlite") -> str:
    """restem's dagster.yaml: the SQLite files of DAGSTER_HOME (one host), or PostgreSQL (the shared deployment)."""
    if storage not in STORAGE_KINDS:
        raise ValueError(f"instance storage must be one of {STORAGE_KINDS}, got {storage!r}")
    return stamped(DAGSTER_YAML_BODY + (POSTGRES_STORAGE if storage == "postgres" else ""))


DAGSTER_YAML = dagster_yaml("sqlite")


def storage_kind(text: str | None) -> str:
    """Which storage a dagster.yaml text configures: 'postgres' or 'sqlite' (Dagster's default files)."""
    try:
        tree = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        return "sqlite"
    storage = tree.get("storage") if isinstance(tree, dict) else None
    return "postgres" if isinstance(storage, dict) and "postgres" in storage else "sqlite"


def written_by_restem(text: str) -> bool:
    """Whether `text` is exactly a dagster.yaml restem wrote (this version or an older one), unedited."""
    stamp = _STAMP.match(text)
    if stamp is not None:
        return stamp.group(1) == _sha256(text[stamp.end():])
    return _sha256(text) in _UNSTAMPED_VERSIONS


def _key_paths(tree, prefix: str = "") -> list[str]:
    """Dotted paths of the mapping keys in `tree` (a list or scalar value ends a path)."""
    out = []
    for key, value in (tree or {}).items():
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(value, dict):
            out += _key_paths(value, path + ".")
    return out


def missing_defaults(text: str) -> list[str]:
    """restem's settings (dotted keys, the outermost absent one) that the dagster.yaml `text` does not set."""
    try:
        theirs = set(_key_paths(yaml.safe_load(text) or {}))
    except (yaml.YAMLError, AttributeError):  # not YAML, or not a mapping: Dagster will say so
        return []
    missing: list[str] = []
    for path in _key_paths(yaml.safe_load(DAGSTER_YAML_BODY)):
        if path not in theirs and not any(path.startswith(m + ".") for m in missing):
            missing.append(path)
    return missing


def write_dagster_yaml(config: Path, storage: str | None = None) -> str | None:
    """Write restem's dagster.yaml at `config` unless the user's own (or an edited one) is there. `storage`:
    'sqlite' or 'postgres'; None keeps what a file restem wrote there has (SQLite for a new one).

    Returns None, or the one line to tell the user when their file is kept."""
    text = config.read_text() if config.exists() else None
    if text is None or written_by_restem(text):
        want = dagster_yaml(storage or storage_kind(text))
        if text != want:
            config.write_text(want)  # ours (or an older version of ours): kept current
        return None
    missing = missing_defaults(text)
    lacks = (f"it lacks restem's defaults for {', '.join(missing)}" if missing
             else "it sets every key restem's version does")
    return (f"restem: keeping your {config} (edited, so restem does not rewrite it); {lacks} "
            f"(restem's version: dagster_project/instance.py)")


def prepare_dagster_home(home: str | Path | None = None, storage: str | None = None) -> Path:
    """Create DAGSTER_HOME with restem's dagster.yaml (a user's own or edited one is kept, and said so on stderr).
    On a PostgreSQL instance, the connection variables this process lacks are taken from the postgres.env
    `restem serve` keeps beside it, so every restem command (and what it starts) reaches the same database."""
    home = Path(home or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    note = write_dagster_yaml(home / "dagster.yaml", storage)
    if note:
        print(note, file=sys.stderr, flush=True)
    if storage_kind((home / "dagster.yaml").read_text()) == "postgres":
        require_postgres_env(home)
    return home


def require_postgres_env(home: Path) -> dict[str, str]:
    """Put the PostgreSQL instance's connection variables into this process's environment (from postgres.env
    where the environment lacks them); a clear error naming what is missing."""
    from dagster_project.postgres_server import ENV_FILE, PG_VARIABLES, connection_env

    env = connection_env(home)
    missing = [v for v in PG_VARIABLES if not env.get(v)]
    if missing:
        raise InstanceConfigError(
            f"the Dagster instance at {home} stores on PostgreSQL but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: export them, or start it with `restem serve "
            f"--dagster-home {home}`, which keeps them in {home / ENV_FILE}")
    os.environ.update(env)
    return env


class InstanceConfigError(RuntimeError):
    """The instance cannot be opened as configured (said in one line: what is missing and where)."""


def persistent_instance(home: str | Path | None = None) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(home)))
