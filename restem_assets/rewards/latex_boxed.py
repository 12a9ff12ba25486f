"""Find the content of `\\boxed{...}` (and `\\fbox{...}`) with nested braces."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_spans(text: str) -> list[tuple[int, str]]:
    """(start offset, content) of every balanced `\\boxed{...}` in order; unbalanced ones are skipped."""
    out: list[tuple[int, str]] = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append((m.start(), text[m.end() : i - 1].strip()))
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}`, or None."""
    spans = boxed_spans(text)
    return spans[-1][1] if spans else None


def last_boxed_span(text: str) -> tuple[int, str] | None:
    """(start offset, content) of the last balanced `\\boxed{...}`, for picking the latest answer."""
    spans = boxed_spans(text)
    return spans[-1] if spans else None
