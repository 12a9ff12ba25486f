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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restem_assets.generation import GenerationEngine, make_engine, vllm_available
from restem_assets.setting_field import setting

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


@dataclass(frozen=True)
class EngineSettings:
    """Which generation engine samples, and its knobs (the `engine` resource is generated from these fields).

    `kind` "auto" is vLLM where it imports and the work it will serve repays its start-up
    (`auto_vllm_min_tokens`), or when a vLLM engine is already running in this process; the
    transformers engine otherwise. With `reuse`, one engine serves every stage of a run: a later
    policy's weights are loaded into it instead of starting a new one. vLLM settings apply to the
    vllm engine only. `ray_replicas` > 0 shards the prompts over that many replicas on a Ray cluster
    (restem_assets/generation/ray_engine.py, `pip install .[ray]`).
    """

    kind: str = setting("auto", "'auto', 'transformers' or 'vllm'")
    batch_size: int = setting(256, "transformers engine: most rows decoded together (fewer where their key/value "
                                 "caches would pass `kv_cache_gib`)")
    kv_cache_gib: float = setting(2.0, "transformers engine: key/value cache memory the batch may hold (longest "
                                     "prompt + max_new_tokens per row; 0: no cap)")
    prefix_sharing: bool = setting(True, "transformers engine: prefill the prompts' common prefix once")
    auto_vllm_min_tokens: int = setting(VLLM_BREAK_EVEN_TOKENS, "kind 'auto': work expected to generate fewer tokens "
                                      "runs on the transformers engine unless vLLM is already running")
    reuse: bool = setting(True, "keep one engine for the stages of a run and swap each policy's weights into it; "
                              "False: a new engine per stage")
    dtype: str = setting("auto", "'auto' (bf16 where the CPU has AVX512-BF16 or on CUDA, else fp32), 'fp32' or 'bf16'")
    seed: int = setting(0, "vLLM: the engine's sampling seed")
    tensor_parallel_size: int = setting(1, "vLLM on GPUs: tensor-parallel ranks")
    gpu_memory_utilization: float = setting(0.85, "vLLM on GPUs: share of GPU memory it may take")
    vllm_max_model_len: int = setting(2048, "vLLM: longest prompt + completion, in tokens")
    vllm_cpu_kv_cache_gib: int = setting(2, "vLLM on CPU: KV cache reservation, GiB of RAM")
    vllm_enforce_eager: bool | None = setting(None, "vLLM without torch.compile / CUDA graphs. None: eager on CPU hosts "
                                            "(start-up ~20 s instead of ~130 s), compiled on GPUs")
    ray_replicas: int = setting(0, "0: one engine in this process; N > 0: N replicas on Ray, prompts sharded")
    ray_address: str = setting("", "'' starts a local Ray; 'auto' joins this node's cluster; or host:port / "
                                 "ray://host:10001")
    ray_cpus_per_replica: float = setting(1.0, "CPUs Ray reserves per replica (its torch threads)")
    ray_gpus_per_replica: float = setting(0.0, "GPUs per replica (tensor_parallel_size for vLLM on GPU nodes)")
    ray_shard_prompts: int = setting(0, "prompts per shard (0: about 4 shards per replica, at most 256)")
    ray_max_shard_retries: int = setting(3, "times a shard is re-submitted after its replica died")

    def __post_init__(self):
        if self.kind not in ("auto", "transformers", "vllm"):
            raise ValueError(f"engine.kind must be 'auto', 'transformers' or 'vllm', got {self.kind!r}")
        if self.ray_replicas < 0:
            raise ValueError(f"engine.ray_replicas must be >= 0 (0: no Ray), got {self.ray_replicas}")

    def options(self, kind: str) -> dict[str, Any]:
        """The engine constructor's options for `kind` (what the pool compares to reuse an engine)."""
        from restem_assets.generation.vllm_engine import default_enforce_eager

        options: dict[str, Any] = {"dtype": self.dtype}
        if kind == "transformers":
            options.update(batch_size=self.batch_size, prefix_sharing=self.prefix_sharing,
                           kv_cache_gib=self.kv_cache_gib)
        else:
            options.update(tensor_parallel_size=self.tensor_parallel_size,
                           gpu_memory_utilization=self.gpu_memory_utilization, seed=self.seed,
                           max_model_len=self.vllm_max_model_len, cpu_kv_cache_gib=self.vllm_cpu_kv_cache_gib,
                           enforce_eager=default_enforce_eager() if self.vllm_enforce_eager is None
                           else self.vllm_enforce_eager)
        return options


@contextmanager
def open_engine(settings: EngineSettings, model_path: str, expected: int | None = None, planned: int = 0,
                model_url: str | None = None) -> Iterator[GenerationEngine]:
    """An engine on `model_path`, closed on exit, or with `reuse` kept in `POOL` for the next stage.

    `expected`: this stage's expected tokens; `planned`: the whole run's (one engine serves every stage,
    so `auto` weighs its start-up against the run's work). Both come from the configuration alone, so
    the CLI and the webserver choose the same engine for the same stage."""
    kind = choose_kind(settings.kind, expected, POOL.live_kind() if settings.reuse else None,
                       settings.auto_vllm_min_tokens, planned=planned if settings.reuse else 0)
    options = settings.options(kind)
    if settings.ray_replicas > 0:
        options.update(replica_kind=kind, replicas=settings.ray_replicas, address=settings.ray_address,
                       num_cpus_per_replica=settings.ray_cpus_per_replica,
                       num_gpus_per_replica=settings.ray_gpus_per_replica, shard_prompts=settings.ray_shard_prompts,
                       max_shard_retries=settings.ray_max_shard_retries, model_url=model_url)
        kind = "ray"
    if settings.reuse and kind != "ray":
        engine = POOL.acquire(kind, options, model_path)
        try:
            yield engine
        except BaseException:  # an engine that failed mid-request is not handed out again
            POOL.close()
            raise
        return
    engine = make_engine(kind, model_path, **options)
    try:
        yield engine
    finally:
        engine.close()
