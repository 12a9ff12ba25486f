"""The math reward: strict extraction, normalization, equivalence and maj@k keys."""

from __future__ import annotations

import threading

import pytest

from restem_assets.rewards import math as math_reward
from restem_assets.rewards.verdict import Verdict
from restem_assets.rewards.math import (
    MATH_VERIFY_TIMEOUT_S,
    VERIFIER_NAME,
    answers_equivalent,
    canonical_answer,
    extract_final_answer,
    normalize_answer,
    score_math,
    verifier_version,
)


@pytest.fixture
def no_math_verify(monkeypatch):
    """Fail loudly if the code reaches math-verify or sympy (fast paths and guards must not)."""

    def boom(*_args, **_kwargs):
        raise AssertionError("math-verify was called")

    monkeypatch.setattr(math_reward, "_math_verify", boom)
    monkeypatch.setattr(math_reward, "_sympy_parse", boom)
    math_reward._parse_math.cache_clear()
    math_reward.canonical_answer.cache_clear()
    yield
    math_reward._parse_math.cache_clear()
    math_reward.canonical_answer.cache_clear()


# ------------------------------------------------------------------ extraction


def test_restated_question_without_answer_is_no_answer():
    completion = "Question: What is 15 + 85 =\nLet me restate: what is 15 + 85 = ?"
    assert extract_final_answer(completion) is None
    assert score_math(completion, "100") == Verdict(None, 0.0, "no_answer")


def test_missing_answer_is_no_answer():
    assert score_math("I think the result is 100 but I am not sure.", "100").reason == "no_answer"
    assert score_math("", "100").reason == "no_answer"


def test_empty_answer_line_is_no_answer():
    assert extract_final_answer("Answer:   ") is None
    assert extract_final_answer("Answer: $$") is None
    # The latest marker is the empty one, so the earlier boxed value does not count.
    assert extract_final_answer("\\boxed{5}\nAnswer:") is None


def test_last_answer_line_wins():
    completion = "Answer: 3\nWait, I made an error.\nAnswer: 4"
    assert extract_final_answer(completion) == "4"
    assert score_math(completion, "4").reward == 1.0
    assert score_math(completion, "3").reason == "wrong"


def test_last_of_boxed_and_answer_line_wins():
    assert extract_final_answer("So \\boxed{3}.\nAnswer: 4") == "4"
    assert extract_final_answer("Answer: 4\nActually it is \\boxed{3}.") == "3"
    assert extract_final_answer("\\boxed{1} then \\boxed{2}") == "2"


def test_answer_line_markdown_and_case():
    assert extract_final_answer("**Answer:** 42") == "42"
    assert extract_final_answer("  answer: 42") == "42"
    assert extract_final_answer("**Answer**: **42**") == "42"
    assert extract_final_answer("__Answer__: 42") == "42"
    # A marker counts anywhere in a line (this was None when only line starts counted).
    assert extract_final_answer("The final answer: 42") == "42"
    assert extract_final_answer("So the **ANSWER:** 42") == "42"
    # ...but not inside a longer word.
    assert extract_final_answer("Unanswered: 42") is None
    assert extract_final_answer("reanswer: 42") is None


def test_retraction_on_one_line_last_answer_wins():
    completion = "Answer: 12. Wait, that's wrong. Answer: 13"
    assert extract_final_answer(completion) == "13"
    assert score_math(completion, "13") == Verdict("13", 1.0, "correct")
    assert score_math(completion, "12") == Verdict("13", 0.0, "wrong")


def test_retraction_back_to_the_first_value():
    completion = "Answer: 13\nHmm, 12 + 1 is 13 but I added the wrong terms. Answer: 12"
    assert score_math(completion, "12").reward == 1.0
    assert score_math(completion, "13").reason == "wrong"


def test_corrected_mid_line_answer():
    completion = "First pass gives answer: 40, but I dropped a carry, so the final answer: 50"
    assert extract_final_answer(completion) == "50"
    assert score_math(completion, "50").reward == 1.0
    assert score_math(completion, "40").reason == "wrong"
    # The body runs to the end of the marker's line; the retraction text after it spoils it.
    assert score_math("Answer: 40. Wait, that's wrong.", "40").reason == "unparsable"
    # A later boxed value beats an earlier marker on the same line, and the other way round.
    assert extract_final_answer("Answer: 40, no: \\boxed{50}") == "50"
    assert extract_final_answer("\\boxed{40} is wrong; Answer: 50") == "50"


