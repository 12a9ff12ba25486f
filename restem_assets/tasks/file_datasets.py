"""GSM8K and MATH problems from JSONL or Parquet files, at a local path or any fsspec URL.

Files keep the datasets' own field layouts:
  GSM8K: {"question": ..., "answer": "<reasoning>\\n#### 1,234"} -> gold "1234"
  MATH:  {"problem": ..., "solution": "... \\boxed{...} ...", "level": ..., "type": ...}
         -> gold = content of the last \\boxed{...} in the solution

Format comes from the extension: `.jsonl`, `.json` (JSON lines, or one JSON array),
`.parquet`; a trailing `.gz`/`.bz2`/`.xz`/`.zst` is decompressed by fsspec.

Splits and limits are content-based, so they do not depend on file order:
  * with only train_path, a question goes to test when
    unit_interval(seed, question) < test_fraction;
  * repeated questions are kept once, and a train question that also appears
    in test is dropped from train (test is never contaminated);
  * train_size / test_size keep the N questions with the smallest
    seeded content hash, listed in file order.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.parquet as pq

from restem_assets.latex_boxed import last_boxed
from restem_assets.storage import fsspec_open
from restem_assets.tasks.problem_ids import problem_id, unit_interval
from restem_assets.tasks.spec import TaskSpec

_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")


def file_format(url: str) -> str:
    """'jsonl', 'json' or 'parquet' from the file name (ignoring a compression suffix)."""
    name = posixpath.basename(url.split("?", 1)[0]).lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet")):
        if name.endswith(ext):
            return fmt
    raise ValueError(f"{url}: unknown file type; expected .jsonl, .json or .parquet (optionally .gz)")


def _parse_lines(url: str, lines) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{url}, line {lineno}: invalid JSON: {exc.msg}") from exc


def _json_lines(url: str, storage_options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    with fsspec_open(url, "rt", encoding="utf-8", compression="infer", **storage_options) as fh:
        yield from _parse_lines(url, fh)


def _json_file(url: str, storage_options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A `.json` file is either JSON lines or a single array of records."""
    with fsspec_open(url, "rt", encoding="utf-8", compression="infer", **storage_options) as fh:
        text = fh.read()
    if not text.lstrip().startswith("["):
        yield from _parse_lines(url, text.splitlines())
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{url}, line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    for i, record in enumerate(records, start=1):
        yield f"record {i}", record


