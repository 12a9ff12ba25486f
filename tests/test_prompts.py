from restem_assets.tasks.prompts import CODE_SYSTEM, EXEMPLARS, MATH_SYSTEM, build_messages
from restem_assets.tasks.reasoning_gym_tasks import reasoning_gym_problems
from restem_assets.tasks.spec import TaskSpec


def test_math_prompt_has_exemplar_then_question():
    msgs = build_messages({"task": "chain_sum", "domain": "math", "question": "State ...: 1 + 2 ="})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == MATH_SYSTEM
    assert msgs[2]["content"].endswith("Answer: 17")
    assert msgs[-1]["content"] == "State ...: 1 + 2 ="


def test_code_prompt_has_no_math_exemplar():
    msgs = build_messages({"task": "humaneval", "domain": "code", "question": "def f(): ..."})
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[0]["content"] == CODE_SYSTEM


def test_chain_sum_exemplar_is_never_a_default_problem():
    """The exemplar has 4 terms; the default task has 2-3, so it cannot leak into train or test."""
    rows = reasoning_gym_problems(TaskSpec(train_size=256, test_size=128))
    exemplar_questions = {u for u, _ in EXEMPLARS["chain_sum"]}
    assert not exemplar_questions & {r["question"] for r in rows}
