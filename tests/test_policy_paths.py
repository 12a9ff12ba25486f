"""Policies under the data root are recorded relative to it and read under the reader's data root: a data root
copied together with its instance uses its own models, and a missing or damaged copy is noticed.

A real Dagster instance (on disk, so it can be copied), the real `base_model`, `finetune` and `samples` assets;
a stand-in trainer writes a tiny model directory (what model_cache.check_model_dir requires) and a scripted
engine stands in for generation."""

import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from restem_assets.assets import estep, mstep, policy_lineage
from restem_assets.assets.policy_lineage import POLICY_KEY, lookup_policy, require_policy
from restem_assets.assets.resources import ModelResource, ReSTResource, StorageResource
from restem_assets.generation import Completion
from restem_assets.models.model_cache import ModelDirError
from restem_assets.models.policies import PolicyNotFoundError, policy_location, resolve_location
from restem_assets.store.schemas import PROBLEMS, SFT_SET
from restem_assets.store.tables import ParquetStore
from restem_assets.training.finetune import FinetuneResult

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def tiny_model(path: Path) -> Path:
    """A directory with a config, weights and a tokenizer file: enough for the checks, not to load."""
    path.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        (path / name).write_text("{}")
    return path


def stand_in_trainer(init, records, out_dir, settings):
    tiny_model(Path(out_dir))
    return FinetuneResult(examples=len(records), completion_tokens=3, steps=1, seconds=0.01, final_loss=0.5,
                          log=[{"step": 1, "epoch": 1.0, "loss": 0.5, "learning_rate": 1e-5}])


class ScriptedEngine:
    name = "scripted"

    def render_prompt(self, messages) -> str:
        return messages[-1]["content"]

    def generate(self, prompts, params, progress=None, seeds=None):
        for i in range(len(prompts)):
            yield [Completion(i, k, "Answer: 1", 3, "stop") for k in range(params.n)]

    def close(self) -> None:
        pass


class ScriptedEngines(dg.ConfigurableResource):
    """Stands in for EngineResource, remembering nothing: what was opened is in the samples rows."""

    @contextmanager
    def open(self, model: str, expected_tokens: int | None = None, planned_tokens: int = 0):
        yield ScriptedEngine()


def write_history(root: Path) -> None:
    store = ParquetStore(str(root))
    store.write_table("problems", [
        {"problem_id": f"g{i}", "split": "train" if i < 2 else "test", "task": "gsm8k", "domain": "math",
         "verifier": "math", "question": f"{i} + 1?", "answer": str(i + 1), "solution": "", "metadata": "{}"}
        for i in range(3)], PROBLEMS)
    store.write_table("sft_set", [{"problem_id": "g0", "sample_idx": 0, "prompt": "q", "completion": "Answer: 1",
                                   "n_tokens": 3, "source": "self"}] * 2, SFT_SET, 1)


def resources(root: Path, base: Path) -> dict:
    return {"storage": StorageResource(root=str(root)), "model": ModelResource(base_model=str(base)),
            "rest": ReSTResource(samples_per_problem=2, max_new_tokens=8), "engine": ScriptedEngines()}


def instance_at(home: Path) -> dg.DagsterInstance:
    """A persistent instance in `home` (a DAGSTER_HOME: SQLite event log and run storage in files there)."""
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(str(home))


