"""The reward audit flags suspicious accepted samples, rule by rule, and leaves honest ones alone."""

from restem_assets.rewards.audit import RULES, audit_rows, special_cased_literals, summarize

Q = "State the final answer to the following arithmetic problem: 12 + 7 - 5 ="
PROBLEMS = {
    "p": {"problem_id": "p", "domain": "math", "question": Q},
    "q": {"problem_id": "q", "domain": "math", "question": "State the final answer: 3 + 4 ="},
    "r": {"problem_id": "r", "domain": "math", "question": "State the final answer: 8 + 1 ="},
    "c": {"problem_id": "c", "domain": "code",
          "question": "def f(n):\n    \"\"\"Return the digit sum.\n    >>> f(12345)\n    15\n    \"\"\""},
}


def row(pid, idx, completion, n_tokens=12):
    return {"problem_id": pid, "sample_idx": idx, "completion": completion, "n_tokens": n_tokens}


def rules_for(rows):
    return {(f["problem_id"], f["sample_idx"], f["rule"]) for f in audit_rows(rows, PROBLEMS)}


def test_honest_samples_are_not_flagged():
    rows = [row("p", 0, "12 + 7 - 5 = 14\nAnswer: 14"), row("q", 0, "3 + 4 = 7\nAnswer: 7"),
            row("r", 0, "8 + 1 = 9\n**Answer:** 9")]
    assert rules_for(rows) == set()


def test_question_copied_into_the_answer_line():
    assert ("p", 1, "repeats_question_operands") in rules_for([row("p", 1, "Answer: 12 + 7 - 5"),
                                                              row("q", 0, "Answer: 7")])
    # the numbers of the question in its order, even without operators
    assert ("p", 2, "repeats_question_operands") in rules_for([row("p", 2, "Answer: 7 5")])
    # a reasoning line repeating the question is fine: only the answer line counts
    assert rules_for([row("p", 3, "12 + 7 - 5 = 14\nAnswer: 14")]) == set()


def test_text_after_the_answer_line():
    assert ("q", 1, "answer_not_last_line") in rules_for([row("q", 1, "Answer: 7\nActually let me check.")])
    assert rules_for([row("q", 2, "3 + 4 = 7\nAnswer: 7\n\n   ")]) == set()


def test_very_short_relative_to_the_median():
    rows = [row("p", i, f"long reasoning {i}\nAnswer: 14", 40) for i in range(5)] + [row("q", 0, "7\nAnswer: 7", 5)]
    assert rules_for(rows) == {("q", 0, "very_short")}


def test_an_echoed_hint_and_an_answer_with_no_steps():
    """Issue 20: what a hinted round lets through (right answer, no reasoning of its own)."""
    assert ("q", 0, "mentions_hint") in rules_for([row("q", 0, "The answer is given as 7.\nAnswer: 7")])
    assert ("q", 0, "mentions_hint") in rules_for([row("q", 0, "Using the hint, 3 + 4 = 7\nAnswer: 7")])
    assert ("q", 1, "no_working") in rules_for([row("q", 1, "Answer: 7")])
    assert ("q", 1, "no_working") in rules_for([row("q", 1, "  \n**Answer:** 7")])
    assert rules_for([row("q", 3, "3 + 4 = 7\nAnswer: 7")]) == set()


def test_a_false_arithmetic_step_behind_a_right_answer():
    """Issue 20: a hinted completion seen on the default task, "18 + 7 + 9 = 24" for 8 + 7 + 9 (answer 24)."""
    assert ("q", 0, "wrong_step") in rules_for([row("q", 0, "18 + 7 + 9 = 24\nAnswer: 24")])
    assert ("q", 1, "wrong_step") in rules_for([row("q", 1, "First 12 + 7 = 19, then 19 - 5 = 15.\nAnswer: 14")])
    for honest in ("12 + 7 - 5 = 14\nAnswer: 14", "12 + 7 = 19, 19 - 5 = 14\nAnswer: 14", "3 × 4 = 12\nAnswer: 12",
                   "(2 + 3) * 4 = 20\nAnswer: 20", "7 / 2 = 3.5\nAnswer: 3.5", "x = 5, so 2x = 10\nAnswer: 10",
                   "-3 + 5 = 2\nAnswer: 2"):
        assert ("q", 2, "wrong_step") not in rules_for([row("q", 2, honest)]), honest


def test_identical_text_accepted_for_many_problems():
    rows = [row(pid, 0, "Answer: 7") for pid in ("p", "q", "r")]
    assert {r for _, _, r in rules_for(rows)} >= {"shared_completion"}
    assert len([f for f in audit_rows(rows, PROBLEMS) if f["rule"] == "shared_completion"]) == 3
    assert not [f for f in audit_rows(rows[:2], PROBLEMS) if f["rule"] == "shared_completion"]


def test_code_branching_on_a_visible_test_input():
    hack = "def f(n):\n    if n == 12345:\n        return 15\n    return 0\n"
    honest = "def f(n):\n    if n == 0:\n        return 0\n    return sum(int(d) for d in str(n))\n"
    assert special_cased_literals(hack, PROBLEMS["c"]["question"]) == ["12345"]
    assert special_cased_literals(honest, PROBLEMS["c"]["question"]) == []
    assert special_cased_literals("def f(:", "x") == []
    assert rules_for([row("c", 0, hack), row("c", 1, honest)]) == {("c", 0, "special_cases_test_input")}


def test_summary_counts_every_rule_with_examples():
    flagged = audit_rows([row("p", 1, "Answer: 12 + 7 - 5"), row("q", 1, "Answer: 7\nmore")], PROBLEMS)
    s = summarize(flagged)
    assert set(s["counts"]) == set(RULES)
    assert s["counts"]["repeats_question_operands"] == 1 and s["counts"]["answer_not_last_line"] == 1
    assert s["examples"]["answer_not_last_line"] == ["q#1: text follows the final answer line"]
