"""Binary reward for math answers: strict extraction, then equivalence with the gold answer.

ReST^EM keeps only samples whose reward is 1, so a lenient grader leaks wrong reasoning into
the training set. Two rules keep it honest:

* Only one string is taken from the completion: the content of the last `Answer:` line or
  of the last `\\boxed{...}`, whichever starts later. Math-verify never sees the raw completion,
  because on raw text it grades expressions copied from the question ("15 + 85 =" -> 100).
* That string must parse as a whole. A dangling operator (`15 + 85 =`) is "unparsable".

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
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from restem_assets.latex_boxed import last_boxed, last_boxed_span

# Seconds per math-verify parse/compare on the main thread; off the main thread no timeout is
# possible (signal.alarm), and the explosive-input guard is what keeps us from hanging.
MATH_VERIFY_TIMEOUT_S = 5


@dataclass(frozen=True)
class MathVerdict:
    extracted_answer: str | None  # the final answer string taken from the completion, None if none
    reward: float  # 1.0 or 0.0
    reason: str  # "correct" | "wrong" | "no_answer" | "unparsable"


# ---------------------------------------------------------------- extraction

# A line that starts with `Answer:`, allowing markdown around it: `**Answer:**`, `> Answer:`, `## Answer:`.
_ANSWER_LINE = re.compile(r"^[ \t>#*_-]*answer[ \t]*[*_]*[ \t]*:(?P<body>[^\n]*)$", re.IGNORECASE | re.MULTILINE)


def extract_final_answer(completion: str) -> str | None:
    """The last `Answer:` line's content or the last `\\boxed{}` content, whichever starts later.

    The latest marker wins even when it is empty, so `\\boxed{5} ... Answer:` (e.g. a truncated
    rewrite) is no answer. Content that normalizes to nothing (`Answer: $$`) is no answer too.
    """
    candidates: list[tuple[int, str]] = []
    lines = list(_ANSWER_LINE.finditer(completion))
    if lines:
        candidates.append((lines[-1].start(), lines[-1].group("body").strip(" \t*`")))
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


def _parse_prediction(s: str) -> tuple | None:
    if not s or _INCOMPLETE.search(s) or _EXPLOSIVE.search(s):
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


def score_math(completion: str, gold: str) -> MathVerdict:
    """Reward 1.0 only when the strictly extracted final answer is equivalent to `gold`."""
    answer = extract_final_answer(completion)
    if answer is None:
        return MathVerdict(None, 0.0, "no_answer")
    same = answers_equivalent(answer, gold)
    if same is None:
        return MathVerdict(answer, 0.0, "unparsable")
    return MathVerdict(answer, 1.0 if same else 0.0, "correct" if same else "wrong")
