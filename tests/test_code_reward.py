"""The binary code reward: real solutions pass, broken ones fail for the right reason,
and only a complete, nonce-stamped judge record can produce a pass."""

import json
from pathlib import Path

import pytest

from restem_assets.rewards.code import judge as code_judge, sandbox
from restem_assets.rewards.code import (
    REASONS,
    CodeLimits,
    _interpret,
    _prepare,
    score_code,
    score_code_batch,
)
from restem_assets.tasks.code_datasets import read_apps

FIXTURES = Path(__file__).parent / "fixtures"
ROWS = {json.loads(r["metadata"])["source_problem_id"]: r for r in read_apps(str(FIXTURES / "apps_sample.jsonl"))}
BROKEN = [json.loads(line) for line in (FIXTURES / "apps_broken.jsonl").read_text().splitlines()]
FAST = CodeLimits(test_timeout_s=1.5, humaneval_timeout_s=1.5, startup_s=1.0)


@pytest.fixture(scope="module")
def fixture_verdicts():
    """Every real solution and every broken program of the fixtures, scored in one parallel batch."""
    items = [(row["solution"], row) for row in ROWS.values()] + [(b["program"], ROWS[b["problem"]]) for b in BROKEN]
    verdicts = score_code_batch(items, limits=FAST)
    return verdicts[: len(ROWS)], verdicts[len(ROWS) :]


def test_real_apps_solutions_pass(fixture_verdicts):
    passing, _ = fixture_verdicts
    for (pid, row), verdict in zip(ROWS.items(), passing):
        details = json.loads(verdict.details)
        assert (verdict.reward, verdict.reason) == (1.0, "passed"), (pid, details)
        assert details["n_passed"] == details["n_tests"] == len(json.loads(row["metadata"])["input_output"]["inputs"])
        assert all(t["status"] == "passed" for t in details["tests"])


def test_broken_apps_programs_fail_for_the_right_reason(fixture_verdicts):
    _, failing = fixture_verdicts
    for case, verdict in zip(BROKEN, failing):
        assert verdict.reward == 0.0, case
        assert verdict.reason == case["reason"], (case, verdict.details)
        assert verdict.reason in REASONS


def test_details_describe_each_test_and_the_isolation(fixture_verdicts):
    _, failing = fixture_verdicts
    details = json.loads(failing[0].details)  # A+B answered with a - b
    assert details["kind"] == "stdio" and details["n_tests"] == 4
    assert details["tests"][0]["status"] == "wrong_answer" and "expected '3" in details["tests"][0]["detail"]
    assert details["isolation"]["mode"] in ("bwrap", "rlimits")


def test_no_program_and_syntax_error_need_no_sandbox():
    row = ROWS[4001]
    verdict = score_code("I would use C++ here:\n```cpp\nint main() {}\n```", row)
    assert (verdict.reward, verdict.reason, verdict.extracted_answer) == (0.0, "no_program", None)
    verdict = score_code("```python\nprint(1 +\n```", row)
    assert verdict.reason == "syntax_error" and "SyntaxError" in json.loads(verdict.details)["error"]


def test_fenced_answer_with_prose_and_tolerant_stdout():
    row = ROWS[4001]
    completion = "Read both numbers and add.\n```python\na, b = map(int, input().split())\nprint(' ', a + b, '\\n\\n')\n```"
    verdict = score_code(completion, row)
    assert verdict.reason == "passed" and verdict.extracted_answer.startswith("a, b")


def test_starter_code_continuation_passes():
    verdict = score_code("    return ' '.join(s.split(' ')[::-1])\n", ROWS[2501])
    assert verdict.reason == "passed", verdict.details
    assert verdict.extracted_answer.startswith("def reverse_words(s):")


def test_accepts_row_metadata_dict_or_json():
    row = ROWS[2501]
    program = "def reverse_words(s):\n    return ' '.join(s.split(' ')[::-1])\n"
    for problem in (row, json.loads(row["metadata"]), row["metadata"]):
        assert score_code(program, problem).reward == 1.0


def test_problem_without_tests_is_a_caller_error():
    meta = {"format": "apps", "input_output": {"inputs": [], "outputs": []}, "starter_code": ""}
    with pytest.raises(ValueError, match="cannot score"):
        score_code("print(1)", meta)


# -- the host's acceptance rule, checked against forged judge outcomes ----------------------------
def _fake(prep, channel, returncode=0, timed_out=False):
    iso = sandbox.detect_isolation()
    return sandbox.SandboxResult(returncode, b"", b"", channel, timed_out, False, 0.1, iso)


def _record(prep, statuses, nonce=None):
    results = [{"test": i, "status": s} for i, s in enumerate(statuses)]
    return json.dumps({"nonce": nonce or prep.nonce, "n_tests": prep.n_tests, "results": results}).encode()


def test_only_a_complete_record_with_the_nonce_passes():
    prep = _prepare("print(1)", ROWS[4001], CodeLimits())
    assert prep.n_tests == 4
    assert _interpret(prep, _fake(prep, _record(prep, ["passed"] * 4))).reward == 1.0
    forged = [
        _fake(prep, None),  # no record at all (program killed the judge)
        _fake(prep, b"all tests passed"),  # not a record
        _fake(prep, _record(prep, ["passed"] * 4, nonce="0" * 32)),  # someone else's nonce
        _fake(prep, _record(prep, ["passed"] * 3)),  # stopped before the last test
        _fake(prep, _record(prep, [])),
        _fake(prep, _record(prep, ["passed"] * 4), returncode=1),  # judge crashed after writing
        _fake(prep, _record(prep, ["passed"] * 4), timed_out=True),
    ]
    for result in forged:
        verdict = _interpret(prep, result)
        assert verdict.reward == 0.0 and verdict.reason in ("sandbox_violation", "timeout"), verdict


def test_failed_test_reason_is_reported():
    prep = _prepare("print(1)", ROWS[4001], CodeLimits())
    verdict = _interpret(prep, _fake(prep, _record(prep, ["passed", "timeout"])))
    assert (verdict.reward, verdict.reason) == (0.0, "timeout")


# -- judge helpers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("got", "expected", "ok"),
    [
        ("3\n", "3\n", True),
        ("3", "3\n\n", True),
        ("1 2\n3 4\n", "1 2 3 4", True),
        ("0.3333333333", "0.333333333333", True),
        ("3.1416", "3.14159265", False),
        ("10", "10.0000001", True),
        ("1000000", "1000001", False),  # integers must match exactly
        ("yes", "YES", False),
        ("", "0", False),
    ],
)
def test_stdout_comparison(got, expected, ok):
    assert code_judge.stdout_matches(got, expected) is ok


def test_call_based_comparison_follows_apps():
    assert code_judge.returns_match((1, [2, 3]), [[1, [2, 3]]])  # tuple vs JSON list, wrapped in a list
    assert code_judge.returns_match([0, 1], [0, 1])
    assert not code_judge.returns_match(1, [1, 2])


def test_codec_round_trips_plain_values_and_refuses_others():
    value = {"a": (1, 2.5, None), 3: [True, b"x", {1, 2}, frozenset([3])], "big": 10**40, "c": 1 + 2j,
             "inf": float("inf")}  # fmt: skip
    assert code_judge.decode(json.loads(json.dumps(code_judge.encode(value)))) == value

    class AlwaysEqual(int):
        def __eq__(self, other):
            return True

    with pytest.raises(code_judge.Unencodable):
        code_judge.encode([AlwaysEqual(1)])
    with pytest.raises(ValueError):
        code_judge.decode({"__object__": "x"})
