"""restem's code location with every step of every job running as a Kubernetes Job (dagster-k8s).

Deployed with Dagster's Helm chart (deploy/k8s/values.yaml): the run worker of each run
starts one Kubernetes Job per step with `k8s_job_executor`, in the image of this code
location. The data root must be an object store (`RESTEM_DATA_ROOT=s3://…`): step pods
share nothing else. Steps get their pod resources from `per_step_k8s_config`: sampling
and evaluation one GPU node each (vLLM, tensor parallel inside), the fine-tune 8 GPUs (it runs
`accelerate launch` with rest.finetune_launcher=accelerate), rewards and the SFT set CPUs
(the code sandbox pool scales with the CPU request).
Checked in CI with `dagster definitions validate -f deploy/k8s/definitions.py`.
"""

from __future__ import annotations

from dagster_k8s import k8s_job_executor

from dagster_project.definitions import build_definitions

STEP_POD = {
    "container_config": {
        "env_from": [{"secret_ref": {"name": "restem-storage"}}, {"config_map_ref": {"name": "restem-settings"}}],
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
    },
}


def _gpus(n: int) -> dict:
    return {"container_config": {"resources": {"limits": {"nvidia.com/gpu": str(n)}}},
            "pod_spec_config": {"node_selector": {"restem/pool": "gpu"}}}


PER_STEP = {
    "samples": _gpus(8),  # 8 vLLM replicas (engine.ray_replicas) or one engine with tensor_parallel_size 8
    "evaluation": _gpus(1),
    "finetune": _gpus(8),
    "rewards": {"container_config": {"resources": {"requests": {"cpu": "32", "memory": "32Gi"}}}},
}

defs = build_definitions(executor=k8s_job_executor.configured({
    "max_concurrent": 8,
    "step_k8s_config": STEP_POD,
    "per_step_k8s_config": PER_STEP,
    "env_vars": ["RESTEM_PROFILE", "RESTEM_DATA_ROOT", "RESTEM_BASE_MODEL", "RESTEM_ENGINE"],
}))
