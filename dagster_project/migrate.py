"""`restem migrate-instance`: carry an instance's history (SQLite, one host) into another (the shared
PostgreSQL one), so a team that moves to `restem serve` keeps every run, materialization and check.

Dagster has no storage-to-storage copy, and `dagster instance migrate` only upgrades one storage's
schema in place. This copies through Dagster's own storage API, run by run: the job and execution-plan
snapshots a run refers to, the run, then its event log in order (asset materializations, observations,
check evaluations and partition status are indexed from these events as Dagster stores them), the run's
start and end times from its lifecycle events, then backfills and sensor states. Events get new storage
ids in the target, so the ids that events keep of other events are mapped as they are copied: a
materialization's input event pointers (what Dagster's staleness compares) and an asset check's
target materialization. A run already in the target is skipped, so a copy that was interrupted can simply be run again. The data root needs no copy:
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


POINTER_TAG = "dagster/input_event_pointer/"  # + the input's asset key: the storage id of the event it read


def _remapped(entry, ids: dict[int, int]):
    """`entry` with the storage ids it refers to (input event pointers, a check's target materialization)
    replaced by their ids in the target instance."""
    event = entry.dagster_event if entry.is_dagster_event else None
    if event is None:
        return entry
    data = event.event_specific_data
    if event.is_step_materialization or event.is_asset_observation:
        field = "materialization" if event.is_step_materialization else "asset_observation"
        inner = getattr(data, field)
        tags = dict(inner.tags or {})
        for key, value in tags.items():
            if key.startswith(POINTER_TAG) and str(value).isdigit() and int(value) in ids:
                tags[key] = str(ids[int(value)])
        if tags == dict(inner.tags or {}):
            return entry
        data = data._replace(**{field: inner._replace(tags=tags)})
    elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        target = data.target_materialization_data
        if target is None or target.storage_id not in ids:
            return entry
        data = _replace(data, target_materialization_data=_replace(target, storage_id=ids[target.storage_id]))
    else:
        return entry
    return entry._replace(dagster_event=event._replace(event_specific_data=data))


def _replace(obj, **changes):
    """A copy of an event's part with `changes`: NamedTuples by `_replace`, Dagster's @record classes by
    dagster_shared's `replace` (their `_replace` is refused)."""
    from dagster_shared.record import replace

    try:
        return obj._replace(**changes)
    except Exception:  # noqa: BLE001 - a @record's _replace raises "Iteration is not allowed"
        return replace(obj, **changes)


def _stored_id(target: dg.DagsterInstance, entry) -> int | None:
    """The target's storage id of the materialization or observation just stored from `entry`."""
    event = entry.dagster_event
    records_filter = dg.AssetRecordsFilter(asset_key=event.asset_key)
    found = (target.fetch_materializations(records_filter, limit=1) if event.is_step_materialization
             else target.fetch_observations(records_filter, limit=1)).records
    return found[0].storage_id if found else None


def _records(instance: dg.DagsterInstance, run_id: str, page: int):
    cursor = None
    while True:
        conn = instance.get_records_for_run(run_id, cursor=cursor, limit=page)
        yield from conn.records
        cursor = conn.cursor
        if not conn.has_more:
            return


def _asset_event_ids(instance: dg.DagsterInstance) -> dict[tuple[str, str, float], int]:
    """(run id, asset key, timestamp) -> storage id of every materialization and observation, as the asset
    index numbers them (what pointers refer to; a SQLite instance numbers a run's own event log apart)."""
    out = {}
    for key in instance.get_asset_keys():
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            cursor = None
            while True:
                result = fetch(dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor)
                for r in result.records:
                    out[(r.run_id, key.to_user_string(), r.event_log_entry.timestamp)] = r.storage_id
                cursor = result.cursor
                if not result.has_more:
                    break
    return out


def copy_instance(source: dg.DagsterInstance, target: dg.DagsterInstance, page: int = 1000) -> CopyStats:
    """Copy every run (oldest first) with its snapshots and events, then backfills and sensor states."""
    stats = CopyStats()
    source_ids = _asset_event_ids(source)
    copied = _asset_event_ids(target)  # runs copied before
    ids = {sid: copied[k] for k, sid in source_ids.items() if k in copied}  # source id -> target id
    for run in reversed(source.get_runs()):  # get_runs: newest first
        if target.has_run(run.run_id):  # copied before
            stats.skipped_runs += 1
            continue
        if run.job_snapshot_id and not target.has_job_snapshot(run.job_snapshot_id):
            target.add_snapshot(source.get_job_snapshot(run.job_snapshot_id))
        if run.execution_plan_snapshot_id and not target.has_snapshot(run.execution_plan_snapshot_id):
            target.add_snapshot(source.get_execution_plan_snapshot(run.execution_plan_snapshot_id))
        # events first, the run row last: a copy interrupted in between left no run, so it is redone whole
        target.event_log_storage.delete_events(run.run_id)
        lifecycle = []
        for record in _records(source, run.run_id, page):
            entry = _remapped(record.event_log_entry, ids)
            target.event_log_storage.store_event(entry)
            stats.events += 1
            if entry.is_dagster_event and (entry.dagster_event.is_step_materialization
                                           or entry.dagster_event.is_asset_observation):
                new_id = _stored_id(target, entry)
                old_id = source_ids.get((run.run_id, entry.dagster_event.asset_key.to_user_string(), entry.timestamp))
                if new_id is not None and old_id is not None:
                    ids[old_id] = new_id
            if entry.is_dagster_event and entry.get_dagster_event().is_job_event:
                lifecycle.append(entry)
        target.add_run(run)
        for entry in lifecycle:  # the run's start and end times
            target.handle_run_event(run.run_id, entry.get_dagster_event(),
                                    datetime.fromtimestamp(entry.timestamp, tz=timezone.utc))
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
