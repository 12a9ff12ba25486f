"""Property tests for the math reward: an expression with the gold's value is never a correct answer.

The chain-sum questions are the real task format. Before the "value, not an expression" rule,
every well-formed expression below (the restated question, `x + 0`, `1 * x`, `(x)`, ...) was
graded correct; only forms with a dangling `=` were caught (as "unparsable").
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from restem_assets.rewards.math import score_math  # noqa: E402

# No example database: it would be written into the repository as .hypothesis/.
PROPERTY = settings(max_examples=150, deadline=None, database=None)


@dataclass(frozen=True)
class ChainSum:
    terms: tuple[int, ...]
    ops: tuple[str, ...]  # "+" or "-" before terms[1:]
    gold: int

    def render(self, terms=None, ops=None, space=" ") -> str:
        terms, ops = terms or self.terms, ops or self.ops
        return str(terms[0]) + "".join(f"{space}{o}{space}{t}" for o, t in zip(ops, terms[1:]))

    @property
    def expression(self) -> str:
        return self.render()

    @property
    def question(self) -> str:
        return f"State the final answer to the following arithmetic problem: {self.expression} ="


@st.composite
def chain_sums(draw, max_term=999):
    n = draw(st.integers(2, 4))
    terms = tuple(draw(st.lists(st.integers(0, max_term), min_size=n, max_size=n)))
    ops = tuple(draw(st.lists(st.sampled_from("+-"), min_size=n - 1, max_size=n - 1)))
    gold = terms[0] + sum(t if o == "+" else -t for o, t in zip(ops, terms[1:]))
    return ChainSum(terms, ops, gold)


@st.composite
def permuted_sums(draw, chain: ChainSum) -> str:
    """The question's terms in another order, with their signs: `12 + 7 - 5` -> `-5 + 12 + 7`."""
    signed = [("+", chain.terms[0])] + list(zip(chain.ops, chain.terms[1:]))
    order = draw(st.permutations(signed))
    space = draw(st.sampled_from([" ", ""]))
    first_op, first = order[0]
    head = f"-{first}" if first_op == "-" else str(first)
    return head + "".join(f"{space}{o}{space}{t}" for o, t in order[1:])


def expression_bodies(chain: ChainSum, permuted: str) -> list[str]:
    """Answers that evaluate to the gold but are expressions, not values."""
    x, e = chain.gold, chain.expression
    return [
        e, f"{e} =", f"{e}=", chain.render(space=""), permuted, f"{permuted} =",
        f"({e})", f"({permuted})", f"({e}) =",
        f"{x} + 0", f"0 + {x}", f"1 * {x}", f"{x} * 1", f"{x} - 0", f"2*{x}/2", f"({x} + 0)",
        f"{x} \\cdot 1", f"1 \\times {x}", f"{2 * x}/2", f"\\frac{{{2 * x}}}{{2}}", f"{e} = {x}",
    ]


def wrappers(body: str) -> list[str]:
    return [
        f"Answer: {body}",
        f"**Answer:** {body}",
        f"Answer: ${body}$",
        f"The result is $\\boxed{{{body}}}$.",
        f"Let me add the terms one by one.\nFinal answer: {body}",
    ]


def reasoning(chain: ChainSum) -> str:
    """Working lines full of expressions (and the restated question) before the final answer."""
    lines = [f"We need {chain.expression}."]
    total = chain.terms[0]
    for o, t in zip(chain.ops, chain.terms[1:]):
        new = total + t if o == "+" else total - t
        lines.append(f"{total} {o} {t} = {new}")
        total = new
    lines.append(f"Check: {chain.gold} + 0 = {chain.gold}, and 1 * {chain.gold} = {chain.gold}.")
    return "\n".join(lines)


# --------------------------------------------------------- expressions: 0


@PROPERTY
@given(data=st.data(), chain=chain_sums())
def test_expressions_with_the_gold_value_score_zero(data, chain):
    permuted = data.draw(permuted_sums(chain))
    for body in expression_bodies(chain, permuted):
        for completion in wrappers(body):
            verdict = score_math(completion, str(chain.gold), question=chain.question)
            expected = "unparsable" if body.rstrip().endswith("=") else "expression"
            assert (verdict.reward, verdict.reason) == (0.0, expected), completion
            # Working before the answer changes nothing.
            verdict = score_math(reasoning(chain) + "\n" + completion, str(chain.gold), question=chain.question)
            assert (verdict.reward, verdict.reason) == (0.0, expected), completion


@PROPERTY
@given(x=st.integers(-10**6, 10**6))
def test_parenthesised_and_trivial_expressions_of_any_integer_score_zero(x):
    for body in (f"({x})", f"(({x}))", f"[{x}]", f"-(-{x})" if x >= 0 else f"-({-x})", f"{x}^1", f"{x} \\div 1",
                 f"\\sqrt{{{x * x}}}" if x >= 0 else f"-\\sqrt{{{x * x}}}", f"{x} + 0 = {x}"):
        verdict = score_math(f"Answer: {body}", str(x))
        assert (verdict.reward, verdict.reason) == (0.0, "expression"), body


