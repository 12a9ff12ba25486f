"""An audit of what the reward accepted: heuristics that flag suspicious accepted samples.

The reward is ReST^EM's only signal, and a policy learns whatever it lets through.
These rules look at the SFT set (accepted samples only) for the known ways a grader
gets gamed; they are warnings for a person to read, not verdicts:

  repeats_question_operands  the final answer repeats two or more of the question's numbers in
                             order ("Answer: 12 + 7 - 5"), i.e. the question copied as the answer;
  answer_not_last_line       the final answer marker is not on the last non-empty line, so the
                             completion goes on after answering;
  very_short                 far shorter than the set's median completion (< `short_fraction` of it);
  shared_completion          the identical completion text was accepted for `shared_min_problems`
                             or more different problems;
  special_cases_test_input   (code) a branch compares against a literal that appears in the
                             problem statement, the shape of a lookup table for the visible tests;
  mentions_hint              the completion refers to a given answer or hint ("the answer is given
                             as 42"): an echoed hint, not a solution (the E-step's hinted round);
  no_working                 nothing comes before the final answer line: an answer with no steps,
                             which a hint makes easy to copy (right answer, no reasoning);
  wrong_step                 a written arithmetic step is false ("18 + 7 + 9 = 24"): the right answer
                             reached through wrong reasoning, the false positive a shown answer invites.

The E-step's hinted rows are dropped from the SFT set when any rule flags them; self-generated
rows are flagged for a person to read (rest.audit_blocking stops the chain instead).
"""

from __future__ import annotations

import ast
import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RULES = ("repeats_question_operands", "answer_not_last_line", "very_short", "shared_completion",
         "special_cases_test_input", "mentions_hint", "no_working", "wrong_step")

# `a + b - c = d` with at least one operator between numbers on the left.
_STEP = re.compile(r"(?<![\w.])(\(?\s*-?\d+(?:\.\d+)?(?:\s*[-+*/×]\s*\(?\s*-?\d+(?:\.\d+)?\s*\)?)+)\s*=\s*(-?\d+(?:\.\d+)?)(?!\.?\d)")

_HINT_TALK = re.compile(
    r"\bhint\b|\b(?:answer|result)\s+(?:is|was)\s+(?:already\s+)?(?:given|provided|stated|shown)\b|\bas given\b"
    r"|\bwe (?:are|were) told\b|\bgiven (?:answer|final answer)\b", re.IGNORECASE)

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MARKER = re.compile(r"(?:\*\*|__)?\banswer\b\s*(?:\*\*|__)?\s*:|\\boxed\{", re.IGNORECASE)


@dataclass(frozen=True)
class AuditSettings:
    short_fraction: float = 0.25
    shared_min_problems: int = 3


def _answer_line(completion: str) -> tuple[str, bool] | None:
    """(text after the last answer marker on its line, whether that line is the last non-empty one)."""
    markers = list(_MARKER.finditer(completion))
    if not markers:
        return None
    last = markers[-1]
    line_end = completion.find("\n", last.end())
    body = completion[last.end(): len(completion) if line_end == -1 else line_end]
    rest = "" if line_end == -1 else completion[line_end:]
    return body, not rest.strip()


def _repeats_operands(answer: str, question: str) -> str | None:
    got = _NUMBER.findall(answer)
    if len(got) < 2:
        return None
    asked = _NUMBER.findall(question)
    for start in range(len(asked) - len(got) + 1):
        if asked[start: start + len(got)] == got:
            return f"answer repeats the question's numbers {' '.join(got)}"
    return None


