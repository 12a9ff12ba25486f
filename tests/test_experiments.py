"""Named experiments without the model: names, overrides, the registry, prefixed Definitions, analyses report."""

from __future__ import annotations

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from restem_assets.assets.resources import build_resources, resolved_config
from restem_assets.environment import Settings
from restem_assets.experiments import (Experiment, ExperimentConfigError, check_name, experiment_root, key_prefix,
                                       parse_overrides, read_registry, register)
from restem_assets.reporting.progress_report import analyses_chart_png, analyses_markdown, analysis_frames, progress_frame
from restem_assets.store.tables import ParquetStore
from tests.test_sql_experiments import write_experiments


def test_names_roots_and_prefixes(tmp_path):
    assert key_prefix("default") == () and key_prefix("k4") == ("k4",)
    assert experiment_root("/d/", "default") == "/d" and experiment_root("/d", "k4") == "/d/experiment=k4"
    for bad in ("", "4k", "a/b", "a-b", "x" * 41, "a=b"):
        with pytest.raises(ValueError, match="experiment name"):
            check_name(bad)
    with pytest.raises(ValueError, match="experiment name"):
        Settings(experiment="bad name")


def test_parse_overrides():
    assert parse_overrides(["rest.samples_per_problem=4", "rest.init_from=previous", "task.config={\"a\": [1]}"]) == {
        "rest": {"samples_per_problem": 4, "init_from": "previous"}, "task": {"config": {"a": [1]}}}
    with pytest.raises(ValueError, match="resource.field=value"):
        parse_overrides(["samples_per_problem=4"])


def test_storage_of_a_named_experiment_is_its_namespace(tmp_path):
    res = build_resources(Settings(profile="tiny", data_root=str(tmp_path), experiment="k4"))
    assert res["storage"].root == f"{tmp_path}/experiment=k4"
    assert res["storage"].shared_root() == str(tmp_path) and res["storage"].experiment == "k4"
    default = build_resources(Settings(profile="tiny", data_root=str(tmp_path)))["storage"]
    assert default.root == str(tmp_path) and default.shared_root() == str(tmp_path)


def test_registry_records_and_refuses_another_configuration(tmp_path):
    store = ParquetStore(str(tmp_path))
    k4 = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 4}})
    register(store, Experiment("k4", "tiny", {"rest": {"samples_per_problem": 4}}, resolved_config(k4)))
    # the same configuration again, and a change that does not identify results (loop length): accepted
    longer = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 4, "target_iterations": 5}})
    register(store, Experiment("k4", "tiny", {"rest": {"samples_per_problem": 4}}, resolved_config(longer)))
    k8 = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 8}})
    with pytest.raises(ExperimentConfigError, match=r"rest.samples_per_problem: 4 -> 8"):
        register(store, Experiment("k4", "tiny", {"rest": {"samples_per_problem": 8}}, resolved_config(k8)))
    # replace (what `restem run --force` asks for once it has redone everything) records the new configuration
    register(store, Experiment("k4", "tiny", {"rest": {"samples_per_problem": 8}}, resolved_config(k8)), replace=True)
    known = read_registry(store)
    assert sorted(known) == ["k4"] and known["k4"].overrides == {"rest": {"samples_per_problem": 8}}


def test_the_default_experiment_is_refused_another_configuration_too(tmp_path):
    """Issue 23: `restem run --set task.train_size=24` on an existing default root overwrote the record (24 problems
    while samples[1] held 6). Now it is refused like a named experiment's, naming the field and the ways out."""
    store = ParquetStore(str(tmp_path))
    tiny = resolved_config(build_resources(Settings(profile="tiny")))
    register(store, Experiment("default", "tiny", {}, tiny))
    register(store, Experiment("default", "tiny", {}, tiny))  # the same again: accepted
    longer = build_resources(Settings(profile="tiny"), {"rest": {"target_iterations": 5}})  # --iterations 5
    register(store, Experiment("default", "tiny", {"rest": {"target_iterations": 5}}, resolved_config(longer)))
    bigger = build_resources(Settings(profile="tiny"), {"task": {"train_size": 24}})
    with pytest.raises(ExperimentConfigError) as refused:
        register(store, Experiment("default", "tiny", {"task": {"train_size": 24}}, resolved_config(bigger)))
    message = str(refused.value)
    assert "\n" not in message and "task.train_size: 6 -> 24" in message
    assert "its own settings (`--profile tiny`)" in message
    for way_out in ("--experiment NAME", "--data-root", "--force"):
        assert way_out in message
    assert read_registry(store)["default"].config["task"]["train_size"] == 6


