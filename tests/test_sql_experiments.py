"""The experiment-aware views and the analysis queries: compare_experiments, problem_learning,
difficulty_buckets, cost_per_iteration.

The fixture is two experiments on one data root, laid out as the assets write them: `default` under
`<root>/<table>/...` (policies 0, 1, 2) and `k4` under `<root>/experiment=k4/<table>/...` (policies 0, 1),
plus the `experiments` registry and `stage_costs` rows. Every expected number below was computed by
hand from the tables written in `write_experiments`.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from restem_assets.reporting import analytics
from restem_assets.store import schemas
from restem_assets.reporting.costs import STAGE_COSTS, stage_table
from restem_assets.experiments import EXPERIMENTS, experiment_root
from restem_assets.store.tables import ParquetStore
from tests.test_sql import EXPECTED as BASE_EXPECTED
from tests.test_sql import _same

RESTEM = Path(sys.executable).with_name("restem")

# (problem_id, split, metadata): t1 level 1, t2 level 2, t3 no difficulty field.
PROBLEMS = [("p1", "train", "{}"), ("p2", "train", "{}"), ("t1", "test", '{"level": 1}'),
            ("t2", "test", '{"level": 2}'), ("t3", "test", "{}")]
K = 4
# experiment -> policy -> [(problem_id, greedy_correct, n_correct of K, majority_correct)]
BASE = [("t1", False, 2, False), ("t2", False, 0, False), ("t3", True, 1, True)]  # rates 0.5, 0, 0.25
EVALS = {
    "default": {0: BASE,
                1: [("t1", True, 3, True), ("t2", False, 1, False), ("t3", True, 4, True)],
                2: [("t1", True, 4, True), ("t2", True, 2, True), ("t3", False, 1, False)]},
    "k4": {0: BASE,
           1: [("t1", False, 1, False), ("t2", True, 2, True), ("t3", True, 3, True)]},
}
# experiment -> iteration (samples from policy iteration - 1) -> problem -> rewards of its samples
REWARDS = {
    "default": {1: {"p1": [1, 0], "p2": [0, 0]}, 2: {"p1": [1, 1], "p2": [0, 1, 1]}},
    "k4": {1: {"p1": [0, 0], "p2": [1, 0]}},
}
# Samples drawn in a later E-step round with the answer as a hint (round 1); the rest: round 0, self.
# Every sample has 5 + sample_idx tokens.
HINTED = {("default", 2, "p2", 2), ("k4", 1, "p2", 0)}
SFT = {"default": {1: [("p1", 0)], 2: [("p1", 0), ("p1", 1), ("p2", 1)]}, "k4": {1: [("p2", 0)]}}
# default 2: p2#2 (hinted) was dropped from the SFT set by the audit; p1#1 is flagged but kept.
AUDIT = {"default": {2: [("p2", 2, "mentions_hint"), ("p1", 1, "no_working")]}}
LOSS = {"default": {1: [(1, 0.9), (2, 0.5)], 2: [(1, 0.8), (2, 0.4)]}, "k4": {1: [(1, 0.7), (2, 0.6)]}}
REGISTRY = {"default": (2, "base"), "k4": (4, "previous")}
GIB = 2**30
# experiment -> iteration -> stage -> (wall, cpu, gpu_seconds, gpus, peak_rss, prompt, generated, trained, cpu $/h, gpu $/h)
COSTS = {
    "default": {1: {"samples": (10.0, 20.0, None, 0, GIB, 100, 50, None, 0.5, 2.0),
                    "rewards": (1.0, 1.0, None, 0, GIB // 2, None, None, None, None, None),
                    "finetune": (30.0, 60.0, 30.0, 1, 2 * GIB, None, None, 40, 0.5, 2.0)}},
    "k4": {1: {"samples": (5.0, 5.0, None, 0, GIB // 4, 10, 5, None, None, None)}},
}


def write_experiments(root: str) -> None:
    for exp in EVALS:
        store = ParquetStore(experiment_root(root, exp))
        store.write_table("problems", [
            {"problem_id": pid, "split": split, "task": "chain_sum", "domain": "math", "verifier": "math",
             "question": f"Q {pid}", "answer": "1", "solution": "", "metadata": meta} for pid, split, meta in PROBLEMS],
            schemas.PROBLEMS)
        for policy, rows in EVALS[exp].items():
            store.write_table("evaluations", [
                {"problem_id": pid, "greedy_answer": "1", "greedy_correct": g, "k": K, "n_correct": n,
                 "pass_at_1": n / K, "pass_at_k": float(n > 0), "majority_answer": "1", "majority_correct": m}
                for pid, g, n, m in rows], schemas.EVALUATIONS, iteration=policy)
        for it, by_problem in REWARDS[exp].items():
            store.write_table("rewards", [
                {"problem_id": pid, "sample_idx": i, "extracted_answer": "1", "reward": float(r), "reason": "x",
                 "details": None, "verifier": "math", "verifier_version": "v1"}
                for pid, rs in by_problem.items() for i, r in enumerate(rs)], schemas.REWARDS, iteration=it)
            store.write_table("samples", [
                {"problem_id": pid, "sample_idx": i, "prompt": "Q", "completion": "A", "n_tokens": 5 + i,
                 "finish_reason": "stop", "policy_id": "p", "policy_path": "m", "engine": "e", "temperature": 0.7,
                 "top_k": 40, "top_p": 1.0, "max_new_tokens": 8, "seed": 0,
                 "round": int((exp, it, pid, i) in HINTED), "source": "hinted" if (exp, it, pid, i) in HINTED else "self"}
                for pid, rs in by_problem.items() for i, _ in enumerate(rs)], schemas.SAMPLES, iteration=it)
            store.write_table("sft_set", [{"problem_id": p, "sample_idx": i, "prompt": "Q", "completion": "A",
                                           "n_tokens": 5 + i, "source": "hinted" if (exp, it, p, i) in HINTED else "self"}
                                          for p, i in SFT[exp][it]], schemas.SFT_SET, iteration=it)
            store.write_table("reward_audit", [{"problem_id": p, "sample_idx": i, "rule": rule, "detail": "d"}
                                               for p, i, rule in AUDIT.get(exp, {}).get(it, [])],
                              schemas.REWARD_AUDIT, iteration=it)
            store.write_table("finetune_log", [{"step": s, "epoch": s / 2, "loss": loss, "learning_rate": 1e-5}
                                               for s, loss in LOSS[exp][it]], schemas.FINETUNE_LOG, iteration=it)
        for it, stages in COSTS[exp].items():
            for stage, values in stages.items():
                names = ["wall_seconds", "cpu_seconds", "gpu_seconds", "gpus", "peak_rss_bytes", "prompt_tokens",
                         "generated_tokens", "trained_tokens", "cpu_hour_price", "gpu_hour_price"]
                row = dict(zip(names, values), host="h", run_id="r", recorded_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
                store.write_table(stage_table(stage), [row], STAGE_COSTS, iteration=it)
    ParquetStore(root).write_table("experiments", [
        {"experiment": exp, "profile": "tiny", "task": "reasoning_gym:chain_sum", "model": "default",
         "samples_per_problem": k, "temperature": 0.7, "max_per_problem": 10, "init_from": init,
         "finetune_method": "full", "learning_rate": 2e-5, "epochs": 2.0, "overrides": "{}",
         "config": '{"rest": {"sampling": "prop2diff", "hints": true}}' if exp == "k4" else "{}",
         "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)} for exp, (k, init) in REGISTRY.items()],
        EXPERIMENTS)


C1 = 20 / 3600 * 0.5  # default iteration 1 samples: 20 CPU-s at 0.5/h
C2 = 1 / 3600 * 0.5  # rewards: its own price is NULL, the iteration's recorded 0.5/h applies
C3 = 60 / 3600 * 0.5 + 30 / 3600 * 2.0  # finetune: CPU and GPU
MB = 1024.0
EXPECTED = {
    "compare_experiments": (
        ["iteration", "experiment", "samples_per_problem", "init_from", "sampling", "hints", "test_problems",
         "greedy_pass_at_1", "greedy_gain_vs_base", "k", "pass_at_k", "maj_at_k", "samples", "correct_samples",
         "train_coverage", "hinted_problems", "estep_tokens", "sft_examples", "final_train_loss", "wall_seconds"],
        [
            (0, "default", 2, "base", None, None, 3, 1 / 3, 0.0, 4, 2 / 3, 1 / 3, None, None, None, None, None, None,
             None, None),
            (0, "k4", 4, "previous", "prop2diff", True, 3, 1 / 3, 0.0, 4, 2 / 3, 1 / 3, None, None, None, None, None,
             None, None, None),
            # default 1: greedy t1 t3; all sampled at least once; maj t1 t3; E-step p1#0 correct of 4; 5+6 tokens
            # per problem; wall: samples 10 + rewards 1 + finetune 30
            (1, "default", 2, "base", None, None, 3, 2 / 3, 1 / 3, 4, 1.0, 2 / 3, 4, 1, 1, 0, 22, 1, 0.5, 41.0),
            # k4 1: greedy t2 t3; E-step p2#0 (hinted) correct of 4
            (1, "k4", 4, "previous", "prop2diff", True, 3, 2 / 3, 1 / 3, 4, 1.0, 2 / 3, 4, 1, 1, 1, 22, 1, 0.6, 5.0),
            (2, "default", 2, "base", None, None, 3, 2 / 3, 1 / 3, 4, 1.0, 2 / 3, 5, 4, 2, 0, 29, 3, 0.4, None),
        ],
    ),
    "coverage_per_round": (
        ["experiment", "iteration", "round", "source", "problems_sampled", "samples", "tokens", "correct",
         "newly_covered", "covered", "train_problems", "covered_share", "tokens_so_far"],
        [
            ("default", 1, 0, "self", 2, 4, 22, 1, 1, 1, 2, 0.5, 22),
            ("default", 2, 0, "self", 2, 4, 22, 3, 2, 2, 2, 1.0, 22),
            ("default", 2, 1, "hinted", 1, 1, 7, 1, 0, 2, 2, 1.0, 29),
            ("k4", 1, 0, "self", 2, 3, 17, 0, 0, 0, 2, 0.0, 17),
            ("k4", 1, 1, "hinted", 1, 1, 5, 1, 1, 1, 2, 0.5, 22),
        ],
    ),
    "audit_by_source": (
        ["experiment", "iteration", "source", "audited", "flagged", "flag_rate", "mentions_hint", "no_working",
         "wrong_step"],
        [
            ("default", 1, "self", 1, 0, 0.0, 0, 0, 0),
            ("default", 2, "hinted", 1, 1, 1.0, 1, 0, 0),
            ("default", 2, "self", 3, 1, 1 / 3, 0, 1, 0),
            ("k4", 1, "hinted", 1, 0, 0.0, 0, 0, 0),
        ],
    ),
    "problem_learning": (
        ["experiment", "split", "measure", "iteration", "problems", "solved", "newly_solved", "retained", "forgotten"],
        [
            ("default", "test", "greedy", 0, 3, 1, None, None, None),  # t3
            ("default", "test", "greedy", 1, 3, 2, 1, 1, 0),  # t1 new, t3 kept
            ("default", "test", "greedy", 2, 3, 2, 1, 1, 1),  # t2 new, t1 kept, t3 forgotten
            ("default", "test", "sampled", 0, 3, 2, None, None, None),  # t1 t3
            ("default", "test", "sampled", 1, 3, 3, 1, 2, 0),
            ("default", "test", "sampled", 2, 3, 3, 0, 3, 0),
            ("default", "train", "sampled", 0, 2, 1, None, None, None),  # rewards[1]: p1
            ("default", "train", "sampled", 1, 2, 2, 1, 1, 0),  # rewards[2]: p1 p2
            ("k4", "test", "greedy", 0, 3, 1, None, None, None),
            ("k4", "test", "greedy", 1, 3, 2, 1, 1, 0),  # t2 new, t3 kept
            ("k4", "test", "sampled", 0, 3, 2, None, None, None),
            ("k4", "test", "sampled", 1, 3, 3, 1, 2, 0),
            ("k4", "train", "sampled", 0, 2, 1, None, None, None),  # rewards[1]: p2
        ],
    ),
    "difficulty_buckets": (
        ["experiment", "bucketing", "bucket", "iteration", "problems", "greedy_pass_at_1", "pass_at_k"],
        [
            # base rates: t1 2/4 -> (0.25, 1]; t2 0 -> 0; t3 1/4 -> (0, 0.25]
            ("default", "base_success_rate", "(0, 0.25]", 0, 1, 1.0, 1.0),
            ("default", "base_success_rate", "(0, 0.25]", 1, 1, 1.0, 1.0),
            ("default", "base_success_rate", "(0, 0.25]", 2, 1, 0.0, 1.0),
            ("default", "base_success_rate", "(0.25, 1]", 0, 1, 0.0, 1.0),
            ("default", "base_success_rate", "(0.25, 1]", 1, 1, 1.0, 1.0),
            ("default", "base_success_rate", "(0.25, 1]", 2, 1, 1.0, 1.0),
            ("default", "base_success_rate", "0", 0, 1, 0.0, 0.0),
            ("default", "base_success_rate", "0", 1, 1, 0.0, 1.0),
            ("default", "base_success_rate", "0", 2, 1, 1.0, 1.0),
            ("default", "level", "1", 0, 1, 0.0, 1.0),
            ("default", "level", "1", 1, 1, 1.0, 1.0),
            ("default", "level", "1", 2, 1, 1.0, 1.0),
            ("default", "level", "2", 0, 1, 0.0, 0.0),
            ("default", "level", "2", 1, 1, 0.0, 1.0),
            ("default", "level", "2", 2, 1, 1.0, 1.0),
            ("k4", "base_success_rate", "(0, 0.25]", 0, 1, 1.0, 1.0),
            ("k4", "base_success_rate", "(0, 0.25]", 1, 1, 1.0, 1.0),
            ("k4", "base_success_rate", "(0.25, 1]", 0, 1, 0.0, 1.0),
            ("k4", "base_success_rate", "(0.25, 1]", 1, 1, 0.0, 1.0),
            ("k4", "base_success_rate", "0", 0, 1, 0.0, 0.0),
            ("k4", "base_success_rate", "0", 1, 1, 1.0, 1.0),
            ("k4", "level", "1", 0, 1, 0.0, 1.0),
            ("k4", "level", "1", 1, 1, 0.0, 1.0),
            ("k4", "level", "2", 0, 1, 0.0, 0.0),
            ("k4", "level", "2", 1, 1, 1.0, 1.0),
        ],
    ),
    "cost_per_iteration": (
        ["experiment", "iteration", "stage", "wall_seconds", "cpu_seconds", "gpu_seconds", "peak_rss_mb",
         "prompt_tokens", "generated_tokens", "trained_tokens", "cost"],
        [
            ("default", 1, "samples", 10.0, 20.0, None, MB, 100, 50, None, C1),
            ("default", 1, "rewards", 1.0, 1.0, None, MB / 2, None, None, None, C2),
            ("default", 1, "finetune", 30.0, 60.0, 30.0, 2 * MB, None, None, 40, C3),
            ("default", 1, "all", 41.0, 81.0, 30.0, 2 * MB, 100, 50, 40, C1 + C2 + C3),
            ("k4", 1, "samples", 5.0, 5.0, None, MB / 4, 10, 5, None, 0.0),  # no price recorded
            ("k4", 1, "all", 5.0, 5.0, None, MB / 4, 10, 5, None, 0.0),
        ],
    ),
}


def assert_rows(df, name):
    columns, rows = EXPECTED[name]
    assert df.columns == columns, name
    got = df.rows()
    assert len(got) == len(rows), (name, got)
    for g, e in zip(got, rows):
        assert len(g) == len(e) and all(map(_same, g, e)), (name, g, e)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("experiments") / "data")
    write_experiments(path)
    return path


def test_every_query_has_expectations():
    assert analytics.list_queries() == sorted({**BASE_EXPECTED, **EXPECTED})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query(root, name):
    assert_rows(analytics.run_query(root, name), name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query_empty_store(tmp_path, name):
    df = analytics.run_query(str(tmp_path / "nothing"), name)
    assert df.height == 0 and df.columns == EXPECTED[name][0]


def test_views_show_one_experiment_and_all_of_them(root):
    """`evaluations` is the selected experiment's rows; `all_evaluations` every experiment's, each tagged."""
    con = analytics.connect(root)
    assert con.execute("SELECT count(*), list(DISTINCT experiment) FROM evaluations").fetchone() == (9, ["default"])
    con_k4 = analytics.connect(root, experiment="k4")
    assert con_k4.execute("SELECT count(*), list(DISTINCT iteration ORDER BY iteration) FROM evaluations").fetchone() \
        == (6, [0, 1])
    assert con.execute("SELECT experiment, count(*) FROM all_evaluations GROUP BY ALL ORDER BY 1").fetchall() \
        == [("default", 9), ("k4", 6)]
    assert con.execute("SELECT count(*) FROM all_problems").fetchone() == (10,)
    assert con.execute("SELECT list(experiment ORDER BY experiment) FROM experiments").fetchone() == (["default", "k4"],)
    # an existing per-experiment query, on the other experiment
    assert analytics.run_query(root, "iteration_progress", experiment="k4")["iteration"].to_list() == [0, 1]


def test_cost_prices_from_variables(root):
    """--set cpu_hour_price / gpu_hour_price replace the recorded prices."""
    df = analytics.run_query(root, "cost_per_iteration", cpu_hour_price=3600.0, gpu_hour_price=0.0)
    costs = {(e, s): c for e, s, c in zip(df["experiment"], df["stage"], df["cost"])}
    assert costs[("default", "samples")] == pytest.approx(20.0)
    assert costs[("default", "finetune")] == pytest.approx(60.0)
    assert costs[("default", "all")] == pytest.approx(81.0)
    assert costs[("k4", "samples")] == pytest.approx(5.0)


def test_restem_sql_cli(root):
    """`restem sql compare_experiments` and `restem sql iteration_progress --experiment k4`, as the README writes them."""
    proc = subprocess.run([str(RESTEM), "sql", "compare_experiments", "--data-root", root],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "k4" in proc.stdout and "previous" in proc.stdout
    proc = subprocess.run([str(RESTEM), "sql", "iteration_progress", "--experiment", "k4", "--data-root", root],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "shape: (2," in proc.stdout, proc.stdout
