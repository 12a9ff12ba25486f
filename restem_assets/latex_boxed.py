"""Find the content of `\\boxed{...}` (and `\\fbox{...}`) with nested braces."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def all_boxed(text: str) -> list[str]:
    """Contents of every balanced `\\boxed{...}` in order; unbalanced ones are skipped."""
    out: list[str] = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1].strip())
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}`, or None."""
    found = all_boxed(text)
    return found[-1] if found else None


def last_boxed_span(text: str) -> tuple[int, str] | None:
    """(start offset, content) of the last balanced `\\boxed{...}`, for picking the latest answer."""
    last = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            last = (m.start(), text[m.end() : i - 1].strip())
    return last
