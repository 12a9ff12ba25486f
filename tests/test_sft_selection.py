import pytest

from restem_assets.training.sft_selection import SftSelector


def select_sft_rows(pairs, max_per_problem=10):
    """Stream (sample, reward) pairs through the selector, as the sft_set asset does."""
    selector = SftSelector(max_per_problem)
    for sample, reward in pairs:
        selector.add(sample, reward)
    return selector.rows()


def s(pid, idx, completion):
    return {"problem_id": pid, "sample_idx": idx, "prompt": "P", "completion": completion, "n_tokens": 1}


def test_keeps_only_correct():
    rows = select_sft_rows([(s("a", 0, "x"), 1.0), (s("a", 1, "y"), 0.0)])
    assert [(r["problem_id"], r["sample_idx"]) for r in rows] == [("a", 0)]


def test_caps_per_problem_keeping_lowest_sample_idx():
    pairs = [(s("easy", i, f"sol {i}"), 1.0) for i in reversed(range(15))] + [(s("hard", 3, "z"), 1.0)]
    rows = select_sft_rows(pairs, max_per_problem=10)
    easy = [r["sample_idx"] for r in rows if r["problem_id"] == "easy"]
    assert easy == list(range(10))
    assert [r["sample_idx"] for r in rows if r["problem_id"] == "hard"] == [3]


def test_identical_completions_deduplicated_after_strip():
    pairs = [(s("a", 2, "Answer: 4"), 1.0), (s("a", 0, "Answer: 4\n"), 1.0), (s("a", 1, "4\nAnswer: 4"), 1.0)]
    rows = select_sft_rows(pairs)
    assert sorted(r["sample_idx"] for r in rows) == [0, 1]


def test_dedup_happens_before_cap():
    pairs = [(s("a", i, "same"), 1.0) for i in range(5)] + [(s("a", 10 + i, f"d{i}"), 1.0) for i in range(3)]
    rows = select_sft_rows(pairs, max_per_problem=3)
    assert [r["sample_idx"] for r in rows] == [0, 10, 11]


def test_bad_cap():
    with pytest.raises(ValueError):
        select_sft_rows([], max_per_problem=0)
