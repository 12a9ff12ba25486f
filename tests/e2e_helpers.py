"""Shared set-up for the end-to-end tests that use the real model and a real Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project.resources import EngineResource, ModelResource, ReSTResource, StorageResource, TaskResource
from restem_assets.assets import estep, evaluation, mstep, policy, problems

FIXTURES = Path(__file__).parent / "fixtures"
SETUP_ASSETS = [problems.problems, policy.base_model, policy.policy]
ESTEP_ASSETS = [policy.policy, estep.samples, estep.rewards, estep.sft_set]
ITERATION_ASSETS = ESTEP_ASSETS + [mstep.finetune]
EVAL_ASSETS = [policy.policy, evaluation.evaluation]


def echo_task() -> TaskResource:
    """GSM8K-layout problems whose question dictates the answer line: the real model gets some right."""
    return TaskResource(kind="gsm8k", train_path=str(FIXTURES / "echo_gsm8k_train.jsonl"),
                        test_path=str(FIXTURES / "echo_gsm8k_test.jsonl"), train_size=None, test_size=None)


def resources(root: Path, model_path: str, task: TaskResource | None = None, **rest) -> dict:
    settings = dict(samples_per_problem=4, max_new_tokens=24, eval_samples=2, eval_max_new_tokens=24,
                    finetune_max_steps=2, batch_size=4)
    settings.update(rest)
    return {
        "storage": StorageResource(root=str(root)),
        "model": ModelResource(base_model=model_path),
        "task": task or echo_task(),
        "rest": ReSTResource(**settings),
        "engine": EngineResource(kind="transformers", batch_size=32),
    }


def materialize(assets, res, instance, partition=None, raise_on_error=True):
    return dg.materialize(assets, resources=res, instance=instance, partition_key=partition,
                          raise_on_error=raise_on_error)
