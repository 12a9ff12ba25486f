"""Reference solutions for the human-data baseline: each task's in the policy's answer format, graded correct
by restem's own verifiers."""

from __future__ import annotations

import json

import pytest

from restem_assets.training.human_solutions import NoReferenceError, chain_sum_solution, human_sft_rows, reference_solution
from restem_assets.rewards import score_samples
from restem_assets.tasks.spec import TaskSpec


def _graded(problems, rows):
    by_id = {p["problem_id"]: p for p in problems}
    return score_samples([{"problem_id": r["problem_id"], "sample_idx": 0, "completion": r["completion"]}
                          for r in rows], by_id)


def test_chain_sum_step_by_step():
    assert chain_sum_solution("State the final answer to the following arithmetic problem: 60 - 29 + 54 =", "85") == \
        "60 - 29 = 31\n31 + 54 = 85\nAnswer: 85"
    with pytest.raises(NoReferenceError, match="not the gold answer"):
        chain_sum_solution("... problem: 1 + 2 =", "4")


def test_chain_sum_references_of_the_real_task_are_graded_correct():
    from restem_assets.tasks.loading import load_problems

    problems = load_problems(TaskSpec(kind="reasoning_gym", name="chain_sum", train_size=24, test_size=8, seed=1234)).to_pylist()
    rows = human_sft_rows(problems, n_examples=10, seed=0)
    assert len(rows) == 10 and all(r["problem_id"].startswith("chain_sum") for r in rows)
    train = {p["problem_id"] for p in problems if p["split"] == "train"}
    assert {r["problem_id"] for r in rows} <= train  # never a test problem
    verdicts = _graded(problems, rows)
    assert [v["reward"] for v in verdicts] == [1.0] * 10, verdicts
    assert human_sft_rows(problems, 10, seed=0) == rows  # seeded: the same subsample every time
    assert len(human_sft_rows(problems, 1000, seed=0)) == 24  # at most one reference per train problem


def test_gsm8k_math_and_code_references():
    gsm = {"problem_id": "g", "task": "gsm8k", "domain": "math", "answer": "18",
           "solution": "4 * 12 = <<4*12=48>>48\n48 - 30 = <<48-30=18>>18\n#### 18"}
    assert reference_solution(gsm) == "4 * 12 = 48\n48 - 30 = 18\nAnswer: 18"
    math = {"problem_id": "m", "task": "math", "domain": "math", "answer": "\\frac{7}{8}",
            "solution": "So it is $\\boxed{\\frac{7}{8}}$."}
    assert reference_solution(math).endswith("\nAnswer: \\frac{7}{8}")
    he = {"problem_id": "h", "task": "humaneval", "domain": "code", "question": "def f(x):\n    \"\"\"x+1\"\"\"\n",
          "solution": "    return x + 1\n", "metadata": json.dumps({"format": "humaneval", "entry_point": "f",
                                                                     "prompt": "def f(x):\n    \"\"\"x+1\"\"\"\n"})}
    assert reference_solution(he) == "```python\ndef f(x):\n    \"\"\"x+1\"\"\"\n    return x + 1\n```"
    with pytest.raises(NoReferenceError, match="no reference program"):
        reference_solution({"problem_id": "a", "task": "apps", "domain": "code", "solution": ""})
    with pytest.raises(ValueError, match="n_examples > 0"):
        human_sft_rows([gsm | {"split": "train"}], 0)
