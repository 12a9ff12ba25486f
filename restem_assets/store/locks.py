"""Exclusive file locks that a crash cannot leave stuck.

`flock` locks belong to an open file; the kernel drops them when the process exits, even
by SIGKILL, so a killed writer never blocks the next one. The holder writes who it is into
the file, so a refused process can say which one it waits for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class LockHeldError(RuntimeError):
    """The lock is held by another process (named in the message)."""


class FileLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        extra = "".join(f", {k} {v}" for k, v in info.items() if k not in ("pid", "host", "since"))
        return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}{extra}"

    def acquire(self, owner: Mapping[str, Any] | None = None, wait: bool = False, poll_s: float = 5.0,
                on_wait: Callable[[str], None] | None = None) -> "FileLock":
        """Take the lock, or raise LockHeldError naming the holder (with `wait`, sleep until it is free)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    fh.close()
                    raise LockHeldError(self.holder()) from None
                if on_wait is not None and not announced:
                    on_wait(self.holder())
                    announced = True
                time.sleep(poll_s)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S"), **(owner or {"command": " ".join(sys.argv)})}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
