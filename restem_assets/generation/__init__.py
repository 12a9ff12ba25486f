"""The generation-engine interface shared by the E-step and evaluation.

An engine turns chat prompts into K sampled completions each. Engines stream
results prompt-chunk by prompt-chunk so the caller can write Parquet as it goes
(memory bounded by the chunk, not the iteration). The transformers engine is the
portable default; a vLLM engine plugs in behind the same `GenerationEngine`
protocol.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature == 0 means greedy decoding (n must then be 1)."""

    n: int = 1
    temperature: float = 0.7
    top_k: int = 40  # 0 or -1: disabled
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0  # the step's seed; each sample draws with a seed of its own derived from it (`row_seeds`)
    # A completion ends right after the first of these strings (kept in its text), as after end-of-turn.
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"SamplingParams.stop must hold non-empty strings, got {self.stop!r}")
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature == 0 and self.n != 1:
            raise ValueError("greedy decoding (temperature 0) with n > 1 would repeat one completion n times")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One sampled completion of prompt `prompt_index` (position in the request list)."""

    prompt_index: int
    sample_idx: int
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (hit max_new_tokens)


ProgressFn = Callable[[int, int], None]  # (prompts done, prompts total)


class GenerationEngine(Protocol):
    name: str

    def render_prompt(self, messages: Messages) -> str:
        """The exact text fed to the model for these chat messages (stored with each sample)."""

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, progress: ProgressFn | None = None,
        seeds: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[list[Completion]]:
        """Yield completions in chunks for prompts rendered by `render_prompt`; each gets exactly `params.n`.

        `seeds[i][j]` seeds sample j of prompt i (`row_seeds`): a sampled completion depends on its
        prompt and its own seed only, not on the other prompts of the call or how they are batched.
        Without `seeds`, sample j of prompt i is seeded with `sample_seed(params.seed, i, j)`."""

    def close(self) -> None:
        """Release the model's memory (the fine-tune step runs after sampling)."""


def sample_seed(*parts: int | str) -> int:
    """The seed of one sample from what it is, e.g. (the step's seed, problem_id, sample_idx), where the
    step's seed (SamplingParams.seed) is the experiment's seed and iteration. Stable across processes,
    machines and Python versions (blake2b, not hash()); below 2**63, so it fits torch, vLLM and int64."""
    key = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def row_seeds(params: SamplingParams, n_prompts: int,
              seeds: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """One seed per sample, `params.n` per prompt: `seeds` checked, or by default
    `sample_seed(params.seed, i, j)` for sample j of prompt i."""
    if seeds is None:
        return [[sample_seed(params.seed, i, j) for j in range(params.n)] for i in range(n_prompts)]
    out = [[int(s) for s in row] for row in seeds]
    if len(out) != n_prompts or any(len(row) != params.n for row in out):
        raise ValueError(f"seeds must hold {params.n} seeds (SamplingParams.n) for each of {n_prompts} prompts, got "
                         f"{[len(row) for row in out]}")
    if any(not 0 <= s < 2**63 for row in out for s in row):
        raise ValueError("seeds must lie in [0, 2**63)")
    return out


def stop_token_ids(tokenizer, generation_eos: int | list[int] | None = None) -> list[int]:
    """Token ids that end a completion: the tokenizer's EOS, the model's generation EOS, and
    the usual end-of-turn markers. Both engines stop on exactly this set."""
    ids: set[int] = set()
    for tok_id in (tokenizer.eos_token_id, generation_eos):
        if isinstance(tok_id, int):
            ids.add(tok_id)
        elif isinstance(tok_id, list):
            ids.update(tok_id)
    for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(special)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(ids)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to and including the earliest stop string, and whether one occurred."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return (text[: min(ends)], True) if ends else (text, False)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engine_kind(kind: str) -> str:
    """"auto" means vLLM where it imports, transformers otherwise; other names pass through."""
    if kind == "auto":
        return "vllm" if vllm_available() else "transformers"
    return kind


def make_engine(kind: str, model_path: str, **options) -> GenerationEngine:
    """Build an engine by name: "transformers", "vllm", "auto", or "ray" (replicas of one of
    the others on a Ray cluster; `replica_kind` and `replicas` among the options)."""
    kind = resolve_engine_kind(kind)
    if kind == "ray":
        try:
            from restem_assets.generation.ray_engine import RayEngine
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError(f"engine 'ray' requested but Ray is not installed (pip install '.[ray]'): {e}") from e
        options["replica_kind"] = resolve_engine_kind(options.get("replica_kind", "auto"))
        return RayEngine(model_path, **options)
    if kind == "transformers":
        from restem_assets.generation.transformers_engine import TransformersEngine

        return TransformersEngine(model_path, **options)
    if kind == "vllm":
        try:
            from restem_assets.generation.vllm_engine import VLLMEngine
        except ImportError as e:  # pragma: no cover - depends on the host
            raise RuntimeError(f"engine 'vllm' requested but vLLM is not usable here: {e}") from e
        return VLLMEngine(model_path, **options)
    raise ValueError(f"unknown generation engine {kind!r}; use 'transformers', 'vllm', 'auto' or 'ray'")
