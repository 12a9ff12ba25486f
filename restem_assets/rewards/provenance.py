"""Which grading code produced a verdict: every rewards row carries `verifier` and `verifier_version`.

A version is a short hash of everything the verifier's verdict depends on: the source files of
its grading code (wherever they live in restem), its settings, and the installed versions of the
packages that grade (math-verify and the sympy stack it parses with, reasoning-gym and what its
graders import). A fix to a grader or an upgrade of a grading package changes the version, and
`restem rescore` plus `sql/rescore_diff.sql` show what that change does to past iterations' verdicts.

Versions are computed once per process (`lru_cache`); `clear_cache()` forgets them, for tests that
edit a covered file or fake a package version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import platform
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

REWARDS_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = REWARDS_DIR.parent  # restem_assets/

# The packages the math grader's verdicts depend on: math-verify parses LaTeX with latex2sympy2_extended
# (an ANTLR grammar, so the ANTLR runtime's version matters) into sympy (numerics by mpmath) and compares there;
# rewards/math.py also calls sympy directly for Python-style answers.
MATH_PACKAGES = ("math-verify", "latex2sympy2_extended", "antlr4-python3-runtime", "sympy", "mpmath")

# The grading code of the reasoning-gym verifier, by a fixed name (relative to restem_assets/) -> the file
# hashed under that name. rewards/reasoning_gym.py extracts the answer (with rewards/math.py's extraction,
# covered by the math version) and calls tasks/reasoning_gym_tasks.score_reasoning_gym, which decodes the
# stored entry and rebuilds the dataset whose own `score_answer` grades. The whole tasks file is hashed:
# a change to its generation code then changes the version too, which errs on the safe side.
REASONING_GYM_SOURCES: dict[str, Path] = {
    "rewards/reasoning_gym.py": REWARDS_DIR / "reasoning_gym.py",
    "tasks/reasoning_gym_tasks.py": PACKAGE_DIR / "tasks" / "reasoning_gym_tasks.py",
}
REASONING_GYM_PACKAGE = "reasoning-gym"

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def source_hash(files: Mapping[str, Path] | Iterable[Path], settings: str = "") -> str:
    """12 hex digits of sha256 over each file's name and bytes (in name order), then `settings`.

    `files` maps the name a file is hashed under to the file, so a test can point a name at an edited
    copy elsewhere; a plain list of files under restem_assets/ is named by its path relative to it."""
    named = dict(files) if isinstance(files, Mapping) else {
        Path(path).resolve().relative_to(PACKAGE_DIR).as_posix(): Path(path) for path in files}
    digest = hashlib.sha256()
    for name in sorted(named):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(named[name].read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    digest.update(settings.encode())
    return digest.hexdigest()[:12]


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or "absent"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def package_versions(names: Iterable[str]) -> str:
    """`name=version;...` for `names` (sorted, each once), the text a verifier version hashes."""
    return ";".join(f"{name}={package_version(name)}" for name in sorted(set(names)))


def runtime_requirements(name: str) -> list[str]:
    """The distributions installed `name` requires outside its extras (none if it is not installed)."""
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    out = []
    for requirement in requires:
        marker = requirement.partition(";")[2]
        if "extra" in marker:  # an optional extra (cli, test, server...): not what score_answer runs
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match:
            out.append(match.group(1))
    return out


@lru_cache(maxsize=None)
def verifier_version(verifier: str) -> str:
    """The version of verifier `math`, `reasoning_gym` or `code` as installed now."""
    if verifier == "math":
        from restem_assets.rewards.math import verifier_version as math_version

        return math_version()
    if verifier == "reasoning_gym":
        from restem_assets.rewards.math import verifier_version as math_version

        # reasoning-gym's graders import its runtime requirements (sympy, zss, ...): their versions count too.
        packages = [REASONING_GYM_PACKAGE, *runtime_requirements(REASONING_GYM_PACKAGE)]
        return source_hash(REASONING_GYM_SOURCES, f"extraction={math_version()};{package_versions(packages)}")
    if verifier == "code":
        from restem_assets.rewards.code import CodeLimits

        # The sandbox runs each program under this host's Python: its version decides what a program does.
        return source_hash(sorted((REWARDS_DIR / "code").glob("*.py")),
                           f"{dataclasses.asdict(CodeLimits())!r};python={platform.python_version()}")
    raise ValueError(f"unknown verifier {verifier!r}")


def clear_cache() -> None:
    """Forget every computed version (this module's and rewards.math's), so the next call recomputes."""
    from restem_assets.rewards.math import verifier_version as math_version

    verifier_version.cache_clear()
    math_version.cache_clear()
