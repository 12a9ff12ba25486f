"""The one reader for problem files, and the one dedupe / split / limit for the rows made from them.

Every file-backed task (GSM8K, MATH, APPS, HumanEval) goes through here; a task
module only turns one record into one PROBLEMS row (`parse`).

Reading (`read_records`): a local path or any fsspec URL; the format comes from
the name, ignoring a trailing `.gz`/`.bz2`/`.xz`/`.zst`, which fsspec
decompresses (`compression="infer"`):
  `.jsonl`/`.ndjson`  JSON lines (blank lines are skipped);
  `.json`             one JSON array of objects, or JSON lines;
  `.parquet`/`.pq`    Parquet.
Records are numbered from 1 as `row N`: the line number in a JSON-lines file
(what an editor shows), the position in a JSON array or Parquet table. Every
error about bad input reads `<file>: row <N>: field '<name>' ...`.

Fields (`Record.field`): a missing field and a null are the same; a required
text field must also hold more than white space.

Rows are identified by their `problem_id` (content-derived, see problem_ids),
and every rule below looks only at that id, never at file order:
  * dedupe: a repeated id is kept once (the first), with a warning;
  * carve (no test file): a row goes to test when
    unit_interval(problem_id, "<seed>:test:") < test_fraction, test_fraction in [0, 1];
  * test file given: a train row whose id is in the test file is dropped from
    train (test is never contaminated), with a warning;
  * limit: train_size / test_size keep the N rows with the smallest
    unit_interval(problem_id, "<seed>:limit:"), listed in their original order;
    None keeps all. So a file that is reordered or grows keeps its choices.
A file with no usable rows is an error, and so is a split left empty when a
positive size was asked for it; both name the file.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from restem_assets.store.tables import fsspec_open, read_open_file
from restem_assets.tasks.problem_ids import unit_interval
from restem_assets.tasks.spec import TaskSpec

log = logging.getLogger(__name__)

_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")
_FORMATS = ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet"), (".pq", "parquet"))


# -- reading ----------------------------------------------------------------------------------------
def file_format(url: str) -> str:
    """'jsonl', 'json' or 'parquet' from the file name (ignoring a compression suffix and a query)."""
    name = posixpath.basename(url.split("?", 1)[0]).lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in _FORMATS:
        if name.endswith(ext):
            return fmt
    raise ValueError(f"{url}: unknown file type; expected .jsonl, .json or .parquet (optionally .gz)")


@dataclass(frozen=True)
class Record:
    """One record of a file, with where it came from so errors can say so."""

    url: str
    row: int  # from 1; see the module docstring
    data: dict[str, Any]

    def error(self, message: str, field: str | None = None) -> ValueError:
        """A ValueError reading `<file>: row <N>: [field '<name>' ]<message>`."""
        subject = f"field '{field}' " if field else ""
        return ValueError(f"{self.url}: row {self.row}: {subject}{message}")

    def field(self, name: str, types: type | tuple[type, ...] = str, *, required: bool = True, default: Any = None) -> Any:
        """The value of `name`, checked against `types`; missing/null gives `default` unless required."""
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error("is missing", name)
            return default
        types = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise self.error(f"must be {want}, got {type(value).__name__}", name)
        if required and isinstance(value, str) and not value.strip():
            raise self.error("is empty", name)
        return value


def _json_lines(url: str, lines) -> Iterator[tuple[int, Any]]:
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield row, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{url}: row {row}: not valid JSON ({exc.msg})") from None


def _json_text(url: str, fh) -> Iterator[tuple[int, Any]]:
    """A `.json` file: one array of records, or JSON lines."""
    text = fh.read()
    if not text.lstrip().startswith("["):
        yield from _json_lines(url, text.splitlines())
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{url}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    yield from enumerate(records, start=1)


def _parquet(url: str, fh) -> Iterator[tuple[int, Any]]:
    try:
        table = read_open_file(fh)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise ValueError(f"{url}: not a readable Parquet file: {exc}") from None
    yield from enumerate(table.to_pylist(), start=1)


def read_records(url: str, storage_options: dict[str, Any] | None = None) -> Iterator[Record]:
    """Each record (a JSON object / Parquet row) of the file at `url`, in file order."""
    fmt = file_format(url)
    opts = {"compression": "infer", **(storage_options or {})}
    if fmt != "parquet":
        opts["encoding"] = "utf-8"
    reader = {"jsonl": _json_lines, "json": _json_text, "parquet": _parquet}[fmt]
    try:
        with fsspec_open(url, "rb" if fmt == "parquet" else "rt", **opts) as fh:
            for row, data in reader(url, fh):
                if not isinstance(data, dict):
                    raise ValueError(f"{url}: row {row}: expected a JSON object, got {type(data).__name__}")
                yield Record(url, row, data)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"problem file not found: {url}") from exc


def dedupe(rows: list[dict[str, Any]], url: str) -> list[dict[str, Any]]:
    """The first row of each problem_id, in order; repeats are dropped with a warning."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["problem_id"] in seen:
            log.warning("%s: repeated problem %s dropped", url, r["problem_id"])
            continue
        seen.add(r["problem_id"])
        out.append(r)
    return out


