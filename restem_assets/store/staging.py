"""Chunks of a long generation step that survive a crash, so a re-run generates only what is missing.

A step that samples for minutes (E-step `samples`, evaluation's `eval_samples`) flushes its
rows every few hundred rows or seconds as one Parquet file each, under

    <root>/.staging/<table>/iteration=<i>/<fingerprint>/chunk-<n>.parquet

(each published atomically). The fingerprint names what is being generated (policy path and
sampling settings), so chunks of another request are never reused. When the step finishes,
the chunks are merged into the table's final file, atomically, and the staging is removed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from restem_assets.store.atomic import staged_file
from restem_assets.store.tables import ParquetStore, read_open_file

STAGING_DIR = ".staging"


def fingerprint(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ChunkStaging:
    def __init__(self, store: ParquetStore, table: str, iteration: int, schema: pa.Schema,
                 request: Mapping[str, Any], flush_rows: int = 512, flush_seconds: float = 30.0):
        self.store, self.table, self.iteration, self.schema = store, table, iteration, schema
        self.parent = store._join(STAGING_DIR, table, f"iteration={int(iteration)}")
        self.dir = posixpath.join(self.parent, fingerprint(request))
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._drop_other_requests()
        self._next = len(self._chunks())

    def _drop_other_requests(self) -> None:
        fs = self.store.fs
        if fs.exists(self.parent):
            for entry in fs.ls(self.parent, detail=False):
                if entry.rstrip("/") != self.dir.rstrip("/"):
                    fs.rm(entry, recursive=True)

    def _chunks(self) -> list[str]:
        fs = self.store.fs
        if not fs.exists(self.dir):
            return []
        return sorted(p for p in fs.ls(self.dir, detail=False) if posixpath.basename(p).startswith("chunk-"))

    def rows(self, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of every finished chunk, in the order they were written."""
        for path in self._chunks():
            with self.store.fs.open(path, "rb") as fh:
                yield from read_open_file(fh, columns).to_pylist()

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer rows; a chunk file is published every `flush_rows` rows or `flush_seconds`."""
        self._buffer.extend(rows)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            final = posixpath.join(self.dir, f"chunk-{self._next:06d}.parquet")
            with staged_file(self.store.fs, final) as tmp, self.store.fs.open(tmp, "wb") as fh:
                pq.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema), fh, compression="zstd")
            self._next += 1
            self._buffer = []
        self._last_flush = time.monotonic()

    def publish(self) -> int:
        """Merge every chunk into the table's file (atomically), remove the staging; returns the row count."""
        self.flush()
        with self.store.writer(self.table, self.schema, self.iteration) as writer:
            for path in self._chunks():
                with self.store.fs.open(path, "rb") as fh:
                    for batch in pq.ParquetFile(fh).iter_batches(use_threads=False):  # see read_open_file
                        writer.write(batch)
        fs = self.store.fs
        fs.rm(self.parent, recursive=True)
        for directory in (posixpath.dirname(self.parent), posixpath.dirname(posixpath.dirname(self.parent))):
            if fs.exists(directory) and not fs.ls(directory, detail=False):  # leave no empty .staging behind
                fs.rm(directory, recursive=True)
        return writer.rows
