"""E-step sampling strategies: which problems get how many samples in each round.

Fixed-K rejection sampling (the paper's E-step) spends the same tries on every problem, so
its training set is made of the problems the policy already solves. DART-Math (Tong et al.
2024, "Difficulty-Aware Rejection Tuning") gives hard problems more tries:

  fixed      one round, K samples per problem (the paper's);
  uniform    rounds of `round_samples` per problem, each round only for problems with fewer
             than `target_correct` correct samples (DART's Uniform);
  prop2diff  the same rounds, but a problem wants correct samples in proportion to its measured
             failure rate: max(1, round(target_correct x failures / tries)) (DART's Prop2Diff).

Both DART strategies stop at `max_samples_per_problem` tries per problem and at one token budget
per E-step (generated tokens; 0: what fixed K would spend, K x problems x the mean completion
length of round 0), so they are compared with fixed K at equal cost. Within a round, problems
with the fewest correct samples go first when the budget does not reach them all.

Hints (STaR's rationalization, Zelikman et al. 2022), optional: problems still uncovered after the
self-generated rounds get up to `hint_samples` more tries with the gold answer shown (rounds of one
try per problem, source 'hinted'). The hinted rounds are paid from the same budget: with hints, the
self-generated rounds stop at (1 - hint_budget_share) of it (fixed draws K x (1 - share) per
problem), so every configuration is compared at equal cost.

A round's plan depends only on the outcomes of earlier rounds, so a crashed E-step replays the
same plans from what it kept and generates only the samples a round still lacks: resuming
gives the rows an uninterrupted run would have (every sample is seeded by its own key).
Pure: no engine, no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field

STRATEGIES = ("fixed", "uniform", "prop2diff")
SELF, HINTED = "self", "hinted"


@dataclass(frozen=True)
class StrategySettings:
    """The `rest.*` settings of the E-step's sampling strategy (ReSTSettings.strategy_settings())."""

    strategy: str = "fixed"
    samples_per_problem: int = 4  # fixed's K, and the unit of the default budget
    round_samples: int = 1
    target_correct: int = 2
    max_samples_per_problem: int = 32
    budget_tokens: int = 0  # 0: K x problems x round 0's mean completion length
    hints: bool = False
    hint_samples: int = 2
    hint_budget_share: float = 0.5

    @property
    def fixed_k(self) -> int:
        """What fixed draws per problem: K, or its share of K that hints leave."""
        if not self.hints:
            return self.samples_per_problem
        return max(1, round(self.samples_per_problem * (1 - self.hint_budget_share)))
    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"rest.sampling must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.budget_tokens < 0:
            raise ValueError(f"rest.sampling_budget_tokens must be >= 0, got {self.budget_tokens!r}")
        if not 0 <= self.hint_budget_share < 1:
            raise ValueError(f"rest.hint_budget_share must be in [0, 1), got {self.hint_budget_share!r}")

    @property
    def rounds(self) -> bool:
        """Whether the E-step needs each round's rewards before the next (else it is one plain pass)."""
        return self.strategy != "fixed" or self.hints


@dataclass(frozen=True)
class Outcome:
    """One finished sample as the planner sees it."""

    problem_id: str
    sample_idx: int
    round: int
    source: str
    n_tokens: int
    correct: bool


@dataclass(frozen=True)
class Round:
    """Round `index`: the sample indices to draw per problem (only those not yet drawn, on a resume)."""

    index: int
    source: str
    todo: dict[str, list[int]] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(len(v) for v in self.todo.values())


@dataclass
class _Tally:
    tries: int = 0
    correct: int = 0
    hinted: int = 0


def _tally(history: Iterable[Outcome]) -> dict[str, _Tally]:
    out: dict[str, _Tally] = {}
    for o in history:
        t = out.setdefault(o.problem_id, _Tally())
        t.tries += 1
        t.correct += o.correct
        t.hinted += o.source == HINTED
    return out


def budget_tokens(settings: StrategySettings, problems: int, history: Sequence[Outcome]) -> int:
    """The E-step's token budget: the setting, or fixed K's expected cost measured on round 0."""
    if settings.budget_tokens:
        return settings.budget_tokens
    first = [o.n_tokens for o in history if o.round == 0 and o.source == SELF]
    mean = sum(first) / len(first) if first else 0.0
    return math.ceil(settings.samples_per_problem * problems * mean)


def _mean_tokens(rows: Sequence[Outcome]) -> float:
    return max(1.0, sum(o.n_tokens for o in rows) / len(rows)) if rows else 1.0


