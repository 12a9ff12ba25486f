"""Binary reward for math answers: strict extraction, then a value (or equivalent form) of the gold.

ReST^EM keeps only samples whose reward is 1, so a lenient grader leaks wrong reasoning into
the training set. The rules that keep it honest:

* Only one string is taken from the completion: the body after the last `Answer:` marker
  (any case, markdown bold allowed, anywhere in a line; the body runs to the end of that line)
  or the content of the last `\\boxed{...}`, whichever starts later. So a retraction
  ("Answer: 12. Wait, that's wrong. Answer: 13") counts with its last answer. Math-verify never
  sees the raw completion, because on raw text it grades expressions copied from the question.
* A value, not an expression. When the gold answer is a plain number (integer, decimal or
  fraction, signed, maybe with thousands separators), the answer must itself be a number:
  `7`, `+7`, `7.0`, `1,234`, `7 apples`, `x = 7`; a fraction (`5/2`, `\\frac{5}{2}`) only where the
  gold is not an integer. Anything else scores 0: a well-formed arithmetic expression (`3 + 4`,
  `7 + 0`, `1 * 7`, `14/2` for 7, `2^3`, `\\sqrt{49}`, `(3+4)`, and also `(7)`: brackets are never
  part of a number) is "expression" whatever its value; another form that math-verify finds
  equal to the gold (`7!` for 5040, `\\binom{7}{1}`) is "expression" as well, an unequal one "wrong".
  On this path math-verify is never needed for a reward of 1.
* For symbolic gold answers (MATH-style `\\frac{\\sqrt{3}}{2}`, `x^2+1`, intervals) equivalence is
  math-verify's, but with the question text (`score_math(..., question=...)`) an answer that is
  the problem's own expression is "expression": its normalized, whitespace-free text occurs in
  the question's, and it is neither a plain number/word nor written exactly as the gold
  (`\\frac{\\sqrt{8}}{4}` copied from "Simplify $\\frac{\\sqrt{8}}{4}$" scores 0; the gold's own
  `\\frac{\\sqrt{2}}{2}` scores 1 even if the question mentions it).
* The answer must parse as a whole. A dangling operator (`15 + 85 =`) is "unparsable".

Reasons: "correct", "wrong", "no_answer", "unparsable", "expression".

Comparison is layered for speed: normalized strings equal -> plain words compared as text
(`Evelyn`) -> plain numbers via `fractions.Fraction` (never imports math-verify) -> math-verify
-> sympy for Python-style input (`x**2+1`). Math-verify guards itself with `signal.alarm`,
which raises off the main thread; we pass a timeout only on the main thread and refuse power
towers and huge factorials up front, since those are what hang sympy when no timeout is possible.
A timeout counts as "unparsable" (math-verify returns nothing) or "wrong" (compare gives up).

Normalization (applied to both the prediction and the gold answer):
* surrounding `$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`, whitespace and trailing periods go;
* a `\\boxed{...}` inside the string is unwrapped (gold answers copied from a solution);
* `\\left`, `\\right`, `\\!`, `\\,`, `\\;`, `\\:`, `\\displaystyle` go; `\\dfrac`/`\\tfrac` -> `\\frac`;
  unicode minus and a few symbols become ASCII/LaTeX;
* currency signs go (`$42`, `\\$42` -> `42`);
* percent signs go (`50%`, `50\\%` -> `50`): MATH states percentages without the sign as often as
  with it, so `50%` matches `50` but not `0.5`;
* degree marks go (`30^\\circ`, `30°` -> `30`);
* a trailing unit in `\\text{}`/`\\mbox{}`/`\\mathrm{}` goes (`5\\text{ cm}^2` -> `5`), and after a
  plain number so do trailing words of two or more letters (`42 apples`, `5 cm`); a single
  letter stays because `5 x` is more likely a product than a unit;
* thousands separators go only in the `1,234,567` pattern, so `1,2` stays a pair;
* `x = 5` -> `5` when the right side is a plain number.

The grading code's identity is `VERIFIER_NAME` plus `verifier_version()`, a hash of this file,
latex_boxed.py, the settings and the installed versions of the packages grading goes through
(math-verify, latex2sympy2_extended, antlr4, sympy, mpmath), stored with every reward so a change of rules is visible.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
from fractions import Fraction
from functools import lru_cache
from math import gcd
from pathlib import Path

from restem_assets.rewards.latex_boxed import last_boxed, last_boxed_span
from restem_assets.rewards.verdict import Verdict

# Seconds per math-verify parse/compare on the main thread; off the main thread no timeout is
# possible (signal.alarm), and the explosive-input guard is what keeps us from hanging.
MATH_VERIFY_TIMEOUT_S = 5

# Stored with every reward row, with verifier_version(), so rewards graded under other rules can be told apart.
VERIFIER_NAME = "math"


# Math verdicts' reasons: correct | wrong | no_answer | unparsable | expression.


# ---------------------------------------------------------------- extraction

# An `Answer:` marker anywhere in the text, in any case, with markdown bold allowed around the word
# (`**Answer:**`, `**Answer**:`, `The final answer: 42`). Not part of a longer word (`reanswer:`).
_ANSWER_MARKER = re.compile(r"(?<![A-Za-z0-9])answer[ \t]*[*_]*[ \t]*:", re.IGNORECASE)


def _last_answer_marker(completion: str) -> tuple[int, str] | None:
    """(start, body) of the last `Answer:` marker; the body runs from the colon to the end of its line."""
    last = None
    for last in _ANSWER_MARKER.finditer(completion):  # markers do not overlap, so every one is seen
        pass
    if last is None:
        return None
    end = completion.find("\n", last.end())
    body = completion[last.end() : end if end >= 0 else len(completion)]
    return last.start(), body.strip().strip(" \t*`")


def extract_final_answer(completion: str) -> str | None:
    """The body of the last `Answer:` marker or the last `\\boxed{}` content, whichever starts later.

    The marker may sit anywhere in a line ("Answer: 12. Wait, that's wrong. Answer: 13" -> `13`);
    its body runs to the end of that line. The latest marker wins even when it is empty, so
    `\\boxed{5} ... Answer:` (e.g. a truncated rewrite) is no answer. Content that normalizes to
    nothing (`Answer: $$`) is no answer too.
    """
    candidates: list[tuple[int, str]] = []
    marker = _last_answer_marker(completion)
    if marker is not None:
        candidates.append(marker)
    boxed = last_boxed_span(completion)
    if boxed is not None:
        candidates.append(boxed)
    if not candidates:
        return None
    _, content = max(candidates, key=lambda c: c[0])
    content = content.strip()
    if not content or not normalize_answer(content):
        return None
    return content


# ------------------------------------------------------------- normalization

_UNICODE = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ",
                          "\u00f7": r"\div ", "\u03c0": r"\pi ", "\u221e": r"\infty ", "\u00b0": ""})
_DELIMITERS = [("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")]
_LATEX_NOISE = re.compile(r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|(?<!\\)\\[!,;: ]")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\s*$|\\degree")
_TEXT_WRAPPED = re.compile(r"^\\(?:text|textbf|textrm|mbox|mathrm)\s*\{([^{}]*)\}$")
_TEXT_UNIT_TAIL = re.compile(
    r"\s*\\(?:text|textrm|mbox)\s*\{\s*[A-Za-z][A-Za-z .'-]*\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?$"
    r"|\s*\\mathrm\s*\{\s*[A-Za-z]{2,}\s*\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?$"
)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
# Words that are math, not units: `2 pi` must not become `2`.
_MATH_WORDS = {"pi", "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "inf", "infinity"}
_WORDS_TAIL = re.compile(rf"^({_NUMBER}(?:\s*/\s*\d+)?)\s+([A-Za-z]{{2,}}(?:[\s-]+[A-Za-z'.]+)*)\s*(?:\^\s*\{{?\s*[23]\s*\}}?)?$")
_THOUSANDS = re.compile(r"^([+-]?\d{1,3}(?:,\d{3})+)(?=(?:\.\d+)?(?:\s|\\|$))")
_ASSIGNMENT = re.compile(rf"^[A-Za-z]\s*=\s*({_NUMBER}(?:/\d+)?)$")


def _strip_delimiters(s: str) -> str:
    """Peel math delimiters and trailing periods until nothing changes (`$42$.` -> `42`)."""
    while True:
        before = s
        s = s.strip().rstrip(".").strip()
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
        if s == before:
            return s


@lru_cache(maxsize=65536)
def normalize_answer(answer: str) -> str:
    """A cleaned-up answer string; see the module docstring for what is removed and why."""
    s = answer.translate(_UNICODE).replace("\n", " ").strip()
    if "boxed" in s or "fbox" in s:
        s = last_boxed(s) or s
    s = s.replace(r"\$", "")
    s = _strip_delimiters(s)
    s = s.replace("$", "")
    s = _LATEX_NOISE.sub("", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace(r"\%", "").replace("%", "").replace("{,}", ",")
    s = _DEGREES.sub("", s)
    wrapped = _TEXT_WRAPPED.match(s.strip())
    if wrapped:
        s = wrapped.group(1)
    else:
        unit = _TEXT_UNIT_TAIL.search(s)
        if unit and unit.start() > 0:
            s = s[: unit.start()]
    s = re.sub(r"\s+", " ", s).strip()
    s = _strip_delimiters(s)
    s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
    words = _WORDS_TAIL.match(s)
    if words and words.group(2).split()[0].lower() not in _MATH_WORDS:
        s = words.group(1)
    assignment = _ASSIGNMENT.match(s)
    if assignment:
        s = assignment.group(1)
    return s.strip()


# ------------------------------------------------------------ fast numbers

_PLAIN_NUMBER = re.compile(rf"^{_NUMBER}(?:[eE][+-]?\d{{1,3}})?$")
_SLASH_FRACTION = re.compile(r"^([+-]?)\s*(\d+)\s*/\s*(\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\s*\\frac\s*(?:\{\s*([+-]?\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))$")


def _as_fraction(s: str) -> Fraction | None:
    """The exact value of a plain number (`-3`, `.5`, `1/2`, `\\frac{1}{2}`, `\\frac12`), else None."""
    try:
        if _PLAIN_NUMBER.match(s):
            return Fraction(s)
        m = _SLASH_FRACTION.match(s)
        if m:
            return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) == "-" else 1)
        m = _LATEX_FRACTION.match(s)
        if m:
            num, den = int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
            return Fraction(num, den) * (-1 if m.group(1) == "-" else 1)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _fraction_key(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


_BRACE_GROUP = re.compile(r"^\{\s*([^{}]*?)\s*\}$")


def _number_form(s: str) -> tuple[Fraction, str] | None:
    """(value, form) when normalized `s` is a number literal, else None.

    Number literals are what `_as_fraction` reads: `7`, `-7`, `+7`, `7.0`, `.5`, `1e3` (form
    "number"), `5/2`, `\\frac{5}{2}` (form "fraction") and `10/4`, `\\frac{14}{2}` (form
    "unreduced": a division left undone). LaTeX grouping braces (`{7}`) are typesetting and go;
    parentheses and brackets do not, so `(7)` is no number.
    """
    while (m := _BRACE_GROUP.match(s)) is not None:
        s = m.group(1)
    value = _as_fraction(s)
    if value is None:
        return None
    if _PLAIN_NUMBER.match(s):
        return value, "number"
    m = _SLASH_FRACTION.match(s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
    else:
        m = _LATEX_FRACTION.match(s)
        num, den = int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
    return value, "fraction" if den > 1 and gcd(num, den) == 1 else "unreduced"


# ------------------------------------------------------ arithmetic expressions

_ARITH_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<op>\*\*|[-+*/^=()\[\]{}]|\\(?:cdot|times|div|frac|sqrt)(?![A-Za-z])))\s*"
)
_ADD = {"+", "-"}
_MUL = {"*", "/", r"\cdot", r"\times", r"\div"}
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_NUM = "<num>"


class _NotArithmetic(Exception):
    pass


class _ArithmeticParser:
    """Recursive descent over numbers, + - * / ^ ** \\cdot \\times \\div =, brackets, \\frac, \\sqrt.

    relation := sum ("=" sum)*;  sum := term (("+"|"-") term)*;
    term := unary ((mulop unary) | power-starting-with-a-bracket-or-command)*   (`2(3)`, `2\\sqrt{2}`)
    unary := ("+"|"-")* power;  power := atom (("^"|"**") ("+"|"-")* atom)*
    atom := number | "(" sum ")" | "[" sum "]" | "{" sum "}" | \\frac arg arg | \\sqrt ("[" sum "]")? arg
    arg := "{" sum "}" | one digit
    """

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def eat(self, kinds) -> str | None:
        kind = self.peek()
        if kind is not None and kind in kinds:
            self.i += 1
            return kind
        return None

    def expect(self, kind: str) -> None:
        if not self.eat({kind}):
            raise _NotArithmetic

    def relation(self) -> None:
        self.sum()
        while self.eat({"="}):
            self.sum()

    def sum(self) -> None:
        self.term()
        while self.eat(_ADD):
            self.term()

    def term(self) -> None:
        self.unary()
        while True:
            if self.eat(_MUL):
                self.unary()
            elif self.peek() in ("(", "[", r"\frac", r"\sqrt"):
                self.power()
            else:
                return

    def unary(self) -> None:
        while self.eat(_ADD):
            pass
        self.power()

    def power(self) -> None:
        self.atom()
        while self.eat({"^", "**"}):  # a loop, not recursion: `2^-2^-2...` must not exhaust the stack
            while self.eat(_ADD):
                pass
            self.atom()

    def atom(self) -> None:
        kind = self.peek()
        if kind == _NUM:
            self.i += 1
        elif kind in _CLOSE:
            self.i += 1
            self.sum()
            self.expect(_CLOSE[kind])
        elif self.eat({r"\frac"}):
            self.arg()
            self.arg()
        elif self.eat({r"\sqrt"}):
            if self.eat({"["}):
                self.sum()
                self.expect("]")
            self.arg()
        else:
            raise _NotArithmetic

    def arg(self) -> None:
        if self.eat({"{"}):
            self.sum()
            self.expect("}")
        elif self.peek() == _NUM and len(self.tokens[self.i][1]) == 1:
            self.i += 1
        else:
            raise _NotArithmetic


def _is_arithmetic(s: str) -> bool:
    """Whether `s` is a well-formed arithmetic expression over number literals (`3 + 4`, `(7)`, `2^3`)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _ARITH_TOKEN.match(s, pos)
        if m is None or m.end() == pos:
            return False
        tokens.append((_NUM, m.group("num")) if m.group("num") else (m.group("op"), m.group("op")))
        pos = m.end()
    if not tokens:
        return False
    parser = _ArithmeticParser(tokens)
    try:
        parser.relation()
    except (_NotArithmetic, RecursionError):  # callers refuse deep nesting first; this is a backstop
        return False
    return parser.i == len(tokens)


