"""Resources: where data lives, which model and task, the ReST^EM settings, the engine.

One configuration path: `Settings` (the environment, read once, where Definitions
are built, or given explicitly by the CLI) picks a profile, and a profile is a set of
typed defaults for the resources (`PROFILES`, validated by the resource classes).
`build_resources(settings, overrides)` merges overrides onto the profile. Every field
can still be changed per run in the webserver's launchpad, and tests build
resources directly.
"""

import copy
import dataclasses
import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from restem_assets.experiments import check_name as check_experiment_name
from restem_assets.experiments import experiment_root
from restem_assets.training.finetune import FinetuneSettings
from restem_assets.generation import SamplingParams, make_engine
from restem_assets.generation.engine_pool import POOL, VLLM_BREAK_EVEN_TOKENS, choose_kind
from restem_assets.generation.vllm_engine import default_enforce_eager
from restem_assets.models.model_cache import resolve_model
from restem_assets.store.tables import DEFAULT_DATA_ROOT, ParquetStore
from restem_assets.tasks.spec import TaskSpec


def absolute_root(root: str) -> str:
    """A local data root as an absolute path (so every process agrees on it); URLs pass through."""
    return root if "://" in root else str(Path(root).expanduser().resolve())


class StorageResource(dg.ConfigurableResource):
    """The fsspec root under which every table and model of every iteration lives."""

    root: str = Field(default_factory=lambda: absolute_root(DEFAULT_DATA_ROOT), description="local path or fsspec URL")
    storage_options: dict[str, Any] = Field(default_factory=dict)
    experiment: str = Field("default", description="the experiment whose tables live under `root` (restem_assets/experiments.py)")
    data_root: str = Field("", description="the data root every experiment shares ('' = root: the default experiment)")

    def store(self) -> ParquetStore:
        return ParquetStore(self.root, self.storage_options)

    def shared_root(self) -> str:
        """The data root of every experiment (SQL across experiments reads from here)."""
        return self.data_root or self.root

    def models_dir(self) -> str:
        return self.store().url(self.store().table_dir("models"))


class ModelResource(dg.ConfigurableResource):
    """The base model: "default" (embedded SmolLM2), a local directory, or an fsspec URL."""

    base_model: str = "default"

    def resolve_base(self) -> str:
        return resolve_model(self.base_model)


class TaskResource(dg.ConfigurableResource):
    """Which problems to train and evaluate on (see restem_assets.tasks.spec.TaskSpec)."""

    kind: str = "reasoning_gym"
    name: str = "chain_sum"
    config: dict[str, Any] = Field(default_factory=dict, description=(
        "task config; empty means the task's defaults (chain_sum: 2-3 terms of 1-2 digits; "
        "function_synthesis: levels [1, 2], 8 tests per problem)"))
    train_path: str | None = None
    test_path: str | None = None
    train_size: int | None = 256
    test_size: int | None = 128
    test_fraction: float = 0.3
    seed: int = 1234
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def spec(self) -> TaskSpec:
        return TaskSpec(**{f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(TaskSpec)})


