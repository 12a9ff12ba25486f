"""GSM8K and MATH problems from JSONL, JSON or Parquet files, at a local path or any fsspec URL.

Files keep the datasets' own field layouts:
  GSM8K: {"question": ..., "answer": "<reasoning>\\n#### 1,234"} -> gold "1234"
  MATH:  {"problem": ..., "solution": "... \\boxed{...} ...", "level": ..., "type": ...}
         -> gold = content of the last \\boxed{...} in the solution

Ids are `problem_id(task, question)`. Reading, dedupe, the train/test split and
the size limits are those of `records` (see its docstring): content-based, so
they do not depend on file order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from restem_assets.rewards.latex_boxed import last_boxed
from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.records import Record, load_split_rows, problem_row
from restem_assets.tasks.spec import TaskSpec


def gsm8k_problem(record: Record) -> dict[str, Any]:
    """question/answer/solution/metadata of one GSM8K record; gold is the number after '####'."""
    question = record.field("question")
    solution = record.field("answer")
    if "####" not in solution:
        raise record.error("has no '#### <final answer>' line", "answer")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise record.error("has an empty final answer after '####'", "answer")
    extra = {k: v for k, v in record.data.items() if k not in ("question", "answer")}
    return {"question": question, "answer": gold, "solution": solution, "metadata": extra}


def math_problem(record: Record) -> dict[str, Any]:
    """question/answer/solution/metadata of one MATH record; gold is the last \\boxed{} of the solution."""
    question = record.field("problem")
    solution = record.field("solution")
    gold = last_boxed(solution)
    if not gold:
        raise record.error("has no non-empty \\boxed{...} final answer", "solution")
    extra = {k: v for k, v in record.data.items() if k not in ("problem", "solution")}
    metadata = {"level": record.data.get("level"), "type": record.data.get("type"), **extra}
    return {"question": question, "answer": gold, "solution": solution, "metadata": metadata}


PARSERS: dict[str, Callable[[Record], dict[str, Any]]] = {
    "gsm8k": gsm8k_problem,
    "math": math_problem,
}


def file_problems(spec: TaskSpec) -> list[dict[str, Any]]:
    """Rows in the PROBLEMS layout for a GSM8K or MATH spec: train first, then test."""
    task = spec.kind
    parse = PARSERS.get(task)
    if parse is None:
        raise ValueError(f"file_problems handles kinds {sorted(PARSERS)}, got {task!r}")
    if not spec.train_path:
        raise ValueError(f"TaskSpec.train_path is required for kind {task!r}")

    def row(record: Record) -> dict[str, Any]:
        p = parse(record)
        pid, metadata = problem_id(task, p["question"]), json.dumps(p["metadata"], sort_keys=True, default=str)
        return problem_row(pid, task, "math", "math", p["question"], p["answer"], p["solution"], metadata)

    return load_split_rows(spec, row, spec.train_path)
