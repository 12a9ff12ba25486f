from dagster_project.loop_state import ITERATION_ASSETS, LoopState, Step, next_step, refresh_step


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
    assert msg.startswith("stale: samples[2]") and "--from-iteration 2" in msg and "--refresh-stale" in msg
    assert next_step(s, 1, True).startswith("done")  # stale beyond the target does not matter


# After finetune[1] was re-run from the launchpad (lr 1e-4): its new policy[1] made these stale (the closure of
# restem_assets/assets/staleness.py). finetune[1] itself is current.
ROOT = "root: policy[1] has a new data version"
AFTER_A_LAUNCHPAD_RERUN = {
    ("evaluation", 1): "has a new dependency data version (policy[1])",
    ("samples", 2): "has a new dependency data version (policy[1])",
    ("rewards", 2): f"built on stale samples[2] ({ROOT})",
    ("sft_set", 2): f"built on stale samples[2] ({ROOT})",
    ("finetune", 2): f"built on stale sft_set[2] ({ROOT})",
    ("evaluation", 2): f"built on stale policy[2] ({ROOT})",
}


def test_the_stale_message_offers_to_redo_only_the_stale_steps():
    """Issue 23: the exit-3 message suggested only `--from-iteration 1`, which re-fine-tunes iteration 1 with the
    profile's learning rate and throws the launchpad's away."""
    s = state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}, stale=AFTER_A_LAUNCHPAD_RERUN)
    msg = next_step(s, 2, True)
    assert msg.startswith("stale: evaluation[1]") and "`restem run --refresh-stale` redoes only these" in msg
    assert msg.index("--refresh-stale") < msg.index("--from-iteration 1")


def test_refreshing_redoes_the_stale_steps_in_order_and_nothing_current():
    """What `restem run --refresh-stale` runs, step by step, each refreshed step then no longer stale."""
    s = state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}, stale=AFTER_A_LAUNCHPAD_RERUN)
    ran = []
    while isinstance(step := next_step(s, 2, True, refresh_stale=True), Step):
        assert step == refresh_step(s, 2) and len(ran) < 10
        ran.append(step)
        done = ITERATION_ASSETS if step.job == "iteration" and step.assets is None else (step.assets or ("evaluation",))
        for name in done:
            s.stale.pop((name, int(step.partition)), None)
    assert ran == [Step("evaluate", "1"), Step("iteration", "2"), Step("evaluate", "2")]
    assert not any(step.job == "iteration" and step.partition == "1" for step in ran), "finetune[1] is kept"
    assert next_step(s, 2, True, refresh_stale=True).startswith("done")


def test_refreshing_part_of_an_iteration_keeps_its_current_steps():
    """samples[2] was redone alone (e.g. from the webserver): only what was built on the old samples is redone."""
    s = state({1, 2}, {0: 0.0, 1: 0.2, 2: 0.25}, stale={
        ("rewards", 2): "has a new dependency data version (samples[2])",
        ("sft_set", 2): "built on stale rewards[2] (root: samples[2] has a new data version)",
        ("finetune", 2): "built on stale sft_set[2] (root: samples[2] has a new data version)",
        ("evaluation", 2): "built on stale policy[2] (root: samples[2] has a new data version)",
        ("samples", 3): "built on stale policy[2] (root: samples[2] has a new data version)"})
    assert next_step(s, 3, True, refresh_stale=True) == Step("iteration", "2", ("rewards", "sft_set", "finetune"))
    assert next_step(s, 2, True, refresh_stale=True) == Step("iteration", "2", ("rewards", "sft_set", "finetune"))
    for name in ("rewards", "sft_set", "finetune"):
        del s.stale[(name, 2)]
    assert next_step(s, 2, True, refresh_stale=True) == Step("evaluate", "2")
    del s.stale[("evaluation", 2)]
    # stale beyond the target is left alone, and the loop goes on as without --refresh-stale
    assert next_step(s, 2, True, refresh_stale=True).startswith("done")
    assert refresh_step(s, 2) is None


def test_stops_when_validation_stops_improving():
    s = state({1}, {0: 0.1, 1: 0.1})
    assert next_step(s, 3, True).startswith("stopped")
    assert next_step(s, 3, False) == Step("iteration", "2")


def test_history_stops_at_first_gap():
    assert state(evaluated={0: 0.1, 2: 0.3}).history() == [0.1]
