"""E-step sampling: K completions per problem from one policy, streamed to Parquet."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from restem_assets.generation import Completion, GenerationEngine, ProgressFn, SamplingParams
from restem_assets.policy import Policy
from restem_assets.prompts import build_messages
from restem_assets.storage import TableWriter


@dataclass
class SamplingStats:
    samples: int = 0
    tokens: int = 0
    truncated: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def sample_row(problem_id: str, prompt: str, c: Completion, policy: Policy, engine: str,
               params: SamplingParams) -> dict[str, Any]:
    """One SAMPLES row: the completion with everything needed to reproduce or audit it."""
    return {
        "problem_id": problem_id,
        "sample_idx": c.sample_idx,
        "prompt": prompt,
        "completion": c.text,
        "n_tokens": c.n_tokens,
        "finish_reason": c.finish_reason,
        "policy_id": policy.policy_id,
        "policy_path": policy.path,
        "engine": engine,
        "temperature": params.temperature,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "seed": params.seed,
    }


def render_prompts(engine: GenerationEngine, problems: Sequence[dict[str, Any]]) -> list[str]:
    """Each problem's chat prompt rendered once, as the engine will feed it and as samples store it."""
    return [engine.render_prompt(build_messages(p)) for p in problems]


def generate_rows(
    engine: GenerationEngine,
    problems: Sequence[dict[str, Any]],
    prompts: Sequence[str],
    params: SamplingParams,
    policy: Policy,
    progress: ProgressFn | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """SAMPLES rows chunk by chunk, `params.n` per problem, for prompts from `render_prompts`."""
    for chunk in engine.generate(prompts, params, progress=progress):
        yield [sample_row(problems[c.prompt_index]["problem_id"], prompts[c.prompt_index], c, policy, engine.name, params)
               for c in chunk]


def sample_rows(
    engine: GenerationEngine,
    problems: Sequence[dict[str, Any]],
    params: SamplingParams,
    policy: Policy,
    writer: TableWriter,
    progress: ProgressFn | None = None,
) -> SamplingStats:
    """Sample `params.n` completions for each problem and append SAMPLES rows chunk by chunk."""
    stats = SamplingStats()
    start = time.perf_counter()
    for rows in generate_rows(engine, problems, render_prompts(engine, problems), params, policy, progress):
        for r in rows:
            stats.tokens += r["n_tokens"]
            stats.truncated += r["finish_reason"] == "length"
        writer.write(rows)
        stats.samples += len(rows)
    stats.seconds = time.perf_counter() - start
    return stats
