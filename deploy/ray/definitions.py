"""restem's code location with every step of every job running as a Ray job on a Ray cluster.

    dagster dev -f deploy/ray/definitions.py                    # webserver + daemon; steps go to Ray
    dagster job execute -f deploy/ray/definitions.py -j iteration --tags '{"dagster/partition": "1"}'

dagster-ray's `ray_executor` submits each step (`dagster api execute_step ...`) through the
Ray Jobs API of `RAY_JOB_ADDRESS` (the dashboard, e.g. http://127.0.0.1:8265; Dagster reads it
as an `env` config source, as deploy/ray/dagster.yaml does). A step
needs on its node: this repository installed (the same image / venv on every node), the
Dagster instance (`DAGSTER_HOME` on shared storage, or Postgres storage in dagster.yaml,
see deploy/ray/dagster.yaml) and the data root (an object store such as s3://…, or shared
storage). The variables listed in FORWARDED_ENV are copied from the launching process into
each step's job. Steps reserve 1 CPU and no GPU unless a run's config says otherwise
(launchpad: `execution: {config: {ray: {num_cpus: 4, num_gpus: 1}}}`); inside a step, sampling can
fan out further with `engine.ray_replicas` (the Ray engine joins the same cluster with
`engine.ray_address=auto`). The environment is read only through Dagster's config sources here and
restem_assets/environment.py everywhere else.
"""

from __future__ import annotations

from dagster_ray import ray_executor

from dagster_project.definitions import build_definitions

FORWARDED_ENV = [
    "DAGSTER_HOME", "RESTEM_PROFILE", "RESTEM_DATA_ROOT", "RESTEM_BASE_MODEL", "RESTEM_ENGINE", "RESTEM_EXPERIMENT",
    "RESTEM_CACHE_DIR", "RAY_JOB_ADDRESS",
    "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
]


def ray_step_executor():
    return ray_executor.configured({"ray": {
        "address": {"env": "RAY_JOB_ADDRESS"},
        "env_vars": FORWARDED_ENV,
        "num_cpus": 1.0,
        "num_gpus": 0.0,
    }})


defs = build_definitions(executor=ray_step_executor())
