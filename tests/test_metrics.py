import itertools
import random

import pytest

from restem_assets.evaluation.metrics import majority_vote, paired_difference_interval, pass_at_k, pass_at_k_exact


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Enumerate every k-subset of n samples (c correct) and count those with a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in sub) for sub in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_exact(n, c, k), abs=1e-12)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_vote_plain():
    assert majority_vote(["3", "4", "4", None], [False, True, True, False]) == ("4", True)


def test_majority_vote_tie_goes_to_first_seen():
    assert majority_vote(["5", "7", "7", "5"], [False, True, True, False]) == ("5", False)
    assert majority_vote(["7", "5", "5", "7"], [True, False, False, True]) == ("7", True)


def test_majority_vote_ignores_missing_answers():
    assert majority_vote([None, None, "2"], [False, False, False]) == ("2", False)
    assert majority_vote([None, None], [False, False]) == (None, False)


def test_majority_vote_is_order_independent_of_hashing():
    rng = random.Random(0)
    for _ in range(50):
        answers = [rng.choice("abc") for _ in range(6)]
        winner, _ = majority_vote(answers, [False] * 6)
        counts = {a: answers.count(a) for a in answers}
        best = max(counts.values())
        assert winner == next(a for a in answers if counts[a] == best)


def test_paired_interval():
    before = [False] * 100
    after = [True] * 20 + [False] * 80
    d, lo, hi = paired_difference_interval(before, after)
    assert d == pytest.approx(0.2)
    assert 0.1 < lo < 0.2 < hi < 0.3
    d, lo, hi = paired_difference_interval([True, False], [False, True])
    assert d == 0 and lo < 0 < hi
