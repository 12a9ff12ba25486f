"""Per-problem evaluation rows: pass@k and maj@k from scored completions."""

from restem_assets.evaluation.held_out import per_problem_rows

PROBLEM = [{"problem_id": "t", "domain": "math"}]


def scored(idx, answer, reward, reason):
    return {"problem_id": "t", "sample_idx": idx, "extracted_answer": answer, "reward": reward, "reason": reason}


def test_an_expression_does_not_vote_for_its_value():
    greedy = [scored(0, "7", 1.0, "correct")]
    sampled = [scored(0, "3 + 4", 0.0, "expression"), scored(1, "3+4", 0.0, "expression"),
               scored(2, "4 + 3", 0.0, "expression"), scored(3, "8", 0.0, "wrong")]
    (row,) = per_problem_rows(PROBLEM, greedy, sampled, 4)
    assert row["majority_answer"] == "8" and row["majority_correct"] is False
    assert (row["n_correct"], row["pass_at_k"]) == (0, 0.0)


def test_majority_of_numbers_still_votes():
    greedy = [scored(0, "7", 1.0, "correct")]
    sampled = [scored(0, "7", 1.0, "correct"), scored(1, "7.0", 1.0, "correct"), scored(2, "8", 0.0, "wrong"),
               scored(3, "3 + 4", 0.0, "expression")]
    (row,) = per_problem_rows(PROBLEM, greedy, sampled, 4)
    assert row["majority_answer"] == "7" and row["majority_correct"] is True and row["n_correct"] == 2
