"""Procedural function-synthesis problems: the code domain at a size a 135M model can learn.

HumanEval and APPS are out of reach for the embedded model, so code ReST^EM would
stop at an empty SFT set. This family builds HumanEval-style problems (a named,
typed signature with a docstring and one example) from small steps over integers,
lists and strings; the difficulty `level` is the number of composed steps
("keep the even numbers, then return their sum" is level 2).

Every problem carries a reference solution (generated source, run here to compute
the expected outputs) and hidden tests in HumanEval's `check(candidate)` form, so
the sandboxed HumanEval harness of the code reward scores it unchanged. Tests
include edge cases (empty list, zero, negatives, empty string) and are checked for
strength at generation time: a problem whose tests a constant, the identity, or a
lookup table of the docstring example would pass is discarded.

Generation is deterministic in `TaskSpec.seed`; problems are deduplicated by
content (the prompt), and train and test take disjoint slices of one pool.
"""

from __future__ import annotations

import builtins
import json
import keyword
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.spec import TaskSpec

TASK = "function_synthesis"
LEVELS = (1, 2, 3)
DEFAULT_CONFIG: dict[str, Any] = {"levels": [1, 2], "tests_per_problem": 8}
_CONFIG_KEYS = frozenset(DEFAULT_CONFIG)
_POOL_FACTOR = 8
_TYPE_HINT = {"int": "int", "list": "list[int]", "str": "str", "bool": "bool"}
_ARG = {"int": "x", "list": "xs", "str": "s"}


@dataclass(frozen=True)
class Step:
    """One operation. `alone` phrases it as a whole docstring, `does` inside a chain ({x}: what it acts on);
    `code` is one statement over `v` (the value so far)."""

    slug: str
    takes: str
    gives: str
    alone: str
    does: str
    code: str

    @property
    def terminal(self) -> bool:
        return self.gives != self.takes


def _returns(slug: str, takes: str, gives: str, what: str, code: str) -> Step:
    """A step that answers with `what`: "Return {what}." alone, "return {what}" inside a chain."""
    return Step(slug, takes, gives, f"Return {what}.", f"return {what}", code)


def _whether(slug: str, takes: str, condition: str, code: str) -> Step:
    """A test of {x}: True if `condition` holds, otherwise False."""
    return _returns(slug, takes, "bool", f"True if {{x}} {condition}, otherwise False", code)


def _or_zero(slug: str, which: str, pick: str) -> Step:
    """One number of the list (`pick`, an expression over v), or 0 for an empty list."""
    return _returns(slug, "list", "int", f"the {which} number in {{x}}, or 0 if it is empty", f"v = {pick} if v else 0")


def _keep(slug: str, which: str, condition: str, order: str = "in their original order") -> Step:
    """Keep the numbers `which` describes (those where `condition`, over n, holds), in order."""
    return Step(slug, "list", "list", f"Return {which}, {order}.", f"keep only {which}",
                f"v = [n for n in v if {condition}]")


def _int_steps(c: int, d: int) -> list[Step]:
    return [
        Step(f"add_{c}", "int", "int", f"Return {{x}} plus {c}.", f"add {c} to {{x}}", f"v = v + {c}"),
        Step(f"subtract_{c}", "int", "int", f"Return {{x}} minus {c}.", f"subtract {c} from {{x}}", f"v = v - {c}"),
        Step(f"times_{d}", "int", "int", f"Return {{x}} multiplied by {d}.", f"multiply {{x}} by {d}", f"v = v * {d}"),
        Step("square", "int", "int", "Return {x} squared.", "square {x}", "v = v * v"),
        Step("negate", "int", "int", "Return the negative of {x}.", "negate {x}", "v = -v"),
        Step("absolute", "int", "int", "Return the absolute value of {x}.", "take the absolute value of {x}",
             "v = abs(v)"),
        Step(f"div_{d}", "int", "int", f"Return {{x}} divided by {d}, rounded down (integer division).",
             f"divide {{x}} by {d}, rounding down", f"v = v // {d}"),
        Step(f"mod_{d}", "int", "int", f"Return the remainder of {{x}} divided by {d}.",
             f"take the remainder of {{x}} divided by {d}", f"v = v % {d}"),
        _whether("is_even", "int", "is even", "v = v % 2 == 0"),
        _whether(f"greater_than_{c}", "int", f"is greater than {c}", f"v = v > {c}"),
        _whether(f"divisible_by_{d}", "int", f"is divisible by {d}", f"v = v % {d} == 0"),
    ]