def test_the_refusal_names_the_recorded_settings_of_the_default_experiment(tmp_path):
    store = ParquetStore(str(tmp_path))
    k4 = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 4, "target_iterations": 3}})
    register(store, Experiment("default", "tiny", {"rest": {"samples_per_problem": 4, "target_iterations": 3}},
                               resolved_config(k4)))
    with pytest.raises(ExperimentConfigError, match=r"its own settings \(`--profile tiny --set rest.samples_per_problem=4`\)"):
        register(store, Experiment("default", "tiny", {}, resolved_config(build_resources(Settings(profile="tiny")))))


def test_the_refusal_names_a_changed_default_the_command_did_not_ask_for(tmp_path):
    """A record made before a profile's default changed (the default profile's `rest.hints` became true): the way
    back to its results sets the recorded value, since `--profile NAME` alone now resolves to the new default."""
    store = ParquetStore(str(tmp_path))
    before = build_resources(Settings(profile="tiny"))
    register(store, Experiment("default", "tiny", {}, resolved_config(before)))
    register(store, Experiment("k8", "tiny", {"rest": {"samples_per_problem": 8}},
                               resolved_config(build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 8}}))))
    now = {"rest": {"hints": True}}  # what the profile gives after the change, not a --set of the command
    with pytest.raises(ExperimentConfigError, match=r"rest.hints: False -> True.*"
                       r"its own settings \(`--profile tiny --set rest.hints=false`\)"):
        register(store, Experiment("default", "tiny", {}, resolved_config(build_resources(Settings(profile="tiny"), now))))
    # a record written before `rest.hints` existed ran without hints: the same refusal, not a silent match
    older = ParquetStore(str(tmp_path / "older"))
    config = resolved_config(before)
    del config["rest"]["hints"]
    register(older, Experiment("default", "tiny", {}, config))
    with pytest.raises(ExperimentConfigError, match=r"rest.hints: False -> True.*"
                       r"its own settings \(`--profile tiny --set rest.hints=false`\)"):
        register(older, Experiment("default", "tiny", {}, resolved_config(build_resources(Settings(profile="tiny"), now))))
    register(older, Experiment("default", "tiny", {"rest": {"hints": False}}, resolved_config(before)))  # the way back
    changed = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 8, "hints": True}})
    with pytest.raises(ExperimentConfigError, match=r"its own settings \(`--experiment k8 --set "
                       r"rest.hints=false --set rest.samples_per_problem=8`\)"):
        register(store, Experiment("k8", "tiny", {"rest": {"samples_per_problem": 8}}, resolved_config(changed)))


def _cli_root(tmp_path):
    """A data root whose registry records the default experiment on the tiny profile (as a first `restem run
    --profile tiny` leaves it), with an empty instance: no step has run and none may."""
    from dagster_project import cli

    root, home = tmp_path / "data", tmp_path / "home"
    settings = Settings(profile="tiny", data_root=str(root))
    register(ParquetStore(str(root)), Experiment("default", "tiny", {}, resolved_config(build_resources(settings))))
    return cli, ["--profile", "tiny", "--data-root", str(root), "--dagster-home", str(home)], []


class Started(Exception):
    """Raised by the stand-in for `cli._execute`: the loop got as far as its first step."""


