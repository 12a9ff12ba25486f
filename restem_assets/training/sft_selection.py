"""Which correct samples become the M-step's training set.

ReST^EM keeps correct samples only, at most `max_per_problem` (10 in the paper)
per problem so easy problems don't dominate. Identical completions (after
trimming whitespace) are kept once: duplicates add weight, not information.
Samples of one problem are exchangeable, so keeping the lowest sample_idx values
is an unbiased, reproducible pick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SftSelector:
    """Streams (sample, reward) pairs in and keeps the SFT rows; memory ~ kept rows only."""

    def __init__(self, max_per_problem: int = 10):
        if max_per_problem < 1:
            raise ValueError(f"max_per_problem must be >= 1, got {max_per_problem}")
        self.max_per_problem = max_per_problem
        self._kept: dict[str, dict[str, dict[str, Any]]] = {}  # problem -> normalized completion -> row
        self.duplicates = 0

    def add(self, sample: Mapping[str, Any], reward: float) -> None:
        if reward != 1.0:
            return
        per_problem = self._kept.setdefault(sample["problem_id"], {})
        key = sample["completion"].strip()
        prior = per_problem.get(key)
        if prior is not None:
            self.duplicates += 1
            if prior["sample_idx"] <= sample["sample_idx"]:
                return
        per_problem[key] = {
            "problem_id": sample["problem_id"],
            "sample_idx": int(sample["sample_idx"]),
            "prompt": sample["prompt"],
            "completion": sample["completion"],
            "n_tokens": int(sample["n_tokens"]),
            "source": sample.get("source") or "self",
        }

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for pid in sorted(self._kept):
            ranked = sorted(self._kept[pid].values(), key=lambda r: r["sample_idx"])
            out.extend(ranked[: self.max_per_problem])
        return out

