"""Reward for reasoning-gym problems: the dataset's own verifier on the extracted final answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from restem_assets.rewards.math import extract_final_answer
from restem_assets.rewards.verdict import Verdict
from restem_assets.tasks.reasoning_gym_tasks import score_reasoning_gym


def score_reasoning_gym_sample(completion: str, problem: Mapping[str, Any]) -> Verdict:
    """Correct only at a score of exactly 1.0: some graders give partial credit to wrong answers
    (gsm_symbolic gives 0.01 to any number)."""
    extracted = extract_final_answer(completion)
    if extracted is None:
        return Verdict(None, 0.0, "no_answer")
    ok = score_reasoning_gym(extracted, problem["metadata"]) == 1.0
    return Verdict(extracted, 1.0 if ok else 0.0, "correct" if ok else "wrong")
