"""Jobs: set-up, one whole iteration (E-step + M-step), the E-step alone, evaluation, and the summary."""

from __future__ import annotations

import dagster as dg

setup_job = dg.define_asset_job("setup", selection=["problems", "base_model"],
                                description="Load the task's problems and resolve the base model (policy[0]).")
iteration_job = dg.define_asset_job("iteration", selection=["samples", "rewards", "sft_set", "finetune"],
                                    description="One ReST^EM iteration: sample from policy[i-1], score, filter, fine-tune.")
estep_job = dg.define_asset_job("estep", selection=["samples", "rewards", "sft_set"],
                                description="E-step of one iteration: sample, score, filter.")
evaluate_job = dg.define_asset_job("evaluate", selection=["evaluation"],
                                   description="Evaluate policy[i] on the held-out split (0 = base model).")
transfer_job = dg.define_asset_job("transfer", selection=["transfer_evaluation"],
                                   description="Evaluate policy[i] on the transfer benchmarks (rest.transfer_benchmarks).")
progress_job = dg.define_asset_job("report_progress", selection=["progress"], description="Rebuild the progress table and chart.")

ALL_JOBS = [setup_job, iteration_job, estep_job, evaluate_job, transfer_job, progress_job]