def test_boxed_with_nested_braces():
    completion = "Therefore $\\boxed{\\frac{1}{2}}$."
    assert extract_final_answer(completion) == "\\frac{1}{2}"
    assert score_math(completion, "0.5") == Verdict("\\frac{1}{2}", 1.0, "correct")


def test_boxed_inside_answer_line_is_unwrapped():
    assert extract_final_answer("Answer: $\\boxed{7}$") == "7"


# -------------------------------------------------------- copied expressions


def test_expression_copied_from_question_is_not_correct():
    verdict = score_math("Answer: 15 + 85 =", "100")
    assert verdict.reward == 0.0
    assert verdict.reason == "unparsable"
    assert verdict.extracted_answer == "15 + 85 ="


@pytest.mark.parametrize(
    "answer",
    ["3 + 4", "3+4", "7 + 0", "0 + 7", "1 * 7", "7 * 1", "7 - 0", "2*7/2", "14/2", "\\frac{14}{2}", "\\dfrac{14}{2}",
     "7/1", "2^3 - 1", "7^1", "7 \\cdot 1", "1 \\times 7", "7 \\div 1", "-(-7)", "--7", "(3+4)", "[3+4]", "(7)",
     "((7))", "\\left(7\\right)", "3 + 4 = 7", "\\sqrt{49}", "2(3.5)", "3 + 4\\text{ apples}", "x = 3 + 4", "7 + 0 = 7"],
)
def test_expression_for_a_number_gold_is_expression(answer, no_math_verify):
    # A value, not an expression: no math-verify needed to say so.
    for completion in (f"Answer: {answer}", f"\\boxed{{{answer}}}", f"**Answer:** ${answer}$"):
        verdict = score_math(completion, "7")
        assert verdict.reward == 0.0, completion
        assert verdict.reason == "expression", completion


def test_non_arithmetic_expression_equal_to_a_number_gold_is_expression():
    assert score_math("Answer: 7!", "5040").reason == "expression"
    assert score_math("Answer: \\binom{7}{1}", "7").reason == "expression"
    assert score_math("Answer: |-7|", "7").reason == "expression"
    assert score_math("Answer: \\pi", "3").reason == "wrong"


def test_parenthesised_number_is_not_a_number_but_latex_braces_are(no_math_verify):
    # Decision: brackets are never part of a number, so `(7)` and `(-7)` score 0;
    # `{7}` is only LaTeX grouping and is the number 7.
    assert score_math("Answer: (7)", "7") == Verdict("(7)", 0.0, "expression")
    assert score_math("Answer: (-7)", "-7").reason == "expression"
    assert score_math("Answer: ${7}$", "7").reward == 1.0


@pytest.mark.parametrize("answer", ["7", "+7", "7.", "7.0", "7.00", " 7 ", "$7$", "\\boxed{7}", "7 apples", "x = 7", "7\\%", "07"])
def test_number_forms_for_an_integer_gold(answer, no_math_verify):
    assert score_math(f"Answer: {answer}", "7").reward == 1.0


def test_fractions_for_a_non_integer_gold(no_math_verify):
    for gold in ("5/2", "\\frac{5}{2}", "2.5", "\\dfrac{5}{2}"):
        for answer in ("5/2", "\\frac{5}{2}", "\\frac52", "2.5", "2.50", "$\\dfrac{5}{2}$"):
            assert score_math(f"Answer: {answer}", gold).reward == 1.0, (answer, gold)
        # an unreduced fraction is a division left undone, like `\\frac{84}{144}` for "Simplify"
        assert score_math("Answer: \\frac{10}{4}", gold).reason == "expression"
        assert score_math("Answer: 5/2 + 0", gold).reason == "expression"
        assert score_math("Answer: 3/2", gold).reason == "wrong"
    assert score_math("Answer: -5/2", "-\\frac{5}{2}").reward == 1.0
    assert score_math("Answer: \\frac{-5}{2}", "-2.5").reward == 1.0
    # the gold's own written form is always accepted, however odd
    assert score_math("Answer: 14/2", "14/2").reward == 1.0


def test_plain_answer_after_working_is_correct():
    completion = "We compute 15 + 85 = 100.\nAnswer: 100"
    assert score_math(completion, "100") == Verdict("100", 1.0, "correct")


def test_numbers_in_the_reasoning_are_ignored():
    # Math-verify on the raw text would find "100"; the strict answer is 99.
    assert score_math("15 + 85 = 100\nAnswer: 99", "100").reason == "wrong"


# -------------------------------------------------------------- equivalence