def wanted_correct(settings: StrategySettings, tally: _Tally) -> int:
    if settings.strategy == "uniform" or tally.tries == 0:
        return settings.target_correct
    fail_rate = 1 - tally.correct / tally.tries
    return max(1, round(settings.target_correct * fail_rate))


def _self_round(settings: StrategySettings, problem_ids: Sequence[str], prior: Sequence[Outcome],
                index: int) -> dict[str, list[int]]:
    if index == 0:
        n = settings.fixed_k if settings.strategy == "fixed" else settings.round_samples
        return {pid: list(range(n)) for pid in problem_ids}
    if settings.strategy == "fixed":
        return {}
    own = [o for o in prior if o.source == SELF]
    spent = sum(o.n_tokens for o in own)
    mean = _mean_tokens(own)
    share = 1 - settings.hint_budget_share if settings.hints else 1.0
    left = budget_tokens(settings, len(problem_ids), prior) * share - spent
    tallies = _tally(own)
    eligible = []
    for pid in problem_ids:
        t = tallies.get(pid, _Tally())
        room = settings.max_samples_per_problem - t.tries
        if t.correct < wanted_correct(settings, t) and room > 0:
            eligible.append((t.correct, t.tries, pid, min(settings.round_samples, room)))
    plan: dict[str, list[int]] = {}
    for _, tries, pid, n in sorted(eligible):
        if n * mean > left:
            break
        left -= n * mean
        plan[pid] = list(range(tries, tries + n))
    return plan


def _hinted_round(settings: StrategySettings, problem_ids: Sequence[str], prior: Sequence[Outcome],
                  hintable: Set[str]) -> dict[str, list[int]]:
    """One more hinted try for each hintable problem with no correct sample yet and fewer than `hint_samples`
    hinted tries, the fewest hinted tries first, while the rest of the budget lasts."""
    left = budget_tokens(settings, len(problem_ids), prior) - sum(o.n_tokens for o in prior)
    hinted = [o for o in prior if o.source == HINTED]
    mean = _mean_tokens(hinted or [o for o in prior if o.source == SELF])
    tallies = _tally(prior)
    eligible = sorted((tallies.get(pid, _Tally()).hinted, pid) for pid in problem_ids if pid in hintable
                      and tallies.get(pid, _Tally()).correct == 0
                      and tallies.get(pid, _Tally()).hinted < settings.hint_samples)
    plan: dict[str, list[int]] = {}
    for _, pid in eligible:
        if mean > left:
            break
        left -= mean
        tries = tallies.get(pid, _Tally()).tries
        plan[pid] = [tries]
    return plan


def plan_round(settings: StrategySettings, problem_ids: Sequence[str], prior: Sequence[Outcome], index: int,
               hintable: Set[str] = frozenset()) -> Round | None:
    """Round `index`'s full plan from the outcomes of the rounds before it (None: the E-step is over).
    Self-generated rounds come first; once a hinted round ran, only hinted rounds follow."""
    if not any(o.source == HINTED for o in prior):
        plan = _self_round(settings, problem_ids, prior, index)
        if plan:
            return Round(index, SELF, plan)
    if not settings.hints:
        return None
    plan = _hinted_round(settings, problem_ids, prior, hintable)
    return Round(index, HINTED, plan) if plan else None


def next_round(settings: StrategySettings, problem_ids: Sequence[str], history: Sequence[Outcome],
               hintable: Set[str] = frozenset()) -> Round | None:
    """The first round that still lacks samples, with only the missing ones in `todo` (None: all done).

    Rounds are replayed from round 0: round r's plan is computed from rounds < r alone, so a resumed
    E-step plans exactly what the interrupted one did."""
    have: dict[int, set[tuple[str, int]]] = {}
    for o in history:
        have.setdefault(o.round, set()).add((o.problem_id, o.sample_idx))
    index = 0
    while True:
        prior = [o for o in history if o.round < index]
        plan = plan_round(settings, problem_ids, prior, index, hintable)
        if plan is None:
            return None
        done = have.get(index, set())
        missing = {pid: [k for k in ks if (pid, k) not in done] for pid, ks in plan.todo.items()}
        missing = {pid: ks for pid, ks in missing.items() if ks}
        if missing:
            return Round(index, plan.source, missing)
        index += 1


def outcomes(rows: Iterable[Mapping], correct: Mapping[tuple[str, int], bool]) -> list[Outcome]:
    """Outcome per SAMPLES row (`round`/`source` default to 0/'self' for rows written before rounds)."""
    return [Outcome(r["problem_id"], int(r["sample_idx"]), int(r.get("round") or 0), r.get("source") or SELF,
                    int(r["n_tokens"]), bool(correct.get((r["problem_id"], int(r["sample_idx"])), False)))
            for r in rows]