def _arithmetic(node: ast.AST) -> float:
    """The value of a tree of numbers and + - * / only (anything else raises ValueError)."""
    if isinstance(node, ast.Expression):
        return _arithmetic(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise ValueError("division by zero")
        return left / right
    raise ValueError("not arithmetic")


def false_steps(completion: str) -> list[str]:
    """Written arithmetic steps (`12 + 7 - 5 = 14`) whose two sides differ."""
    wrong = []
    for m in _STEP.finditer(completion):
        try:
            lhs = _arithmetic(ast.parse(m.group(1).replace("×", "*").strip(), mode="eval"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if abs(lhs - float(m.group(2))) > 1e-6 * max(1.0, abs(lhs)):
            wrong.append(m.group(0).strip())
    return wrong


def _literal_text(node: ast.AST) -> str | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value) if abs(value) >= 10 else None  # 0, 1, -1 ... are everyday constants
    if isinstance(value, str):
        return value if len(value.strip()) >= 3 else None
    if isinstance(value, (list, tuple)) and value:
        return None if len(value) < 2 else str(list(value))
    return None


def special_cased_literals(program: str, statement: str) -> list[str]:
    """Literals compared against in a branch (`if x == 12345`, `x in (...)`) that occur in the statement."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    compact = re.sub(r"\s+", "", statement)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.If, ast.IfExp, ast.While)):
            continue
        for cmp in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            for operand in [cmp.left, *cmp.comparators]:
                text = _literal_text(operand)
                if text is not None and re.sub(r"\s+", "", text) in compact and text not in found:
                    found.append(text)
    return found


def audit_rows(
    accepted: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Mapping[str, Any]],
    settings: AuditSettings = AuditSettings(),
) -> list[dict[str, Any]]:
    """REWARD_AUDIT rows (problem_id, sample_idx, rule, detail) for accepted SFT rows."""
    flagged: list[dict[str, Any]] = []

    def flag(row, rule, detail):
        flagged.append({"problem_id": row["problem_id"], "sample_idx": int(row["sample_idx"]), "rule": rule,
                        "detail": detail})

    lengths = [int(r["n_tokens"]) for r in accepted]
    median = statistics.median(lengths) if lengths else 0
    by_text: dict[str, set[str]] = defaultdict(set)
    for r in accepted:
        by_text[r["completion"].strip()].add(r["problem_id"])
    for r in accepted:
        problem = problems.get(r["problem_id"], {})
        completion = r["completion"]
        if problem.get("domain") == "code":
            literals = special_cased_literals(completion, problem.get("question", ""))
            if literals:
                flag(r, "special_cases_test_input", f"branches on literals from the statement: {literals[:3]}")
        else:
            talk = _HINT_TALK.search(completion)
            if talk:
                flag(r, "mentions_hint", f"refers to a given answer: {talk.group(0)!r}")
            markers = list(_MARKER.finditer(completion))
            if markers and not completion[: markers[-1].start()].strip():
                flag(r, "no_working", "only the final answer line, no steps before it")
            wrong = false_steps(completion)
            if wrong:
                flag(r, "wrong_step", f"false step: {wrong[0]!r}")
            line = _answer_line(completion)
            if line is not None:
                body, is_last = line
                why = _repeats_operands(body, problem.get("question", ""))
                if why:
                    flag(r, "repeats_question_operands", why)
                if not is_last:
                    flag(r, "answer_not_last_line", "text follows the final answer line")
        if median and int(r["n_tokens"]) < settings.short_fraction * median:
            flag(r, "very_short", f"{r['n_tokens']} tokens vs median {median:g}")
        shared = by_text[completion.strip()]
        if len(shared) >= settings.shared_min_problems:
            flag(r, "shared_completion", f"identical text accepted for {len(shared)} problems")
    return flagged


def summarize(flagged: Sequence[Mapping[str, Any]], examples: int = 3) -> dict[str, Any]:
    """Counts per rule (every rule, zeros included) and a few examples of each."""
    counts = {rule: 0 for rule in RULES}
    samples: dict[str, list[str]] = defaultdict(list)
    for f in flagged:
        counts[f["rule"]] += 1
        if len(samples[f["rule"]]) < examples:
            samples[f["rule"]].append(f"{f['problem_id']}#{f['sample_idx']}: {f['detail']}")
    return {"counts": counts, "examples": dict(samples)}