class ReSTResource(dg.ConfigurableResource):
    """ReST^EM settings. Defaults follow the paper where the CPU budget allows (K is smaller)."""

    samples_per_problem: int = Field(8, description="K: completions sampled per train problem (paper: 32 math, 64 code)")
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0
    checkpoint_rows: int = Field(512, description="sampled rows per crash-safe chunk (a re-run keeps finished chunks)")
    checkpoint_seconds: float = Field(30.0, description="at most this long between crash-safe chunks")
    max_per_problem: int = Field(10, description="cap on kept correct samples per problem (paper: 10)")
    audit_blocking: bool = Field(False, description="a reward-audit finding on sft_set stops the chain (else: warn)")
    # M-step
    init_from: str = Field("base", description="'base' (paper) or 'previous' (continue from the last iterate)")
    finetune_method: str = Field("full", description="'full' or 'lora' (merged on save)")
    learning_rate: float = 2e-5
    epochs: float = 2.0
    batch_size: int = 8
    finetune_max_steps: int = Field(-1, description="cap on optimizer steps (-1: no cap); tests use 1-2")
    lora_rank: int = 16
    finetune_prefix_sharing: bool = Field(True, description="run each batch's shared prompt prefix once (same loss "
                                          "and gradients, ~3x faster on few-shot prompts; restem_assets/generation/shared_prefix.py)")
    finetune_launcher: str = Field("inprocess", description="'inprocess' (this process) or 'accelerate' "
                                   "(`accelerate launch` through Dagster Pipes, restem_assets/training/distributed.py)")
    finetune_processes: int = Field(2, description="processes for the accelerate launcher (data-parallel ranks)")
    finetune_accelerate_config: str = Field("", description="deploy/accelerate config: ddp_cpu, ddp_gpu, fsdp, "
                                            "deepspeed_zero2, deepspeed_zero3, or a path ('' = ddp_gpu/ddp_cpu)")
    # evaluation
    eval_samples: int = Field(4, description="k for pass@k and maj@k on the test split")
    eval_temperature: float = 1.0
    eval_top_p: float = 0.95
    eval_max_new_tokens: int = 96
    transfer_benchmarks: list[str] = Field(default_factory=list, description=(
        "benchmarks outside the task each policy is also evaluated on (greedy) by the transfer_evaluation "
        "asset / `restem transfer`, e.g. ['humaneval']"))
    transfer_max_new_tokens: int = 256
    transfer_limit: int | None = Field(None, description="only the first N problems of each benchmark (None: all)")
    # the loop (the CLI driver and the continue_rest_loop sensor)
    target_iterations: int = Field(2, description="how many iterations the loop runs")
    stop_when_no_improvement: bool = Field(True, description="stop when held-out greedy pass@1 stops improving")
    # cost accounting (stage_costs table, sql/cost_per_iteration.sql)
    cpu_hour_price: float = Field(0.0, description="price of one CPU-core hour, for the cost column (0: not priced)")
    gpu_hour_price: float = Field(0.0, description="price of one GPU hour, for the cost column (0: not priced)")

    def finetune_settings(self, iteration: int) -> FinetuneSettings:
        """The M-step settings of `iteration` (its seed differs per iteration); the human-data baseline uses
        iteration 1's, so it is trained exactly as the policy it is compared with."""
        return FinetuneSettings(method=self.finetune_method, learning_rate=self.learning_rate, epochs=self.epochs,
                                batch_size=self.batch_size, max_steps=self.finetune_max_steps,
                                lora_rank=self.lora_rank, seed=self.seed + iteration,
                                prefix_sharing=self.finetune_prefix_sharing)

    def estep_params(self, iteration: int) -> SamplingParams:
        return SamplingParams(n=self.samples_per_problem, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=self.seed + 1000 * iteration)

    def greedy_params(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=self.eval_max_new_tokens,
                              seed=self.seed)

    def transfer_params(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=self.transfer_max_new_tokens,
                              seed=self.seed)

    def eval_sampling_params(self) -> SamplingParams:
        return SamplingParams(n=self.eval_samples, temperature=self.eval_temperature, top_k=0, top_p=self.eval_top_p,
                              max_new_tokens=self.eval_max_new_tokens, seed=self.seed + 7)


