"""Parquet tables under one fsspec root, hive layout, written atomically in chunks.

Layout: `<root>/<table>/iteration=<i>/part-0.parquet` for per-iteration tables and
`<root>/<table>/part-0.parquet` for unpartitioned ones. Writers stream record
batches into a temporary file in the target directory and rename it into place,
so readers (DuckDB globs on `*.parquet`) never see a half-written table and
memory stays bounded by the chunk size, not the table size.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from restem_assets.store.atomic import staged_file

PART_NAME = "part-0.parquet"
DEFAULT_DATA_ROOT = "data"  # relative to the working directory, like every command's default


class TableNotFoundError(FileNotFoundError):
    """A table (or one iteration of it) that a step needs has not been written yet."""


class CorruptTableError(ValueError):
    """A table file that exists but is not readable Parquet (truncated, overwritten, not Parquet at all)."""


# What pyarrow raises for a file that is not (or no longer) valid Parquet: ArrowInvalid for bad magic
# bytes or a bad footer, OSError (ArrowIOError) for thrift / page decoding errors and short reads.
_CORRUPT = (pa.ArrowInvalid, OSError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.removeprefix("Could not open Parquet input source '<Buffer>': ")


class ParquetStore:
    """Reads and writes restem's tables under `root` (a local path or any fsspec URL)."""

    def __init__(self, root: str, storage_options: Mapping[str, Any] | None = None):
        self.root = root.rstrip("/") or "/"
        self.fs, self._root_path = url_to_fs(self.root, **dict(storage_options or {}))

    # -- paths -------------------------------------------------------------------------
    def _join(self, *parts: str) -> str:
        return posixpath.join(self._root_path, *parts)

    def table_dir(self, table: str, iteration: int | None = None) -> str:
        if iteration is None:
            return self._join(table)
        return self._join(table, f"iteration={int(iteration)}")

    def table_path(self, table: str, iteration: int | None = None) -> str:
        return posixpath.join(self.table_dir(table, iteration), PART_NAME)

    def url(self, path: str) -> str:
        """The full URL (with protocol) of an internal path, for metadata and DuckDB."""
        return self.fs.unstrip_protocol(path)

    def glob_url(self, table: str) -> str:
        """The DuckDB glob for every iteration of a partitioned table."""
        return self.url(self._join(table, "*", "*.parquet"))

    def exists(self, table: str, iteration: int | None = None) -> bool:
        return self.fs.exists(self.table_path(table, iteration))

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def writer(self, table: str, schema: pa.Schema, iteration: int | None = None):
        """Yield a `TableWriter`; the file appears at its final path only on clean exit."""
        with staged_file(self.fs, self.table_path(table, iteration)) as tmp, self.fs.open(tmp, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression="zstd") as pw:
                yield TableWriter(pw, schema, table)

    def write_table(
        self, table: str, data: pa.Table | Sequence[Mapping[str, Any]], schema: pa.Schema, iteration: int | None = None
    ) -> int:
        """Write a whole (small) table at once; returns the row count."""
        with self.writer(table, schema, iteration) as w:
            w.write(data)
        return w.rows

    # -- reading -----------------------------------------------------------------------
    def _require(self, table: str, iteration: int | None) -> str:
        path = self.table_path(table, iteration)
        if not self.fs.exists(path):
            where = f"iteration {iteration} of " if iteration is not None else ""
            raise TableNotFoundError(
                f"{where}table '{table}' not found at {self.url(path)}; materialize it first"
            )
        return path

    def corrupt_error(self, table: str, iteration: int | None, path: str, exc: BaseException) -> CorruptTableError:
        """The one-line error for a table file pyarrow cannot read: which file, of which table, and why."""
        where = f"iteration {iteration} of " if iteration is not None else ""
        return CorruptTableError(
            f"{where}table '{table}': {self.url(path)} is not a readable Parquet file ({_first_line(exc)}); "
            "re-materialize it or remove the file"
        )

    @contextmanager
    def _reading(self, table: str, iteration: int | None, path: str):
        """Re-raise pyarrow's errors for an unreadable file as CorruptTableError naming the file."""
        try:
            yield
        except FileNotFoundError:
            raise
        except _CORRUPT as exc:
            raise self.corrupt_error(table, iteration, path, exc) from exc

    def read_table(self, table: str, iteration: int | None = None, columns: list[str] | None = None) -> pa.Table:
        path = self._require(table, iteration)
        with self.fs.open(path, "rb") as fh:
            if columns is not None:  # a missing column is the caller's mistake, not a corrupt file
                with self._reading(table, iteration, path):
                    names = pq.ParquetFile(fh).schema_arrow.names
                absent = [c for c in columns if c not in names]
                if absent:
                    raise ValueError(f"table '{table}' has no columns {absent} in {self.url(path)}")
                fh.seek(0)
            with self._reading(table, iteration, path):
                return read_open_file(fh, columns)

    def head(self, table: str, iteration: int | None = None, n: int = 5) -> list[dict[str, Any]]:
        """The first `n` rows (for previews), reading one batch, not the table."""
        for batch in self.iter_batches(table, iteration, batch_size=n):
            return batch.to_pylist()[:n]
        return []

    def iter_batches(
        self, table: str, iteration: int | None = None, batch_size: int = 4096, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream a table in record batches (bounded memory)."""
        path = self._require(table, iteration)
        with self.fs.open(path, "rb") as fh:
            with self._reading(table, iteration, path):
                pf = pq.ParquetFile(fh)
                batches = pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)  # see read_open_file
            while True:
                with self._reading(table, iteration, path):  # the consumer's own errors are not wrapped
                    batch = next(batches, None)
                if batch is None:
                    return
                yield batch

    def schema(self, table: str, iteration: int | None = None) -> pa.Schema:
        """The Arrow schema a table's file was written with (older files may lack newer columns)."""
        path = self._require(table, iteration)
        with self.fs.open(path, "rb") as fh, self._reading(table, iteration, path):
            return pq.ParquetFile(fh).schema_arrow

    def num_rows(self, table: str, iteration: int | None = None) -> int:
        path = self._require(table, iteration)
        with self.fs.open(path, "rb") as fh, self._reading(table, iteration, path):
            return pq.ParquetFile(fh).metadata.num_rows

    def iterations(self, table: str) -> list[int]:
        """Iterations for which `table` has been written, ascending."""
        base = self._join(table)
        if not self.fs.exists(base):
            return []
        out = []
        for entry in self.fs.ls(base, detail=False):
            name = posixpath.basename(entry.rstrip("/"))
            if name.startswith("iteration=") and self.fs.exists(posixpath.join(entry, PART_NAME)):
                out.append(int(name.split("=", 1)[1]))
        return sorted(out)


class TableWriter:
    """Appends rows (dicts or Arrow tables/batches) to an open Parquet file, checking the schema."""

    def __init__(self, pw: pq.ParquetWriter, schema: pa.Schema, table: str):
        self._pw = pw
        self.schema = schema
        self.table = table
        self.rows = 0

    def write(self, data: pa.Table | pa.RecordBatch | Iterable[Mapping[str, Any]]) -> None:
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if not isinstance(data, pa.Table):
            rows = list(data)
            if not rows:
                return
            missing = [f.name for f in self.schema if f.name not in rows[0]]
            if missing:
                raise ValueError(f"rows for table '{self.table}' lack columns {missing}")
            data = pa.Table.from_pylist(rows, schema=self.schema)
        else:
            missing = [n for n in self.schema.names if n not in data.column_names]
            if missing:
                raise ValueError(f"data for table '{self.table}' lacks columns {missing}")
            data = data.select(self.schema.names).cast(self.schema)
        if data.num_rows:
            self._pw.write_table(data)
            self.rows += data.num_rows


def read_open_file(fh, columns: list[str] | None = None) -> pa.Table:
    """The whole Parquet file behind the Python file object `fh`, read on this thread.

    Arrow wraps `fh` in a C++ object whose destructor takes the GIL. Read on Arrow's worker threads
    (`pq.read_table`, or `use_threads=True`), a worker can hold the last reference; if it lets go while
    the interpreter exits it cannot take the GIL and the process aborts ("terminate called without an
    active exception", exit -6 after the command had printed its result). Tables read this way are small
    (the large scans are DuckDB's), so one thread costs little.
    """
    return pq.ParquetFile(fh).read(columns=columns, use_threads=False)


def fsspec_open(url: str, mode: str = "rb", **kwargs):
    """Open any local path or fsspec URL (used by dataset loaders)."""
    return fsspec.open(url, mode, **kwargs)


def table_fingerprint(table: pa.Table) -> str:
    """A short content hash of a table (rows in order), for data versions that survive a reload."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=4096):
        digest.update(json.dumps(batch.to_pylist(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
