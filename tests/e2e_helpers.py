"""Shared set-up for the end-to-end tests that use the real model and a real Dagster instance."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from restem_assets.assets.resources import EngineResource, ModelResource, ReSTResource, StorageResource, TaskResource
from restem_assets.assets import estep, evaluate, mstep, policy_lineage, problems

FIXTURES = Path(__file__).parent / "fixtures"
SETUP_ASSETS = [problems.problems, policy_lineage.base_model, policy_lineage.policy]
ESTEP_ASSETS = [policy_lineage.policy, estep.samples, estep.rewards, estep.sft_set]
ITERATION_ASSETS = ESTEP_ASSETS + [mstep.finetune]
EVAL_ASSETS = [policy_lineage.policy, evaluate.evaluation]


# One-digit two-term sums: the real 135M model answers about a third of its samples
# correctly (in the strict format), so every tiny iteration has a non-empty SFT set.
EASY_CHAIN_SUM = {"kind": "reasoning_gym", "name": "chain_sum", "train_size": 8, "test_size": 4,
                  "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}


def easy_task() -> TaskResource:
    return TaskResource(**EASY_CHAIN_SUM)


def resources(root: Path, model_path: str, task: TaskResource | None = None, **rest) -> dict:
    settings = dict(samples_per_problem=4, max_new_tokens=24, eval_samples=2, eval_max_new_tokens=24,
                    finetune_max_steps=2, batch_size=4)
    settings.update(rest)
    return {
        "storage": StorageResource(root=str(root)),
        "model": ModelResource(base_model=model_path),
        "task": task or easy_task(),
        "rest": ReSTResource(**settings),
        "engine": EngineResource(kind="transformers", batch_size=32),
    }


def materialize(assets, res, instance, partition=None, raise_on_error=True):
    return dg.materialize(assets, resources=res, instance=instance, partition_key=partition,
                          raise_on_error=raise_on_error)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str], interval: float = 0.1) -> Any:
    """Poll `predicate` every `interval` seconds until it returns something true, and return that; after
    `timeout` seconds fail, naming `what` (a callable is asked only then: e.g. for the tail of a log). To
    give up early (the process it watches died), the predicate raises."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