def _list_steps(c: int, d: int) -> list[Step]:
    return [
        _keep(f"keep_greater_than_{c}", f"the numbers in {{x}} that are greater than {c}", f"n > {c}"),
        _keep(f"keep_less_than_{c}", f"the numbers in {{x}} that are less than {c}", f"n < {c}"),
        _keep("keep_even", "the even numbers in {x}", "n % 2 == 0"),
        _keep("keep_odd", "the odd numbers in {x}", "n % 2 != 0"),
        _keep("keep_positive", "the numbers in {x} that are greater than 0", "n > 0", order="in order"),
        Step(f"add_{c}_to_each", "list", "list", f"Return a new list with {c} added to each number in {{x}}.",
             f"add {c} to each number in {{x}}", f"v = [n + {c} for n in v]"),
        Step(f"times_{d}_each", "list", "list", f"Return a new list with each number in {{x}} multiplied by {d}.",
             f"multiply each number in {{x}} by {d}", f"v = [n * {d} for n in v]"),
        Step("square_each", "list", "list", "Return a new list with the square of each number in {x}.",
             "square each number in {x}", "v = [n * n for n in v]"),
        Step("reverse_list", "list", "list", "Return the numbers in {x} in reverse order.",
             "reverse the order of {x}", "v = v[::-1]"),
        Step("sort_ascending", "list", "list", "Return the numbers in {x} sorted from smallest to largest.",
             "sort {x} from smallest to largest", "v = sorted(v)"),
        Step("sum_of", "list", "int", "Return the sum of the numbers in {x}.", "return the sum of {x}", "v = sum(v)"),
        _returns("count_items", "list", "int", "how many numbers are in {x}", "v = len(v)"),
        _or_zero("largest", "largest", "max(v)"),
        _or_zero("smallest", "smallest", "min(v)"),
        _or_zero("first_item", "first", "v[0]"),
        _or_zero("last_item", "last", "v[-1]"),
        _returns(f"count_{c}", "list", "int", f"how many times {c} appears in {{x}}", f"v = v.count({c})"),
    ]


_SLUG = {"!": "bang", "?": "question_mark", "-": "dash", "_": "underscore"}


def _str_steps(ch: str, ch2: str, word: str) -> list[Step]:
    to, suffix = _SLUG.get(ch2, ch2), _SLUG.get(word, word)
    return [
        Step("to_upper", "str", "str", "Return {x} in upper case.", "convert {x} to upper case", "v = v.upper()"),
        Step("to_lower", "str", "str", "Return {x} in lower case.", "convert {x} to lower case", "v = v.lower()"),
        Step("reverse_text", "str", "str", "Return {x} reversed.", "reverse {x}", "v = v[::-1]"),
        Step(f"remove_{ch}", "str", "str", f"Return {{x}} with every '{ch}' removed.",
             f"remove every '{ch}' from {{x}}", f"v = v.replace({ch!r}, '')"),
        Step(f"replace_{ch}_with_{to}", "str", "str", f"Return {{x}} with every '{ch}' replaced by '{ch2}'.",
             f"replace every '{ch}' in {{x}} with '{ch2}'", f"v = v.replace({ch!r}, {ch2!r})"),
        Step(f"append_{suffix}", "str", "str", f"Return {{x}} followed by '{word}'.",
             f"append '{word}' to {{x}}", f"v = v + {word!r}"),
        Step("remove_spaces", "str", "str", "Return {x} with all spaces removed.", "remove all spaces from {x}",
             "v = v.replace(' ', '')"),
        _returns("text_length", "str", "int", "the number of characters in {x}", "v = len(v)"),
        _returns(f"count_{ch}", "str", "int", f"how many times '{ch}' appears in {{x}}", f"v = v.count({ch!r})"),
        _returns("count_vowels", "str", "int", "how many vowels (a, e, i, o, u, either case) are in {x}",
                 "v = sum(1 for c in v if c in 'aeiouAEIOU')"),
        _whether(f"starts_with_{ch}", "str", f"starts with '{ch}'", f"v = v.startswith({ch!r})"),
        _whether(f"ends_with_{ch}", "str", f"ends with '{ch}'", f"v = v.endswith({ch!r})"),
    ]


_WORDS = ("apple", "banana", "cherry", "hello world", "Data Science", "a man a plan", "level", "Python",
          "racecar", "open ai", "zebra", "moon light", "tea", "bookkeeper", "Mississippi", "sun and sea")


def _draw_steps(rng: random.Random, level: int) -> list[Step]:
    """`level` steps of one input type, chained type-correctly, no step repeated, terminal only last."""
    kind = rng.choice(("int", "list", "list", "str"))  # lists have the richest compositions
    steps: list[Step] = []
    current = kind
    for depth in range(level):
        c, d = rng.randint(1, 9), rng.randint(2, 5)
        pool = {"int": _int_steps(c, d), "list": _list_steps(c, d),
                "str": _str_steps(rng.choice("aeiost"), rng.choice("xyz-_"), rng.choice(("!", "ing", "s", "?")))}
        options = [s for s in pool[current] if s.slug not in {t.slug for t in steps}]
        if depth < level - 1:
            options = [s for s in options if not s.terminal]
        step = rng.choice(options)
        steps.append(step)
        current = step.gives
    return steps