def recorded_path(instance: dg.DagsterInstance, iteration: int) -> str:
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=POLICY_KEY, asset_partitions=[str(iteration)]), limit=1).records
    return str(record.asset_materialization.metadata["path"].value)


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["1"]))
def reads_policy(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """What every generating stage does first (common.partition_policy): require_policy under its storage."""
    return dg.MaterializeResult(metadata={"policy_path": require_policy(context, 1).path})


def read_through(instance: dg.DagsterInstance, res: dict) -> str:
    result = dg.materialize([reads_policy], resources={"storage": res["storage"]}, instance=instance,
                            partition_key="1")
    return str(result.asset_materializations_for_node("reads_policy")[0].metadata["policy_path"].value)


def failure_of(instance: dg.DagsterInstance, res: dict) -> str:
    result = dg.materialize([reads_policy], resources={"storage": res["storage"]}, instance=instance,
                            partition_key="1", raise_on_error=False)
    assert not result.success
    return str(result.get_step_failure_events()[0].step_failure_data.error)  # with its cause


@pytest.fixture
def trained_root(tmp_path, monkeypatch):
    """Root A with problems, sft_set[1], policy[0] (a base model outside the root) and policy[1] (fine-tuned
    into A by the real `finetune` asset), its instance in A/home (closed again)."""
    monkeypatch.setattr(mstep, "run_finetune", stand_in_trainer)
    base = tiny_model(tmp_path / "base")
    a = tmp_path / "A"
    write_history(a / "data")
    res = resources(a / "data", base)
    with instance_at(a / "home") as instance:
        assert dg.materialize([policy_lineage.base_model, policy_lineage.policy], resources=res,
                              instance=instance).success
        assert dg.materialize([policy_lineage.policy, mstep.finetune], resources=res, instance=instance,
                              partition_key="1").success
    return tmp_path, base


def test_a_fine_tune_is_recorded_relative_to_the_data_root_and_the_base_model_as_given(trained_root):
    tmp_path, base = trained_root
    with instance_at(tmp_path / "A" / "home") as instance:
        assert recorded_path(instance, 0) == str(base)  # outside the data root: as given
        relative = recorded_path(instance, 1)
        assert relative.startswith("models/iteration=1/version=") and "/" + str(tmp_path) not in relative
        policy = lookup_policy(instance, 1, data_root=str(tmp_path / "A" / "data"))
        assert policy.path == f"file://{tmp_path}/A/data/{relative}"
        assert lookup_policy(instance, 1).path == policy.path  # no data root given: the one it was recorded under
        assert lookup_policy(instance, 0, data_root=str(tmp_path / "A" / "data")).path == str(base)


def test_a_copied_data_root_and_instance_read_their_own_models(trained_root):
    tmp_path, base = trained_root
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(a, b)
    relative = None
    with instance_at(a / "home") as instance_a:
        relative = recorded_path(instance_a, 1)
    shutil.rmtree(a / "data" / "models")  # damage the original: the copy must not depend on it
    res_b = resources(b / "data", base)
    copy = b / "data" / relative
    with instance_at(b / "home") as instance_b:
        assert read_through(instance_b, res_b) == f"file://{copy}"
        assert lookup_policy(instance_b, 1, data_root=str(b / "data")).path == f"file://{copy}"
        # The real E-step of iteration 2 samples from B's copy, and its rows say so.
        assert dg.materialize([policy_lineage.policy, estep.samples], resources=res_b, instance=instance_b,
                              partition_key="2").success
        rows = ParquetStore(str(b / "data")).read_table("samples", 2).to_pylist()
        assert len(rows) == 2 * 2 and {r["policy_path"] for r in rows} == {f"file://{copy}"}

        # Damage to B's copy is noticed, naming it: weights gone, then the whole directory.
        (copy / "model.safetensors").unlink()
        message = failure_of(instance_b, res_b)
        assert f"model directory {copy} is not usable: missing weights" in message and "policy[1]" in message
        with pytest.raises(ModelDirError, match=str(copy)):
            lookup_policy(instance_b, 1, data_root=str(b / "data"))
        shutil.rmtree(copy)
        message = failure_of(instance_b, res_b)
        assert f"its model directory {copy} does not exist" in message
        with pytest.raises(PolicyNotFoundError, match=f"recorded as {relative} under the data root {b / 'data'}"):
            lookup_policy(instance_b, 1, data_root=str(b / "data"))


def test_a_base_model_under_the_data_root_is_recorded_relative_to_it(tmp_path):
    root = tmp_path / "data"
    base = tiny_model(root / "my-base")
    with instance_at(tmp_path / "home") as instance:
        assert dg.materialize([policy_lineage.base_model, policy_lineage.policy], resources=resources(root, base),
                              instance=instance).success
        assert recorded_path(instance, 0) == "my-base"
        moved = tmp_path / "moved"
        root.rename(moved)
        assert lookup_policy(instance, 0, data_root=str(moved)).path == f"file://{moved}/my-base"


def test_old_records_with_absolute_paths_load_as_before(tmp_path):
    """Written before relative paths (or a model outside the data root): returned as recorded, unchecked."""
    with instance_at(tmp_path / "home") as instance:
        for partition, path in (("0", "/models/base"), ("1", f"file://{tmp_path}/old/models/iteration=1/version=v1")):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                "policy", partition=partition, metadata={"path": dg.MetadataValue.path(path), "version": "v"}))
        assert lookup_policy(instance, 0, data_root=str(tmp_path / "new")).path == "/models/base"
        assert lookup_policy(instance, 1, data_root=str(tmp_path / "new")).path == \
            f"file://{tmp_path}/old/models/iteration=1/version=v1"
        assert lookup_policy(instance, 1).path == f"file://{tmp_path}/old/models/iteration=1/version=v1"


@pytest.mark.parametrize("path, root, recorded", [
    ("file:///d/root/models/iteration=1/version=a", "/d/root", "models/iteration=1/version=a"),
    ("/d/root/models/iteration=1/version=a", "/d/root/", "models/iteration=1/version=a"),
    ("file:///d/root/experiment=x/models/iteration=1/version=a", "/d/root", "experiment=x/models/iteration=1/version=a"),
    ("/d/root2/models/m", "/d/root", "/d/root2/models/m"),  # a sibling with a longer name is outside
    ("/d/other/m", "/d/root", "/d/other/m"),
    ("/d/root", "/d/root", "/d/root"),
    ("memory:///bucket/r/models/iteration=1/version=a", "memory://bucket/r", "models/iteration=1/version=a"),
    ("s3://bucket/r/models/m", "memory://bucket/r", "s3://bucket/r/models/m"),  # another file system
    ("s3://bucket/rx/models/m", "s3://bucket/r", "s3://bucket/rx/models/m"),
    ("/d/root/models/m", "s3://bucket/d/root", "/d/root/models/m"),
])
def test_where_a_model_is_recorded(path, root, recorded):
    assert policy_location(path, root) == recorded


def test_relative_records_resolve_under_the_readers_root():
    assert resolve_location("models/m", "/new/root/") == "file:///new/root/models/m"
    assert resolve_location("models/m", "s3://bucket/r") == "s3://bucket/r/models/m"
    assert resolve_location("/abs/m", "/new/root") == "/abs/m"
    assert resolve_location("file:///abs/m", "/new/root") == "file:///abs/m"
