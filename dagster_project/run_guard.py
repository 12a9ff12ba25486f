"""Crash recovery and one writer at a time for the `restem` driver.

* `driver_lock`: an exclusive lock on `<DAGSTER_HOME>/restem-driver.lock` (restem_assets.store.locks).
  A second driver on the same instance is refused with a message naming the one that holds
  it (or waits, with --wait); a killed driver's lock goes with its process.
* `process_tags()`: every run the driver executes is tagged with its pid, host and the
  process's start time, so a later driver (or the sensor) can tell that the process of a
  run still marked STARTED is gone (`reap_dead_runs`): the run is marked failed and its
  pool slots are freed, instead of blocking the `torch` pool forever.
* `remove_orphans`: temporary files and directories that a killed writer left behind under
  the data root (`.<name>.tmp-*`, see restem_assets.store.atomic).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import dagster as dg

from restem_assets.store.atomic import TMP_MARK
from restem_assets.store.locks import FileLock, LockHeldError

TAG_PID, TAG_HOST, TAG_START = "restem/pid", "restem/host", "restem/process_start"

# A run that has started and not finished (it may hold pool slots). Dagster's private IN_PROGRESS_RUN_STATUSES
# (dagster/_core/storage/dagster_run.py) from the public enum; tests/test_dagster_internals.py fails when
# Dagster adds a status or classifies one differently.
IN_PROGRESS_RUN_STATUSES = tuple(s for s in dg.DagsterRunStatus
                                 if s.name in ("STARTING", "STARTED", "SUSPENDED", "CANCELING"))


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


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_wakeup: tuple[socket.socket, socket.socket] | None = None
_received: set[int] = set()


def stop_on_sigterm() -> None:
    """SIGTERM ends the driver like Ctrl-C does, and the driver stops after the step it interrupted.

    Raising from the handler is not enough: while a run executes, Dagster swaps in its own SIGINT and
    SIGTERM handlers, which only *record* a signal that arrives between steps and forget it when the
    run ends, and an exception raised inside a `__del__` is swallowed ("Exception ignored in ...").
    Either way the run can finish "successfully" and the driver would go on. So every delivered
    signal is also written to a wake-up socket (signal.set_wakeup_fd, whatever Python handler is
    installed at the time), and the driver asks `stop_requested()` after each run.
    """
    global _wakeup

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    if _wakeup is None:
        _wakeup = socket.socketpair()
        for end in _wakeup:
            end.setblocking(False)
    signal.set_wakeup_fd(_wakeup[1].fileno(), warn_on_full_buffer=False)
    _drain()
    _received.clear()


def _drain() -> None:
    if _wakeup is None:
        return
    while True:
        try:
            data = _wakeup[0].recv(4096)
        except BlockingIOError:
            return
        if not data:
            return
        _received.update(b for b in data if b in _STOP_SIGNALS)


def stop_requested() -> int | None:
    """The signal (SIGTERM, else SIGINT) that asked this driver to stop since `stop_on_sigterm` (None: none)."""
    _drain()
    for signum in _STOP_SIGNALS:
        if signum in _received:
            return int(signum)
    return None


def report_stop(signum: int, during: str | None = None) -> int:
    """Tell the user the driver stopped on a signal and how to resume; returns the exit code (128 + signal)."""
    where = f" during {during}" if during else ""
    print(f"restem: stopped by signal {int(signum)}{where}; run the same command again to resume",
          file=sys.stderr, flush=True)
    return 128 + int(signum)


def forget_stop_signals() -> None:
    """Stop recording signals (for a test that installed the guard in its own process)."""
    global _wakeup
    signal.set_wakeup_fd(-1)
    if _wakeup is not None:
        for end in _wakeup:
            end.close()
        _wakeup = None
    _received.clear()
