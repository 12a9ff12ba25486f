"""Binary rewards for a table of samples, by each problem's verifier.

math: the extracted final answer is equivalent to the gold answer (math_reward).
reasoning_gym: the dataset's own verifier on the extracted answer, correct only at 1.0.
code: every test passes in the sandbox (code_reward).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from restem_assets.math_reward import extract_final_answer, score_math

CORRECT_REASONS = ("correct", "passed")


@dataclass
class RewardStats:
    scored: int = 0
    correct: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def pass_rate(self) -> float:
        return self.correct / self.scored if self.scored else 0.0


def _reward_row(sample: Mapping[str, Any], extracted, reward: float, reason: str, details: str | None) -> dict:
    return {
        "problem_id": sample["problem_id"],
        "sample_idx": sample["sample_idx"],
        "extracted_answer": extracted,
        "reward": float(reward),
        "reason": reason,
        "details": details,
    }


def score_reasoning_gym_sample(completion: str, problem: Mapping[str, Any]) -> tuple[str | None, float, str]:
    from restem_assets.tasks.loading import score_reasoning_gym

    extracted = extract_final_answer(completion)
    if extracted is None:
        return None, 0.0, "no_answer"
    ok = score_reasoning_gym(extracted, problem["metadata"]) == 1.0
    return extracted, 1.0 if ok else 0.0, "correct" if ok else "wrong"


def score_samples(
    samples: Sequence[Mapping[str, Any]], problems: Mapping[str, Mapping[str, Any]], max_workers: int | None = None
) -> list[dict[str, Any]]:
    """REWARDS rows for `samples`, looking each problem up by problem_id."""
    out: list[dict[str, Any] | None] = [None] * len(samples)
    code_items: list[tuple[int, str, Mapping[str, Any]]] = []
    for i, s in enumerate(samples):
        problem = problems.get(s["problem_id"])
        if problem is None:
            raise KeyError(f"sample {s['problem_id']}#{s['sample_idx']} refers to a problem missing from 'problems'")
        verifier = problem["verifier"]
        if verifier == "math":
            v = score_math(s["completion"], problem["answer"])
            out[i] = _reward_row(s, v.extracted_answer, v.reward, v.reason, None)
        elif verifier == "reasoning_gym":
            out[i] = _reward_row(s, *score_reasoning_gym_sample(s["completion"], problem), None)
        elif verifier == "code":
            code_items.append((i, s["completion"], problem))
        else:
            raise ValueError(f"problem {problem['problem_id']} has unknown verifier {verifier!r}")
    if code_items:
        from restem_assets.code_reward import score_code_batch

        verdicts = score_code_batch([(c, p) for _, c, p in code_items], max_workers=max_workers)
        for (i, _, _), v in zip(code_items, verdicts, strict=True):
            out[i] = _reward_row(samples[i], v.extracted_program, v.reward, v.reason, v.details)
    return out  # type: ignore[return-value]


def accumulate(stats: RewardStats, rows: Iterable[Mapping[str, Any]]) -> None:
    for r in rows:
        stats.scored += 1
        stats.correct += r["reward"] == 1.0
        stats.reasons[r["reason"]] += 1
