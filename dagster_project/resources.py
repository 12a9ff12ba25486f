"""Resources: where data lives, which model and task, and the ReST^EM settings.

Each is a `ConfigurableResource`, so the webserver's launchpad can override any
field per run and tests swap them freely. Defaults come from the active profile
(RESTEM_PROFILE) and environment variables.
"""


import copy
import dataclasses
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from restem_assets.generation import SamplingParams, make_engine, resolve_engine_kind
from restem_assets.model_cache import resolve_model
from restem_assets.storage import ParquetStore
from restem_assets.tasks.spec import DEFAULT_CHAIN_SUM_CONFIG, TaskSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_root() -> str:
    return os.environ.get("RESTEM_DATA_ROOT", str(PROJECT_ROOT / "data"))


class StorageResource(dg.ConfigurableResource):
    """The fsspec root under which every table and model of every iteration lives."""

    root: str = Field(default_factory=default_data_root, description="local path or fsspec URL")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def store(self) -> ParquetStore:
        return ParquetStore(self.root, self.storage_options)

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
    config: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_CHAIN_SUM_CONFIG))
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
    max_per_problem: int = Field(10, description="cap on kept correct samples per problem (paper: 10)")
    # M-step
    init_from: str = Field("base", description="'base' (paper) or 'previous' (continue from the last iterate)")
    finetune_method: str = Field("full", description="'full' or 'lora' (merged on save)")
    learning_rate: float = 2e-5
    epochs: float = 2.0
    batch_size: int = 8
    finetune_max_steps: int = Field(-1, description="cap on optimizer steps (-1: no cap); tests use 1-2")
    lora_rank: int = 16
    # evaluation
    eval_samples: int = Field(4, description="k for pass@k and maj@k on the test split")
    eval_temperature: float = 1.0
    eval_top_p: float = 0.95
    eval_max_new_tokens: int = 96
    stop_when_no_improvement: bool = True

    def estep_params(self, iteration: int) -> SamplingParams:
        return SamplingParams(n=self.samples_per_problem, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=self.seed + 1000 * iteration)

    def greedy_params(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=self.eval_max_new_tokens,
                              seed=self.seed)

    def eval_sampling_params(self) -> SamplingParams:
        return SamplingParams(n=self.eval_samples, temperature=self.eval_temperature, top_k=0, top_p=self.eval_top_p,
                              max_new_tokens=self.eval_max_new_tokens, seed=self.seed + 7)


class EngineResource(dg.ConfigurableResource):
    """Which generation engine samples: "auto" (vLLM where it imports), "transformers" or "vllm".

    vLLM settings apply to the vllm engine only: on CPU hosts its KV cache is
    `vllm_cpu_kv_cache_gib` of RAM; on GPUs `gpu_memory_utilization` and
    `tensor_parallel_size` apply. Its sampling seed is set once per engine (`seed`).
    """

    kind: str = "auto"
    batch_size: int = 64
    dtype: str = "auto"
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    vllm_max_model_len: int = 2048
    vllm_cpu_kv_cache_gib: int = 2
    vllm_enforce_eager: bool = False

    def resolved_kind(self) -> str:
        return resolve_engine_kind(self.kind)

    @contextmanager
    def open(self, model: str):
        """An engine on `model` (a local directory or any URL resolve_model accepts), closed on exit."""
        model_path = resolve_model(model)
        options: dict[str, Any] = {"dtype": self.dtype}
        kind = self.resolved_kind()
        if kind == "transformers":
            options["batch_size"] = self.batch_size
        else:
            options.update(tensor_parallel_size=self.tensor_parallel_size,
                           gpu_memory_utilization=self.gpu_memory_utilization, seed=self.seed,
                           max_model_len=self.vllm_max_model_len, cpu_kv_cache_gib=self.vllm_cpu_kv_cache_gib,
                           enforce_eager=self.vllm_enforce_eager)
        engine = make_engine(kind, model_path, **options)
        try:
            yield engine
        finally:
            engine.close()


def default_resources(profile: dict[str, dict[str, Any]] | None = None) -> dict[str, dg.ConfigurableResource]:
    from dagster_project.profiles import profile as active_profile

    prof = profile if profile is not None else active_profile()
    return {
        "storage": StorageResource(),
        "model": ModelResource(base_model=os.environ.get("RESTEM_BASE_MODEL", "default")),
        "task": TaskResource(**prof.get("task", {})),
        "rest": ReSTResource(**prof.get("rest", {})),
        "engine": EngineResource(kind=os.environ.get("RESTEM_ENGINE", "auto")),
    }