def read_rows(
    url: str,
    parse: Callable[[Record], dict[str, Any] | None],
    storage_options: dict[str, Any] | None = None,
    skipped_what: str = "records",
) -> list[dict[str, Any]]:
    """`parse` applied to each record (None: skip it), deduplicated; a file with no usable rows is an error."""
    rows, skipped = [], 0
    for record in read_records(url, storage_options):
        row = parse(record)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    if skipped:
        log.warning("%s: skipped %d %s", url, skipped, skipped_what)
    if not rows:
        raise ValueError(f"{url}: no usable rows" + (f" ({skipped} {skipped_what})" if skipped else ""))
    return dedupe(rows, url)


# -- splitting and limiting -------------------------------------------------------------------------
def carve(rows: list[dict[str, Any]], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, test) of one file's rows: test when the id's seeded hash is below test_fraction."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"TaskSpec.test_fraction must be in [0, 1], got {test_fraction!r}")
    train, test = [], []
    for r in rows:
        (test if unit_interval(r["problem_id"], f"{seed}:test:") < test_fraction else train).append(r)
    return train, test


def without(rows: list[dict[str, Any]], other: list[dict[str, Any]], url: str, other_url: str) -> list[dict]:
    """`rows` minus the problems that are also in `other` (kept there), with a warning when any are."""
    other_ids = {r["problem_id"] for r in other}
    kept = [r for r in rows if r["problem_id"] not in other_ids]
    if len(kept) < len(rows):
        log.warning("%s: %d problems also in %s dropped (kept only there)", url, len(rows) - len(kept), other_url)
    return kept


def check_size(size: Any, field: str) -> int | None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"TaskSpec.{field} must be a non-negative int or None, got {size!r}")
    return size


def limit(rows: list[dict[str, Any]], size: int | None, seed: int) -> list[dict[str, Any]]:
    """The `size` rows with the smallest seeded id hash, in their original order (None: all)."""
    if size is None or size >= len(rows):
        return list(rows)
    ranked = sorted(range(len(rows)), key=lambda i: unit_interval(rows[i]["problem_id"], f"{seed}:limit:"))
    keep = set(ranked[:size])
    return [r for i, r in enumerate(rows) if i in keep]


def split_rows(
    spec: TaskSpec,
    train: list[dict[str, Any]],
    train_url: str,
    test: list[dict[str, Any]] | None = None,
    test_url: str | None = None,
) -> list[dict[str, Any]]:
    """Train rows then test rows, each with its `split` set and limited to the spec's size.

    Without `test`, the test split is carved out of `train`; with it, train loses
    the problems that are in test.
    """
    sizes = {"train": check_size(spec.train_size, "train_size"), "test": check_size(spec.test_size, "test_size")}
    if test is None:
        train, test = carve(train, spec.test_fraction, spec.seed)
        how = f"{train_url} with test_fraction={spec.test_fraction} and seed {spec.seed}"
        sources = {"train": how, "test": how}
    else:
        train = without(train, test, train_url, test_url)
        sources = {"train": f"{train_url} minus the problems of {test_url}", "test": test_url}
    out = []
    for split, rows in (("train", train), ("test", test)):
        size = sizes[split]
        if not rows and size:
            raise ValueError(f"{sources[split]}: the {split} split is empty, but {split}_size={size}")
        out.extend({**r, "split": split} for r in limit(rows, size, spec.seed))
    return out


def load_split_rows(
    spec: TaskSpec,
    parse: Callable[[Record], dict[str, Any] | None],
    train_path: str,
    skipped_what: str = "records",
) -> list[dict[str, Any]]:
    """Rows of `train_path` (and spec.test_path, if set) read with `parse`, split and limited per the spec."""
    train = read_rows(train_path, parse, spec.storage_options, skipped_what)
    if not spec.test_path:
        return split_rows(spec, train, train_path)
    test = read_rows(spec.test_path, parse, spec.storage_options, skipped_what)
    return split_rows(spec, train, train_path, test, spec.test_path)


def problem_row(
    problem_id: str, task: str, domain: str, verifier: str, question: str, answer: str, solution: str, metadata: str
) -> dict[str, Any]:
    """A PROBLEMS row whose split is set later by `split_rows`."""
    return {
        "problem_id": problem_id,
        "split": "",
        "task": task,
        "domain": domain,
        "verifier": verifier,
        "question": question,
        "answer": answer,
        "solution": solution,
        "metadata": metadata,
    }
