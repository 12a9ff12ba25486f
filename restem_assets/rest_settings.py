"""The ReST^EM settings: one typed object for the E-step, the M-step, evaluation and the loop.

This class is the one definition of each setting (name, type, default, help). The Dagster
resource `rest` is generated from its fields (restem_assets/assets/resources.py), so a field
added here shows in the launchpad, in `--set rest.<field>=...` and in the experiments record
without another edit. The fine-tune's part is inherited from `FinetuneSettings`, which
`finetune()` takes; its fields are projected out by name, not copied by hand.

Defaults are the `default` profile's values (the README's `make demo`); profiles only list
what differs. Pure: no Dagster here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from restem_assets.generation import SamplingParams, sample_seed
from restem_assets.generation.engine_pool import expected_tokens
from restem_assets.generation.sampling_strategy import STRATEGIES, StrategySettings
from restem_assets.setting_field import setting
from restem_assets.training.finetune import FinetuneSettings


INIT_FROM = ("base", "previous")
LAUNCHERS = ("inprocess", "accelerate")


@dataclass(frozen=True)
class ReSTSettings(FinetuneSettings):
    """ReST^EM settings; defaults follow the paper where a 2-core CPU allows (K is smaller)."""

    # E-step
    samples_per_problem: int = setting(4, "K: completions sampled per train problem (paper: 32 math, 64 code; "
                                          "K=4 learned as much as K=8 on the default task, docs/experiments.md)")
    temperature: float = setting(0.7, "E-step sampling temperature (paper: 0.7)")
    top_k: int = setting(40, "E-step top-k (paper: 40; 0 disables)")
    top_p: float = setting(1.0, "E-step nucleus sampling (1.0: off)")
    max_new_tokens: int = setting(96, "E-step completion length cap, in tokens")
    checkpoint_rows: int = setting(512, "sampled rows per crash-safe chunk (a re-run keeps finished chunks)")
    checkpoint_seconds: float = setting(30.0, "at most this long between crash-safe chunks")
    max_per_problem: int = setting(10, "cap on kept correct samples per problem (paper: 10)")
    sampling: str = setting("fixed", "E-step strategy: 'fixed' (the paper's K per problem), 'uniform' or 'prop2diff' "
                                     "(DART: rounds that give unsolved problems more tries; generation/sampling_strategy.py)")
    sampling_budget_tokens: int = setting(0, "generated tokens per E-step for uniform/prop2diff (0: what fixed K "
                                             "would spend, K x problems x round 0's mean completion length)")
    round_samples: int = setting(1, "uniform/prop2diff: samples per problem per round")
    target_correct: int = setting(2, "uniform: correct samples wanted per problem; prop2diff: wanted for a problem "
                                     "never solved (scaled by its failure rate, at least 1)")
    max_samples_per_problem: int = setting(32, "uniform/prop2diff: tries per problem at most (paper's K for math)")
    hints: bool = setting(False, "problems uncovered by the self-generated rounds get up to hint_samples tries with "
                                 "the gold answer shown (STaR rationalization); kept only if correct and unflagged "
                                 "by the reward audit, trained without the hint, source='hinted' (on in the default profile)")
    hint_samples: int = setting(2, "hinted tries per uncovered problem at most (one per hinted round)")
    hint_budget_share: float = setting(0.5, "with hints: the share of the E-step's token budget kept for hinted "
                                            "rounds (fixed then draws K x (1 - share) per problem)")
    audit_blocking: bool = setting(False, "a reward-audit finding on sft_set stops the chain (else: warn)")
    # M-step (the fine-tune's own fields come from FinetuneSettings)
    init_from: str = setting("base", "'base' (paper: each iteration fine-tunes the base model) or 'previous' "
                                     "(continue from the last iterate)")
    finetune_launcher: str = setting("inprocess", "'inprocess' (this process) or 'accelerate' (`accelerate launch` "
                                                  "through Dagster Pipes, restem_assets/training/distributed.py)")
    finetune_processes: int = setting(2, "processes for the accelerate launcher (data-parallel ranks)")
    finetune_accelerate_config: str = setting("", "deploy/accelerate config: ddp_cpu, ddp_gpu, fsdp, deepspeed_zero2, "
                                                  "deepspeed_zero3, or a path ('' = ddp_gpu/ddp_cpu)")
    # evaluation
    eval_samples: int = setting(4, "k for pass@k and maj@k on the test split")
    eval_temperature: float = setting(1.0, "temperature of the pass@k / maj@k samples (paper: 1.0)")
    eval_top_p: float = setting(0.95, "top-p of the pass@k / maj@k samples (paper: 0.95)")
    eval_max_new_tokens: int = setting(96, "evaluation completion length cap, in tokens")
    transfer_benchmarks: list[str] = setting([], "benchmarks outside the task each policy is also evaluated on "
                                                 "(greedy) by transfer_evaluation / `restem transfer`, e.g. ['humaneval']")
    transfer_max_new_tokens: int = setting(256, "transfer benchmark completion length cap, in tokens")
    transfer_limit: int | None = setting(None, "only the first N problems of each benchmark (None: all)")
    # the loop (the CLI driver and the continue_rest_loop sensor)
    target_iterations: int = setting(2, "how many iterations the loop runs (`restem run --iterations N` sets it)")
    stop_when_no_improvement: bool = setting(True, "stop when held-out greedy pass@1 stops improving")
    # cost accounting (stage_costs table, sql/cost_per_iteration.sql)
    cpu_hour_price: float = setting(0.0, "price of one CPU-core hour, for the cost column (0: not priced)")
    gpu_hour_price: float = setting(0.0, "price of one GPU hour, for the cost column (0: not priced)")

    def __post_init__(self):
        super().__post_init__()
        positive = ("samples_per_problem", "max_new_tokens", "checkpoint_rows", "max_per_problem", "eval_samples",
                    "round_samples", "target_correct", "max_samples_per_problem", "hint_samples",
                    "eval_max_new_tokens", "transfer_max_new_tokens", "finetune_processes")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"rest.{name} must be an int >= 1, got {value!r}")
        for name in ("temperature", "eval_temperature"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"rest.{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        for name in ("top_p", "eval_top_p"):
            if not _finite(getattr(self, name)) or not 0 < getattr(self, name) <= 1:
                raise ValueError(f"rest.{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise ValueError(f"rest.top_k must be an int >= -1 (0 or -1: off), got {self.top_k!r}")
        if not _finite(self.checkpoint_seconds) or self.checkpoint_seconds <= 0:
            raise ValueError(f"rest.checkpoint_seconds must be a number > 0, got {self.checkpoint_seconds!r}")
        if self.sampling not in STRATEGIES:
            raise ValueError(f"rest.sampling must be one of {STRATEGIES}, got {self.sampling!r}")
        if not isinstance(self.sampling_budget_tokens, int) or self.sampling_budget_tokens < 0:
            raise ValueError(f"rest.sampling_budget_tokens must be an int >= 0, got {self.sampling_budget_tokens!r}")
        if not _finite(self.hint_budget_share) or not 0 <= self.hint_budget_share < 1:
            raise ValueError(f"rest.hint_budget_share must be in [0, 1), got {self.hint_budget_share!r}")
        if self.init_from not in INIT_FROM:
            raise ValueError(f"rest.init_from must be one of {INIT_FROM}, got {self.init_from!r}")
        if self.finetune_launcher not in LAUNCHERS:
            raise ValueError(f"rest.finetune_launcher must be one of {LAUNCHERS}, got {self.finetune_launcher!r}")
        if not isinstance(self.target_iterations, int) or self.target_iterations < 0:
            raise ValueError(f"rest.target_iterations must be an int >= 0, got {self.target_iterations!r}")
        if self.transfer_limit is not None and (not isinstance(self.transfer_limit, int) or self.transfer_limit < 1):
            raise ValueError(f"rest.transfer_limit must be None or an int >= 1, got {self.transfer_limit!r}")

    def finetune_settings(self, iteration: int) -> FinetuneSettings:
        """The M-step settings of `iteration` (its seed differs per iteration); the human-data baseline uses
        iteration 1's, so it is trained exactly as the policy it is compared with."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(FinetuneSettings)}
        return FinetuneSettings(**{**own, "seed": self.seed + iteration})

    def estep_params(self, iteration: int) -> SamplingParams:
        """The E-step's sampling; its seed is the experiment's seed and the iteration (each sample's own seed
        adds its problem_id and sample_idx: generation/sampling.generate_rows)."""
        return SamplingParams(n=self.samples_per_problem, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                              seed=sample_seed(self.seed, "estep", iteration))

    def strategy_settings(self) -> StrategySettings:
        """The E-step's sampling strategy (which problems get how many samples in each round)."""
        return StrategySettings(strategy=self.sampling, samples_per_problem=self.samples_per_problem,
                                round_samples=self.round_samples, target_correct=self.target_correct,
                                max_samples_per_problem=self.max_samples_per_problem,
                                budget_tokens=self.sampling_budget_tokens, hints=self.hints,
                                hint_samples=self.hint_samples, hint_budget_share=self.hint_budget_share)

    def greedy_params(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=self.eval_max_new_tokens,
                              seed=self.seed)

    def transfer_params(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=self.transfer_max_new_tokens,
                              seed=self.seed)

    def eval_sampling_params(self) -> SamplingParams:
        return SamplingParams(n=self.eval_samples, temperature=self.eval_temperature, top_k=0, top_p=self.eval_top_p,
                              max_new_tokens=self.eval_max_new_tokens, seed=sample_seed(self.seed, "evaluation"))

    def planned_tokens(self, train_size: int | None, test_size: int | None) -> int:
        """Tokens the whole loop is expected to generate (every E-step and evaluation, the base evaluation
        included): what `engine.kind = auto` weighs one engine start-up against, in the CLI and the webserver
        alike, since one engine serves every stage of a run."""
        per_eval = expected_tokens((test_size or 0) * (1 + self.eval_samples), self.eval_max_new_tokens)
        per_estep = expected_tokens((train_size or 0) * self.samples_per_problem, self.max_new_tokens)
        return self.target_iterations * per_estep + (self.target_iterations + 1) * per_eval

    def planned_transfer_tokens(self, prompts: int) -> int:
        """Tokens the transfer check is expected to generate over every policy of the loop (base included)."""
        return (self.target_iterations + 1) * expected_tokens(prompts, self.transfer_max_new_tokens)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
