"""The one verdict type every verifier returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What a verifier decided about one completion.

    extracted_answer: the final answer (math) or program (code) taken from the completion; None if none.
    reward: binary, 1.0 or 0.0 (ReST^EM keeps reward 1 only).
    reason: why, e.g. correct | wrong | no_answer | unparsable (math), passed | <failure kind> (code).
    details: JSON with per-test outcomes (code); None for math.
    """

    extracted_answer: str | None
    reward: float
    reason: str
    details: str | None = None
