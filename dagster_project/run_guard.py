"""Crash recovery and one writer at a time for the `restem` driver.

* `driver_lock`: an exclusive lock on `<DAGSTER_HOME>/restem-driver.lock` (restem_assets.locks).
  A second driver on the same instance is refused with a message naming the one that holds
  it (or waits, with --wait); a killed driver's lock goes with its process.
* `process_tags()`: every run the driver executes is tagged with its pid, host and the
  process's start time, so a later driver (or the sensor) can tell that the process of a
  run still marked STARTED is gone (`reap_dead_runs`): the run is marked failed and its
  pool slots are freed, instead of blocking the `torch` pool forever.
* `remove_orphans`: temporary files and directories that a killed writer left behind under
  the data root (`.<name>.tmp-*`, see restem_assets.atomic).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from restem_assets.atomic import TMP_MARK
from restem_assets.locks import FileLock, LockHeldError

TAG_PID, TAG_HOST, TAG_START = "restem/pid", "restem/host", "restem/process_start"


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    return {TAG_PID: str(os.getpid()), TAG_HOST: socket.gethostname(), TAG_START: process_start(os.getpid()) or ""}


def run_process_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process that executes `run` lives; None when the run was not started by a driver here."""
    tags = run.tags
    if TAG_PID not in tags or tags.get(TAG_HOST) != socket.gethostname():
        return None
    return process_start(int(tags[TAG_PID])) == tags.get(TAG_START)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark in-progress runs whose driver process is gone as failed and free every slot they hold."""
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))):
        if run_process_alive(run) is False:
            instance.report_run_failed(run, "restem: the process running this step died (killed?); "
                                            "marked failed so the loop can resume")
            reaped.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        in_progress = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))}
        holders = set()
        for pool in storage.get_concurrency_keys():
            info = storage.get_concurrency_info(pool)
            holders.update(s.run_id for s in info.claimed_slots)
            holders.update(s.run_id for s in info.pending_steps)
        for run_id in holders - in_progress:
            storage.free_concurrency_slots_for_run(run_id)
    return reaped


def remove_orphans(root: str) -> list[str]:
    """Delete temporary files and directories left by killed writers under a local data root.

    Call only when no run is in flight: a live writer's temporary looks the same. Staged chunks
    (`.staging/`) are not temporaries: they are what an interrupted step resumes from.
    """
    base = Path(root)
    if "://" in root or not base.is_dir():
        return []
    removed = []
    for path in sorted(base.rglob(f".*{TMP_MARK}*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed


def driver_lock(home: Path, wait: bool = False) -> FileLock:
    """One `restem` driver per Dagster instance: refused (naming the running one) or, with `wait`, queued."""
    lock = FileLock(Path(home) / "restem-driver.lock")
    try:
        return lock.acquire(wait=wait, on_wait=lambda who: print(f"restem: waiting for the running driver ({who})",
                                                                 flush=True))
    except LockHeldError as exc:
        raise LockHeldError(f"another restem driver is running on this instance ({exc}); "
                            "wait for it, stop it, or pass --wait") from None


def stop_on_sigterm() -> None:
    """SIGTERM ends the driver like Ctrl-C does (Dagster then marks the run failed/canceled)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
