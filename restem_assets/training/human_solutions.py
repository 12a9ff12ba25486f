"""The human-data baseline's training set: reference solutions instead of model samples (the paper's
"model-generated data vs human data" comparison), in the answer format the policy is trained to write.

* chain_sum: a templated step-by-step solution, one line per operation, then `Answer: <gold>`;
* GSM8K: the dataset's solution, calculator annotations (`<<48-30=18>>`) removed, `#### 18` -> `Answer: 18`;
* MATH: the dataset's solution followed by `Answer: <last \\boxed{}>`;
* code (APPS, HumanEval, function_synthesis): the reference program in one ```python block
  (HumanEval's canonical body under its prompt's signature);
* any other task with a `solution`: that text plus `Answer: <gold>` when it lacks one.

`human_sft_rows` subsamples one reference per train problem to the size of iteration 1's SFT set
(seeded, so the same problems every time). Pure: no Dagster here.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

_CHAIN = re.compile(r":\s*(?P<expr>-?\d+(?:\s*[-+]\s*\d+)+)\s*=\s*$")
_TERM = re.compile(r"([-+])\s*(\d+)")
_CALCULATOR = re.compile(r"<<[^>]*>>")


class NoReferenceError(ValueError):
    """A problem without a reference solution (or one that cannot be put in the answer format)."""


def chain_sum_solution(question: str, gold: str) -> str:
    """`12 + 7 - 5 =` -> "12 + 7 = 19\\n19 - 5 = 14\\nAnswer: 14" (checked against the gold answer)."""
    m = _CHAIN.search(question.strip())
    if m is None:
        raise NoReferenceError(f"chain_sum question has no `a + b ... =` expression: {question!r}")
    expr = m["expr"].strip()
    first = re.match(r"-?\d+", expr)
    value = int(first.group())
    lines = []
    for op, num in _TERM.findall(expr[first.end():]):
        new = value + int(num) if op == "+" else value - int(num)
        lines.append(f"{value} {op} {num} = {new}")
        value = new
    if str(value) != str(gold).strip():
        raise NoReferenceError(f"chain_sum expression {expr!r} gives {value}, not the gold answer {gold!r}")
    return "\n".join(lines + [f"Answer: {value}"])


def _metadata(problem: Mapping[str, Any]) -> dict:
    try:
        return json.loads(problem.get("metadata") or "{}")
    except json.JSONDecodeError:
        return {}


def reference_solution(problem: Mapping[str, Any]) -> str:
    """The reference solution of one PROBLEMS row as a completion in the policy's answer format."""
    task, solution, gold = problem.get("task") or "", problem.get("solution") or "", problem.get("answer") or ""
    pid = problem.get("problem_id")
    if problem.get("domain") == "code":
        if not solution.strip():
            raise NoReferenceError(f"problem {pid} ({task}) has no reference program")
        meta = _metadata(problem)
        entry = meta.get("entry_point")
        if meta.get("format") == "humaneval" and entry and f"def {entry}" not in solution:
            solution = (meta.get("prompt") or problem.get("question") or "") + solution
        return f"```python\n{solution.strip()}\n```"
    if task == "chain_sum":
        return chain_sum_solution(problem["question"], gold)
    if task == "gsm8k" and "####" in solution:
        body, answer = solution.rsplit("####", 1)
        return f"{_CALCULATOR.sub('', body).strip()}\nAnswer: {answer.strip().replace(',', '')}"
    if not solution.strip():
        raise NoReferenceError(f"problem {pid} ({task}) has no reference solution")
    text = solution.strip()
    return text if re.search(r"^Answer:", text, re.MULTILINE) else f"{text}\nAnswer: {gold}"


def human_sft_rows(problems: Sequence[Mapping[str, Any]], n_examples: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n_examples` (at most one per train problem) SFT rows of reference solutions, SFT_SET layout."""
    if n_examples <= 0:
        raise ValueError(f"the human-data baseline needs n_examples > 0 (iteration 1's SFT set size), got {n_examples}")
    train = sorted((p for p in problems if p.get("split") == "train"), key=lambda p: p["problem_id"])
    rows, skipped = [], []
    for p in train:
        try:
            rows.append({"problem_id": p["problem_id"], "sample_idx": 0, "prompt": p["question"],
                         "completion": reference_solution(p), "n_tokens": None, "source": "human"})
        except NoReferenceError as exc:
            skipped.append(str(exc))
    if not rows:
        raise NoReferenceError(f"no train problem has a usable reference solution ({'; '.join(skipped[:3])})")
    random.Random(seed).shuffle(rows)
    return sorted(rows[:n_examples], key=lambda r: r["problem_id"])
