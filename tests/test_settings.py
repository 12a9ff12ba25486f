"""One configuration path: Settings (environment or CLI flags) -> profile defaults -> overrides."""

from pathlib import Path

import pytest

from restem_assets.assets.resources import PROFILES, Settings, build_resources


def test_from_env_reads_every_variable_and_explicit_values_win(tmp_path):
    env = {"RESTEM_PROFILE": "tiny", "RESTEM_DATA_ROOT": str(tmp_path), "RESTEM_BASE_MODEL": "/m",
           "RESTEM_ENGINE": "transformers"}
    assert Settings.from_env(env) == Settings("tiny", str(tmp_path), "/m", "transformers")
    assert Settings.from_env(env, profile="ci", data_root=None).profile == "ci"
    assert Settings.from_env({}) == Settings()


def test_unknown_profile_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"'huge' is not one of \['ci', 'code', 'default', 'tiny', 'tiny_easy'\]"):
        Settings.from_env({"RESTEM_PROFILE": "huge"})


def test_overrides_merge_onto_the_profile_field_by_field():
    res = build_resources(Settings(profile="tiny"), {"task": {"seed": 7}, "rest": {"learning_rate": 1e-4}})
    assert (res["task"].train_size, res["task"].test_size, res["task"].seed) == (6, 4, 7)
    assert res["rest"].samples_per_problem == 2 and res["rest"].learning_rate == 1e-4


def test_settings_reach_the_resources_and_relative_roots_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = build_resources(Settings(data_root="somewhere", base_model="/models/x", engine="transformers"))
    assert res["storage"].root == str(tmp_path / "somewhere")
    assert res["model"].base_model == "/models/x" and res["engine"].kind == "transformers"
    assert build_resources(Settings(data_root="s3://bucket/r"))["storage"].root == "s3://bucket/r"


def test_every_profile_is_valid_for_the_resource_classes():
    for name in PROFILES:
        res = build_resources(Settings(profile=name))
        assert res["task"].spec().train_size == PROFILES[name]["task"]["train_size"]


def test_unknown_override_keys_are_refused():
    with pytest.raises(ValueError, match="unknown resources"):
        build_resources(Settings(), {"optimizer": {"lr": 1}})
    with pytest.raises(ValueError, match=r"resource .rest. has no fields \[.nonsense.\]"):
        build_resources(Settings(), {"rest": {"nonsense": 1}})


def test_importing_the_definitions_reads_no_environment_beyond_settings(monkeypatch, tmp_path):
    """The graph does not depend on the environment (no RESTEM_MAX_ITERATIONS at import time)."""
    import importlib

    import dagster_project.definitions as d
    import restem_assets.assets.partitions as parts

    monkeypatch.setenv("RESTEM_MAX_ITERATIONS", "3")
    importlib.reload(parts)
    assert len(parts.iteration_partitions.get_partition_keys()) == parts.MAX_ITERATIONS == 50
    assert Path(d.build_definitions(Settings(data_root=str(tmp_path))).resources["storage"].root) == tmp_path


def test_run_config_overrides_one_field_and_keeps_the_profile():
    """The launchpad case: run config that sets task.seed keeps every other value of the profile."""
    import dagster as dg

    from restem_assets.assets.resources import ReSTResource, TaskResource

    @dg.asset
    def probe(task: TaskResource, rest: ReSTResource):
        return dg.MaterializeResult(metadata={"train": task.train_size, "test": task.test_size, "seed": task.seed,
                                              "k": rest.samples_per_problem})

    defs = dg.Definitions(assets=[probe], jobs=[dg.define_asset_job("probe_job", selection=[probe])],
                          resources=build_resources(Settings(profile="tiny")))
    result = defs.resolve_job_def("probe_job").execute_in_process(
        run_config={"resources": {"task": {"config": {"seed": 7}}}})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert (meta["train"].value, meta["test"].value, meta["seed"].value, meta["k"].value) == (6, 4, 7, 2)
