"""deploy/ray: every step of the `setup` and `iteration` jobs runs as a Ray job on a real local Ray cluster.

`dagster job execute -f deploy/ray/definitions.py` is what an operator runs; dagster-ray's
`ray_executor` submits each step through the cluster's Jobs API. The k8s deployment
(deploy/k8s) cannot run here; `dagster definitions validate` checks it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

pytest.importorskip("dagster_ray", reason="the ray extra is not installed (pip install '.[ray]')")

from dagster_project.instance import persistent_instance, prepare_dagster_home  # noqa: E402
from restem_assets.store.tables import ParquetStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _dagster(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_iteration_steps_run_as_ray_jobs(tmp_path, model_path, ray_cluster):
    _, dashboard = ray_cluster
    home = prepare_dagster_home(tmp_path / "home")
    env = dict(os.environ, DAGSTER_HOME=str(home), RESTEM_PROFILE="tiny", RESTEM_DATA_ROOT=str(tmp_path / "data"),
               RESTEM_BASE_MODEL=model_path, RESTEM_ENGINE="transformers", RAY_JOB_ADDRESS=dashboard,
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    definitions = str(REPO / "deploy" / "ray" / "definitions.py")
    for job, tags in (("setup", {}), ("iteration", {"dagster/partition": "1"})):
        proc = _dagster("job", "execute", "-f", definitions, "-j", job, "--tags", json.dumps(tags), env=env)
        assert proc.returncode == 0, f"{job}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # each step ran as its own, successful Ray job
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    deadline = time.monotonic() + 60
    while True:  # a step's Ray job ends a moment after the step reported its result to Dagster
        jobs = client.list_jobs()
        steps = {j.metadata.get("dagster/op"): j.status for j in jobs if j.metadata.get("dagster/job") == "iteration"}
        if all(status.is_terminal() for status in steps.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert steps == {s: JobStatus.SUCCEEDED for s in ("samples", "rewards", "sft_set", "finetune")}, steps
    assert {j.metadata.get("dagster/op") for j in jobs if j.metadata.get("dagster/job") == "setup"} == {
        "problems", "base_model"}

    # and recorded their materializations in the shared instance, with the tables under the data root
    instance = persistent_instance(home)
    for key in ("samples", "rewards", "sft_set", "finetune"):
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None and event.dagster_event.partition == "1", key
    store = ParquetStore(str(tmp_path / "data"))
    assert store.num_rows("samples", 1) == 6 * 2 and store.exists("finetune_log", 1)


@pytest.mark.parametrize("deployment", ["ray", "k8s"])
def test_deployment_definitions_validate(deployment, tmp_path):
    """The shipped code locations load (dagster-k8s' executor config included) with `dagster definitions validate`.

    DAGSTER_HOME points at a fresh folder: a clean clone has no data/dagster_home yet."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    proc = _dagster("definitions", "validate", "-f", str(REPO / "deploy" / deployment / "definitions.py"),
                    env=dict(os.environ, HF_HUB_OFFLINE="1", DAGSTER_HOME=str(home)), timeout=300)
    assert proc.returncode == 0 and "Validation successful" in proc.stdout + proc.stderr, proc.stderr[-3000:]