class EngineResource(dg.ConfigurableResource):
    """Which generation engine samples: "auto", "transformers" or "vllm".

    "auto" is vLLM where it imports and the stage's expected work repays its start-up
    (`auto_vllm_min_tokens`), or when a vLLM engine is already running in this process;
    the transformers engine otherwise. With `reuse`, one engine serves every stage of a
    run: a later policy's weights are loaded into it instead of starting a new one.

    vLLM settings apply to the vllm engine only: on CPU hosts its KV cache is
    `vllm_cpu_kv_cache_gib` of RAM; on GPUs `gpu_memory_utilization` and
    `tensor_parallel_size` apply. Its sampling seed is set once per engine (`seed`).

    `ray_replicas` > 0 shards the prompts over that many replicas of this engine on a Ray
    cluster (`ray_address`; restem_assets/generation/ray_engine.py, `pip install .[ray]`).
    """

    kind: str = "auto"
    batch_size: int = Field(256, description="transformers engine: most rows decoded together (fewer where "
                            "their key/value caches would pass `kv_cache_gib`)")
    kv_cache_gib: float = Field(2.0, description="transformers engine: key/value cache memory the batch may hold "
                                "(longest prompt + max_new_tokens per row; 0: no cap)")
    prefix_sharing: bool = Field(True, description="transformers engine: prefill the prompts' common prefix once")
    auto_vllm_min_tokens: int = Field(VLLM_BREAK_EVEN_TOKENS, description="kind 'auto': a stage expected to "
                                      "generate fewer tokens runs on the transformers engine unless vLLM is already "
                                      "running (its start-up would not pay off)")
    reuse: bool = Field(True, description="keep one engine for the stages of a run and swap each policy's weights "
                        "into it (restem_assets/generation/engine_pool.py); False: a new engine per stage")
    dtype: str = "auto"
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    vllm_max_model_len: int = 2048
    vllm_cpu_kv_cache_gib: int = 2
    vllm_enforce_eager: bool | None = Field(None, description=(
        "vLLM without torch.compile / CUDA graphs. None: eager on CPU hosts (start-up ~20 s instead of ~130 s, "
        "decoding 3-12% slower in bench/: a demo-sized run of ~100k tokens comes out ahead), compiled on GPUs"))
    # Ray: the same engine, as replicas on a cluster
    ray_replicas: int = Field(0, description="0: one engine in this process; N > 0: N replicas on Ray, prompts sharded")
    ray_address: str = Field("", description="'' starts a local Ray; 'auto' joins this node's cluster; or host:port / "
                             "ray://host:10001")
    ray_cpus_per_replica: float = Field(1.0, description="CPUs Ray reserves per replica (its torch threads)")
    ray_gpus_per_replica: float = Field(0.0, description="GPUs per replica (tensor_parallel_size for vLLM on GPU nodes)")
    ray_shard_prompts: int = Field(0, description="prompts per shard (0: about 4 shards per replica, at most 256)")
    ray_max_shard_retries: int = Field(3, description="times a shard is re-submitted after its replica died")

    @contextmanager
    def open(self, model: str, expected_tokens: int | None = None):
        """An engine on `model` (a local directory or any URL resolve_model accepts), closed on exit, or
        with `reuse` kept for the next stage. `kind="auto"`: vLLM where it imports and the stage's
        `expected_tokens` repay its start-up (or it is already running), transformers otherwise."""
        if self.ray_replicas < 0:
            raise ValueError(f"engine.ray_replicas must be >= 0 (0: no Ray), got {self.ray_replicas}")
        model_path = resolve_model(model)
        options: dict[str, Any] = {"dtype": self.dtype}
        kind = choose_kind(self.kind, expected_tokens, POOL.live_kind() if self.reuse else None,
                           self.auto_vllm_min_tokens, planned=POOL.planned_tokens if self.reuse else 0)
        if kind == "transformers":
            options.update(batch_size=self.batch_size, prefix_sharing=self.prefix_sharing,
                           kv_cache_gib=self.kv_cache_gib)
        else:
            options.update(tensor_parallel_size=self.tensor_parallel_size,
                           gpu_memory_utilization=self.gpu_memory_utilization, seed=self.seed,
                           max_model_len=self.vllm_max_model_len, cpu_kv_cache_gib=self.vllm_cpu_kv_cache_gib,
                           enforce_eager=default_enforce_eager() if self.vllm_enforce_eager is None
                           else self.vllm_enforce_eager)
        if self.ray_replicas > 0:
            options.update(replica_kind=kind, replicas=self.ray_replicas, address=self.ray_address,
                           num_cpus_per_replica=self.ray_cpus_per_replica,
                           num_gpus_per_replica=self.ray_gpus_per_replica, shard_prompts=self.ray_shard_prompts,
                           max_shard_retries=self.ray_max_shard_retries,
                           model_url=model if "://" in str(model) else None)
            kind = "ray"
        if self.reuse and kind != "ray":
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


# Named profiles: typed defaults for the resources (each dict is passed to the resource class).
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # The README's main command: 256 train / 128 test easy chain sums. K=4: in the README's ablation
    # on this task K=4 learned as much as K=8 (paired intervals straddle 0 at both iterations) for
    # half the E-step tokens; `--set rest.samples_per_problem=8` (or the paper's 32) for more.
    "default": {
        "task": {"train_size": 256, "test_size": 128},
        "rest": {"samples_per_problem": 4, "max_new_tokens": 96, "eval_samples": 4, "eval_max_new_tokens": 96},
    },
    # CI: the whole loop end to end in a few minutes.
    "ci": {
        "task": {"train_size": 48, "test_size": 24},
        "rest": {"samples_per_problem": 4, "max_new_tokens": 48, "eval_samples": 2, "eval_max_new_tokens": 48,
                 "finetune_max_steps": 2},
    },
    # Code ReST^EM on a laptop (`make demo-code`): procedural function synthesis, levels 1-3 with
    # level 2 drawn twice as often; a code answer ends where its block closes (prompts.CODE_STOP).
    # Breadth over depth: K=4 on 112 train problems costs less than K=8 on 64 did but covers more
    # problems (two thirds of them get no correct sample from the base model at K=8), and on
    # chain sums K=4 learned as much per iteration as K=8 (README, ablation). 112 problems and
    # k=2 for evaluation keep base eval + 2 iterations under 20 minutes on 2 cores.
    "code": {
        "task": {"kind": "function_synthesis", "name": "function_synthesis", "config": {"levels": [1, 2, 2, 3]},
                 "train_size": 112, "test_size": 64},
        "rest": {"samples_per_problem": 4, "max_new_tokens": 96, "eval_samples": 2, "eval_max_new_tokens": 96,
                 "transfer_benchmarks": ["humaneval"]},
    },
    # End-to-end tests of the analyses (experiments, human-data baseline): tiny, on one-digit two-term
    # sums, which the embedded model answers often enough that every SFT set has examples.
    "tiny_easy": {
        "task": {"train_size": 8, "test_size": 4,
                 "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
        "rest": {"samples_per_problem": 2, "max_new_tokens": 16, "eval_samples": 2, "eval_max_new_tokens": 16,
                 "finetune_max_steps": 1, "checkpoint_rows": 4},
    },
    # Unit/e2e tests: seconds per stage.
    "tiny": {
        "task": {"train_size": 6, "test_size": 4},
        "rest": {"samples_per_problem": 2, "max_new_tokens": 16, "eval_samples": 2, "eval_max_new_tokens": 16,
                 "finetune_max_steps": 1, "checkpoint_rows": 4},
    },
}

