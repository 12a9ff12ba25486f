"""Where benchmark results go: bench/results, or RESTEM_BENCH_RESULTS (tests use a temp folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def results_dir() -> Path:
    path = Path(os.environ.get("RESTEM_BENCH_RESULTS") or Path(__file__).parent / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(name: str, data: dict) -> Path:
    """Write `<results>/<name>.json` (what `python -m bench` collects)."""
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
