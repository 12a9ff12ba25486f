"""One configuration path: Settings (environment or CLI flags) -> profile -> overrides, each setting defined once."""

import dataclasses
import re
from pathlib import Path

import pytest

from restem_assets.assets.resources import RESOURCE_CLASSES, build_resources
from restem_assets.environment import VARIABLES, Settings
from restem_assets.profiles import PROFILES, ConfigError
from restem_assets.rest_settings import ReSTSettings
from restem_assets.tasks.spec import TaskSpec
from restem_assets.training.finetune import FinetuneSettings

ROOT = Path(__file__).resolve().parent.parent


def test_from_env_reads_every_variable_and_explicit_values_win(tmp_path):
    env = {"RESTEM_PROFILE": "tiny", "RESTEM_DATA_ROOT": str(tmp_path), "RESTEM_BASE_MODEL": "/m",
           "RESTEM_ENGINE": "transformers", "DAGSTER_HOME": "/h", "RESTEM_EXPERIMENT": "k4", "OTHER": "x"}
    assert Settings.from_env(env) == Settings(profile="tiny", data_root=str(tmp_path), base_model="/m",
                                              engine="transformers", dagster_home="/h", experiment="k4")
    assert Settings.from_env(env).environ() == {k: v for k, v in env.items() if k != "OTHER"}
    assert Settings.from_env(env, profile="ci", data_root=None).profile == "ci"
    assert Settings.from_env({}) == Settings()


def test_unknown_profile_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"'huge' is not one of ci, code, default, tiny, tiny_easy"):
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
        expected = PROFILES[name].get("task", {}).get("train_size", TaskSpec().train_size)
        assert res["task"].spec().train_size == expected


def test_unknown_override_keys_are_refused():
    with pytest.raises(ConfigError, match="no resource named 'optimizer'; the resources are engine, model, rest"):
        build_resources(Settings(), {"optimizer": {"lr": 1}})
    with pytest.raises(ConfigError, match=r"resource 'rest' has no field 'nonsense'; its fields: "):
        build_resources(Settings(), {"rest": {"nonsense": 1}})


@pytest.mark.parametrize("overrides, message", [
    ({"rest": {"samples_per_problem": "abc"}}, r"^rest\.samples_per_problem: input should be a valid integer.*'abc'"),
    ({"rest": {"temperature": -1}}, r"^rest\.temperature must be a finite number >= 0, got -1"),
    ({"rest": {"finetune_max_steps": 0}}, r"^rest\.finetune_max_steps = 0 gives zero optimizer steps"),
    ({"task": {"kind": "nosuch"}}, r"^TaskSpec\.kind must be one of"),
    ({"engine": {"kind": "fast"}}, r"^engine\.kind must be 'auto', 'transformers' or 'vllm', got 'fast'"),
])
def test_a_bad_value_is_one_line_naming_the_setting_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_resources(Settings(profile="tiny"), overrides)
    assert "\n" not in str(info.value)


def test_the_default_profile_is_the_class_defaults_plus_hints():
    """The classes say the paper's method (fixed K, no hints); `make demo`'s profile adds only hinted
    rationales, the ablation's winner, so `--set rest.hints=false` is the paper's method again."""
    assert PROFILES["default"] == {"rest": {"hints": True}} and ReSTSettings().hints is False
    res = build_resources(Settings())
    assert res["rest"].settings() == dataclasses.replace(ReSTSettings(), hints=True)
    assert res["rest"].samples_per_problem == 4 and res["rest"].sampling == "fixed"
    paper = build_resources(Settings(), {"rest": {"hints": False}})
    assert paper["rest"].settings() == ReSTSettings()
    assert res["task"].spec() == TaskSpec()


@pytest.mark.parametrize("key, settings_cls", [("rest", ReSTSettings), ("task", TaskSpec)])
def test_every_library_setting_is_a_resource_and_launchpad_field(key, settings_cls):
    """A setting is defined once, in the library class: the resource, its launchpad config schema and the
    fine-tune's own settings are derived from it (adding a field there is the one edit)."""
    import dagster as dg

    names = {f.name for f in dataclasses.fields(settings_cls)}
    assert set(RESOURCE_CLASSES[key].model_fields) == names
    resource = build_resources(Settings(profile="tiny"))[key]
    schema = resource.get_resource_definition().config_schema.config_type
    assert set(schema.fields) == names and isinstance(resource, dg.ConfigurableResource)
    if key == "rest":  # the fine-tune's settings are projected by name from the same object
        assert {f.name for f in dataclasses.fields(FinetuneSettings)} <= names
        ft = resource.finetune_settings(3)
        assert ft.seed == resource.seed + 3 and ft.learning_rate == resource.learning_rate


def test_the_environment_is_read_in_one_module():
    """Only restem_assets/environment.py reads RESTEM_* / DAGSTER_HOME variables (child processes aside)."""
    readers = re.compile(r"(os\.environ(\.get)?|os\.getenv|environ\.get)\(\s*[\"'](RESTEM_|DAGSTER_HOME)|"
                         r"os\.environ\[\s*[\"'](RESTEM_|DAGSTER_HOME)")
    offenders = [str(p.relative_to(ROOT)) for folder in ("restem_assets", "dagster_project", "deploy")
                 for p in (ROOT / folder).rglob("*.py") if readers.search(p.read_text())]
    assert offenders == []
    assert set(VARIABLES.values()) == {f.name for f in dataclasses.fields(Settings)}


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
