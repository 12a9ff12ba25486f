"""A ReST^EM E-step on code problems through the same assets, with the real model and the real sandbox."""

import json

import dagster as dg
import pytest

from restem_assets.assets.resources import TaskResource
from restem_assets.analytics import run_query
from restem_assets.storage import ParquetStore
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
