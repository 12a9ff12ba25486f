"""What `auto` means for one stage: start vLLM only when the work repays its start-up."""

from restem_assets.generation.engine_pool import VLLM_BREAK_EVEN_TOKENS, EnginePool, choose_kind, expected_tokens


def test_auto_starts_vllm_only_for_work_that_repays_its_start_up():
    small, large = VLLM_BREAK_EVEN_TOKENS - 1, VLLM_BREAK_EVEN_TOKENS
    assert choose_kind("auto", small, live=None, have_vllm=True) == "transformers"
    assert choose_kind("auto", large, live=None, have_vllm=True) == "vllm"
    assert choose_kind("auto", small, live="vllm", have_vllm=True) == "vllm"  # already paid for: keep using it
    assert choose_kind("auto", None, live=None, have_vllm=True) == "vllm"  # unknown work: the faster engine
    assert choose_kind("auto", large, live=None, have_vllm=False) == "transformers"
    assert choose_kind("auto", 10, live=None, break_even=5, have_vllm=True) == "vllm"
    for named in ("transformers", "vllm", "ray"):
        assert choose_kind(named, 0, live=None, have_vllm=False) == named


def test_expected_tokens_of_the_demo_stages():
    """The default profile's E-step (256 x 8, 96 tokens) starts vLLM; its base evaluation (128 greedy +
    128 x 4 sampled) and every tiny/ci stage stay on the transformers engine."""
    assert expected_tokens(256 * 8, 96) >= VLLM_BREAK_EVEN_TOKENS
    assert expected_tokens(128 * 5, 96) < VLLM_BREAK_EVEN_TOKENS
    assert expected_tokens(48 * 4, 48) < VLLM_BREAK_EVEN_TOKENS
    assert expected_tokens(0, 96) == 0


def test_an_empty_pool_has_nothing_to_give_back():
    pool = EnginePool()
    assert pool.live_kind() is None
    pool.before_finetune()
    pool.close()
    assert (pool.starts, pool.swaps) == (0, 0)


def test_a_run_whose_work_repays_the_start_up_uses_vllm_from_its_first_stage():
    """The driver plans the whole run: a small first stage (the base evaluation) still gets vLLM when the
    run's E-steps will start it anyway, since one engine then serves every stage."""
    small = VLLM_BREAK_EVEN_TOKENS // 2
    assert choose_kind("auto", small, live=None, have_vllm=True, planned=0) == "transformers"
    assert choose_kind("auto", small, live=None, have_vllm=True, planned=3 * VLLM_BREAK_EVEN_TOKENS) == "vllm"
    assert choose_kind("auto", small, live=None, have_vllm=True, planned=small) == "transformers"


def test_restem_transfer_plans_every_policy_it_will_evaluate(tmp_path):
    """The transfer check on the code demo's three policies: HumanEval (164 prompts, 256 tokens) is below the
    break-even for one policy alone but not for three, so one vLLM engine serves them all. (Judged policy
    by policy, the transformers engine took ~15 s per HumanEval prompt on the 2-core machine.)"""
    from restem_assets.assets.resources import build_resources
    from restem_assets.environment import Settings

    rest = build_resources(Settings(profile="code", data_root=str(tmp_path)))["rest"].settings()
    one = expected_tokens(164, 256)
    assert rest.target_iterations == 2 and rest.planned_transfer_tokens(164) == 3 * one
    assert choose_kind("auto", one, live=None, have_vllm=True, planned=0) == "transformers"
    assert choose_kind("auto", one, live=None, have_vllm=True, planned=rest.planned_transfer_tokens(164)) == "vllm"


def test_the_run_plan_comes_from_the_configuration_alone(tmp_path):
    """The CLI and the webserver build the same resources from the same configuration, so `auto` plans the
    same run and picks the same engine for a stage (the plan was once set by the CLI driver only)."""
    from restem_assets.assets.resources import build_resources
    from restem_assets.environment import Settings

    rest = build_resources(Settings(data_root=str(tmp_path)))["rest"].settings()
    per_estep, per_eval = expected_tokens(256 * 4, 96), expected_tokens(128 * 5, 96)
    assert rest.planned_tokens(256, 128) == 2 * per_estep + 3 * per_eval
    three = build_resources(Settings(data_root=str(tmp_path)), {"rest": {"target_iterations": 3}})["rest"].settings()
    assert three.planned_tokens(256, 128) == 3 * per_estep + 4 * per_eval
    # the default demo's base evaluation alone would not start vLLM, the run's plan does
    assert choose_kind("auto", per_eval, live=None, have_vllm=True, planned=rest.planned_tokens(256, 128)) == "vllm"


def test_vllm_runs_eager_on_cpu_hosts_and_compiled_on_gpus_unless_told(monkeypatch, tmp_path):
    """`engine.vllm_enforce_eager` None (the default) follows the host: eager on CPU, where torch.compile's
    ~130 s start-up is not repaid at demo sizes, compiled (CUDA graphs) on GPUs. An explicit value wins."""
    import restem_assets.assets.resources as res
    import restem_assets.generation.engine_pool as pool
    import restem_assets.generation.vllm_engine as vllm_engine

    seen = []

    class Stub:
        def close(self):
            pass

    monkeypatch.setattr(pool, "make_engine", lambda kind, path, **options: seen.append(options) or Stub())
    monkeypatch.setattr(res, "resolve_model", lambda model: str(model))
    for host_is_cpu in (True, False):
        monkeypatch.setattr(vllm_engine, "default_enforce_eager", lambda cpu=host_is_cpu: cpu)
        for value, expected in ((None, host_is_cpu), (False, False), (True, True)):
            with res.EngineResource(kind="vllm", reuse=False, vllm_enforce_eager=value).open(str(tmp_path)):
                pass
            assert seen[-1]["enforce_eager"] is expected
