"""Which grading code produced a verdict: every rewards row carries `verifier` and `verifier_version`.

A version is a short hash of the verifier's source files and its settings, so a fix to a
grader changes the version, and `restem rescore` plus `sql/rescore_diff.sql` show what
that fix does to past iterations' verdicts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
from functools import lru_cache
from pathlib import Path

REWARDS_DIR = Path(__file__).resolve().parent


def source_hash(files: list[Path], settings: str = "") -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(REWARDS_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(settings.encode())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=None)
def verifier_version(verifier: str) -> str:
    """The version of verifier `math`, `reasoning_gym` or `code` as installed now."""
    if verifier == "math":
        from restem_assets.rewards.math import verifier_version as math_version

        return math_version()
    if verifier == "reasoning_gym":
        from restem_assets.rewards.math import verifier_version as math_version

        return source_hash([REWARDS_DIR / "reasoning_gym.py"],
                           f"extraction={math_version()};reasoning_gym={importlib.metadata.version('reasoning-gym')}")
    if verifier == "code":
        from restem_assets.rewards.code import CodeLimits

        return source_hash(sorted((REWARDS_DIR / "code").glob("*.py")), repr(dataclasses.asdict(CodeLimits())))
    raise ValueError(f"unknown verifier {verifier!r}")
