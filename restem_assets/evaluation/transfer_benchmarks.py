"""Transfer benchmarks: how a policy trained on one task does on a real benchmark it never trained on.

A policy that learned procedural function synthesis should be asked the honest question,
"does this help on HumanEval?" The benchmark's problems are loaded here (all of them, as a
test split) and evaluated greedily like the held-out split, with the same prompts and rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BENCHMARKS = ("humaneval",)


def benchmark_problems(name: str) -> list[dict[str, Any]]:
    """Every problem of benchmark `name`, as PROBLEMS rows with split "test"."""
    if name == "humaneval":
        from restem_assets.tasks.code_datasets import read_humaneval

        return [{**row, "split": "test"} for row in read_humaneval()]
    raise ValueError(f"unknown transfer benchmark {name!r}; known: {list(BENCHMARKS)}")


def transfer_problems(benchmarks: Sequence[str], limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The problems each policy is evaluated on, per benchmark (the first `limit` of each, or all): what the
    transfer_evaluation asset runs and what `restem transfer` plans its engine for."""
    return {name: benchmark_problems(name)[:limit] for name in benchmarks}
