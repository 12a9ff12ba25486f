"""The procedural function-synthesis task: deterministic, disjoint splits, levels, and tests strong
enough that the reference passes and a constant, an echo, a lookup of the prompt's example or a
program that skips a step all fail, through the real sandboxed code reward."""

import ast
import json
import re

import pytest

from restem_assets.rewards.code import CodeLimits, score_code_batch
from restem_assets.tasks.function_synthesis import (
    DEFAULT_CONFIG,
    effective_config,
    function_synthesis_problems,
    generate_problems,
)
from restem_assets.tasks.loading import load_problems
from restem_assets.tasks.spec import TaskSpec

SPEC = TaskSpec(kind="function_synthesis", name="function_synthesis", config={"levels": [1, 2, 3]},
                train_size=48, test_size=24, seed=5)
FAST = CodeLimits(humaneval_timeout_s=2.0, startup_s=1.0)


@pytest.fixture(scope="module")
def rows():
    return load_problems(SPEC).to_pylist()


def _meta(row):
    return json.loads(row["metadata"])


def test_same_seed_same_problems_and_other_seed_others():
    a, b = function_synthesis_problems(SPEC), function_synthesis_problems(SPEC)
    assert a == b
    other = function_synthesis_problems(TaskSpec(**{**SPEC.__dict__, "seed": 6}))
    assert {r["problem_id"] for r in a}.isdisjoint({r["problem_id"] for r in other}) or \
        len({r["problem_id"] for r in a} & {r["problem_id"] for r in other}) < 5


def test_splits_are_disjoint_by_content_and_sized(rows):
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert (len(train), len(test)) == (48, 24)
    assert {r["question"] for r in train}.isdisjoint(r["question"] for r in test)
    assert {_meta(r)["entry_point"] for r in train}.isdisjoint(_meta(r)["entry_point"] for r in test)
    assert len({r["problem_id"] for r in rows}) == len(rows)
    assert {(r["task"], r["domain"], r["verifier"]) for r in rows} == {("function_synthesis", "code", "code")}


def test_levels_are_composition_depth_and_follow_the_config(rows):
    levels = [_meta(r)["level"] for r in rows]
    assert set(levels) == {1, 2, 3}
    assert all(len(_meta(r)["steps"]) == _meta(r)["level"] for r in rows)
    only_two = generate_problems(1, 20, {"levels": [2]})
    assert {p.level for p in only_two} == {2}
    weighted = generate_problems(1, 40, {"levels": [1, 2, 2]})
    assert sum(p.level == 2 for p in weighted) > sum(p.level == 1 for p in weighted)


def test_prompts_are_humaneval_style_and_tests_cover_edge_cases(rows):
    for row in rows:
        meta = _meta(row)
        assert meta["format"] == "humaneval" and meta["prompt"] == row["question"]
        tree = ast.parse(row["question"] + "    pass\n")
        (fn,) = tree.body
        assert fn.name == meta["entry_point"] and ast.get_docstring(fn)
        assert ">>> " + meta["entry_point"] + "(" in row["question"]
        asserts = meta["test"].count("assert candidate(")
        assert asserts == DEFAULT_CONFIG["tests_per_problem"]
        arg_type = fn.args.args[0].annotation
        edge = {"int": "candidate(0)", "list[int]": "candidate([])", "str": "candidate('')"}[ast.unparse(arg_type)]
        assert edge in meta["test"], (meta["entry_point"], meta["test"])
        if ast.unparse(arg_type) == "int":
            assert re.search(r"candidate\(-\d+\)", meta["test"])


def _program(row, body):
    return "```python\n" + row["question"] + body + "```\n"


def _lookup_table(row, fallback):
    """A program answering the prompt's visible examples from a table, else `fallback` (an expression of the arg)."""
    meta = _meta(row)
    lines = row["question"].splitlines()
    table = {}
    for i, line in enumerate(lines):
        m = re.match(rf"\s*>>> {meta['entry_point']}\((.*)\)$", line)
        if m:
            table[m.group(1)] = lines[i + 1].strip()
    arg = ast.parse(row["question"] + "    pass\n").body[0].args.args[0].arg
    entries = ", ".join(f"repr({k}): {v}" for k, v in table.items())
    return f"    table = {{{entries}}}\n    return table.get(repr({arg}), {fallback})\n"


@pytest.fixture(scope="module")
def verdicts(rows):
    """Every problem against its reference and four cheats, in one sandbox batch."""
    items = []
    for row in rows:
        arg = ast.parse(row["question"] + "    pass\n").body[0].args.args[0].arg
        example_out = row["question"].split(">>> ")[1].splitlines()[1].strip()
        items += [
            (_program(row, row["solution"]), row),
            (_program(row, f"    return {example_out}\n"), row),  # a constant: the example's answer
            (_program(row, f"    return {arg}\n"), row),  # echo the input
            (_program(row, _lookup_table(row, example_out)), row),
            (_program(row, _lookup_table(row, arg)), row),
        ]
    out = score_code_batch(items, limits=FAST)
    return [out[i:i + 5] for i in range(0, len(out), 5)]


def test_the_reference_passes_every_generated_problem(rows, verdicts):
    for row, (reference, *_) in zip(rows, verdicts):
        assert (reference.reward, reference.reason) == (1.0, "passed"), (_meta(row)["entry_point"], reference.details)


def test_constant_echo_and_lookup_programs_fail(rows, verdicts):
    for row, (_, *cheats) in zip(rows, verdicts):
        for cheat in cheats:
            assert cheat.reward == 0.0 and cheat.reason in ("wrong_answer", "runtime_error"), (
                _meta(row)["entry_point"], cheat.reason)


def test_a_program_that_skips_a_step_fails():
    problems = [p for p in generate_problems(11, 30, {"levels": [2, 3]})]
    items = []
    for p in problems:
        lines = p.solution.splitlines()
        for i in range(1, len(lines) - 1):  # drop one step statement (keep `v = arg` and `return v`)
            if not p.steps[i - 1].terminal:
                body = "\n".join(lines[:i] + lines[i + 1:]) + "\n"
                row = {"metadata": json.dumps({"format": "humaneval", "prompt": p.prompt, "entry_point": p.name,
                                               "test": p.test_code()})}
                items.append((p.name, ("```python\n" + p.prompt + body + "```\n", row)))
    assert len(items) >= 20
    for (name, _), verdict in zip(items, score_code_batch([it for _, it in items], limits=FAST)):
        assert verdict.reward == 0.0, name


def test_bad_config_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="unknown keys \\['min_terms'\\]"):
        effective_config({"min_terms": 2})
    with pytest.raises(ValueError, match="'levels' must be a non-empty list"):
        effective_config({"levels": [4]})
    with pytest.raises(ValueError, match="tests_per_problem"):
        effective_config({"tests_per_problem": 1})
    with pytest.raises(ValueError, match="train_size must be a non-negative int"):
        function_synthesis_problems(TaskSpec(kind="function_synthesis", train_size=None))
