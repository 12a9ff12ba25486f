"""Issue 23 item 2, with the real webserver and daemon (`dagster dev`): a backfill of the iteration assets
and one of `evaluation` over the same iterations, launched at once through GraphQL on an instance with
`max_concurrent_runs: 4` (and restem's one run per partition), both complete, iterations in order.

Before the fix, the evaluation runs took the partition slots first and waited in-run for policy[i], whose
producing run stayed queued behind them: a deadlock. Now a run whose producer is still queued gives its slot
back and Dagster's run retries re-queue it behind the producer (policy_lineage.requeue_behind).

RESTEM_BACKFILL_DEADLINE_S overrides the 20-minute deadline (e.g. a short one to watch the old code stall)."""

import json
import os
import time
import urllib.request
from datetime import datetime, timezone

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from dagster_project.instance import DAGSTER_YAML
from tests.cluster_helpers import dagster_dev
from tests.e2e_helpers import wait_for

pytestmark = pytest.mark.slow
ITERATION_ASSETS = ["samples", "rewards", "sft_set", "finetune"]
PARTITIONS = ["1", "2"]
DEADLINE_S = float(os.environ.get("RESTEM_BACKFILL_DEADLINE_S", 20 * 60))


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}"""


def launch_backfill(port: int, assets: list[str], partitions: list[str]) -> str:
    params = {"assetSelection": [{"path": [a]} for a in assets], "partitionNames": partitions,
              "title": f"{'/'.join(assets)} {partitions}"}
    result = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def backfill_status(port: int, backfill_id: str) -> str:
    result = graphql(port, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert result["__typename"] == "PartitionBackfill", result
    return result["status"]


def timeline(instance: dg.DagsterInstance, names: dict[str, str]) -> str:
    """Every run of the instance, oldest first: id, what it selected, partition, status, start and end (seconds
    after the first run was created), which backfill, which run it retries, and why a failed one failed."""
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    if not records:
        return "(no runs)"
    t0 = records[0].create_timestamp.timestamp()

    def at(ts) -> str:
        return f"{ts - t0:7.0f}" if ts else "      -"

    lines = [f"{'run':8}  {'assets':30} {'part':4} {'status':8} {'start':>7} {'end':>7}  backfill    retry of  note"]
    for record in records:
        run = record.dagster_run
        assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or ())) or run.job_name
        note = ""
        if run.status == dg.DagsterRunStatus.FAILURE:
            failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            note = "; ".join(str(e.dagster_event.step_failure_data.error.message).strip().splitlines()[0][:150]
                             for e in failures) or "(no step failure)"
            note += f" [will_retry={run.tags.get('dagster/will_retry')}]"
        backfill = names.get(run.tags.get("dagster/backfill", ""), run.tags.get("dagster/backfill", "")[:8])
        lines.append(f"{run.run_id[:8]}  {assets[:30]:30} {run.tags.get('dagster/partition', '-'):4} "
                     f"{run.status.value[:8]:8} {at(record.start_time)} {at(record.end_time)}  {backfill:10}  "
                     f"{(run.parent_run_id or '-')[:8]:8}  {note}")
    return "\n".join(lines)


@pytest.fixture
def webserver(tmp_path, model_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = DAGSTER_YAML.replace("max_concurrent_runs: 1\n", "max_concurrent_runs: 4\n")
    assert config != DAGSTER_YAML and "run_retries:\n  enabled: true\n  max_retries: 0\n" in config
    (home / "dagster.yaml").write_text(config)
    # tiny_easy: the tiny profile on one-digit sums, so that every iteration's SFT set has examples
    # (an empty one stops its fine-tune, a blocking check) and both iterations can complete.
    env = dict(os.environ, DAGSTER_HOME=str(home), RESTEM_DATA_ROOT=str(tmp_path / "data"),
               RESTEM_BASE_MODEL=model_path, RESTEM_PROFILE="tiny_easy", RESTEM_ENGINE="transformers",
               HF_HUB_OFFLINE="1")
    with dagster_dev(tmp_path / "dagster_dev.log", env, startup_s=300) as port:
        yield port, home


def test_iteration_and_evaluation_backfills_launched_together_both_complete_in_order(webserver):
    port, home = webserver
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 0
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4

    for _ in range(60):  # the code location may still be loading right after start-up
        try:
            setup = client.submit_job_execution("setup")
            break
        except DagsterGraphQLClientError:
            time.sleep(5)
    else:
        setup = client.submit_job_execution("setup")
    assert wait_for(lambda: client.get_run_status(setup).value in ("SUCCESS", "FAILURE", "CANCELED")
                    and client.get_run_status(setup).value, 900, "the setup run", interval=5.0) == "SUCCESS"

    # as in the bug report: evaluation first, so that its runs are queued (and dequeued) first
    names = {}
    evaluation = launch_backfill(port, ["evaluation"], PARTITIONS)
    iteration = launch_backfill(port, ITERATION_ASSETS, PARTITIONS)
    names.update({evaluation: "evaluation", iteration: "iteration"})
    started = time.monotonic()

    def both_done():
        statuses = {name: backfill_status(port, backfill_id) for backfill_id, name in names.items()}
        return statuses if all(s not in ("REQUESTED", "CANCELING", "FAILING") for s in statuses.values()) else None

    try:
        statuses = wait_for(both_done, DEADLINE_S, lambda: f"both backfills (still {({n: backfill_status(port, b) for b, n in names.items()})})",
                            interval=10.0)
    finally:
        print(f"\nrun timeline ({time.monotonic() - started:.0f} s after the backfills were launched; times in s "
              f"after the first run was created):\n{timeline(instance, names)}", flush=True)
    assert statuses == {"evaluation": "COMPLETED_SUCCESS", "iteration": "COMPLETED_SUCCESS"}, statuses

    for asset in (*ITERATION_ASSETS, "evaluation", "policy"):
        assert set(PARTITIONS) <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset

    def materialization(asset: str, partition: str) -> dg.EventLogRecord:
        return instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records[0]

    def run_end(record: dg.EventLogRecord) -> float:
        return instance.get_run_record_by_id(record.run_id).end_time

    # iterations in order: iteration 2 sampled from policy[1] only after the run that fine-tuned it ended,
    # and each evaluation[i] evaluated policy[i] after the run that produced it ended
    assert run_end(materialization("finetune", "1")) <= materialization("samples", "2").timestamp
    for i in PARTITIONS:
        assert run_end(materialization("finetune", i)) <= materialization("evaluation", i).timestamp, i
    # every failed run was one that gave its slot back and was re-queued (a retry of it was launched)
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
        run = record.dagster_run
        assert run.tags.get("dagster/auto_retry_run_id"), (run.run_id, run.tags)
        messages = [str(e.dagster_event.step_failure_data.error.message)
                    for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
        assert messages and all("gives up its slot and Dagster re-queues it behind run" in m for m in messages), \
            messages
    print(f"finished at {datetime.now(timezone.utc):%H:%M:%S}: {statuses}")
