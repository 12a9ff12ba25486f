from dagster_project.loop_state import ITERATION_ASSETS, LoopState, Step, next_step


def state(finetuned=(), evaluated=None, setup=True, partial=None, stale=None):
    materialized = {name: set(finetuned) for name in ITERATION_ASSETS}
    for name, parts in (partial or {}).items():
        materialized[name] |= set(parts)
    return LoopState(has_problems=setup, has_base_policy=setup, materialized=materialized,
                     evaluated=dict(evaluated or {}), stale=dict(stale or {}))


def test_order_setup_base_eval_iteration_eval():
    assert next_step(state(setup=False), 2, True) == Step("setup")
    assert next_step(state(), 2, True) == Step("evaluate", "0")
    assert next_step(state(evaluated={0: 0.0}), 2, True) == Step("iteration", "1")
    assert next_step(state({1}, {0: 0.0}), 2, True) == Step("evaluate", "1")
    assert next_step(state({1}, {0: 0.0, 1: 0.2}), 2, True) == Step("iteration", "2")
    assert next_step(state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}), 2, True).startswith("done")


def test_an_interrupted_iteration_resumes_at_its_first_missing_step():
    s = state(evaluated={0: 0.0}, partial={"samples": {1}, "rewards": {1}})
    assert next_step(s, 2, True) == Step("iteration", "1", ("sft_set", "finetune"))
    s = state(evaluated={0: 0.0}, partial={"samples": {1}, "rewards": {1}, "sft_set": {1}})
    assert next_step(s, 2, True) == Step("iteration", "1", ("finetune",))


def test_stale_iterations_are_never_done():
    s = state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}, stale={("samples", 2): "new upstream data version (policy[1])"})
    msg = next_step(s, 2, True)
    assert msg.startswith("stale: samples[2]") and "--from-iteration 2" in msg
    assert next_step(s, 1, True).startswith("done")  # stale beyond the target does not matter


def test_stops_when_validation_stops_improving():
    s = state({1}, {0: 0.1, 1: 0.1})
    assert next_step(s, 3, True).startswith("stopped")
    assert next_step(s, 3, False) == Step("iteration", "2")


def test_history_stops_at_first_gap():
    assert state(evaluated={0: 0.1, 2: 0.3}).history() == [0.1]
