from dagster_project.loop_state import LoopState, Step, next_step


def state(finetuned=(), evaluated=None, setup=True):
    return LoopState(has_problems=setup, has_base_policy=setup, finetuned=set(finetuned), evaluated=dict(evaluated or {}))


def test_order_setup_base_eval_iteration_eval():
    assert next_step(state(setup=False), 2, True) == Step("setup")
    assert next_step(state(), 2, True) == Step("evaluate", "0")
    assert next_step(state(evaluated={0: 0.0}), 2, True) == Step("iteration", "1")
    assert next_step(state({1}, {0: 0.0}), 2, True) == Step("evaluate", "1")
    assert next_step(state({1}, {0: 0.0, 1: 0.2}), 2, True) == Step("iteration", "2")
    assert next_step(state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}), 2, True).startswith("done")


def test_stops_when_validation_stops_improving():
    s = state({1}, {0: 0.1, 1: 0.1})
    assert next_step(s, 3, True).startswith("stopped")
    assert next_step(s, 3, False) == Step("iteration", "2")


def test_history_stops_at_first_gap():
    assert state(evaluated={0: 0.1, 2: 0.3}).history() == [0.1]
