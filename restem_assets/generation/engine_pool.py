"""One live generation engine per process, kept across the stages of a run.

`restem run` executes evaluation[i-1], samples[i], ..., evaluation[i], samples[i+1] in one
process. Starting vLLM on CPU costs 35 s (eager) to about 135 s (compiled) each time;
loading another policy's weights into the running engine costs about a second. So the
pool keeps the last engine it handed out: the same engine configuration on another
model of the same architecture swaps the weights in place (`load_weights`), anything
else closes it and starts anew. Prefix caches are dropped with the old weights.

Before a fine-tune, `before_finetune()` gives memory back where it matters: GPU engines
and the transformers engine (whose restart costs a model load, about a second) are
closed; a CPU vLLM engine is kept, idle, holding its fixed KV-cache reservation
(`vllm_cpu_kv_cache_gib`), because restarting it is what this module exists to avoid.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restem_assets.generation import GenerationEngine, make_engine, vllm_available

log = logging.getLogger(__name__)

# config.json keys that differ between a base model and its fine-tuned copies without changing the architecture
_CONFIG_NOISE = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"}


def architecture(model_path: str) -> dict:
    """The parts of a model's config that decide whether another model's weights fit its engine."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return {"unreadable": model_path}
    return {k: v for k, v in config.items() if k not in _CONFIG_NOISE}


class EnginePool:
    """Hands out one engine at a time and keeps it for the next stage (see the module docstring)."""

    def __init__(self):
        self._engine: GenerationEngine | None = None
        self._key: tuple | None = None
        self._arch: dict | None = None
        self._lock = threading.Lock()
        self.starts = 0  # engines started by this pool (the figure the bench and the tests check)
        self.swaps = 0  # weight swaps into a running engine
        # tokens the whole run is expected to generate (set by the `restem run` driver): one engine serves
        # every stage, so its start-up is weighed against the run's work, not one stage's
        self.planned_tokens = 0

    def acquire(self, kind: str, options: Mapping[str, Any], model_path: str) -> GenerationEngine:
        """An engine of `kind` with `options`, holding `model_path`'s weights."""
        key = (kind, json.dumps(dict(options), sort_keys=True, default=str))
        arch = architecture(model_path)
        with self._lock:
            engine = self._engine
            if engine is not None and self._key == key and self._arch == arch and hasattr(engine, "load_weights"):
                if getattr(engine, "model_path", None) != model_path:
                    engine.load_weights(model_path)
                    self.swaps += 1
                    log.info("engine pool: %s now holds %s (weights swapped in place)", kind, model_path)
                return engine
            self._close_locked()
            engine = make_engine(kind, model_path, **dict(options))
            self._engine, self._key, self._arch = engine, key, arch
            self.starts += 1
            return engine

    def live_kind(self) -> str | None:
        """The kind of the engine kept alive, if any."""
        return self._key[0] if self._engine is not None else None

    def before_finetune(self) -> None:
        """Give memory back before a fine-tune, except a CPU vLLM engine (see the module docstring)."""
        with self._lock:
            engine = self._engine
            if engine is not None and not (engine.name == "vllm" and getattr(engine, "platform", "") == "cpu"):
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        engine, self._engine, self._key, self._arch = self._engine, None, None, None
        if engine is not None:
            engine.close()


# `auto` starts vLLM only for work that repays its start-up. Measured in one bench run on the 2-core
# machine (bench/RESULTS.md, 2026-11-28): vLLM starts in ~23 s (eager, the CPU default) and samples
# 137 useful tok/s, the transformers engine starts in seconds and samples 116 tok/s:
# 23 / (1/116 - 1/137) ≈ 17,900 tokens. (Before, compiled vLLM against the slower transformers
# engine: 154 / (1/64 - 1/130) ≈ 19,400.)
VLLM_BREAK_EVEN_TOKENS = 20_000
EXPECTED_FILL = 0.25  # share of max_new_tokens a completion uses on average (chain sums ~0.15, code ~0.4)


def expected_tokens(requests: int, max_new_tokens: int) -> int:
    """A stage's expected generated tokens, for the engine choice (completions x max_new_tokens x fill)."""
    return int(requests * max_new_tokens * EXPECTED_FILL)


def choose_kind(kind: str, tokens: int | None, live: str | None,
                break_even: int = VLLM_BREAK_EVEN_TOKENS, have_vllm: bool | None = None, planned: int = 0) -> str:
    """What `auto` means for one stage: the vLLM engine already running in this process, else vLLM
    when the work it will serve (this stage's expected tokens, or the run's `planned` tokens when the
    engine is kept for the whole run) repays its start-up, else transformers. Named kinds pass through."""
    if kind != "auto":
        return kind
    have_vllm = vllm_available() if have_vllm is None else have_vllm
    if not have_vllm:
        return "transformers"
    if live == "vllm" or tokens is None or max(tokens, planned) >= break_even:
        return "vllm"
    return "transformers"


POOL = EnginePool()
atexit.register(POOL.close)
