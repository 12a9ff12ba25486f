"""Arrow schemas of every table restem writes.

One place for column names and types so the writers, the DuckDB views and the
SQL in `sql/` agree. Tables partitioned by iteration carry `iteration` in the
hive path (`<table>/iteration=<i>/part-0.parquet`), not as a column, so DuckDB
exposes it from the path with `hive_partitioning = true`.
"""

from __future__ import annotations

import pyarrow as pa

# problems: unpartitioned, one row per problem of either split.
PROBLEMS = pa.schema(
    [
        ("problem_id", pa.string()),  # stable, derived from the task name and the content
        ("split", pa.string()),  # "train" | "test"
        ("task", pa.string()),  # e.g. "chain_sum", "gsm8k", "math", "apps", "humaneval"
        ("domain", pa.string()),  # "math" | "code"
        ("verifier", pa.string()),  # "math" | "reasoning_gym" | "code"
        ("question", pa.string()),  # text shown to the model
        ("answer", pa.string()),  # gold final answer (math); empty for code
        ("solution", pa.string()),  # human-written solution when the dataset has one
        ("metadata", pa.string()),  # JSON: dataset-specific fields (rg entry, level, tests, ...)
    ]
)

# The key of one sample (with `iteration`, from the path): samples, rewards, sft_set and
# reward_audit rows are joined on it.
_SAMPLE_KEY = [("problem_id", pa.string()), ("sample_idx", pa.int32())]

# samples: one row per completion.
SAMPLES = pa.schema(
    _SAMPLE_KEY
    + [
        ("prompt", pa.string()),  # the rendered prompt text fed to the model
        ("completion", pa.string()),
        ("n_tokens", pa.int32()),  # completion tokens generated
        ("finish_reason", pa.string()),  # "stop" | "length"
        ("policy_id", pa.string()),  # which model produced it: "base" or "iteration=<i>"
        ("policy_path", pa.string()),
        ("engine", pa.string()),  # "transformers" | "vllm"
        ("temperature", pa.float32()),
        ("top_k", pa.int32()),
        ("top_p", pa.float32()),
        ("max_new_tokens", pa.int32()),
        ("seed", pa.int64()),
        ("round", pa.int32()),  # E-step round (generation/sampling_strategy.py); 0 for fixed K and evaluation
        ("source", pa.string()),  # "self" | "hinted" (drawn with the gold answer shown as a hint)
    ]
)

# rewards: one row per sample, joined to samples on (iteration, problem_id, sample_idx).
REWARDS = pa.schema(
    _SAMPLE_KEY
    + [
        ("extracted_answer", pa.string()),  # null when no answer/program was found
        ("reward", pa.float32()),  # binary: 0.0 or 1.0
        ("reason", pa.string()),  # math: correct|wrong|no_answer|unparsable; code: passed|<failure kind>
        ("details", pa.string()),  # JSON: per-test outcomes for code, null for math
        ("verifier", pa.string()),  # "math" | "reasoning_gym" | "code": which grader decided
        ("verifier_version", pa.string()),  # hash of that grader's code and settings (rewards.provenance)
    ]
)

# sft_set: the kept, deduplicated correct samples of one iteration (their samples columns up to n_tokens).
# A hinted row's prompt is the plain one (the hint removed): the M-step trains without it.
SFT_SET = pa.schema([SAMPLES.field(name) for name in ("problem_id", "sample_idx", "prompt", "completion", "n_tokens",
                                                      "source")])

# eval_samples: every completion drawn while evaluating policy[i] on the test split
# (partition iteration=0 is the base model), with its reward.
EVAL_SAMPLES = pa.schema(
    [("mode", pa.string())]  # "greedy" | "sampled"
    + list(SAMPLES)
    + [f for f in REWARDS if f.name not in SAMPLES.names]
)

# evaluations: one row per test problem for policy[i].
EVALUATIONS = pa.schema(
    [
        ("problem_id", pa.string()),
        ("greedy_answer", pa.string()),
        ("greedy_correct", pa.bool_()),
        ("k", pa.int32()),  # samples drawn at T=1.0, top-p 0.95
        ("n_correct", pa.int32()),
        ("pass_at_1", pa.float64()),  # unbiased estimate from the k samples
        ("pass_at_k", pa.float64()),
        ("majority_answer", pa.string()),  # maj@k vote over extracted answers (null: no answer at all)
        ("majority_correct", pa.bool_()),
    ]
)

# finetune_log: the M-step's loss curve, one row per logged optimizer step.
FINETUNE_LOG = pa.schema(
    [
        ("step", pa.int32()),
        ("epoch", pa.float64()),
        ("loss", pa.float64()),
        ("learning_rate", pa.float64()),
    ]
)

# reward_audit: accepted samples (sft_set rows) that an audit rule (one of rewards.audit.RULES) flagged.
REWARD_AUDIT = pa.schema(_SAMPLE_KEY + [("rule", pa.string()), ("detail", pa.string())])

# transfer_evaluations: one row per problem of a benchmark outside the training task (e.g.
# HumanEval for a policy trained on function_synthesis), greedy decoding; completions go to
# transfer_samples (EVAL_SAMPLES rows, mode "greedy").
TRANSFER_EVALUATIONS = pa.schema(
    [
        ("benchmark", pa.string()),
        ("problem_id", pa.string()),
        ("greedy_correct", pa.bool_()),
        ("reason", pa.string()),  # the verdict's reason (passed, syntax_error, wrong_answer, ...)
    ]
)
TRANSFER_SAMPLES = EVAL_SAMPLES

# rescores: an iteration's samples scored again by the verifiers installed now (`restem rescore`),
# beside the rewards recorded when the iteration ran; sql/rescore_diff.sql compares the two.
RESCORES = REWARDS
