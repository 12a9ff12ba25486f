"""Each sample is seeded by what it is (issue 23, item 4).

A kill -9 mid-E-step leaves some (problem_id, sample_idx) rows done; the resumed step samples
only the missing ones, in other batches, groups and positions than the uninterrupted step
would have. With one seed per sample, `sample_seed(step seed, problem_id, sample_idx)`, and an
engine whose completion depends on its prompt and its own seed only, the resumed rows are the
rows the uninterrupted step would have written (same engine, same dtype).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from restem_assets.generation import SamplingParams, row_seeds, sample_seed, vllm_available
from restem_assets.tasks.prompts import build_messages

QUESTIONS = ["12 + 7 - 5 =", "3 + 9 + 14 =", "40 - 17 + 2 =", "25 - 6 - 9 ="]
PROBLEMS = [{"problem_id": f"chain_sum/{i}", "task": "chain_sum",
             "question": f"State the final answer to the following arithmetic problem: {q}"}
            for i, q in enumerate(QUESTIONS)]
K = 3
ESTEP = SamplingParams(n=K, temperature=0.7, top_k=40, max_new_tokens=16, seed=3007)  # seed 7 + 1000 * iteration 3
EVAL = SamplingParams(n=K, temperature=1.0, top_k=0, top_p=0.95, max_new_tokens=16, seed=14)  # top-p alone
# what an interrupted step had finished: every sample of one problem, some samples of others, none of one
DONE = {("chain_sum/0", k) for k in range(K)} | {("chain_sum/1", 0), ("chain_sum/1", 2), ("chain_sum/3", 1)}


def test_sample_seed_is_stable_and_tells_samples_apart():
    # pinned: a changed derivation would make resumed steps differ from the rows already written
    assert sample_seed(3007, "chain_sum/1", 2) == sample_seed(3007, "chain_sum/1", 2) == 8332382707129246614
    seeds = {sample_seed(s, p["problem_id"], k) for s in (0, 1, 1000) for p in PROBLEMS for k in range(K)}
    assert len(seeds) == 3 * len(PROBLEMS) * K
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(0, "1", 0) != sample_seed(0, 1, 0)  # a problem_id "1" is not prompt position 1


def test_row_seeds_checks_one_seed_per_sample():
    params = SamplingParams(n=2, seed=5)
    assert row_seeds(params, 2) == [[sample_seed(5, i, j) for j in range(2)] for i in range(2)]
    assert row_seeds(params, 1, [[3, 4]]) == [[3, 4]]
    for bad in ([[3]], [[3, 4], [5, 6]], [[3, -1]]):
        with pytest.raises(ValueError, match="seeds"):
            row_seeds(params, 1, bad)


def _sample(engine, params: SamplingParams, done=frozenset()) -> dict[tuple[str, int], tuple]:
    """Generate what `done` lacks the way the E-step does (missing samples grouped by how many a problem
    lacks, one call per group), with each sample's own seed: {(problem_id, sample_idx): completion}."""
    prompts = [engine.render_prompt(build_messages(p)) for p in PROBLEMS]
    todo = {i: [k for k in range(params.n) if (p["problem_id"], k) not in done] for i, p in enumerate(PROBLEMS)}
    groups: dict[int, list[int]] = {}
    for i, missing in todo.items():
        if missing:
            groups.setdefault(len(missing), []).append(i)
    out = {}
    for m, positions in sorted(groups.items(), reverse=True):
        seeds = [[sample_seed(params.seed, PROBLEMS[i]["problem_id"], k) for k in todo[i]] for i in positions]
        for chunk in engine.generate([prompts[i] for i in positions], replace(params, n=m), seeds=seeds):
            for c in chunk:
                i = positions[c.prompt_index]
                out[(PROBLEMS[i]["problem_id"], todo[i][c.sample_idx])] = (c.text, c.n_tokens, c.finish_reason)
    return out


def _assert_resume_matches(engine, params: SamplingParams, full: dict | None = None) -> None:
    full = full or _sample(engine, params)
    assert len(full) == len(PROBLEMS) * K
    # sampling is really random: the samples of a prompt are not one completion repeated
    assert len({full[(p["problem_id"], k)][0] for p in PROBLEMS for k in range(K)}) > len(PROBLEMS)
    resumed = _sample(engine, params, done=DONE)
    assert set(resumed) == set(full) - DONE
    differ = [key for key in resumed if resumed[key] != full[key]]
    assert not differ, [(key, resumed[key][0], full[key][0]) for key in differ]


@pytest.fixture(scope="module")
def transformers_engine(model_path):
    from restem_assets.generation.transformers_engine import TransformersEngine

    # 6 rows: two prompts' K samples at a time, so rows are admitted, retired and refilled mid-batch
    return TransformersEngine(model_path, batch_size=2 * K)


@pytest.fixture(scope="module")
def uninterrupted(transformers_engine) -> dict:
    """The E-step's samples, all of them in one call."""
    return _sample(transformers_engine, ESTEP)


@pytest.mark.slow
def test_transformers_engine_resumed_samples_match_uninterrupted(transformers_engine, uninterrupted):
    _assert_resume_matches(transformers_engine, ESTEP, uninterrupted)


@pytest.mark.slow
def test_transformers_engine_resumed_samples_match_uninterrupted_with_top_p(transformers_engine):
    """Top-p alone: the candidate list a row draws from (its noise's width) is decided row by row."""
    _assert_resume_matches(transformers_engine, EVAL)


@pytest.mark.slow
def test_transformers_engine_batch_size_changes_no_sample(model_path, uninterrupted):
    """A row's completion does not depend on how many rows share its batch."""
    from restem_assets.generation.transformers_engine import TransformersEngine

    assert _sample(TransformersEngine(model_path, batch_size=256), ESTEP) == uninterrupted


@pytest.mark.slow
def test_resumed_e_step_rows_match_uninterrupted(transformers_engine, model_path):
    """Through the E-step's own `generate_rows`, uninterrupted and resumed with `done=` (after a kill -9)."""
    from restem_assets.generation.sampling import generate_rows
    from restem_assets.models.policies import Policy

    policy = Policy("iteration=3", model_path, "v0")
    prompts = [transformers_engine.render_prompt(build_messages(p)) for p in PROBLEMS]

    def rows(done=frozenset()):
        return {(r["problem_id"], r["sample_idx"]): (r["completion"], r["n_tokens"], r["finish_reason"])
                for chunk in generate_rows(transformers_engine, PROBLEMS, prompts, ESTEP, policy, done=done)
                for r in chunk}

    full, resumed = rows(), rows(done=DONE)
    assert set(resumed) == set(full) - DONE
    differ = [key for key in resumed if resumed[key] != full[key]]
    assert not differ, f"{len(differ)} of {len(resumed)} resumed samples differ from the uninterrupted step"


@pytest.mark.slow
@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed")
def test_vllm_engine_resumed_samples_match_uninterrupted(model_path):
    from restem_assets.generation.vllm_engine import VLLMEngine, default_enforce_eager

    engine = VLLMEngine(model_path, enforce_eager=default_enforce_eager(), log_level="ERROR")
    try:
        _assert_resume_matches(engine, ESTEP)
    finally:
        engine.close()
