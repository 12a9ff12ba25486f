"""What every benchmark shares: its command line, and where its results go (bench/results, or
RESTEM_BENCH_RESULTS; tests use a temp folder)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse_args(doc: str, argv: Sequence[str] | None, **flags: Any) -> argparse.Namespace:
    """A benchmark's flags, described by the first line of its docstring `doc`: one `--name` per keyword
    (underscores become dashes). A plain value is the default, and its type the flag's type (int, float,
    str); a dict is passed to `add_argument` as it is (`{"action": "store_true"}`, `{"choices": [...]}`,
    `{}` for an optional string)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, spec in flags.items():
        options = spec if isinstance(spec, dict) else {"type": type(spec), "default": spec}
        ap.add_argument("--" + name.replace("_", "-"), **options)
    return ap.parse_args(argv)


def results_dir() -> Path:
    path = Path(os.environ.get("RESTEM_BENCH_RESULTS") or Path(__file__).parent / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(name: str, data: dict) -> Path:
    """Write `<results>/<name>.json` (what `python -m bench` collects)."""
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
