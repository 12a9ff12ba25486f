"""What problem set to load: one `TaskSpec`, shared by the loaders and the `problems` asset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_KINDS = ("reasoning_gym", "function_synthesis", "gsm8k", "math", "apps", "humaneval")


@dataclass(frozen=True)
class TaskSpec:
    """A problem source and how to split it.

    kind: one of TASK_KINDS.
    name: reasoning-gym dataset name (kind="reasoning_gym"), else a label for problem ids.
    config: reasoning-gym dataset config (e.g. {"min_terms": 2, "max_terms": 3}), or for
        kind="function_synthesis" {"levels": [1, 2], "tests_per_problem": 8}.
    train_path / test_path: local path or fsspec URL of a JSONL, JSON or Parquet file
        (gsm8k, math, apps, humaneval). With only train_path, the test split is carved out of it.
    train_size / test_size: how many problems each split gets (None: all available);
        a positive size for a split that comes out empty is an error.
    test_fraction: share in [0, 1] held out when there is no test file (file-backed kinds).
    seed: base seed for procedural generation and for deterministic splitting.
    storage_options: passed to fsspec for remote URLs.
    """

    kind: str = "reasoning_gym"
    name: str = "chain_sum"
    config: dict[str, Any] = field(default_factory=dict)
    train_path: str | None = None
    test_path: str | None = None
    train_size: int | None = 256
    test_size: int | None = 128
    test_fraction: float = 0.3
    seed: int = 1234
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"TaskSpec.kind must be one of {TASK_KINDS}, got {self.kind!r}")


# The embedded default: easy chain sums (2-3 terms, 1-2 digit numbers).
DEFAULT_CHAIN_SUM_CONFIG: dict[str, Any] = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}