RESOURCE_CLASSES: dict[str, type[dg.ConfigurableResource]] = {
    "storage": StorageResource, "model": ModelResource, "task": TaskResource, "rest": ReSTResource,
    "engine": EngineResource,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the environment may choose, read in one place (`from_env`), never at import time.

    RESTEM_PROFILE, RESTEM_DATA_ROOT, RESTEM_BASE_MODEL, RESTEM_ENGINE and RESTEM_EXPERIMENT; the CLI
    builds the same object from its flags instead.
    """

    profile: str = "default"
    data_root: str = DEFAULT_DATA_ROOT
    base_model: str = "default"
    engine: str = "auto"
    experiment: str = "default"

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"profile {self.profile!r} is not one of {sorted(PROFILES)}")
        check_experiment_name(self.experiment)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> "Settings":
        """Settings from the environment; `explicit` values (e.g. CLI flags that were given) win."""
        env = os.environ if environ is None else environ
        values = {
            "profile": env.get("RESTEM_PROFILE") or cls.profile,
            "data_root": env.get("RESTEM_DATA_ROOT") or cls.data_root,
            "base_model": env.get("RESTEM_BASE_MODEL") or cls.base_model,
            "engine": env.get("RESTEM_ENGINE") or cls.engine,
            "experiment": env.get("RESTEM_EXPERIMENT") or cls.experiment,
        }
        values.update({k: v for k, v in explicit.items() if v is not None})
        return cls(**values)


def build_resources(settings: Settings | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for a profile: its typed defaults, the settings, then `overrides` merged field by field."""
    settings = settings or Settings()
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(RESOURCE_CLASSES))
    if unknown:
        raise ValueError(f"overrides for unknown resources {unknown}; known: {sorted(RESOURCE_CLASSES)}")
    base: dict[str, dict[str, Any]] = {
        "storage": {"root": experiment_root(absolute_root(settings.data_root), settings.experiment),
                    "experiment": settings.experiment, "data_root": absolute_root(settings.data_root)},
        "model": {"base_model": settings.base_model},
        "engine": {"kind": settings.engine},
    }
    out = {}
    for key, cls in RESOURCE_CLASSES.items():
        bad = sorted(set(overrides.get(key, {})) - set(cls.model_fields))
        if bad:
            raise ValueError(f"resource '{key}' has no fields {bad}; its fields: {sorted(cls.model_fields)}")
        fields = {**base.get(key, {}), **copy.deepcopy(PROFILES[settings.profile].get(key, {})), **overrides.get(key, {})}
        out[key] = with_defaults(cls, fields)()
    return out


def resolved_config(resources: Mapping[str, dg.ConfigurableResource]) -> dict[str, dict[str, Any]]:
    """Every field of the task, model, rest and engine resources (what an experiment records)."""
    return {key: {name: copy.deepcopy(getattr(resources[key], name)) for name in RESOURCE_CLASSES[key].model_fields}
            for key in ("task", "model", "rest", "engine")}


def with_defaults(cls: type[dg.ConfigurableResource], values: Mapping[str, Any]) -> type[dg.ConfigurableResource]:
    """`cls` with `values` as its field defaults (validated by `cls`).

    Dagster replaces, not merges, a resource's constructor values when a run's config sets any
    field, so a launchpad override of `task.seed` would silently bring back every other default.
    Defaults are what run config merges onto, so the profile goes there instead.
    """
    cls(**values)  # validate: a wrong type or value fails here, naming the field
    if not values:
        return cls
    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                                 "__annotations__": {}}
    for name, value in values.items():
        field = cls.model_fields[name]
        namespace["__annotations__"][name] = field.annotation
        namespace[name] = Field(default_factory=lambda v=value: copy.deepcopy(v), description=field.description)
    return type(cls.__name__, (cls,), namespace)