# ------------------------------------------------- copied from the question

_SINGLE_DIGIT_FRAC = re.compile(r"\\frac\s*(\d)\s*(\d)")
_SINGLE_CHAR_SQRT = re.compile(r"\\sqrt\s*([0-9A-Za-z])")


def _squash(s: str) -> str:
    """Text for substring tests: math delimiters, spacing commands and all whitespace removed."""
    s = s.translate(_UNICODE).replace(r"\$", "").replace("$", "")
    s = re.sub(r"\\[()\[\]]", "", s)
    s = _LATEX_NOISE.sub("", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = _SINGLE_DIGIT_FRAC.sub(r"\\frac{\1}{\2}", s)
    s = _SINGLE_CHAR_SQRT.sub(r"\\sqrt{\1}", s)
    return re.sub(r"\s+", "", s)


def _copied_from_question(pred: str, gold: str, question: str) -> bool:
    """Whether normalized `pred` is the problem's own expression rather than a value.

    It is when its whitespace-free text occurs in the question's, unless it is a plain number or
    word (`7` occurs in most questions) or is written exactly as the gold answer is (a question
    may name the right choice: "Which is larger, $\\sqrt{2}$ or ...").
    """
    if _as_fraction(pred) is not None or _is_text(pred):
        return False
    p = _squash(pred)
    if not p or p == _squash(gold):
        return False
    return p in _squash(question)


# ------------------------------------------------------- symbolic fallback

# An expression that stops at an operator was copied from a question or cut off: never an answer.
_INCOMPLETE = re.compile(r"(?:[=+\-*/^<>]|\\cdot|\\times|\\div)\s*$")
# Power towers and huge factorials hang sympy; with no timeout off the main thread, refuse them.
_EXPLOSIVE = re.compile(r"\^\s*\{[^{}]*\^|(?:\^|\*\*)\s*\(?\s*\d+\s*(?:\^|\*\*)|\d{4,}\s*!|(?:\^|\*\*)\s*[{(]?\s*\d{5,}")
_SAFE_PYTHON_EXPR = re.compile(r"^[0-9A-Za-z+\-*/^().\s]+$")
_SYMPY_FUNCTIONS = ("sqrt", "pi", "exp", "log", "sin", "cos", "tan")


def _timeout_s() -> int | None:
    """Math-verify's signal-based timeout only works on the main thread; elsewhere, none."""
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _math_verify():
    """Import math-verify lazily: it costs a second and the numeric fast path never needs it."""
    from math_verify import LatexExtractionConfig, parse, verify

    return LatexExtractionConfig, parse, verify


def _sympy_parse(s: str):
    """Parse Python-style input such as `x**2+1` or `sqrt(2)/2`; only a whitelisted alphabet.

    sympy's parse_expr evaluates code, so letters are limited to single-letter symbols and a
    few function names, and attribute access (`x.foo`) is refused.
    """
    if len(s) > 200 or not _SAFE_PYTHON_EXPR.match(s) or re.search(r"[A-Za-z)]\s*\.", s):
        return None
    names = set(re.findall(r"[A-Za-z]+", s))
    if any(len(name) > 1 and name not in _SYMPY_FUNCTIONS for name in names):
        return None
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    # real=True matches the symbols latex2sympy creates, or x would not equal x.
    local = {name: sympy.Symbol(name, real=True) for name in names if len(name) == 1}
    local.update({name: getattr(sympy, name) for name in _SYMPY_FUNCTIONS})
    try:
        transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
        return parse_expr(s, local_dict=local, transformations=transformations, evaluate=False)
    except Exception:  # sympy raises many kinds (SyntaxError, TokenError, TypeError, ...)
        return None


@lru_cache(maxsize=16384)
def _parse_math(s: str) -> tuple | None:
    """Sympy objects for the whole string `s`, or None. Cached: gold answers repeat per sample."""
    latex_config, parse, _ = _math_verify()
    parsed = parse(
        f"${s}$",
        extraction_config=[latex_config()],
        fallback_mode="no_fallback",
        parsing_timeout=_timeout_s(),
    )
    if parsed:
        return tuple(parsed)
    expr = _sympy_parse(s)
    return (expr,) if expr is not None else None


# Plain words ("Evelyn", "even"): math-verify would read them as products of letters, under
# which "Evelyn" equals "Nevely". They are compared as text instead.
_TEXT_ANSWER = re.compile(r"^[A-Za-z]{3,}(?:[ '-]+[A-Za-z]+)*$")


def _is_text(s: str) -> bool:
    return bool(_TEXT_ANSWER.match(s)) and s.lower() not in _MATH_WORDS


# Deeper bracket nesting than any answer needs; parsers recurse per level (and sympy slowly).
_MAX_NESTING = 32


def _too_deep(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            if depth > _MAX_NESTING:
                return True
        elif ch in ")]}":
            depth -= 1
    return False


def _parse_prediction(s: str) -> tuple | None:
    if not s or _INCOMPLETE.search(s) or _EXPLOSIVE.search(s) or _too_deep(s):
        return None
    return _parse_math(s)


# ------------------------------------------------------------------ public

def answers_equivalent(pred: str, gold: str) -> bool | None:
    """Whether `pred` means the same as `gold`; None when `pred` does not parse as math."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p:
        return None
    if p == g:
        return True
    if _is_text(p):
        return p.casefold() == g.casefold() if _is_text(g) else None
    p_num = _as_fraction(p)
    if p_num is not None:
        g_num = _as_fraction(g)
        if g_num is not None:
            return p_num == g_num
    pred_parsed = _parse_prediction(p)
    if pred_parsed is None:
        return None
    gold_parsed = _parse_math(g) if g else None
    if gold_parsed is None:
        return False
    _, _, verify = _math_verify()
    try:
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=_timeout_s()))
    except Exception:  # verify swallows most errors itself; a stray one means "not shown equal"
        return False


@lru_cache(maxsize=65536)
def canonical_answer(answer: str | None) -> str | None:
    """A key under which equivalent answers vote together in maj@k; None for no answer.

    Plain numbers key on their reduced fraction (`0.5`, `1/2`, `\\frac{1}{2}` -> `1/2`); other math
    keys on the parsed sympy expression (`\\sqrt{2}/2` and `\\frac{\\sqrt{2}}{2}` -> `sqrt(2)/2`);
    words key on their lowercased text; anything that does not parse keys on its normalized text.
    Best effort: forms that only `simplify()` would unify still vote apart.
    """
    if answer is None:
        return None
    s = normalize_answer(answer)
    if not s:
        return None
    number = _as_fraction(s)
    if number is not None:
        return _fraction_key(number)
    if _is_text(s):
        return s.casefold()
    parsed = _parse_prediction(s)
    if not parsed:
        return s
    try:
        import sympy

        expr = parsed[0].doit()  # sqrt(4) -> 2; cheap, unlike simplify(); towers were refused above
        if isinstance(expr, sympy.Rational):
            return _fraction_key(Fraction(int(expr.p), int(expr.q)))
        return str(expr)
    except Exception:
        return s


_ASSIGNED_EXPRESSION = re.compile(r"^[A-Za-z]\s*=\s*(.+)$")


def _grade_against_number(pred: str, gold: Fraction, gold_text: str) -> str:
    """The reason for normalized `pred` against a gold that is a number: only a number can be correct."""
    form = _number_form(pred)
    if form is not None:
        value, kind = form
        if value != gold:
            return "wrong"
        if kind == "number" or _squash(pred) == _squash(gold_text):
            return "correct"
        # `5/2` is the value 5/2 (or 2.5); `14/2` for 7, `10/4` for 5/2 are divisions left undone
        # (`\\frac{84}{144}` copied from "Simplify $\\frac{84}{144}$").
        return "correct" if kind == "fraction" and gold.denominator > 1 else "expression"
    if not pred or _INCOMPLETE.search(pred) or _EXPLOSIVE.search(pred) or _too_deep(pred):
        return "unparsable"
    assignment = _ASSIGNED_EXPRESSION.match(pred)
    if _is_arithmetic(assignment.group(1) if assignment else pred):
        return "expression"
    same = answers_equivalent(pred, _fraction_key(gold))
    if same is None:
        return "unparsable"
    return "expression" if same else "wrong"  # `7!` for 5040: equal, but not a number


def score_math(completion: str, gold: str, question: str | None = None) -> Verdict:
    """Reward 1.0 only when the strictly extracted final answer is the gold's value.

    A number gold needs a number (an expression with that value is "expression"); a symbolic
    gold needs an equivalent answer that, given `question`, is not copied from the question.
    """
    answer = extract_final_answer(completion)
    if answer is None:
        return Verdict(None, 0.0, "no_answer")
    pred, gold_norm = normalize_answer(answer), normalize_answer(gold)
    gold_value = _as_fraction(gold_norm)
    if gold_value is not None:
        reason = _grade_against_number(pred, gold_value, gold_norm)
    else:
        same = answers_equivalent(answer, gold)
        if same is None:
            reason = "unparsable"
        elif not same:
            reason = "wrong"
        elif question and _copied_from_question(pred, gold_norm, question):
            reason = "expression"
        else:
            reason = "correct"
    return Verdict(answer, 1.0 if reason == "correct" else 0.0, reason)


@lru_cache(maxsize=1)
def verifier_version() -> str:
    """First 12 hex digits of sha256 over the grading code (this file, latex_boxed.py), the settings and
    the installed versions of the packages that parse and compare answers (provenance.MATH_PACKAGES:
    math-verify, latex2sympy2_extended, the ANTLR runtime, sympy, mpmath)."""
    from restem_assets.rewards.provenance import MATH_PACKAGES, package_versions

    digest = hashlib.sha256()
    for source in (__file__, inspect.getsourcefile(last_boxed)):
        text = Path(source).read_text(encoding="utf-8").replace("\r\n", "\n")
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    digest.update(f"MATH_VERIFY_TIMEOUT_S={MATH_VERIFY_TIMEOUT_S}".encode())
    digest.update(b"\0")
    digest.update(package_versions(MATH_PACKAGES).encode())
    return digest.hexdigest()[:12]
