"""`load_problems`: one TaskSpec in, one table in exactly the PROBLEMS schema out.

Dispatches on `spec.kind` to the loader that knows the source, then checks the
rows before they become the table every later step joins on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from restem_assets.store.schemas import PROBLEMS
from restem_assets.tasks.file_datasets import file_problems
from restem_assets.tasks.function_synthesis import function_synthesis_problems
from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems, score_reasoning_gym
from restem_assets.tasks.spec import TaskSpec

__all__ = ["load_problems", "problems_table", "score_reasoning_gym"]

_SPLITS = ("train", "test")


def _rows(spec: TaskSpec) -> list[dict[str, Any]]:
    if spec.kind == "reasoning_gym":
        return reasoning_gym_problems(spec)
    if spec.kind == "function_synthesis":
        return function_synthesis_problems(spec)
    if spec.kind in ("gsm8k", "math"):
        return file_problems(spec)
    if spec.kind == "apps":
        from restem_assets.tasks.code_datasets import load_apps  # heavy and optional: import on use

        return load_apps(spec)
    if spec.kind == "humaneval":
        from restem_assets.tasks.code_datasets import load_humaneval

        return load_humaneval(spec)
    raise ValueError(f"no problem loader for TaskSpec.kind {spec.kind!r}")


def problems_table(rows: list[dict[str, Any]], source: str) -> pa.Table:
    """Rows -> PROBLEMS table, refusing rows that miss columns, use an unknown split or repeat an id."""
    for i, row in enumerate(rows):
        missing = [name for name in PROBLEMS.names if name not in row]
        if missing:
            raise ValueError(f"{source}: problem row {i} lacks columns {missing}")
        if row["split"] not in _SPLITS:
            raise ValueError(
                f"{source}: problem row {i} ({row['problem_id']}) has split {row['split']!r}, expected one of {_SPLITS}"
            )
    repeated = [pid for pid, n in Counter(row["problem_id"] for row in rows).items() if n > 1]
    if repeated:
        raise ValueError(f"{source}: problem ids are not unique, e.g. {repeated[:3]}")
    return pa.Table.from_pylist(rows, schema=PROBLEMS)


def load_problems(spec: TaskSpec) -> pa.Table:
    """All problems of both splits for `spec`, train rows first."""
    source = f"reasoning_gym task {spec.name!r}" if spec.kind == "reasoning_gym" else f"{spec.kind} task"
    return problems_table(_rows(spec), source)
