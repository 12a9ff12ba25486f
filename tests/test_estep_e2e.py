"""The first half of an iteration with the real SmolLM2 model and a real Dagster instance."""

import dagster as dg
import pytest

from restem_assets.assets.resources import TaskResource
from restem_assets.store.schemas import REWARDS, SAMPLES, SFT_SET
from restem_assets.store.tables import ParquetStore
from tests.e2e_helpers import ESTEP_ASSETS, SETUP_ASSETS, materialize, resources

pytestmark = pytest.mark.slow


def test_estep_on_default_task(tmp_path, model_path):
    """problems -> samples -> rewards -> sft_set on the default chain_sum task (tiny sizes)."""
    task = TaskResource(train_size=4, test_size=2)
    res = resources(tmp_path / "data", model_path, task=task, samples_per_problem=2, max_new_tokens=16)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    result = materialize(ESTEP_ASSETS, res, instance, partition="1", raise_on_error=False)

    store = ParquetStore(str(tmp_path / "data"))
    samples = store.read_table("samples", 1)
    assert samples.schema == SAMPLES and samples.num_rows == 4 * 2
    rows = samples.to_pylist()
    assert {r["policy_id"] for r in rows} == {"base"}
    assert all(r["finish_reason"] in ("stop", "length") and 0 <= r["n_tokens"] <= 16 for r in rows)
    assert all(r["n_tokens"] == 16 for r in rows if r["finish_reason"] == "length")
    assert all("<|im_start|>assistant" in r["prompt"] for r in rows)
    assert sorted({(r["problem_id"], r["sample_idx"]) for r in rows}) == sorted(
        {(r["problem_id"], i) for r in rows for i in range(2)})

    rewards = store.read_table("rewards", 1)
    assert rewards.schema == REWARDS and rewards.num_rows == 8
    assert set(rewards.column("reason").to_pylist()) <= {"correct", "wrong", "no_answer", "unparsable"}

    sft = store.read_table("sft_set", 1)
    assert sft.schema == SFT_SET
    n_correct = sum(r == 1.0 for r in rewards.column("reward").to_pylist())
    assert sft.num_rows <= n_correct
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["no_test_problems"] is True
    assert checks["sft_set_not_empty"] is (sft.num_rows > 0)


def test_estep_keeps_correct_samples_and_metadata(tmp_path, model_path):
    """On problems the model can answer, correct samples reach the SFT set; metadata is recorded."""
    res = resources(tmp_path / "data", model_path)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    result = materialize(ESTEP_ASSETS, res, instance, partition="1")
    store = ParquetStore(str(tmp_path / "data"))
    rewards = store.read_table("rewards", 1).to_pylist()
    correct = {(r["problem_id"], r["sample_idx"]) for r in rewards if r["reward"] == 1.0}
    assert correct, "the real model answered none of the easy sums"
    sft = store.read_table("sft_set", 1).to_pylist()
    assert {(r["problem_id"], r["sample_idx"]) for r in sft} <= correct
    mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert mats["samples"]["dagster/row_count"].value == 8 * 4
    assert mats["rewards"]["correct"].value == len(correct)
    assert mats["sft_set"]["dagster/row_count"].value == len(sft)
    assert "preview" in mats["samples"]
