"""A ReST^EM E-step on code problems through the same assets, with the real model and the real sandbox."""

import json

import dagster as dg
import pytest

from restem_assets.assets.resources import TaskResource
from restem_assets.reporting.analytics import run_query
from restem_assets.store.tables import ParquetStore
from tests.e2e_helpers import ESTEP_ASSETS, FIXTURES, SETUP_ASSETS, materialize, resources

pytestmark = pytest.mark.slow

CODE_REASONS = {"passed", "syntax_error", "runtime_error", "wrong_answer", "timeout", "memory", "sandbox_violation",
                "no_program"}


@pytest.mark.parametrize("task", [
    TaskResource(kind="humaneval", train_size=3, test_size=2, test_fraction=0.3),
    TaskResource(kind="apps", train_path=str(FIXTURES / "apps_sample.jsonl"), train_size=3, test_size=2,
                 test_fraction=0.4),
], ids=["humaneval", "apps"])
def test_code_estep(tmp_path, model_path, task):
    root = tmp_path / "data"
    res = resources(root, model_path, task=task, samples_per_problem=2, max_new_tokens=64)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    result = materialize(ESTEP_ASSETS, res, instance, partition="1", raise_on_error=False)

    store = ParquetStore(str(root))
    problems = store.read_table("problems").to_pylist()
    assert {p["domain"] for p in problems} == {"code"} and {p["verifier"] for p in problems} == {"code"}
    train = [p for p in problems if p["split"] == "train"]
    rewards = store.read_table("rewards", 1).to_pylist()
    assert len(rewards) == 2 * len(train)
    for r in rewards:
        assert r["reason"] in CODE_REASONS
        assert r["reward"] == (1.0 if r["reason"] == "passed" else 0.0)
        assert isinstance(json.loads(r["details"]), dict)
    # the SFT set holds exactly the passing programs; its checks agree with it
    n_passed = sum(r["reward"] == 1.0 for r in rewards)
    sft = store.read_table("sft_set", 1)
    assert sft.num_rows <= n_passed
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["sft_set_not_empty"] is (sft.num_rows > 0)
    # failure kinds per iteration through the SQL layer
    reasons = run_query(str(root), "reward_reasons")
    assert reasons["n"].sum() == len(rewards)
    assert set(reasons["reason"].to_list()) <= CODE_REASONS


def test_function_synthesis_iteration_reaches_the_m_step(tmp_path, model_path):
    """The code loop on the procedural task with the real model: samples pass the real sandbox, the SFT set
    is not empty, the fine-tune trains and reports policy[1], and the transfer check scores HumanEval."""
    from restem_assets.assets import evaluate
    from tests.e2e_helpers import ITERATION_ASSETS

    root = tmp_path / "data"
    task = TaskResource(kind="function_synthesis", name="function_synthesis", config={"levels": [1]},
                        train_size=6, test_size=2, seed=3)
    res = resources(root, model_path, task=task, samples_per_problem=4, max_new_tokens=64, finetune_max_steps=1,
                    transfer_benchmarks=["humaneval"], transfer_limit=2, transfer_max_new_tokens=32)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    materialize(ITERATION_ASSETS, res, instance, partition="1")

    store = ParquetStore(str(root))
    samples = store.read_table("samples", 1).to_pylist()
    rewards = store.read_table("rewards", 1).to_pylist()
    assert len(samples) == len(rewards) == 6 * 4
    # a code answer ends where its block closes: nothing generated after a closing fence
    for s in samples:
        if s["finish_reason"] == "stop" and "```\n" in s["completion"]:
            assert s["completion"].endswith("```\n"), s["completion"]
    passed = [r for r in rewards if r["reward"] == 1.0]
    assert passed and all(r["verifier"] == "code" and r["reason"] == "passed" for r in passed)
    sft = store.read_table("sft_set", 1)
    assert 0 < sft.num_rows <= len(passed)
    assert store.num_rows("finetune_log", 1) >= 1
    assert instance.get_latest_materialization_event(dg.AssetKey("policy")) is not None
    assert "1" in instance.get_materialized_partitions(dg.AssetKey("policy"))

    materialize([policy_asset(), evaluate.transfer_evaluation], res, instance, partition="1")
    transfer = store.read_table("transfer_evaluations", 1).to_pylist()
    assert [t["benchmark"] for t in transfer] == ["humaneval", "humaneval"]
    assert {t["reason"] for t in transfer} <= CODE_REASONS
    assert store.num_rows("transfer_samples", 1) == 2
    out = run_query(str(root), "transfer_pass_rate")
    assert out["problems"].to_list() == [2]


def policy_asset():
    from restem_assets.assets import policy_lineage

    return policy_lineage.policy
