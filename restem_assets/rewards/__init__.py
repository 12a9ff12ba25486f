"""Binary rewards: one dispatcher over every verifier, one `Verdict` type.

How a sample is rewarded is read from this package, by the problem's `verifier`:
  math:          the extracted final answer is equivalent to the gold answer (`rewards.math`);
  reasoning_gym: the dataset's own verifier on the extracted answer, correct only at 1.0
                 (`rewards.reasoning_gym`);
  code:          the extracted program passes every test in the sandbox (`rewards.code`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from restem_assets.rewards.math import score_math
from restem_assets.rewards.provenance import verifier_version
from restem_assets.rewards.verdict import Verdict

__all__ = ["RewardStats", "Verdict", "accumulate", "score_samples"]


@dataclass
class RewardStats:
    scored: int = 0
    correct: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def pass_rate(self) -> float:
        return self.correct / self.scored if self.scored else 0.0


def _reward_row(sample: Mapping[str, Any], v: Verdict, verifier: str) -> dict:
    return {
        "problem_id": sample["problem_id"],
        "sample_idx": sample["sample_idx"],
        "extracted_answer": v.extracted_answer,
        "reward": float(v.reward),
        "reason": v.reason,
        "details": v.details,
        "verifier": verifier,
        "verifier_version": verifier_version(verifier),
    }


def score_samples(
    samples: Sequence[Mapping[str, Any]], problems: Mapping[str, Mapping[str, Any]], max_workers: int | None = None
) -> list[dict[str, Any]]:
    """REWARDS rows for `samples`, looking each problem up by problem_id (code runs in one sandbox batch)."""
    out: list[dict[str, Any] | None] = [None] * len(samples)
    code_items: list[tuple[int, str, Mapping[str, Any]]] = []
    for i, s in enumerate(samples):
        problem = problems.get(s["problem_id"])
        if problem is None:
            raise KeyError(f"sample {s['problem_id']}#{s['sample_idx']} refers to a problem missing from 'problems'")
        verifier = problem["verifier"]
        if verifier == "math":
            out[i] = _reward_row(s, score_math(s["completion"], problem["answer"], question=problem.get("question")), verifier)
        elif verifier == "reasoning_gym":
            from restem_assets.rewards.reasoning_gym import score_reasoning_gym_sample

            out[i] = _reward_row(s, score_reasoning_gym_sample(s["completion"], problem), verifier)
        elif verifier == "code":
            code_items.append((i, s["completion"], problem))
        else:
            raise ValueError(f"problem {problem['problem_id']} has unknown verifier {verifier!r}")
    if code_items:
        from restem_assets.rewards.code import score_code_batch

        verdicts = score_code_batch([(c, p) for _, c, p in code_items], max_workers=max_workers)
        for (i, _, _), v in zip(code_items, verdicts, strict=True):
            out[i] = _reward_row(samples[i], v, "code")
    return out  # type: ignore[return-value]


def accumulate(stats: RewardStats, rows: Iterable[Mapping[str, Any]]) -> None:
    for r in rows:
        stats.scored += 1
        stats.correct += r["reward"] == 1.0
        stats.reasons[r["reason"]] += 1
