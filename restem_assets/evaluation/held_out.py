"""Held-out evaluation of one policy: greedy pass@1, pass@k at T=1.0/top-p 0.95, maj@k.

Every completion is written to `eval_samples` with its reward, and one row per
problem to `evaluations`, so any metric can be recomputed later with SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from restem_assets.generation import GenerationEngine, ProgressFn, SamplingParams
from restem_assets.evaluation.metrics import majority_vote, pass_at_k
from restem_assets.models.policies import Policy
from restem_assets.rewards import score_samples
from restem_assets.rewards.math import canonical_answer
from restem_assets.generation.sampling import RowSink, generate_rows, render_prompts
from restem_assets.store.schemas import REWARDS, SAMPLES

REWARD_COLUMNS = [name for name in REWARDS.names if name not in SAMPLES.names]  # what eval_samples adds


@dataclass
class EvalSummary:
    k: int
    greedy_pass_at_1: float
    pass_at_1: float
    pass_at_k: float
    maj_at_k: float | None  # None for code problems (majority vote over programs is undefined)
    greedy_format_rate: float  # share of greedy completions with an extracted answer / program


SCORED_COLUMNS = ["mode", "problem_id", "sample_idx", "extracted_answer", "reward", "reason"]


def _sample_and_score(engine, problems, prompts, params, mode, policy, problems_by_id, sink,
                      progress=None, done: Sequence[Mapping] = ()) -> list[dict]:
    scored: list[dict] = [{k: r[k] for k in SCORED_COLUMNS[1:]} for r in done]
    finished = {(r["problem_id"], r["sample_idx"]) for r in done}
    if len(finished) == len(problems) * params.n:
        return scored
    for rows in generate_rows(engine, problems, prompts, params, policy, progress, finished):
        rows = [{"mode": mode, **row} for row in rows]
        for row, reward in zip(rows, score_samples(rows, problems_by_id), strict=True):
            row.update({k: reward[k] for k in REWARD_COLUMNS})
        sink.write(rows)
        scored.extend(
            {k: r[k] for k in ("problem_id", "sample_idx", "extracted_answer", "reward", "reason")} for r in rows
        )
    return scored


def per_problem_rows(
    problems: Sequence[Mapping[str, Any]], greedy: Sequence[Mapping], sampled: Sequence[Mapping], k: int
) -> list[dict[str, Any]]:
    """One EVALUATIONS row per problem from its greedy and sampled scored completions."""
    g_by = {r["problem_id"]: r for r in greedy}
    s_by: dict[str, list[Mapping]] = defaultdict(list)
    for r in sampled:
        s_by[r["problem_id"]].append(r)
    out = []
    for p in problems:
        pid = p["problem_id"]
        g = g_by[pid]
        ss = sorted(s_by[pid], key=lambda r: r["sample_idx"])
        if len(ss) != k:
            raise ValueError(f"problem {pid}: expected {k} sampled completions, got {len(ss)}")
        c = sum(r["reward"] == 1.0 for r in ss)
        if p.get("domain") == "code":
            # maj@k is undefined for programs: distinct texts of one function rarely repeat verbatim,
            # and "the majority of passing programs" would only restate pass@k. Null, not 0.
            maj_answer, maj_ok = None, None
        else:
            # an expression ("3 + 4") is not an answer: it must not vote for the value it evaluates to
            votes = [canonical_answer(r["extracted_answer"]) if r["reason"] != "expression" else None for r in ss]
            maj_answer, maj_ok = majority_vote(votes, [r["reward"] == 1.0 for r in ss])
        out.append(
            {
                "problem_id": pid,
                "greedy_answer": g["extracted_answer"],
                "greedy_correct": g["reward"] == 1.0,
                "k": k,
                "n_correct": c,
                "pass_at_1": pass_at_k(k, c, 1),
                "pass_at_k": pass_at_k(k, c, k),
                "majority_answer": maj_answer,
                "majority_correct": maj_ok,
            }
        )
    return out


def summarize(rows: Sequence[Mapping[str, Any]], greedy: Sequence[Mapping], k: int) -> EvalSummary:
    n = len(rows)

    def mean(key):
        return sum(float(r[key]) for r in rows) / n if n else 0.0

    voted = [r["majority_correct"] for r in rows if r["majority_correct"] is not None]
    return EvalSummary(
        k=k,
        greedy_pass_at_1=mean("greedy_correct"),
        pass_at_1=mean("pass_at_1"),
        pass_at_k=mean("pass_at_k"),
        maj_at_k=sum(map(float, voted)) / len(voted) if voted else None,
        greedy_format_rate=(sum(g["extracted_answer"] is not None for g in greedy) / len(greedy)) if greedy else 0.0,
    )


def evaluate_policy(
    engine: GenerationEngine | None,
    problems: Sequence[Mapping[str, Any]],
    greedy_params: SamplingParams,
    sampled_params: SamplingParams,
    policy: Policy,
    problems_by_id: Mapping[str, Mapping[str, Any]],
    sink: RowSink,
    progress: Callable[[str], ProgressFn] | None = None,
    done_rows: Sequence[Mapping[str, Any]] = (),
) -> tuple[list[dict[str, Any]], EvalSummary]:
    """Score every problem greedily and with k samples; completions go to `sink` (EVAL_SAMPLES rows).

    `done_rows` (SCORED_COLUMNS of completions finished before an interruption) are kept and not
    generated again; `engine` may be None when nothing is left to generate. `progress(mode)` may
    return a ProgressFn per decoding mode (for logs and progress bars).
    """
    if not greedy_params.greedy:
        raise ValueError("greedy_params must have temperature 0")
    prompts = render_prompts(engine, problems)
    prior = {mode: [r for r in done_rows if r["mode"] == mode] for mode in ("greedy", "sampled")}
    greedy = _sample_and_score(engine, problems, prompts, greedy_params, "greedy", policy, problems_by_id, sink,
                               progress("greedy") if progress else None, prior["greedy"])
    sampled = _sample_and_score(engine, problems, prompts, sampled_params, "sampled", policy, problems_by_id, sink,
                                progress("sampled") if progress else None, prior["sampled"])
    rows = per_problem_rows(problems, greedy, sampled, sampled_params.n)
    return rows, summarize(rows, greedy, sampled_params.n)


def evaluate_greedy(
    engine: GenerationEngine | None,
    benchmarks: Mapping[str, Sequence[Mapping[str, Any]]],
    params: SamplingParams,
    policy: Policy,
    sink: RowSink,
    progress: Callable[[str], ProgressFn] | None = None,
    done_rows: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Greedy completions of each benchmark's problems, scored, into `sink` (EVAL_SAMPLES rows); one
    TRANSFER_EVALUATIONS row (benchmark, problem_id, greedy_correct, reason) per problem.

    `done_rows`, `engine` None and `progress(benchmark)` as in `evaluate_policy`."""
    if not params.greedy:
        raise ValueError("evaluate_greedy needs temperature 0")
    out: list[dict[str, Any]] = []
    for name, problems in benchmarks.items():
        by_id = {p["problem_id"]: p for p in problems}
        scored = _sample_and_score(engine, problems, render_prompts(engine, problems), params, "greedy", policy, by_id,
                                   sink, progress(name) if progress else None,
                                   [r for r in done_rows if r["problem_id"] in by_id])
        got = {r["problem_id"]: r for r in scored}
        for p in problems:
            verdict = got[p["problem_id"]]
            out.append({"benchmark": name, "problem_id": p["problem_id"], "greedy_correct": verdict["reward"] == 1.0,
                        "reason": verdict["reason"]})
    return out


def greedy_pass_rates(rows: Sequence[Mapping[str, Any]],
                      benchmarks: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """Greedy pass@1 per benchmark from `evaluate_greedy`'s rows."""
    return {name: sum(r["greedy_correct"] for r in rows if r["benchmark"] == name) / len(problems)
            for name, problems in benchmarks.items()}