def _inputs(rng: random.Random, kind: str, n: int) -> list[Any]:
    """Edge cases first (zero, negatives, empty), then random values; `n` distinct inputs."""
    if kind == "int":
        fixed: list[Any] = [0, -7, 1, 12]
        make: Callable[[], Any] = lambda: rng.randint(-30, 40)  # noqa: E731
    elif kind == "list":
        fixed = [[], [0], [-4, 7, -1, 2], [5, 5, 3]]
        make = lambda: [rng.randint(-9, 12) for _ in range(rng.randint(1, 7))]  # noqa: E731
    else:
        fixed = ["", "a"]
        make = lambda: rng.choice(_WORDS) if rng.random() < 0.7 else "".join(  # noqa: E731
            rng.choice("abeiostxyz ") for _ in range(rng.randint(2, 9)))
    out: list[Any] = []
    for value in fixed:
        if value not in out:
            out.append(value)
    for _ in range(50 * n):
        if len(out) >= n:
            break
        value = make()
        if value not in out:
            out.append(value)
    return out[:n]


@dataclass(frozen=True)
class FunctionProblem:
    name: str
    level: int
    steps: tuple[Step, ...]
    prompt: str  # HumanEval-style: signature + docstring with one example
    solution: str  # the reference body, indented, to follow the prompt
    tests: tuple[tuple[Any, Any], ...]  # hidden (input, expected) pairs, the example among them
    example: tuple[Any, Any]

    @property
    def entry_point(self) -> str:
        return self.name

    def test_code(self) -> str:
        lines = ["def check(candidate):"]
        lines += [f"    assert candidate({arg!r}) == {want!r}, {f'input {arg!r}'!r}" for arg, want in self.tests]
        return "\n".join(lines) + "\n"


def _docstring(steps: Sequence[Step], arg: str) -> str:
    if len(steps) == 1:
        return steps[0].alone.format(x=arg)
    phrases = [steps[0].does.format(x=arg)] + [s.does.format(x="the result") for s in steps[1:]]
    text = ", then ".join(phrases)
    text = text[0].upper() + text[1:]
    if not steps[-1].terminal:
        text += ", and return the result"
    return text + "."


@lru_cache(maxsize=256)
def _function(source: str, name: str) -> Callable[[Any], Any]:
    ns: dict[str, Any] = {}
    exec(compile(source, f"<reference {name}>", "exec"), ns)  # our own generated code, trusted
    return ns[name]


def _run(source: str, name: str, arg: Any) -> Any:
    return _function(source, name)(json.loads(json.dumps(arg)))  # a fresh copy: no call sees another's list


def _source(name: str, signature: str, steps: Sequence[Step], arg: str) -> tuple[str, str]:
    """(body, whole function) of the reference solution: one statement per step over `v`."""
    body = "\n".join([f"    v = {arg}"] + [f"    {s.code}" for s in steps] + ["    return v"]) + "\n"
    return body, signature + "\n" + body


def _skipping_one_step(name: str, signature: str, steps: Sequence[Step], arg: str) -> list[str]:
    """Sources of the program that forgets one (type-preserving) step: tests must tell it apart."""
    if len(steps) < 2:
        return []
    return [_source(name, signature, steps[:i] + steps[i + 1:], arg)[1]
            for i, step in enumerate(steps) if not step.terminal]


def _strong_enough(tests: Sequence[tuple[Any, Any]], example: tuple[Any, Any]) -> bool:
    """Tests that a constant, the identity, or a lookup of the visible example fail on at least two inputs."""

    def misses(answer: Callable[[Any], Any]) -> int:
        return sum(json.dumps(answer(arg)) != json.dumps(want) for arg, want in tests)

    common = Counter(json.dumps(want) for _, want in tests).most_common(1)[0][0]
    lookup = {json.dumps(example[0]): example[1]}
    return min(
        misses(lambda arg: json.loads(common)),  # the most frequent expected output, always
        misses(lambda arg: arg),  # echo the input
        misses(lambda arg: lookup.get(json.dumps(arg), example[1])),  # the docstring example, else its output
        misses(lambda arg: lookup.get(json.dumps(arg), arg)),  # the docstring example, else echo
    ) >= 2


_INPUT_TRIES = 10