def _first_step(steps):
    def execute(defs, instance, job, *a, **k):
        steps.append(job)
        raise Started
    return execute


def test_restem_run_refuses_another_configuration_before_any_step(tmp_path, capsys, monkeypatch):
    cli, flags, steps = _cli_root(tmp_path)
    monkeypatch.setattr(cli, "_execute", _first_step(steps))
    assert cli.main(["run", *flags, "--set", "task.train_size=24"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "task.train_size: 6 -> 24" in err and "--force" in err
    assert steps == []
    assert read_registry(ParquetStore(flags[3]))["default"].config["task"]["train_size"] == 6


def test_restem_run_with_the_same_settings_or_another_loop_length_is_not_refused(tmp_path, capsys, monkeypatch):
    """No --set, and --iterations N (not identifying), pass the check: the loop starts (here: its first step)."""
    cli, flags, steps = _cli_root(tmp_path)
    monkeypatch.setattr(cli, "_execute", _first_step(steps))
    for extra in ([], ["--iterations", "5"]):
        with pytest.raises(Started):
            cli.main(["run", *flags, *extra])
    assert steps == ["setup", "setup"]


def test_restem_run_force_redoes_with_new_settings_and_then_replaces_the_record(tmp_path, capsys, monkeypatch):
    cli, flags, steps = _cli_root(tmp_path)
    registry = ParquetStore(flags[3])

    def execute(defs, instance, job, partition, *a, **k):
        if job != "report_progress":  # the forced steps: the old record stands until they are all done
            assert read_registry(registry)["default"].config["task"]["train_size"] == 6
        steps.append(job)
        return 0.0

    monkeypatch.setattr(cli, "_execute", execute)
    monkeypatch.setattr(cli, "_close_engines", lambda: None)
    monkeypatch.setattr("dagster_project.loop_state.next_step", lambda *a, **k: "done: faked")
    assert cli.main(["run", *flags, "--iterations", "1", "--force", "--set", "task.train_size=24"]) == 0
    assert steps == ["setup", "evaluate", "iteration", "evaluate", "report_progress"]
    assert read_registry(registry)["default"].config["task"]["train_size"] == 24


def test_definitions_of_a_named_experiment_are_prefixed(tmp_path):
    defs = build_definitions(Settings(profile="tiny", data_root=str(tmp_path), experiment="k4"))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"k4/samples", "k4/policy", "k4/finetune", "k4/evaluation", "k4/human_baseline", "k4/progress"} <= keys
    assert not any("/" not in k for k in keys)
    samples = graph.get(dg.AssetKey(["k4", "samples"]))
    assert samples.parent_keys == {dg.AssetKey(["k4", "policy"]), dg.AssetKey(["k4", "problems"])}
    # samples[3] reads policy[2] of the same experiment
    mapping = defs.resolve_assets_def(dg.AssetKey(["k4", "samples"])).get_partition_mapping(dg.AssetKey(["k4", "policy"]))
    assert mapping.downstream_partition_keys_by_upstream_partition_key["2"] in ("3", {"3"})
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert "k4/sft_set:sft_set_not_empty" in checks
    job = defs.resolve_job_def("iteration")
    assert job.tags["restem/experiment"] == "k4"
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "k4/samples", "k4/rewards", "k4/sft_set", "k4/finetune"}
    # the default experiment keeps the unprefixed keys existing instances and data use
    default = build_definitions(Settings(profile="tiny", data_root=str(tmp_path))).resolve_asset_graph()
    assert dg.AssetKey("samples") in default.get_all_asset_keys()


