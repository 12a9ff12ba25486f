"""Program extraction: which code gets run for a completion."""

import json

import pytest

from restem_assets.rewards.code.extraction import defines_function, extract_code, extract_program, fenced_blocks

HE_META = {
    "format": "humaneval",
    "prompt": 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
}
APPS_CALL = {
    "format": "apps",
    "input_output": {"fn_name": "solve", "inputs": [[1]], "outputs": [[2]]},
    "starter_code": "def solve(x):\n",
}
APPS_STDIO = {"format": "apps", "input_output": {"inputs": ["1\n"], "outputs": ["2\n"]}, "starter_code": ""}


def test_last_python_block_wins():
    text = "First try:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert extract_code(text) == "print(2)\n"


def test_bare_and_py_fences_count_other_languages_do_not():
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```py\nx = 2\n```") == "x = 2\n"
    assert extract_code("```python\nx = 1\n```\n```cpp\nint x;\n```") == "x = 1\n"
    assert extract_code("Only C++:\n```cpp\nint main() {}\n```") is None


def test_unclosed_last_fence_runs_to_the_end():
    assert extract_code("```python\nprint(1)\n```\n```python\nprint(2)\nprint(3)") == "print(2)\nprint(3)"


def test_no_fence_means_the_completion_is_code():
    assert extract_code("print(42)\n") == "print(42)\n"


@pytest.mark.parametrize("text", ["", "   \n", "```python\n```", None])
def test_empty_code_is_no_program(text):
    assert extract_code(text) is None
    if text is not None:
        assert extract_program(text, HE_META) is None


def test_fenced_blocks_keep_order_and_tags():
    assert fenced_blocks("```python\na\n```\ntext\n```\nb\n```") == [("python", "a\n"), ("", "b\n")]


def test_humaneval_body_continuation_is_appended_verbatim():
    body = "    return a + b\n"
    assert extract_program(body, HE_META) == HE_META["prompt"] + body


def test_humaneval_fenced_body_is_a_continuation_too():
    assert extract_program("```python\n    return a + b\n```", HE_META) == HE_META["prompt"] + "    return a + b\n"


def test_humaneval_full_function_follows_the_prompt():
    code = "def add(a, b):\n    return a + b\n"
    program = extract_program(f"Here:\n```python\n{code}```", HE_META)
    assert program.startswith(HE_META["prompt"].rstrip("\n"))
    assert program.endswith(code)
    ns = {}
    exec(program, ns)  # the prompt's imports stay available and the new definition wins
    assert ns["add"](2, 3) == 5


def test_humaneval_accepts_a_problems_row_or_json():
    row = {"problem_id": "humaneval-x", "metadata": json.dumps(HE_META)}
    assert extract_program("    return a + b\n", row) == extract_program("    return a + b\n", json.dumps(HE_META))


def test_apps_call_based_continues_the_starter_code():
    assert extract_program("    return x + 1\n", APPS_CALL) == "def solve(x):\n    return x + 1\n"
    full = "def solve(x):\n    return x * 2\n"
    assert extract_program(full, APPS_CALL) == full


def test_apps_leetcode_class_counts_as_defining_the_method():
    meta = {**APPS_CALL, "starter_code": "class Solution:\n    def solve(self, x):\n"}
    code = "class Solution:\n    def solve(self, x):\n        return x\n"
    assert extract_program(code, meta) == code


def test_apps_stdio_is_the_code_itself():
    assert extract_program("```python\nprint(int(input()) + 1)\n```", APPS_STDIO) == "print(int(input()) + 1)\n"


def test_defines_function_handles_unparseable_code():
    assert defines_function("def f(:\n  pass", "f")
    assert not defines_function("    return f(1)\n", "f")
    assert not defines_function("def g():\n    def f():\n        pass\n", "f")


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown format"):
        extract_program("print(1)", {"format": "other"})