def build_problem(steps: Sequence[Step], rng: random.Random, n_tests: int) -> FunctionProblem | None:
    """The problem for `steps`, or None when no draw of inputs gives tests strong enough."""
    kind = steps[0].takes
    arg = _ARG[kind]
    name = "_then_".join(s.slug for s in steps)
    if not name.isidentifier() or keyword.iskeyword(name) or hasattr(builtins, name):
        raise ValueError(f"function_synthesis step names make {name!r}, which is not a free identifier")
    signature = f"def {name}({arg}: {_TYPE_HINT[kind]}) -> {_TYPE_HINT[steps[-1].gives]}:"
    solution, reference = _source(name, signature, steps, arg)
    mutants = _skipping_one_step(name, signature, steps, arg)
    for _ in range(_INPUT_TRIES):
        tests = tuple((x, _run(reference, name, x)) for x in _inputs(rng, kind, n_tests))
        # the visible example: a random (non-edge) input whose output is not the most common one
        common = Counter(json.dumps(want) for _, want in tests).most_common(1)[0][0]
        candidates = [t for t in tests[len(tests) // 2:]
                      if json.dumps(t[1]) not in (common, json.dumps(t[0]))] or list(tests[len(tests) // 2:])
        example = rng.choice(candidates)
        if _strong_enough(tests, example) and all(
                any(json.dumps(_run(m, name, x)) != json.dumps(want) for x, want in tests) for m in mutants):
            break
    else:
        return None
    doc = _docstring(steps, arg)
    prompt = (f'{signature}\n    """{doc}\n\n    >>> {name}({example[0]!r})\n    {example[1]!r}\n    """\n')
    return FunctionProblem(name, len(steps), tuple(steps), prompt, solution, tests, example)


def _levels(config: dict[str, Any]) -> list[int]:
    levels = config["levels"]
    if not isinstance(levels, list) or not levels or any(lv not in LEVELS for lv in levels):
        raise ValueError(f"function_synthesis config 'levels' must be a non-empty list drawn from {LEVELS}, got {levels!r}")
    return levels


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"function_synthesis config has unknown keys {unknown}; known: {sorted(_CONFIG_KEYS)}")
    merged = {**DEFAULT_CONFIG, **config}
    _levels(merged)
    n = merged["tests_per_problem"]
    if not isinstance(n, int) or n < 3:
        raise ValueError(f"function_synthesis config 'tests_per_problem' must be an int >= 3, got {n!r}")
    return merged


def generate_problems(seed: int, count: int, config: dict[str, Any] | None = None) -> list[FunctionProblem]:
    """The first `count` distinct problems of the pool for `seed`, levels drawn round-robin from config."""
    config = effective_config(config or {})
    levels = _levels(config)
    rng = random.Random(seed)
    seen: set[str] = set()  # prompts and function names already taken
    out: list[FunctionProblem] = []
    for attempt in range(_POOL_FACTOR * count + 100):
        if len(out) == count:
            break
        level = levels[len(out) % len(levels)]
        problem = build_problem(_draw_steps(rng, level), rng, config["tests_per_problem"])
        if problem is None or problem.prompt in seen or problem.name in seen:
            continue
        seen.update((problem.prompt, problem.name))
        out.append(problem)
    if len(out) < count:
        raise ValueError(f"function_synthesis gave only {len(out)} distinct problems for {count} requested "
                         f"(levels {levels}); ask for fewer or allow more levels")
    return out


def problem_row(problem: FunctionProblem, split: str, seed: int) -> dict[str, Any]:
    meta = {
        "format": "humaneval", "source": TASK, "prompt": problem.prompt, "entry_point": problem.entry_point,
        "test": problem.test_code(), "level": problem.level, "steps": [s.slug for s in problem.steps], "seed": seed,
    }
    return {
        "problem_id": problem_id(TASK, problem.prompt),
        "split": split,
        "task": TASK,
        "domain": "code",
        "verifier": "code",
        "question": problem.prompt,
        "answer": "",
        "solution": problem.solution,
        "metadata": json.dumps(meta),
    }


def function_synthesis_problems(spec: TaskSpec) -> list[dict[str, Any]]:
    """Rows in the PROBLEMS layout: train first, then test, disjoint by prompt."""
    sizes = []
    for field in ("train_size", "test_size"):
        value = getattr(spec, field)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"TaskSpec.{field} must be a non-negative int for kind='function_synthesis', got {value!r}")
        sizes.append(value)
    n_train, n_test = sizes
    problems = generate_problems(spec.seed, n_train + n_test, spec.config)
    return [problem_row(p, "train", spec.seed) for p in problems[:n_train]] + [
        problem_row(p, "test", spec.seed) for p in problems[n_train:]]
