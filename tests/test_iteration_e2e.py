"""Whole ReST^EM iterations with the real model: E-step, M-step (1-2 optimizer steps), evaluation."""

import dagster as dg
import pytest

from restem_assets.assets.policy_lineage import PolicyNotFoundError, lookup_policy
from restem_assets.store.schemas import EVALUATIONS
from restem_assets.store.tables import ParquetStore
from tests.e2e_helpers import EVAL_ASSETS, ITERATION_ASSETS, SETUP_ASSETS, materialize, resources

pytestmark = pytest.mark.slow


def test_two_iterations_lineage_and_evaluation(tmp_path, model_path):
    root = tmp_path / "data"
    res = resources(root, model_path)
    instance = dg.DagsterInstance.ephemeral()
    store = ParquetStore(str(root))

    materialize(SETUP_ASSETS, res, instance)
    materialize(EVAL_ASSETS, res, instance, partition="0")

    # iteration 2 cannot run before iteration 1 produced its policy: a clear error, no fallback
    failed = materialize(ITERATION_ASSETS, res, instance, partition="2", raise_on_error=False)
    assert not failed.success
    assert not store.exists("samples", 2)
    with pytest.raises(PolicyNotFoundError, match=r"policy\[1\] has never been materialized"):
        lookup_policy(instance, 1)

    r1 = materialize(ITERATION_ASSETS, res, instance, partition="1")
    ft = {e.asset_key.to_user_string(): e.materialization for e in r1.get_asset_materialization_events()}
    assert ft["finetune"].metadata["init_from"].value == "base"
    assert ft["finetune"].metadata["optimizer_steps"].value == 2
    assert ft["finetune"].metadata["completion_tokens"].value >= ft["finetune"].metadata["examples"].value > 0
    # an immutable directory per fine-tune run: models/iteration=1/version=<run>
    (model_dir,) = (root / "models" / "iteration=1").glob("version=*")
    assert (model_dir / "config.json").is_file() and list(model_dir.glob("*.safetensors"))
    # the fine-tune reported policy[1] with that directory and version
    assert ft["policy"].partition == "1"
    assert lookup_policy(instance, 1).path.endswith(f"models/iteration=1/{model_dir.name}")
    assert lookup_policy(instance, 1).version == model_dir.name.removeprefix("version=")
    assert store.num_rows("finetune_log", 1) == 2

    materialize(EVAL_ASSETS, res, instance, partition="1")
    evals = store.read_table("evaluations", 1)
    assert evals.schema == EVALUATIONS and evals.num_rows == 4  # the 4 test problems
    for row in evals.to_pylist():
        assert row["k"] == 2 and 0 <= row["n_correct"] <= 2
        assert row["pass_at_k"] == (1.0 if row["n_correct"] else 0.0)
    eval_samples = store.read_table("eval_samples", 1).to_pylist()
    assert sorted({r["mode"] for r in eval_samples}) == ["greedy", "sampled"]
    assert {r["policy_id"] for r in eval_samples} == {"iteration=1"}

    # iteration 2 samples from iteration 1's policy (the paper's lineage), and fine-tunes the base again
    r2 = materialize(ITERATION_ASSETS, res, instance, partition="2")
    samples2 = store.read_table("samples", 2).to_pylist()
    assert {r["policy_id"] for r in samples2} == {"iteration=1"}
    assert {r["policy_path"] for r in samples2} == {lookup_policy(instance, 1).path}
    ft2 = {e.asset_key.to_user_string(): e.materialization for e in r2.get_asset_materialization_events()}
    assert ft2["finetune"].metadata["init_from"].value == "base"


def test_continue_from_previous_option(tmp_path, model_path):
    root = tmp_path / "data"
    res = resources(root, model_path, init_from="previous", finetune_method="lora", finetune_max_steps=1)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    materialize(ITERATION_ASSETS, res, instance, partition="1")
    r2 = materialize(ITERATION_ASSETS, res, instance, partition="2")
    ft2 = {e.asset_key.to_user_string(): e.materialization for e in r2.get_asset_materialization_events()}
    assert ft2["finetune"].metadata["init_from"].value == "iteration=1"
    assert ft2["finetune"].metadata["method"].value == "lora"
    # LoRA was merged on save: a plain model directory, no adapter files
    (model_dir,) = (root / "models" / "iteration=2").glob("version=*")
    assert (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").exists()
