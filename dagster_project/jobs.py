"""Jobs: set-up, one whole iteration (E-step + M-step), the E-step alone, evaluation, and the summary.

`build_jobs(prefix)` gives the same jobs over an experiment's prefixed assets (restem_assets/experiments.py);
the module-level jobs are the default experiment's.
"""

from __future__ import annotations

import dagster as dg


def build_jobs(prefix: tuple[str, ...] = ()) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """The jobs by name, selecting the assets under the key prefix `prefix` (() = the default experiment)."""

    def keys(*names: str) -> list[dg.AssetKey]:
        return [dg.AssetKey([*prefix, n]) for n in names]

    tags = {"restem/experiment": prefix[0] if prefix else "default"}  # which experiment a run belongs to

    jobs = [
        dg.define_asset_job("setup", tags=tags, selection=keys("problems", "base_model"),
                            description="Load the task's problems and resolve the base model (policy[0])."),
        dg.define_asset_job("iteration", tags=tags, selection=keys("samples", "rewards", "sft_set", "finetune"),
                            description="One ReST^EM iteration: sample from policy[i-1], score, filter, fine-tune."),
        dg.define_asset_job("estep", tags=tags, selection=keys("samples", "rewards", "sft_set"),
                            description="E-step of one iteration: sample, score, filter."),
        dg.define_asset_job("evaluate", tags=tags, selection=keys("evaluation"),
                            description="Evaluate policy[i] on the held-out split (0 = base model)."),
        dg.define_asset_job("transfer", tags=tags, selection=keys("transfer_evaluation"),
                            description="Evaluate policy[i] on the transfer benchmarks (rest.transfer_benchmarks)."),
        dg.define_asset_job("human_data_baseline", tags=tags, selection=keys("human_baseline"),
                            description="Fine-tune the base model on reference solutions (as many as iteration 1's "
                            "SFT set) and evaluate it: the human-data baseline."),
        dg.define_asset_job("report_progress", tags=tags, selection=keys("progress"),
                            description="Rebuild the progress table and chart."),
    ]
    return {job.name: job for job in jobs}


_DEFAULT = build_jobs()
setup_job = _DEFAULT["setup"]
iteration_job = _DEFAULT["iteration"]
evaluate_job = _DEFAULT["evaluate"]
progress_job = _DEFAULT["report_progress"]

ALL_JOBS = list(_DEFAULT.values())