# --------------------------------------------------------- number forms: 1


def number_forms(x: int) -> list[str]:
    forms = [str(x), f" {x}.", f"{x}.0", f"{x} apples", f"${x}$", f"x = {x}", str(x).replace("-", "\u2212")]
    if x > 0:
        forms.append(f"+{x}")
    if abs(x) >= 1000:
        forms.append(f"{x:,}")
    return forms


@PROPERTY
@given(x=st.integers(-10**9, 10**9))
def test_number_forms_score_one(x):
    for form in number_forms(x):
        for completion in (f"Answer: {form}", f"**Answer:** {form}", f"\\boxed{{{form}}}", f"So the answer: {form}"):
            verdict = score_math(completion, str(x))
            assert (verdict.reward, verdict.reason) == (1.0, "correct"), completion
    assert score_math(f"Answer: {x + 1}", str(x)).reason == "wrong"


@PROPERTY
@given(chain=chain_sums())
def test_value_after_reasoning_with_expressions_scores_one(chain):
    for form in number_forms(chain.gold):
        completion = f"{reasoning(chain)}\nAnswer: {form}"
        verdict = score_math(completion, str(chain.gold), question=chain.question)
        assert (verdict.reward, verdict.reason) == (1.0, "correct"), completion


@PROPERTY
@given(chain=chain_sums(), wrong=st.integers(-2000, 4000))
def test_last_answer_marker_wins_in_both_directions(chain, wrong):
    if wrong == chain.gold:
        wrong += 1
    g = str(chain.gold)
    retract_to_gold = f"{reasoning(chain)}\nAnswer: {wrong}. Wait, that's wrong. Answer: {g}"
    retract_from_gold = f"Answer: {g}. Wait, that's wrong. Answer: {wrong}"
    assert score_math(retract_to_gold, g, question=chain.question).reward == 1.0
    assert score_math(retract_from_gold, g, question=chain.question).reason == "wrong"
    assert score_math(retract_from_gold, str(wrong)).reward == 1.0


# ---------------------------------------------------- non-integer golds


@st.composite
def fractions(draw):
    den = draw(st.integers(2, 64))
    num = draw(st.integers(-500, 500).filter(lambda n: n % den != 0))
    return Fraction(num, den)


def decimal_form(value: Fraction) -> str | None:
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return None  # no terminating decimal
    scaled = value
    digits = 0
    while scaled.denominator != 1:
        scaled *= 10
        digits += 1
    sign = "-" if scaled < 0 else ""
    text = str(abs(scaled.numerator)).rjust(digits + 1, "0")
    return f"{sign}{text[:-digits]}.{text[-digits:]}"


def fraction_forms(value: Fraction) -> list[str]:
    n, d = value.numerator, value.denominator
    sign, a = ("-", -n) if n < 0 else ("", n)
    forms = [f"{n}/{d}", f"{sign}\\frac{{{a}}}{{{d}}}", f"\\frac{{{n}}}{{{d}}}", f"{sign}\\dfrac{{{a}}}{{{d}}}"]
    decimal = decimal_form(value)
    if decimal:
        forms.append(decimal)
    return forms


@PROPERTY
@given(value=fractions())
def test_fraction_golds_accept_every_number_form(value):
    for gold in fraction_forms(value):
        for form in fraction_forms(value):
            verdict = score_math(f"Answer: {form}", gold)
            assert (verdict.reward, verdict.reason) == (1.0, "correct"), (form, gold)


@PROPERTY
@given(value=fractions(), k=st.integers(2, 9))
def test_fraction_golds_refuse_expressions_and_unreduced_fractions(value, k):
    n, d = value.numerator, value.denominator
    gold = f"{n}/{d}"
    for body in (f"{n}/{d} + 0", f"1 * {n}/{d}", f"({n}/{d})", f"\\frac{{{n * k}}}{{{d * k}}}", f"{n * k}/{d * k}",
                 f"\\frac{{{n}}}{{{d}}} \\cdot 1"):
        verdict = score_math(f"Answer: {body}", gold)
        assert (verdict.reward, verdict.reason) == (0.0, "expression"), body


@PROPERTY
@given(x=st.integers(-10**4, 10**4), k=st.integers(2, 9))
def test_integer_golds_refuse_fractions_of_their_value(x, k):
    for body in (f"{x * k}/{k}", f"\\frac{{{x * k}}}{{{k}}}", f"{x}/1"):
        verdict = score_math(f"Answer: {body}", str(x))
        assert (verdict.reward, verdict.reason) == (0.0, "expression"), body