def _parquet_rows(url: str, storage_options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    with fsspec_open(url, "rb", **storage_options) as fh:
        try:
            table = pq.read_table(fh)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            raise ValueError(f"{url}: not a readable Parquet file: {exc}") from exc
    for i, record in enumerate(table.to_pylist(), start=1):
        yield f"row {i}", record


def read_records(url: str, storage_options: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) for each record of a file; location is e.g. 'line 3' or 'row 3'."""
    storage_options = dict(storage_options or {})
    reader = {"jsonl": _json_lines, "json": _json_file, "parquet": _parquet_rows}[file_format(url)]
    try:
        for where, record in reader(url, storage_options):
            if not isinstance(record, dict):
                raise ValueError(f"{url}, {where}: expected a JSON object, got {type(record).__name__}")
            yield where, record
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"problem file not found: {url}") from exc


def _text_field(record: dict[str, Any], field: str, url: str, where: str) -> str:
    value = record.get(field)
    if value is None:
        raise ValueError(f"{url}, {where}: missing required field {field!r}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{url}, {where}: field {field!r} must be a non-empty string, got {value!r}")
    return value


def gsm8k_problem(record: dict[str, Any], url: str, where: str) -> dict[str, Any]:
    """question/answer/solution/metadata of one GSM8K record; gold is the number after '####'."""
    question = _text_field(record, "question", url, where)
    solution = _text_field(record, "answer", url, where)
    if "####" not in solution:
        raise ValueError(f"{url}, {where}: field 'answer' has no '#### <final answer>' line")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise ValueError(f"{url}, {where}: field 'answer' has an empty final answer after '####'")
    extra = {k: v for k, v in record.items() if k not in ("question", "answer")}
    return {"question": question, "answer": gold, "solution": solution, "metadata": extra}


def math_problem(record: dict[str, Any], url: str, where: str) -> dict[str, Any]:
    """question/answer/solution/metadata of one MATH record; gold is the last \\boxed{} of the solution."""
    question = _text_field(record, "problem", url, where)
    solution = _text_field(record, "solution", url, where)
    gold = last_boxed(solution)
    if not gold:
        raise ValueError(f"{url}, {where}: field 'solution' has no non-empty \\boxed{{...}} final answer")
    extra = {k: v for k, v in record.items() if k not in ("problem", "solution")}
    metadata = {"level": record.get("level"), "type": record.get("type"), **extra}
    return {"question": question, "answer": gold, "solution": solution, "metadata": metadata}


PARSERS: dict[str, Callable[[dict[str, Any], str, str], dict[str, Any]]] = {
    "gsm8k": gsm8k_problem,
    "math": math_problem,
}


def _read_problems(url: str, parse, storage_options: dict[str, Any]) -> list[dict[str, Any]]:
    return [parse(record, url, where) for where, record in read_records(url, storage_options)]


def _unique(problems: list[dict[str, Any]], exclude: set[str] = frozenset()) -> list[dict[str, Any]]:
    """Keep the first occurrence of each question, skipping questions in `exclude`."""
    seen = set(exclude)
    out = []
    for p in problems:
        if p["question"] not in seen:
            seen.add(p["question"])
            out.append(p)
    return out


def _limit(problems: list[dict[str, Any]], size: int | None, field: str, seed: int) -> list[dict[str, Any]]:
    """The `size` problems with the smallest seeded content hash, in their original order."""
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"TaskSpec.{field} must be a non-negative int or None, got {size!r}")
    if size is None or size >= len(problems):
        return problems
    ranked = sorted(range(len(problems)), key=lambda i: unit_interval(problems[i]["question"], f"{seed}:limit:"))
    keep = set(ranked[:size])
    return [p for i, p in enumerate(problems) if i in keep]


def _carve(problems: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"TaskSpec.test_fraction must be strictly between 0 and 1 to carve a test split, got {fraction!r}")
    train, test = [], []
    for p in problems:
        (test if unit_interval(p["question"], f"{seed}:test:") < fraction else train).append(p)
    return train, test


def file_problems(spec: TaskSpec) -> list[dict[str, Any]]:
    """Rows in the PROBLEMS layout for a GSM8K or MATH spec: train first, then test."""
    task = spec.kind
    parse = PARSERS.get(task)
    if parse is None:
        raise ValueError(f"file_problems handles kinds {sorted(PARSERS)}, got {task!r}")
    if not spec.train_path:
        raise ValueError(f"TaskSpec.train_path is required for kind {task!r}")
    train = _read_problems(spec.train_path, parse, spec.storage_options)
    if spec.test_path:
        test = _read_problems(spec.test_path, parse, spec.storage_options)
    else:
        train, test = _carve(train, spec.test_fraction, spec.seed)
    test = _unique(test)
    train = _unique(train, exclude={p["question"] for p in test})
    splits = (
        ("train", _limit(train, spec.train_size, "train_size", spec.seed)),
        ("test", _limit(test, spec.test_size, "test_size", spec.seed)),
    )
    return [
        {
            "problem_id": problem_id(task, p["question"]),
            "split": split,
            "task": task,
            "domain": "math",
            "verifier": "math",
            "question": p["question"],
            "answer": p["answer"],
            "solution": p["solution"],
            "metadata": json.dumps(p["metadata"], sort_keys=True, default=str),
        }
        for split, problems in splits
        for p in problems
    ]
