"""Chat prompts for each domain: the problem plus a strict final-answer format.

The same messages are used for sampling, SFT and evaluation, so a fine-tuned
policy sees exactly the prompt it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from restem_assets.generation import Messages

MATH_SYSTEM = (
    "You are a careful math assistant. Solve the problem step by step, then write the "
    "final answer on its own last line in the form 'Answer: <answer>'."
)
CODE_SYSTEM = (
    "You are an expert Python programmer. Write a complete, correct Python solution. "
    "Put the whole program in one ```python code block."
)


def build_messages(problem: Mapping[str, Any]) -> Messages:
    """Chat messages for one problem row (PROBLEMS schema)."""
    system = CODE_SYSTEM if problem.get("domain") == "code" else MATH_SYSTEM
    return [{"role": "system", "content": system}, {"role": "user", "content": problem["question"]}]