@pytest.mark.parametrize("experiment", ["default", "k4"])
def test_definitions_are_loadable_as_the_webserver_loads_them(tmp_path, experiment):
    """What `dagster dev` checks (unique op and job names, resources): execute_in_process alone does not.
    Then what it serves: every job of the experiment, its loop sensor, every resource an asset needs."""
    from dagster_project.jobs import build_jobs

    defs = build_definitions(Settings(profile="tiny", data_root=str(tmp_path), experiment=experiment))
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert set(build_jobs(key_prefix(experiment))) <= {job.name for job in repo.get_all_jobs()}
    assert len(repo.sensor_defs) == 1 and repo.sensor_defs[0].name.startswith("continue_rest_loop")
    needed = set().union(*(a.required_resource_keys for a in defs.resolve_asset_graph().assets_defs))
    assert needed - {"io_manager"} == set(repo.get_top_level_resources()), "each needed resource bound, none unused"


def test_named_experiment_definitions_use_its_recorded_overrides(tmp_path):
    store = ParquetStore(str(tmp_path))
    k4 = build_resources(Settings(profile="tiny"), {"rest": {"samples_per_problem": 4}})
    register(store, Experiment("k4", "tiny", {"rest": {"samples_per_problem": 4}}, resolved_config(k4)))
    defs = build_definitions(Settings(profile="tiny", data_root=str(tmp_path), experiment="k4"))
    assert defs.resources["rest"].samples_per_problem == 4


def test_a_changed_default_is_kept_at_its_recorded_value(tmp_path):
    """A data root recorded before the default profile turned hints on goes on without hints, in the webserver's
    Definitions and in a command without --set, and says so; a setting the record got from --set is not kept
    (the registry refuses it, naming it); a new root or experiment takes today's default."""
    import argparse

    from dagster_project import cli
    from dagster_project.definitions import recorded_settings

    store = ParquetStore(str(tmp_path))
    settings = Settings(profile="default", data_root=str(tmp_path))
    assert build_definitions(settings).resources["rest"].hints is True  # nothing recorded yet: today's default
    before = resolved_config(build_resources(settings, {"rest": {"hints": False, "samples_per_problem": 8}}))
    del before["rest"]["hints"]  # written before the setting existed
    register(store, Experiment("default", "default", {"rest": {"samples_per_problem": 8}}, before))
    fixed = resolved_config(build_resources(settings, {"rest": {"sampling": "fixed"}}))
    del fixed["rest"]["hints"]
    register(store, Experiment("fixed", "default", {"rest": {"sampling": "fixed"}}, fixed))

    overrides, kept = recorded_settings(settings)
    assert kept == {"rest": {"hints": False}} and overrides == kept  # default: its --set K=8 is not taken over
    named = Settings(profile="default", data_root=str(tmp_path), experiment="fixed")
    assert recorded_settings(named) == ({"rest": {"sampling": "fixed", "hints": False}}, {"rest": {"hints": False}})
    rest = build_definitions(named).resources["rest"]
    assert rest.hints is False and rest.sampling == "fixed"
    assert recorded_settings(Settings(profile="default", data_root=str(tmp_path), experiment="new")) == ({}, {})
    assert recorded_settings(Settings(profile="tiny", data_root=str(tmp_path))) == ({}, {})  # another profile

    # the CLI: a command without --set keeps hints off and records nothing new; with --set it is refused
    args = argparse.Namespace(command="run", profile="default", data_root=str(tmp_path), dagster_home=str(tmp_path / "h"),
                              experiment="fixed", overrides=[], force=False, iterations=3)
    settings = cli._settings(args)
    defs = build_definitions(settings, cli._overrides(args, settings))
    assert defs.resources["rest"].hints is False and defs.resources["rest"].target_iterations == 3
    cli._register(args, settings, defs)
    assert read_registry(store)["fixed"].overrides == {"rest": {"sampling": "fixed"}}
    args.overrides = ["rest.sampling=fixed"]
    with pytest.raises(ExperimentConfigError, match=r"rest.hints: False -> True.*--set rest.hints=false"):
        cli._register(args, settings, build_definitions(settings, cli._overrides(args, settings)))


