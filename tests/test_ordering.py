"""Backfill order across iterations: a step waits while the run producing its policy is queued or running."""

import dagster as dg
import pytest

from restem_assets.assets.policy_lineage import lookup_policy, policy_when_ready, producer_in_flight, report_policy


def add_run(instance, run_id, status, assets, partition=None):
    tags = {"dagster/partition": partition} if partition is not None else {}
    instance.add_run(dg.DagsterRun(job_name="iteration", run_id=run_id, status=status, tags=tags,
                                   asset_selection=frozenset(dg.AssetKey(a) for a in assets)))


def test_the_producer_of_a_policy_is_found_among_queued_and_running_runs():
    with dg.instance_for_test() as instance:
        add_run(instance, "ft1", dg.DagsterRunStatus.NOT_STARTED, ["samples", "finetune"], "1")
        add_run(instance, "ft2-done", dg.DagsterRunStatus.SUCCESS, ["finetune"], "2")
        add_run(instance, "eval1", dg.DagsterRunStatus.STARTED, ["evaluation"], "1")
        add_run(instance, "setup", dg.DagsterRunStatus.STARTED, ["problems", "base_model"])
        assert producer_in_flight(instance, 1) == "ft1"
        assert producer_in_flight(instance, 2) is None  # finished runs do not count
        assert producer_in_flight(instance, 0) == "setup"
        assert producer_in_flight(instance, 1, exclude_run_id="ft1") is None


def test_a_step_retries_later_instead_of_taking_a_stale_or_missing_policy():
    with dg.instance_for_test() as instance:
        add_run(instance, "ft1", dg.DagsterRunStatus.STARTED, ["finetune"], "1")
        with pytest.raises(dg.RetryRequested) as retry:
            policy_when_ready(instance, 1, run_id="samples2")
        assert retry.value.seconds_to_wait == 30
        instance.report_run_failed(instance.get_run_by_id("ft1"))
        with pytest.raises(Exception, match=r"policy\[1\] has never been materialized"):
            policy_when_ready(instance, 1, run_id="samples2")


def test_a_reported_policy_is_returned_with_its_version(tmp_path):
    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["1"]))
    def produce(context: dg.AssetExecutionContext):
        report_policy(context, 1, str(tmp_path / "m"), version="v123")

    with dg.instance_for_test() as instance:
        assert dg.materialize([produce], instance=instance, partition_key="1").success
        policy = lookup_policy(instance, 1)
        assert (policy.path, policy.version, policy.policy_id) == (str(tmp_path / "m"), "v123", "iteration=1")
