"""Chat prompts: a strict final-answer format plus a worked example, as the paper's few-shot prompts.

The same messages are used for sampling, SFT and evaluation, so a fine-tuned
policy sees exactly the prompt it was trained on (the paper's M-step input is
"the few-shot prompt plus the question"). Exemplars are chosen outside each
task's own distribution (a 4-term sum for 2-3-term chain sums) so no exemplar
can coincide with a test problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

# (user, assistant) exemplars per task. With SmolLM2-135M on chain sums, one exemplar
# raised answers in the requested format from under 1% to about half of the samples.
EXEMPLARS: dict[str, list[tuple[str, str]]] = {
    "chain_sum": [
        ("State the final answer to the following arithmetic problem: 12 + 7 - 5 + 3 =",
         "12 + 7 - 5 + 3 = 17\nAnswer: 17"),
    ],
    "gsm8k": [
        ("A baker makes 4 trays of 12 muffins and sells 30 of them. How many muffins are left?",
         "The baker makes 4 * 12 = 48 muffins.\nAfter selling 30, 48 - 30 = 18 are left.\nAnswer: 18"),
    ],
    "math": [
        ("What is the value of $\\frac{3}{4} + \\frac{1}{8}$?",
         "Write both with denominator 8: $\\frac{6}{8} + \\frac{1}{8} = \\frac{7}{8}$.\nAnswer: \\frac{7}{8}"),
    ],
}


def exemplars_for(problem: Mapping[str, Any]) -> list[tuple[str, str]]:
    if problem.get("domain") == "code":
        return []
    return EXEMPLARS.get(problem.get("task") or "", [])


# The hint keeps the answer format of the system prompt: without its last sentence, 92% of hinted
# completions on the default task ended without an `Answer:` line (measured, 796 samples).
HINT = "\n\nHint: the final answer is {answer}. Work it out step by step, then end with the line 'Answer: {answer}'."


def build_messages(problem: Mapping[str, Any], hint: str | None = None) -> Messages:
    """Chat messages for one problem row (PROBLEMS schema); `hint`: the gold answer shown after the
    question (STaR's rationalization, the E-step's hinted round). Training never sees the hint."""
    system = CODE_SYSTEM if problem.get("domain") == "code" else MATH_SYSTEM
    messages: Messages = [{"role": "system", "content": system}]
    for user, assistant in exemplars_for(problem):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    question = problem["question"] if hint is None else problem["question"] + HINT.format(answer=hint)
    messages.append({"role": "user", "content": question})
    return messages


# The code answer format is one ```python block: the answer is complete when that block closes.
# ("```python\n" opens a block without matching; a bare opening fence would end the completion
# early, which the prompt's instruction and exemplar steer away from.) Stopping there skips
# the prose small models append after the code, about half of each completion's tokens.
CODE_STOP = ("```\n",)


def stop_strings(problems: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Stop strings of the answer format shared by `problems`: the closing fence when all are code."""
    if problems and all(p.get("domain") == "code" for p in problems):
        return CODE_STOP
    return ()
