"""E-step sampling strategies (generation/sampling_strategy.py) and the E-step in rounds
(generation/sampling.sample_rounds): which problems get more tries, the token budget, the hinted round,
and a resume that replays rounds instead of redrawing them. A seeded scripted engine stands in for the
model here (the real model's rounds and SIGKILL resume: tests/test_estep_rounds_e2e.py)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from restem_assets.generation import Completion, SamplingParams
from restem_assets.generation.sampling import estep_rows_planned, hintable, sample_estep, sample_rounds
from restem_assets.generation.sampling_strategy import (HINTED, SELF, Outcome, StrategySettings, budget_tokens,
                                                        next_round, plan_round, wanted_correct, _Tally)
from restem_assets.models.policies import Policy
from restem_assets.rest_settings import ReSTSettings

POLICY = Policy("base", "/nonexistent/model", "v0")
PARAMS = SamplingParams(n=4, temperature=0.7, max_new_tokens=16, seed=7)
# p0 always solved, p1 sometimes, p2 and p3 never unless hinted.
SOLVE_RATE = {"p0": 100, "p1": 30, "p2": 0, "p3": 0}
PROBLEMS = [{"problem_id": pid + copy, "question": f"{pid + copy}?", "answer": "5", "domain": "math",
             "verifier": "math"} for pid in SOLVE_RATE for copy in "ab"]


class SeededEngine:
    """Correct with a per-problem rate decided by each sample's own seed (so a resume draws the same rows);
    with the hint shown, always correct."""

    name = "seeded"

    def __init__(self):
        self.prompts: list[str] = []

    def render_prompt(self, messages) -> str:
        return messages[-1]["content"]

    def generate(self, prompts, params, progress=None, seeds=None):
        for i, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            pid = prompt.split("?")[0]
            out = []
            for k in range(params.n):
                seed = seeds[i][k]
                ok = "Hint" in prompt or seed % 100 < SOLVE_RATE[pid[:2]]
                out.append(Completion(i, k, "2 + 3 = 5\nAnswer: 5" if ok else "Answer: 4", 3 + seed % 5, "stop"))
            yield out


def score(rows):
    return [r["completion"].endswith("Answer: 5") for r in rows]


class ListSink:
    def __init__(self, fail_after: int | None = None):
        self.rows, self.fail_after = [], fail_after

    def write(self, rows):
        if self.fail_after is not None and len(self.rows) + len(rows) > self.fail_after:
            raise RuntimeError("killed mid-round")
        self.rows.extend(rows)


def keyed(rows):
    return sorted((r["problem_id"], r["sample_idx"], r["round"], r["source"], r["completion"], r["n_tokens"])
                  for r in rows)


def outcome(pid, idx, rnd=0, correct=False, tokens=10, source=SELF):
    return Outcome(pid, idx, rnd, source, tokens, correct)


def test_fixed_is_one_round_of_k():
    s = StrategySettings("fixed", samples_per_problem=3)
    first = next_round(s, ["a", "b"], [])
    assert first.index == 0 and first.todo == {"a": [0, 1, 2], "b": [0, 1, 2]}
    done = [outcome(p, k) for p in "ab" for k in range(3)]
    assert next_round(s, ["a", "b"], done) is None
    assert not s.rounds and StrategySettings("fixed", hints=True).rounds


def test_uniform_samples_only_problems_short_of_target_and_unsolved_first():
    s = StrategySettings("uniform", samples_per_problem=4, round_samples=2, target_correct=2,
                         max_samples_per_problem=8, budget_tokens=10_000)
    prior = [outcome("a", 0, correct=True), outcome("a", 1, correct=True),  # a: done (2 correct)
             outcome("b", 0, correct=True), outcome("b", 1),  # b: 1 correct
             outcome("c", 0), outcome("c", 1)]  # c: unsolved
    plan = plan_round(s, ["a", "b", "c"], prior, 1)
    assert plan.todo == {"c": [2, 3], "b": [2, 3]}
    assert list(plan.todo) == ["c", "b"]  # fewest correct first


def test_budget_cuts_a_round_and_ends_the_estep():
    s = StrategySettings("uniform", round_samples=2, target_correct=1, max_samples_per_problem=32, budget_tokens=80)
    prior = [outcome(p, k, tokens=10) for p in "abc" for k in range(2)]  # 60 tokens spent, mean 10
    plan = plan_round(s, ["a", "b", "c"], prior, 1)
    assert plan.todo == {"a": [2, 3]}  # 20 tokens left: one problem's two samples
    prior += [outcome("a", k, 1, tokens=10) for k in (2, 3)]
    assert plan_round(s, ["a", "b", "c"], prior, 2) is None


def test_default_budget_is_fixed_ks_cost_measured_on_round_zero():
    s = StrategySettings("uniform", samples_per_problem=4, round_samples=2)
    first = [outcome(p, k, tokens=t) for p, t in (("a", 10), ("b", 20)) for k in range(2)]
    assert budget_tokens(s, 2, first) == 4 * 2 * 15
    assert budget_tokens(StrategySettings("uniform", budget_tokens=99), 2, first) == 99


def test_max_samples_per_problem_caps_tries():
    s = StrategySettings("uniform", round_samples=2, target_correct=1, max_samples_per_problem=3, budget_tokens=10**6)
    prior = [outcome("a", k, rnd=0 if k < 2 else 1) for k in range(3)]
    assert plan_round(s, ["a"], prior, 2) is None


def test_prop2diff_wants_correct_samples_in_proportion_to_failure_rate():
    s = StrategySettings("prop2diff", target_correct=4)
    assert wanted_correct(s, _Tally(tries=4, correct=0)) == 4
    assert wanted_correct(s, _Tally(tries=4, correct=2)) == 2
    assert wanted_correct(s, _Tally(tries=4, correct=4)) == 1  # at least one
    assert wanted_correct(StrategySettings("uniform", target_correct=4), _Tally(tries=4, correct=4)) == 4


def test_hinted_rounds_only_for_uncovered_hintable_problems_within_the_budget():
    s = StrategySettings("fixed", samples_per_problem=4, hints=True, hint_samples=2, hint_budget_share=0.5)
    assert s.fixed_k == 2 and next_round(s, ["a"], []).todo == {"a": [0, 1]}  # half of K left for hints
    prior = [outcome("a", 0, correct=True), outcome("a", 1), outcome("b", 0), outcome("b", 1),
             outcome("c", 0), outcome("c", 1)]  # 60 tokens of a 4 x 3 x 10 = 120 budget
    hintable = frozenset({"a", "b"})
    plan = plan_round(s, ["a", "b", "c"], prior, 1, hintable)
    assert plan.source == HINTED and plan.todo == {"b": [2]}  # c has no answer to show; one try per round
    prior += [outcome("b", 2, 1, tokens=30, source=HINTED)]
    assert plan_round(s, ["a", "b", "c"], prior, 2, hintable).todo == {"b": [3]}  # 30 tokens left, mean 30
    prior += [outcome("b", 3, 2, tokens=30, source=HINTED)]
    assert plan_round(s, ["a", "b", "c"], prior, 3, hintable) is None  # hint_samples reached (and the budget)


def test_hinted_rounds_stop_at_the_budget_and_a_covered_problem():
    s = StrategySettings("uniform", samples_per_problem=2, round_samples=1, target_correct=1, hints=True,
                         hint_samples=5, hint_budget_share=0.5, budget_tokens=100)
    prior = [outcome(p, 0, tokens=10) for p in "abcde"]  # self rounds: 50 of 100 spent, the self share
    assert plan_round(s, list("abcde"), prior, 1, frozenset("abcde")).source == HINTED
    prior += [outcome("a", 1, 1, correct=True, tokens=20, source=HINTED)]
    plan = plan_round(s, list("abcde"), prior, 2, frozenset("abcde"))
    assert "a" not in plan.todo and sum(map(len, plan.todo.values())) == 1  # 30 left at 20 per try


def test_hintable_excludes_code_and_missing_answers():
    probs = [{"problem_id": "m", "answer": "3", "domain": "math"}, {"problem_id": "c", "answer": "", "domain": "code"},
             {"problem_id": "e", "answer": " ", "domain": "math"}]
    assert hintable(probs) == {"m"}


@pytest.mark.parametrize("strategy", ["uniform", "prop2diff"])
def test_rounds_give_unsolved_problems_more_tries_than_fixed_at_equal_budget(strategy):
    fixed = ListSink()
    sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, fixed, StrategySettings("fixed", samples_per_problem=4),
                  score)
    dart = ListSink()
    stats = sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, dart,
                          StrategySettings(strategy, samples_per_problem=4, round_samples=2, target_correct=2), score)
    tries = lambda rows, kind: sum(r["problem_id"].startswith(kind) for r in rows)  # noqa: E731
    assert tries(dart.rows, "p2") > tries(fixed.rows, "p2") and tries(dart.rows, "p0") < tries(fixed.rows, "p0")
    assert sum(r["n_tokens"] for r in dart.rows) <= sum(r["n_tokens"] for r in fixed.rows) * 1.35  # ~ equal cost
    assert len(stats.rounds) >= 2 and [r["round"] for r in stats.rounds] == list(range(len(stats.rounds)))
    keys = [(r["problem_id"], r["sample_idx"]) for r in dart.rows]
    assert len(keys) == len(set(keys))


def test_hinted_round_covers_what_the_budget_did_not_with_the_hint_in_the_prompt():
    sink = ListSink()
    sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, sink,
                  StrategySettings("fixed", samples_per_problem=4, hints=True, hint_samples=2), score)
    hinted = [r for r in sink.rows if r["source"] == HINTED]
    assert {r["problem_id"] for r in hinted} >= {"p2a", "p3b"} and "p0a" not in {r["problem_id"] for r in hinted}
    assert all("Hint: the final answer is 5" in r["prompt"] for r in hinted)
    assert all(r["sample_idx"] >= 2 and r["round"] >= 1 for r in hinted)
    fixed = ListSink()
    sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, fixed, StrategySettings("fixed", samples_per_problem=4),
                  score)
    assert sum(r["n_tokens"] for r in sink.rows) <= sum(r["n_tokens"] for r in fixed.rows) * 1.1  # equal budget


@pytest.mark.parametrize("fail_after", [3, 9, 14])
def test_an_interrupted_estep_resumes_to_the_rows_of_an_uninterrupted_one(fail_after):
    settings = StrategySettings("prop2diff", samples_per_problem=4, round_samples=2, target_correct=2, hints=True)
    whole = ListSink()
    sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, whole, settings, score)
    crashed = ListSink(fail_after=fail_after)
    with pytest.raises(RuntimeError, match="killed"):
        sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, crashed, settings, score)
    kept = crashed.rows
    from restem_assets.generation.sampling_strategy import outcomes
    history = outcomes(kept, {(r["problem_id"], r["sample_idx"]): ok for r, ok in zip(kept, score(kept))})
    resumed = ListSink()
    sample_rounds(SeededEngine(), PROBLEMS, PARAMS, POLICY, resumed, settings, score, history)
    assert keyed(kept + resumed.rows) == keyed(whole.rows)


class KeptStaging:
    """What sample_estep needs of a StagedGeneration: the rows an interrupted run kept, a sink, and an engine
    opened only for a positive row count (records the counts asked for)."""

    def __init__(self, done, needed):
        self.done, self.needed, self.sink, self.opened = list(done), needed, ListSink(), []

    @contextmanager
    def open_engine(self, rows=None):
        rows = self.needed - len(self.done) if rows is None else rows
        self.opened.append(rows)
        yield SeededEngine() if rows > 0 else None


@pytest.mark.parametrize("strategy", ["fixed", "prop2diff"])
def test_sample_estep_resumes_from_kept_rows_and_opens_no_engine_when_done(strategy):
    settings = StrategySettings(strategy, samples_per_problem=4, round_samples=2, target_correct=2,
                                hints=strategy != "fixed")
    needed = estep_rows_planned(PROBLEMS, PARAMS, settings)
    assert needed == len(PROBLEMS) * (4 if strategy == "fixed" else 2)
    whole = KeptStaging([], needed)
    sample_estep(whole, PROBLEMS, PARAMS, POLICY, settings, score)
    kept = whole.sink.rows[:7]
    resumed = KeptStaging(kept, needed)
    stats = sample_estep(resumed, PROBLEMS, PARAMS, POLICY, settings, score)
    assert keyed(kept + resumed.sink.rows) == keyed(whole.sink.rows) and stats.samples == len(whole.sink.rows) - 7
    finished = KeptStaging(whole.sink.rows, needed)
    assert sample_estep(finished, PROBLEMS, PARAMS, POLICY, settings, score).samples == 0
    assert finished.opened[-1] <= 0 and not finished.sink.rows


def test_settings_reach_the_strategy_and_bad_values_name_the_setting():
    s = ReSTSettings(sampling="prop2diff", sampling_budget_tokens=500, hints=True).strategy_settings()
    assert (s.strategy, s.budget_tokens, s.hints) == ("prop2diff", 500, True)
    with pytest.raises(ValueError, match="rest.sampling must be one of"):
        ReSTSettings(sampling="dart")
    with pytest.raises(ValueError, match="rest.sampling_budget_tokens"):
        ReSTSettings(sampling_budget_tokens=-1)
    with pytest.raises(ValueError, match="rest.round_samples"):
        ReSTSettings(round_samples=0)
