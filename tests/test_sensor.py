"""The loop sensor decides the next step from the instance and launches one run at a time."""

import dagster as dg

from dagster_project.sensors import continue_rest_loop
from restem_assets.assets.resources import ReSTResource


def test_sensor_starts_with_setup_on_an_empty_instance():
    with dg.instance_for_test() as instance:
        result = continue_rest_loop(dg.build_sensor_context(instance=instance, resources={"rest": ReSTResource()}))
        assert isinstance(result, dg.RunRequest)
        assert result.job_name == "setup"


def test_sensor_then_evaluates_the_base_model(monkeypatch):
    with dg.instance_for_test() as instance:
        for key, partition in (("problems", None), ("policy", "0")):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
        result = continue_rest_loop(dg.build_sensor_context(instance=instance, resources={"rest": ReSTResource()}))
        assert (result.job_name, result.partition_key) == ("evaluate", "0")


def test_sensor_waits_while_a_run_is_in_progress():
    with dg.instance_for_test() as instance:
        instance.add_run(dg.DagsterRun(job_name="iteration", run_id="busy-run", status=dg.DagsterRunStatus.STARTED))
        result = continue_rest_loop(dg.build_sensor_context(instance=instance, resources={"rest": ReSTResource()}))
        assert isinstance(result, dg.SkipReason) and "busy-run" in result.skip_message


def test_sensor_stops_at_the_target_from_the_rest_resource():
    with dg.instance_for_test() as instance:
        for key, partition, score in (("problems", None, 0), ("policy", "0", 0), ("evaluation", "0", 0.3),
                                      ("samples", "1", 0), ("rewards", "1", 0), ("sft_set", "1", 0),
                                      ("finetune", "1", 0), ("evaluation", "1", 0.5)):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=key, partition=partition, metadata={"greedy_pass_at_1": score}))
        done = continue_rest_loop(dg.build_sensor_context(instance=instance,
                                                          resources={"rest": ReSTResource(target_iterations=1)}))
        assert isinstance(done, dg.SkipReason) and "done: 1 iterations" in done.skip_message
        more = continue_rest_loop(dg.build_sensor_context(instance=instance,
                                                          resources={"rest": ReSTResource(target_iterations=2)}))
        assert (more.job_name, more.partition_key) == ("iteration", "2")
