"""Problem ids derived from content, so the same problem gets the same id on every run and machine."""

from __future__ import annotations

import hashlib


def content_hash(text: str, salt: str = "") -> str:
    """Hex sha1 of `salt + text`; the salt lets one text get independent hashes for different uses."""
    return hashlib.sha1((salt + text).encode("utf-8")).hexdigest()


def problem_id(task: str, question: str) -> str:
    """`<task>-<first 12 hex digits of sha1(question)>`: stable and independent of file order or seed."""
    return f"{task}-{content_hash(question)[:12]}"


def unit_interval(text: str, salt: str = "") -> float:
    """A deterministic pseudo-uniform number in [0, 1) from the text, for content-based splits."""
    return int(content_hash(text, salt)[:15], 16) / 16**15