@pytest.mark.parametrize("pred", ["0.5", "1/2", "\\frac{1}{2}", "\\dfrac{1}{2}", ".5", "\\frac12", "0.50"])
def test_equivalent_forms_of_one_half(pred, no_math_verify):
    assert answers_equivalent(pred, "\\frac{1}{2}") is True
    assert answers_equivalent(pred, "0.5") is True
    assert answers_equivalent(pred, "1/3") is False


@pytest.mark.parametrize("pred", ["-3", "\u22123", "$-3$", "-3.0", "-\\frac{6}{2}"])
def test_negatives(pred, no_math_verify):
    assert answers_equivalent(pred, "-3") is True
    assert answers_equivalent(pred, "3") is False


def test_comma_that_is_not_a_thousands_separator_stays():
    assert normalize_answer("1,2") == "1,2"
    assert normalize_answer("12,34") == "12,34"
    assert answers_equivalent("1,2", "12") is False


@pytest.mark.parametrize("pred", ["42.", "42 apples", "$42", "\\$42", "42 cm", "42\\text{ cm}", "42 \\text{cm}^2", "$42$."])
def test_trailing_units_and_periods(pred, no_math_verify):
    assert answers_equivalent(pred, "42") is True
    assert answers_equivalent(pred, "43") is False


@pytest.mark.parametrize("pred, gold, equivalent", [
    # thousands separators
    ("1,234", "1234", True), ("1234", "1,234", True), ("1,234,567.5", "1234567.5", True), ("1{,}234", "1234", True),
    # percent and degrees are dropped
    ("50\\%", "50", True), ("50%", "50", True), ("30^\\circ", "30", True), ("30°", "30^{\\circ}", True),
    ("0.5", "50\\%", False),
    # a single variable assignment
    ("x = 5", "5", True),
])
def test_separators_percent_degrees_and_assignment(pred, gold, equivalent, no_math_verify):
    assert answers_equivalent(pred, gold) is equivalent


def test_latex_sqrt_forms_via_math_verify():
    assert answers_equivalent("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}") is True
    assert answers_equivalent("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{2}}{2}") is False


def test_polynomial_via_math_verify():
    assert answers_equivalent("x^2+1", "1 + x^{2}") is True
    assert answers_equivalent("x^2+2", "x^2+1") is False
    assert score_math("Answer: $x^2 + 1$", "x^{2}+1").reward == 1.0


def test_python_style_expression_via_sympy_fallback():
    assert answers_equivalent("x**2+1", "x^2+1") is True
    assert answers_equivalent("sqrt(2)/2", "\\frac{\\sqrt{2}}{2}") is True


def test_unsafe_python_is_not_evaluated():
    assert math_reward._sympy_parse("__import__('os').system('true')") is None
    assert math_reward._sympy_parse("x.func") is None


def test_text_answers_compare_as_text_not_as_letter_products():
    assert answers_equivalent("Evelyn", "\\text{Evelyn}") is True
    assert answers_equivalent("evelyn", "Evelyn") is True
    assert answers_equivalent("Nevely", "Evelyn") is False


def test_question_expression_copied_as_answer_is_expression():
    question = "Compute $\\frac{6}{8}+\\frac{1}{8}$."
    assert score_math("Answer: \\frac{6}{8}+\\frac{1}{8}", "\\frac{7}{8}", question=question).reason == "expression"
    assert score_math("Answer: \\frac{7}{8}", "\\frac{7}{8}", question=question).reward == 1.0
    # symbolic gold: math-verify says equal, the question says copied
    question = "Simplify $\\frac{\\sqrt{8}}{4}$."
    gold = "\\frac{\\sqrt{2}}{2}"
    assert score_math("Answer: $\\frac{\\sqrt{8}}{4}$", gold, question=question) == Verdict(
        "$\\frac{\\sqrt{8}}{4}$", 0.0, "expression"
    )
    assert score_math("Answer: \\dfrac{ \\sqrt{8} }{4}", gold, question=question).reason == "expression"
    assert score_math("Answer: \\frac{\\sqrt{8}}{4}", gold).reward == 1.0  # without the question: equivalence only
    assert score_math("Answer: \\frac{\\sqrt{2}}{2}", gold, question=question).reward == 1.0
    assert score_math("Answer: \\frac{\\sqrt2}{2}", gold, question=question).reward == 1.0
    question = "Expand $(x + 1)^2$."
    assert score_math("Answer: (x+1)^2", "x^2+2x+1", question=question).reason == "expression"
    assert score_math("Answer: x^2 + 2x + 1", "x^2+2x+1", question=question).reward == 1.0
    assert score_math("Answer: x^2 + 2x + 2", "x^2+2x+1", question=question).reason == "wrong"