def test_analyses_report_over_two_experiments(tmp_path):
    root = str(tmp_path / "data")
    write_experiments(root)
    frames = analysis_frames(root, experiment="default")
    compare = frames["compare"]
    assert compare["experiment"].to_list() == ["default", "k4", "default", "k4", "default"]
    # default 1 vs its base: t1 gained, t3 kept -> +33.3 points; k4 1 vs default 1: t1 lost, t2 gained -> 0
    assert compare["gain_vs_base_ci"].to_list()[2].startswith("+33.3 [")
    assert compare["vs_reference_ci"].to_list()[3].startswith("+0.0 [")
    assert compare["vs_reference_ci"].to_list()[1] is None  # both base models: nothing to compare
    md = analyses_markdown(frames, "default")
    assert "| vs human data |" in md and "every experiment" in md
    for title in ("Experiments side by side", "Per-problem learning", "Greedy pass@1 by difficulty", "Cost per iteration"):
        assert title in md
    assert "| test | greedy | 2 | 2 / 3 | 1 | 1 | 1 |" in md  # t2 new, t1 kept, t3 forgotten
    assert "left out" not in md and "Human-data baseline" not in md  # no baseline in this history
    png = analyses_chart_png(progress_frame(root), frames)
    assert png.startswith(b"\x89PNG")


def test_human_baseline_row_and_intervals(tmp_path):
    """The human-data row: its greedy pass@1 and paired differences to the base model and to iteration 1."""
    from restem_assets.store import schemas
    from restem_assets.reporting.progress_report import progress_markdown

    root = str(tmp_path / "data")
    write_experiments(root)
    store = ParquetStore(root)
    store.write_table("human_sft_set", [{"problem_id": p, "sample_idx": 0, "prompt": "Q", "completion": "A", "n_tokens": None,
                                         "source": "human"}
                                        for p in ("p1", "p2")], schemas.SFT_SET, iteration=1)
    store.write_table("human_evaluations", [
        {"problem_id": pid, "greedy_answer": "1", "greedy_correct": ok, "k": 4, "n_correct": n, "pass_at_1": n / 4,
         "pass_at_k": float(n > 0), "majority_answer": "1", "majority_correct": ok}
        for pid, ok, n in (("t1", True, 2), ("t2", True, 1), ("t3", False, 0))], schemas.EVALUATIONS, iteration=1)
    frames = analysis_frames(root, experiment="default")
    h = frames["human"].row(0, named=True)
    assert h["greedy_pass_at_1"] == pytest.approx(2 / 3) and h["sft_examples"] == 2
    assert h["vs_base_ci"].startswith("+33.3 [")  # base: t3 only; human: t1 t2
    assert h["vs_iteration_1_ci"].startswith("+0.0 [")  # iteration 1: t1 t3
    table = progress_markdown(progress_frame(root), human=frames["human"])
    assert "| human data | 66.7% | +33.3 [" in table
    assert "Human-data baseline" in analyses_markdown(frames)
    # another experiment has no baseline
    assert analysis_frames(root, experiment="k4")["human"].height == 0


def test_sensor_of_a_named_experiment_reads_its_own_keys():
    """k4's sensor sees k4's materializations only: the default experiment's progress does not count for it."""
    from dagster_project.jobs import build_jobs
    from dagster_project.sensors import build_continue_rest_loop
    from restem_assets.assets.resources import ReSTResource

    sensor = build_continue_rest_loop(build_jobs(("k4",)), ("k4",))
    assert sensor.name == "continue_rest_loop_k4"  # its on/off state is not the default experiment's
    with dg.instance_for_test() as instance:
        for key, partition in (("problems", None), ("policy", "0")):  # the default experiment's set-up
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
        result = sensor(dg.build_sensor_context(instance=instance, resources={"rest": ReSTResource()}))
        assert result.job_name == "setup"
        for key, partition in ((["k4", "problems"], None), (["k4", "policy"], "0")):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
        result = sensor(dg.build_sensor_context(instance=instance, resources={"rest": ReSTResource()}))
        assert (result.job_name, result.partition_key) == ("evaluate", "0")
