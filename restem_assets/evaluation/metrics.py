"""Evaluation metrics: unbiased pass@k (Chen et al. 2021) and majority vote maj@k."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    1 - C(n-c, k) / C(n, k), computed as a stable product (Chen et al. 2021, Codex paper).
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_exact(n: int, c: int, k: int) -> float:
    """The same quantity with exact binomials (for checks)."""
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool]) -> tuple[str | None, bool]:
    """maj@k: the most frequent (canonical) answer among the samples and whether it is correct.

    Samples without an answer don't vote. Ties go to the answer that appeared first
    (lowest sample index), so the result never depends on hash order. An answer
    counts as correct when any sample that gave it was rewarded (they are equivalent).
    """
    if len(answers) != len(correct):
        raise ValueError("answers and correct must have the same length")
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, False
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, any(ok for a, ok in zip(answers, correct) if a == winner)


def paired_difference_interval(before: Sequence[bool], after: Sequence[bool], z: float = 1.96) -> tuple[float, float, float]:
    """Difference in accuracy (after - before) on the same problems with a 95% paired (Wald) interval.

    Only discordant problems carry information: b improved, c got worse;
    var(d) = ((b + c) - (b - c)^2 / n) / n^2.
    """
    if len(before) != len(after):
        raise ValueError("before and after must cover the same problems")
    n = len(before)
    if n == 0:
        return 0.0, 0.0, 0.0
    b = sum(1 for x, y in zip(before, after) if y and not x)
    c = sum(1 for x, y in zip(before, after) if x and not y)
    d = (b - c) / n
    half = z * max(0.0, (b + c) - (b - c) ** 2 / n) ** 0.5 / n
    return d, d - half, d + half


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy (the chart's bands: sound near 0 and 1, unlike Wald)."""
    if n <= 0:
        return 0.0, 0.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