def test_answer_named_in_the_question_in_the_gold_form_is_correct():
    question = "Which is larger, $\\sqrt{2}$ or $\\frac{\\pi}{3}$?"
    assert score_math("Answer: $\\sqrt{2}$", "\\sqrt{2}", question=question).reward == 1.0
    question = "Simplify $3x + 4x$ and state whether it equals $7x$."
    assert score_math("Answer: 7x", "7x", question=question).reward == 1.0
    assert score_math("Answer: 3x + 4x", "7x", question=question).reason == "expression"
    # plain numbers and words are never "copied", though they occur in most questions
    question = "State the final answer to the following arithmetic problem: 7 + 0 ="
    assert score_math("Answer: 7", "7", question=question).reward == 1.0


def test_unparsable_versus_wrong():
    assert score_math("Answer: 42 (since 15+27=42)", "42").reason == "unparsable"
    assert score_math("Answer: 41", "42") == Verdict("41", 0.0, "wrong")
    assert score_math("Answer: \\frac{1}{", "42").reason == "unparsable"


def test_power_tower_is_refused_without_evaluation(no_math_verify):
    # Would take sympy seconds (or hang forever off the main thread).
    assert score_math("Answer: 9^{9^{9}}", "5").reason == "unparsable"
    assert score_math("Answer: 10**10**10", "5").reason == "unparsable"


def test_fast_numeric_path_never_touches_math_verify(no_math_verify):
    for i in range(200):
        assert score_math(f"Work...\nAnswer: {i}", str(i)).reward == 1.0
        assert score_math(f"Work...\nAnswer: {i} + 0", str(i)).reason == "expression"


# ---------------------------------------------------------- verifier version


def test_verifier_version_is_a_short_stable_hash(monkeypatch):
    assert VERIFIER_NAME == "math"
    version = verifier_version()
    assert len(version) == 12 and int(version, 16) >= 0
    assert verifier_version() == version
    try:
        verifier_version.cache_clear()
        monkeypatch.setattr(math_reward, "MATH_VERIFY_TIMEOUT_S", MATH_VERIFY_TIMEOUT_S + 1)
        assert verifier_version() != version  # a settings change is a new verifier
        monkeypatch.undo()
        verifier_version.cache_clear()
        assert verifier_version() == version
    finally:
        verifier_version.cache_clear()


def test_verifier_version_covers_the_source(monkeypatch, tmp_path):
    version = verifier_version()
    edited = tmp_path / "math.py"
    edited.write_text(open(math_reward.__file__, encoding="utf-8").read() + "\n# edited\n", encoding="utf-8")
    try:
        verifier_version.cache_clear()
        monkeypatch.setattr(math_reward, "__file__", str(edited))
        assert verifier_version() != version
    finally:
        monkeypatch.undo()
        verifier_version.cache_clear()
    assert verifier_version() == version


def test_math_verify_path_works_off_the_main_thread():
    math_reward._parse_math.cache_clear()
    results: list = []
    errors: list = []

    def run():
        try:
            results.append(score_math("Answer: \\frac{\\sqrt{8}}{4}", "\\frac{\\sqrt{2}}{2}"))
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not errors, errors
    assert results and results[0].reward == 1.0


# ------------------------------------------------------------- maj@k keys


def test_canonical_answer_groups_equivalent_numbers(no_math_verify):
    keys = {canonical_answer(a) for a in ["0.5", "1/2", "\\frac{1}{2}", ".5", "$\\dfrac{1}{2}$."]}
    assert keys == {"1/2"}
    assert canonical_answer("1,234") == canonical_answer("1234") == "1234"
    assert canonical_answer("-3") == canonical_answer("\u22123")
    assert canonical_answer("42 apples") == "42"
    assert canonical_answer("0.5") != canonical_answer("0.25")


def test_canonical_answer_groups_symbolic_forms():
    assert canonical_answer("\\sqrt{2}/2") == canonical_answer("\\frac{\\sqrt{2}}{2}")
    assert canonical_answer("x^2+1") == canonical_answer("1+x^2")
    assert canonical_answer("\\sqrt{4}") == canonical_answer("2")
    assert canonical_answer("x^2+1") != canonical_answer("x^2+2")


def test_canonical_answer_none_and_text():
    assert canonical_answer(None) is None
    assert canonical_answer("Evelyn") == canonical_answer("\\text{evelyn}")
    assert canonical_answer("Evelyn") != canonical_answer("Nevely")
    assert canonical_answer("15 + 85 =") != canonical_answer("100")
