"""The real webserver and daemon (`dagster dev`) on a temporary Dagster home: launch a new
iteration through the GraphQL API and find its materializations recorded in the instance."""

import os
import time

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from dagster_project.instance import prepare_dagster_home
from restem_assets.generation import resolve_engine_kind
from tests.cluster_helpers import dagster_dev
from tests.e2e_helpers import EASY_CHAIN_SUM, wait_for

pytestmark = pytest.mark.slow


def wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float) -> str:
    def finished():
        status = client.get_run_status(run_id)
        return status.value if status.value in ("SUCCESS", "FAILURE", "CANCELED") else None

    return wait_for(finished, timeout, f"run {run_id}", interval=2.0)


@pytest.fixture
def webserver(tmp_path, model_path):
    home = prepare_dagster_home(tmp_path / "dagster_home")
    env = dict(os.environ, DAGSTER_HOME=str(home), RESTEM_DATA_ROOT=str(tmp_path / "data"),
               RESTEM_BASE_MODEL=model_path, RESTEM_PROFILE="tiny", HF_HUB_OFFLINE="1")
    with dagster_dev(tmp_path / "dagster_dev.log", env) as port:
        yield port, home, tmp_path / "data"


def test_launch_iteration_through_graphql(webserver):
    port, home, data = webserver
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_config = {"resources": {
        "task": {"config": EASY_CHAIN_SUM},
        "rest": {"config": {"samples_per_problem": 4, "max_new_tokens": 24, "finetune_max_steps": 1, "batch_size": 4}},
        # "auto" with no start-up threshold: vLLM wherever set-up installed it (eager: starts in ~30 s)
        "engine": {"config": {"kind": "auto", "auto_vllm_min_tokens": 0, "vllm_enforce_eager": True}},
    }}

    def submit(job, partition=None):
        tags = {"dagster/partition": partition} if partition else None
        for _ in range(30):  # the code location may still be loading right after start-up
            try:
                return client.submit_job_execution(job, run_config=run_config, tags=tags)
            except DagsterGraphQLClientError:
                time.sleep(2)
        return client.submit_job_execution(job, run_config=run_config, tags=tags)

    assert wait_for_run(client, submit("setup"), 300) == "SUCCESS"
    run_id = submit("iteration", "1")
    assert wait_for_run(client, run_id, 480) == "SUCCESS"

    instance = dg.DagsterInstance.from_config(str(home))
    for key in ("samples", "rewards", "sft_set", "finetune", "policy"):
        assert "1" in instance.get_materialized_partitions(dg.AssetKey(key)), key
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("samples"), asset_partitions=["1"]), limit=1).records[0]
    assert record.run_id == run_id
    # "auto" sampled on vLLM where set-up installed it (its worker process in the run's step process)
    assert record.asset_materialization.metadata["engine"].value == resolve_engine_kind("auto")
    # the reward audit ran on sft_set[1] as an asset check of the webserver's run
    checks = {e.dagster_event.event_specific_data.check_name
              for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)}
    assert {"reward_audit", "sft_set_not_empty", "no_test_problems"} <= checks
    (model_dir,) = (data / "models" / "iteration=1").glob("version=*")  # one immutable directory per fine-tune
    assert (model_dir / "config.json").is_file()
