"""Shared set-up for the end-to-end tests that use the real model and a real Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from restem_assets.assets.resources import EngineResource, ModelResource, ReSTResource, StorageResource, TaskResource
from restem_assets.assets import estep, evaluation, mstep, policy, problems

FIXTURES = Path(__file__).parent / "fixtures"
SETUP_ASSETS = [problems.problems, policy.base_model, policy.policy]
ESTEP_ASSETS = [policy.policy, estep.samples, estep.rewards, estep.sft_set]
ITERATION_ASSETS = ESTEP_ASSETS + [mstep.finetune]
EVAL_ASSETS = [policy.policy, evaluation.evaluation]


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
