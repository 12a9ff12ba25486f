"""`restem migrate-instance`: carry an instance's history (SQLite, one host) into another (the shared
PostgreSQL one), so a team that moves to `restem serve` keeps every run, materialization and check.

Dagster has no storage-to-storage copy, and `dagster instance migrate` only upgrades one storage's
schema in place. This copies through Dagster's own storage API, run by run: the job and execution-plan
snapshots a run refers to, the run, then its event log in order (asset materializations, observations,
check evaluations and partition status are indexed from these events as Dagster stores them), the run's
start and end times from its lifecycle events, then backfills and sensor states. A run already in the
target is skipped, so a copy that was interrupted can simply be run again. The data root needs no copy:
its Parquet tables and models are the source of truth and do not move.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg


@dataclass
class CopyStats:
    runs: int = 0
    skipped_runs: int = 0
    events: int = 0
    backfills: int = 0
    instigators: int = 0


def sqlite_history(home: Path) -> str | None:
    """A description of the SQLite run history under `home` ('12 runs in history/runs.db'), None if none."""
    db = home / "history" / "runs.db"
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return None
    return f"{runs} runs in {db.relative_to(home)}" if runs else None


def copy_instance(source: dg.DagsterInstance, target: dg.DagsterInstance, page: int = 1000) -> CopyStats:
    """Copy every run (oldest first) with its snapshots and events, then backfills and sensor states."""
    stats = CopyStats()
    for run in reversed(source.get_runs()):  # get_runs: newest first
        if target.has_run(run.run_id):
            stats.skipped_runs += 1
            continue
        if run.job_snapshot_id and not target.has_job_snapshot(run.job_snapshot_id):
            target.add_snapshot(source.get_job_snapshot(run.job_snapshot_id))
        if run.execution_plan_snapshot_id and not target.has_snapshot(run.execution_plan_snapshot_id):
            target.add_snapshot(source.get_execution_plan_snapshot(run.execution_plan_snapshot_id))
        target.add_run(run)
        cursor = None
        while True:
            conn = source.get_records_for_run(run.run_id, cursor=cursor, limit=page)
            for record in conn.records:
                entry = record.event_log_entry
                target.event_log_storage.store_event(entry)
                stats.events += 1
                if entry.is_dagster_event and entry.get_dagster_event().is_job_event:
                    target.handle_run_event(run.run_id, entry.get_dagster_event(),
                                            datetime.fromtimestamp(entry.timestamp, tz=timezone.utc))
            cursor = conn.cursor
            if not conn.has_more:
                break
        stats.runs += 1
    known = {b.backfill_id for b in target.get_backfills()}
    for backfill in source.get_backfills():
        if backfill.backfill_id not in known:
            target.add_backfill(backfill)
            stats.backfills += 1
    for state in source.all_instigator_state():
        if target.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
            target.add_instigator_state(state)
            stats.instigators += 1
    return stats
