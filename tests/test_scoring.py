import pytest

from restem_assets.rewards import score_samples


def problem(pid, verifier="math", answer="12", metadata="{}"):
    return {"problem_id": pid, "verifier": verifier, "answer": answer, "metadata": metadata, "domain": "math"}


def sample(pid, idx, completion):
    return {"problem_id": pid, "sample_idx": idx, "completion": completion}


def test_math_verifier_rows():
    problems = {"p": problem("p")}
    rows = score_samples([sample("p", 0, "5 + 7 = 12\nAnswer: 12"), sample("p", 1, "5 + 7 ="),
                          sample("p", 2, "Answer: 13")], problems)
    assert [(r["reward"], r["reason"], r["extracted_answer"]) for r in rows] == [
        (1.0, "correct", "12"), (0.0, "no_answer", None), (0.0, "wrong", "13")]


def test_reasoning_gym_verifier_uses_dataset_scorer():
    from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems
    from restem_assets.tasks.spec import TaskSpec

    rows = reasoning_gym_problems(TaskSpec(kind="reasoning_gym", name="basic_arithmetic", config={},
                                           train_size=2, test_size=1, seed=3))
    p = rows[0]
    assert p["verifier"] == "reasoning_gym"
    good, bad = score_samples([sample(p["problem_id"], 0, f"Answer: {p['answer']}"),
                               sample(p["problem_id"], 1, "Answer: -999999")], {p["problem_id"]: p})
    assert (good["reward"], good["reason"]) == (1.0, "correct")
    assert (bad["reward"], bad["reason"]) == (0.0, "wrong")


def test_unknown_problem_and_verifier_are_named():
    with pytest.raises(KeyError, match="missing from 'problems'"):
        score_samples([sample("nope", 0, "x")], {})
    with pytest.raises(ValueError, match="unknown verifier 'astrology'"):
        score_samples([sample("p", 0, "x")], {"p": problem("p", verifier="astrology")})
