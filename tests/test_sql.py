"""The DuckDB views and every query in sql/, from Python and from the DuckDB CLI.

The fixture is a small ReST^EM history laid out as the assets write it: policy 0
(the base model), then iterations 1 and 2, each an E-step on policy[i-1] (samples,
rewards, sft_set), a fine-tune (finetune_log) and an evaluation of policy[i] on the
test split (eval_samples, evaluations; policy 0 is evaluated too, but has no E-step
or fine-tune). Every expected number below was computed by hand from the tables
written in `write_history`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from restem_assets.reporting import analytics
from restem_assets.store import schemas
from restem_assets.reporting.analytics import TABLES
from restem_assets.store.tables import ParquetStore

REPO = Path(__file__).resolve().parent.parent

# -- fixture history ----------------------------------------------------------------------
# (problem_id, split, task, domain, gold answer); p4 is a train problem that was never sampled.
PROBLEMS = [
    ("p1", "train", "chain_sum", "math", "1"),
    ("p2", "train", "chain_sum", "math", "2"),
    ("p3", "train", "apps", "code", ""),
    ("p4", "train", "chain_sum", "math", "4"),
    ("t1", "test", "chain_sum", "math", "4"),
    ("t2", "test", "chain_sum", "math", "9"),
    ("t3", "test", "chain_sum", "math", "12"),
]
GOLD = {pid: answer for pid, _, _, _, answer in PROBLEMS}
# difficulty fields in problem metadata (greedy_by_level): t3 has none
METADATA = {"t1": '{"level": 1}', "t2": '{"level": 2}', "p3": '{"difficulty": "interview"}'}
# transfer_evaluations: iteration -> (problem_id, greedy_correct, reason) on HumanEval
TRANSFER = {
    0: [("h1", True, "passed"), ("h2", False, "syntax_error"), ("h3", False, "wrong_answer")],
    1: [("h1", True, "passed"), ("h2", True, "passed"), ("h3", False, "timeout")],
}
DOMAIN = {pid: domain for pid, _, _, domain, _ in PROBLEMS}
# E-step of iteration i (sampled from policy[i-1]) -> (problem_id, sample_idx, reason, n_tokens,
# finish_reason); reward = 1 iff reason is 'correct' or 'passed'. Written side by side: one line per
# (problem_id, sample_idx), its (reason, n_tokens, finish_reason) in iteration 1, then in iteration 2.
_SAMPLE_OUTCOMES = [
    ("p1", 0, ("correct", 10, "stop"), ("correct", 12, "stop")),
    ("p1", 1, ("wrong", 20, "stop"), ("correct", 18, "stop")),
    ("p1", 2, ("correct", 30, "stop"), ("correct", 30, "stop")),
    ("p2", 0, ("no_answer", 100, "length"), ("correct", 80, "stop")),
    ("p2", 1, ("wrong", 40, "stop"), ("wrong", 40, "stop")),
    ("p2", 2, ("no_answer", 100, "length"), ("no_answer", 200, "length")),
    ("p3", 0, ("syntax_error", 50, "stop"), ("passed", 25, "stop")),
    ("p3", 1, ("runtime_error", 60, "stop"), ("timeout", 35, "stop")),
    ("p3", 2, ("wrong_answer", 70, "stop"), ("passed", 45, "stop")),
]
SAMPLES = {it: [(pid, idx, *outcomes[it - 1]) for pid, idx, *outcomes in _SAMPLE_OUTCOMES] for it in (1, 2)}
# iteration -> kept (problem_id, sample_idx); iteration 2 dropped p3/2 as a duplicate of p3/0.
SFT = {1: [("p1", 0), ("p1", 2)], 2: [("p1", 0), ("p1", 1), ("p1", 2), ("p2", 0), ("p3", 0)]}
# iteration -> accepted samples the reward audit flagged: (problem_id, sample_idx, rule).
AUDIT = {1: [("p1", 0, "answer_not_last_line")],
         2: [("p1", 2, "very_short"), ("p3", 0, "special_cases_test_input"), ("p1", 1, "very_short")]}
# iteration -> verdicts a later verifier changed when the samples were rescored: (problem_id, sample_idx) -> reason.
RESCORED = {1: {("p1", 2): "expression", ("p2", 1): "correct"}}
# iteration -> (step, epoch, loss, learning_rate) of the fine-tune that produced policy[i]; the
# last step's loss is not the lowest, and iteration 2's log is written out of step order.
FINETUNE_LOG = {
    1: [(1, 0.5, 1.25, 1e-5), (2, 1.0, 0.875, 1e-5), (3, 1.5, 0.9375, 5e-6)],
    2: [(3, 1.5, 0.375, 5e-6), (4, 2.0, 0.4375, 0.0), (1, 0.5, 0.75, 1e-5), (2, 1.0, 0.5, 1e-5)],
}
# Evaluation of policy[i] on the test split (k = 4 samples at T=1.0):
# iteration -> problem_id -> (greedy extracted answer, [sampled extracted answers]); None = no answer.
EVAL_K = 4
EVAL_ANSWERS = {
    0: {"t1": ("5", ["4", "5", "4", None]), "t2": ("8", ["8", "8", None, "7"]), "t3": ("11", ["12", "11", "11", "11"])},
    1: {"t1": ("4", ["4", "4", "4", "4"]), "t2": ("8", ["9", "9", "8", None]), "t3": ("12", ["12", "12", "12", "11"])},
    2: {"t1": ("4", ["4", "4", "5", "4"]), "t2": ("9", ["9", "9", "9", "9"]), "t3": (None, [None, "13", "13", None])},
}
# The evaluations rows those answers give, by hand: iteration -> (problem_id, greedy_answer,
# greedy_correct, k, n_correct, pass_at_1 = c/k, pass_at_k = [c > 0], majority_answer, majority_correct).
EVALS = {
    0: [
        ("t1", "5", False, 4, 2, 0.5, 1.0, "4", True),
        ("t2", "8", False, 4, 0, 0.0, 0.0, "8", False),
        ("t3", "11", False, 4, 1, 0.25, 1.0, "11", False),
    ],
    1: [
        ("t1", "4", True, 4, 4, 1.0, 1.0, "4", True),
        ("t2", "8", False, 4, 2, 0.5, 1.0, "9", True),
        ("t3", "12", True, 4, 3, 0.75, 1.0, "12", True),
    ],
    2: [
        ("t1", "4", True, 4, 3, 0.75, 1.0, "4", True),
        ("t2", "9", True, 4, 4, 1.0, 1.0, "9", True),
        ("t3", None, False, 4, 0, 0.0, 0.0, "13", False),
    ],
}


def _policy_id(policy: int) -> str:
    return "base" if policy == 0 else f"iteration={policy}"


def _sample_row(pid, idx, n_tokens, finish, iteration):
    """A training sample of iteration `iteration`, drawn from policy[iteration - 1]."""
    return {
        "problem_id": pid, "sample_idx": idx, "prompt": f"Q {pid}", "completion": f"A {pid}/{idx}",
        "n_tokens": n_tokens, "finish_reason": finish, "policy_id": _policy_id(iteration - 1),
        "policy_path": "", "engine": "transformers", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "max_new_tokens": 100 if iteration <= 1 else 200, "seed": 1234 + idx, "round": 0, "source": "self",
    }


def _eval_sample_row(mode, pid, idx, answer, policy):
    reward = 1.0 if answer == GOLD[pid] else 0.0
    return {
        "mode": mode, "problem_id": pid, "sample_idx": idx, "prompt": f"Q {pid}", "completion": f"E {pid}/{idx}",
        "n_tokens": 8, "finish_reason": "stop", "policy_id": _policy_id(policy), "policy_path": "",
        "engine": "transformers", "temperature": 0.0 if mode == "greedy" else 1.0, "top_k": 0,
        "top_p": 1.0 if mode == "greedy" else 0.95, "max_new_tokens": 64, "seed": 99 + idx, "round": 0, "source": "self",
        "extracted_answer": answer, "reward": reward,
        "reason": "no_answer" if answer is None else ("correct" if reward else "wrong"), "details": None,
        "verifier": "math", "verifier_version": "v1",
    }


def write_history(store: ParquetStore) -> None:
    store.write_table(
        "problems",
        [
            {"problem_id": pid, "split": split, "task": task, "domain": domain, "verifier": domain,
             "question": f"Q {pid}", "answer": answer, "solution": "", "metadata": METADATA.get(pid, "{}")}
            for pid, split, task, domain, answer in PROBLEMS
        ],
        schemas.PROBLEMS,
    )
    for it, rows in SAMPLES.items():
        store.write_table("samples", [_sample_row(p, i, n, f, it) for p, i, _, n, f in rows], schemas.SAMPLES, iteration=it)
        store.write_table(
            "rewards",
            [
                {"problem_id": p, "sample_idx": i, "extracted_answer": None if r == "no_answer" else "x",
                 "reward": 1.0 if r in ("correct", "passed") else 0.0, "reason": r, "details": None,
                 "verifier": DOMAIN[p], "verifier_version": "v1"}
                for p, i, r, _, _ in rows
            ],
            schemas.REWARDS,
            iteration=it,
        )
        tokens = {(p, i): n for p, i, _, n, _ in rows}
        store.write_table(
            "sft_set",
            [{"problem_id": p, "sample_idx": i, "prompt": f"Q {p}", "completion": f"A {p}/{i}", "n_tokens": tokens[p, i],
              "source": "self"}
             for p, i in SFT[it]],
            schemas.SFT_SET,
            iteration=it,
        )
    for it, rows in AUDIT.items():
        store.write_table("reward_audit", [{"problem_id": p, "sample_idx": i, "rule": rule, "detail": "d"}
                                           for p, i, rule in rows], schemas.REWARD_AUDIT, iteration=it)
    for it, changed in RESCORED.items():
        rescored = []
        for p, i, r, _, _ in SAMPLES[it]:
            r = changed.get((p, i), r)
            rescored.append({"problem_id": p, "sample_idx": i, "extracted_answer": None if r == "no_answer" else "x",
                             "reward": 1.0 if r in ("correct", "passed") else 0.0, "reason": r, "details": None,
                             "verifier": DOMAIN[p], "verifier_version": "v2"})
        store.write_table("rescores", rescored, schemas.RESCORES, iteration=it)
    for it, rows in FINETUNE_LOG.items():
        store.write_table("finetune_log", [dict(zip(schemas.FINETUNE_LOG.names, r)) for r in rows],
                          schemas.FINETUNE_LOG, iteration=it)
    for it, answers in EVAL_ANSWERS.items():
        rows = [_eval_sample_row("greedy", pid, 0, greedy, it) for pid, (greedy, _) in answers.items()]
        rows += [_eval_sample_row("sampled", pid, idx, a, it)
                 for pid, (_, sampled) in answers.items() for idx, a in enumerate(sampled)]
        store.write_table("eval_samples", rows, schemas.EVAL_SAMPLES, iteration=it)
        store.write_table("evaluations", [dict(zip(schemas.EVALUATIONS.names, r)) for r in EVALS[it]],
                          schemas.EVALUATIONS, iteration=it)
    for it, rows in TRANSFER.items():
        store.write_table("transfer_evaluations", [{"benchmark": "humaneval", "problem_id": p, "greedy_correct": ok,
                                                   "reason": why} for p, ok, why in rows],
                          schemas.TRANSFER_EVALUATIONS, iteration=it)


# -- expected results, by hand ------------------------------------------------------------
EXPECTED = {
    "pass_rate_per_iteration": (
        ["iteration", "n_samples", "n_scored", "n_correct", "pass_rate"],
        [(1, 9, 9, 2, 2 / 9), (2, 9, 9, 6, 6 / 9)],
    ),
    "samples_per_problem": (
        ["iteration", "problem_id", "task", "n_samples", "n_correct", "pass_rate"],
        [
            (1, "p1", "chain_sum", 3, 2, 2 / 3),
            (1, "p2", "chain_sum", 3, 0, 0.0),
            (1, "p3", "apps", 3, 0, 0.0),
            (2, "p1", "chain_sum", 3, 3, 1.0),
            (2, "p2", "chain_sum", 3, 1, 1 / 3),
            (2, "p3", "apps", 3, 2, 2 / 3),
        ],
    ),
    "problem_coverage": (
        ["iteration", "n_train_problems", "n_problems_sampled", "n_problems_solved", "coverage", "coverage_of_sampled"],
        [(1, 4, 3, 1, 1 / 4, 1 / 3), (2, 4, 3, 3, 3 / 4, 1.0)],
    ),
    "answer_format_adherence": (
        ["iteration", "n_samples", "n_scored", "n_answered", "answered_share", "n_truncated", "truncated_share"],
        [(1, 9, 9, 7, 7 / 9, 2, 2 / 9), (2, 9, 9, 8, 8 / 9, 1, 1 / 9)],
    ),
    "completion_length": (
        ["iteration", "finish_reason", "n_samples", "mean_tokens", "p50_tokens", "p90_tokens", "max_tokens"],
        [
            # stop 1: 10..70 step 10; p90 at rank 0.9*6 = 5.4 -> 60 + 0.4*10 = 64
            (1, "length", 2, 100.0, 100.0, 100.0, 100),
            (1, "stop", 7, 40.0, 40.0, 64.0, 70),
            (1, "all", 9, 480 / 9, 50.0, 100.0, 100),
            # stop 2: 12 18 25 30 35 40 45 80; p50 (30+35)/2; p90 at rank 6.3 -> 45 + 0.3*35
            (2, "length", 1, 200.0, 200.0, 200.0, 200),
            (2, "stop", 8, 285 / 8, 32.5, 55.5, 80),
            # all 2: ... 45 80 200; p90 at rank 7.2 -> 80 + 0.2*120
            (2, "all", 9, 485 / 9, 35.0, 104.0, 200),
        ],
    ),
    "reward_reasons": (
        ["iteration", "reason", "n", "share"],
        [
            (1, "correct", 2, 2 / 9),
            (1, "no_answer", 2, 2 / 9),
            (1, "wrong", 2, 2 / 9),
            (1, "runtime_error", 1, 1 / 9),
            (1, "syntax_error", 1, 1 / 9),
            (1, "wrong_answer", 1, 1 / 9),
            (2, "correct", 4, 4 / 9),
            (2, "passed", 2, 2 / 9),
            (2, "no_answer", 1, 1 / 9),
            (2, "timeout", 1, 1 / 9),
            (2, "wrong", 1, 1 / 9),
        ],
    ),
    "reward_audit": (
        ["iteration", "rule", "n_flagged", "n_problems", "share_of_sft_set", "example"],
        [
            (1, "answer_not_last_line", 1, 1, 1 / 2, "p1#0"),  # iteration 1 kept 2 samples
            (2, "very_short", 2, 1, 2 / 5, "p1#1"),  # iteration 2 kept 5
            (2, "special_cases_test_input", 1, 1, 1 / 5, "p3#0"),
        ],
    ),
    "rescore_diff": (
        ["iteration", "problem_id", "sample_idx", "verifier", "old_version", "new_version", "old_reward", "new_reward",
         "old_reason", "new_reason", "old_answer", "new_answer"],
        [
            (1, "p1", 2, "math", "v1", "v2", 1.0, 0.0, "correct", "expression", "x", "x"),
            (1, "p2", 1, "math", "v1", "v2", 0.0, 1.0, "wrong", "correct", "x", "x"),
        ],
    ),
    "sft_set_per_iteration": (
        ["iteration", "n_examples", "n_problems", "mean_examples_per_problem", "max_examples_per_problem", "n_tokens"],
        [(1, 2, 1, 2.0, 2, 40), (2, 5, 3, 5 / 3, 3, 165)],
    ),
    "greedy_by_level": (
        ["iteration", "level", "problems", "greedy_pass_at_1", "pass_at_k"],
        [
            (0, "1", 1, 0.0, 1.0), (1, "1", 1, 1.0, 1.0), (2, "1", 1, 1.0, 1.0),  # t1
            (0, "2", 1, 0.0, 0.0), (1, "2", 1, 0.0, 1.0), (2, "2", 1, 1.0, 1.0),  # t2
            (0, "all", 1, 0.0, 1.0), (1, "all", 1, 1.0, 1.0), (2, "all", 1, 0.0, 0.0),  # t3: no level field
        ],
    ),
    "transfer_pass_rate": (
        ["iteration", "benchmark", "problems", "solved", "greedy_pass_at_1", "syntax_error", "wrong_answer",
         "runtime_error", "other"],
        [(0, "humaneval", 3, 1, 0.3333, 1, 1, 0, 0), (1, "humaneval", 3, 2, 0.6667, 0, 0, 0, 1)],
    ),
    "iteration_progress": (
        ["iteration", "test_problems", "greedy_pass_at_1", "greedy_correct", "k", "pass_at_1", "pass_at_k",
         "maj_at_k", "greedy_format_rate", "samples", "correct_samples", "problems_covered", "sft_examples",
         "final_train_loss"],
        [
            # policy 0, the base model: evaluated, but no E-step or fine-tune produced it -> NULLs.
            # greedy 5 8 11 all wrong but all answered; pass@1 (2/4 + 0/4 + 1/4) / 3; pass@4 t1, t3; maj t1.
            (0, 3, 0.0, 0, 4, 0.25, 2 / 3, 1 / 3, 1.0, None, None, None, None, None),
            # greedy t1 t3 right, t2 answered; pass@1 (4/4 + 2/4 + 3/4) / 3; E-step: p1/0, p1/2 correct;
            # final loss at step 3 (not the lowest, 0.875 at step 2).
            (1, 3, 2 / 3, 2, 4, 0.75, 1.0, 1.0, 1.0, 9, 2, 1, 2, 0.9375),
            # greedy t1 t2 right, t3 no answer; pass@1 (3/4 + 4/4 + 0/4) / 3; maj t1 t2;
            # E-step: p1 x3, p2/0, p3/0, p3/2 correct; final loss at step 4 (written second).
            (2, 3, 2 / 3, 2, 4, 7 / 12, 2 / 3, 2 / 3, 2 / 3, 9, 6, 3, 5, 0.4375),
        ],
    ),
}


def assert_rows(columns, rows, name):
    exp_columns, exp_rows = EXPECTED[name]
    assert list(columns) == exp_columns, name
    assert len(rows) == len(exp_rows), (name, rows)
    for got, exp in zip(rows, exp_rows):
        assert len(got) == len(exp) and all(map(_same, got, exp)), (name, got, exp)


def _same(got, exp) -> bool:
    """Floats to 1e-12 relative; everything else (counts, names, NULL) exactly, same type."""
    if isinstance(exp, float):
        return isinstance(got, float) and got == pytest.approx(exp, rel=1e-12)
    return type(got) is type(exp) and got == exp


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("history") / "data"
    write_history(ParquetStore(str(path)))
    return str(path)


# -- Python -------------------------------------------------------------------------------
def test_list_queries():
    from tests.test_sql_experiments import EXPECTED as EXPERIMENT_QUERIES  # the cross-experiment queries' tests

    assert analytics.list_queries() == sorted({**EXPECTED, **EXPERIMENT_QUERIES})
    assert analytics.query_path("reward_reasons.sql") == REPO / "sql" / "reward_reasons.sql"
    with pytest.raises(KeyError, match="available"):
        analytics.query_path("nope")


def test_views_sql_is_generated_from_tables():
    """sql/views.sql must match TABLES and the schemas; rerun --write-views if this fails."""
    assert analytics.VIEWS_PATH.read_text() == analytics.views_sql()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query_python(root, name):
    df = analytics.run_query(root, name)
    assert_rows(df.columns, df.rows(), name)


def test_query_parameter(root):
    con = analytics.connect(root)
    df = analytics.query_df(con, "samples_per_problem", iteration=2)
    assert df["iteration"].to_list() == [2, 2, 2]
    assert df["n_correct"].to_list() == [3, 1, 2]
    # the parameter does not leak into the next query on the same connection
    assert analytics.query_df(con, "samples_per_problem").height == 6


def test_views_expose_iteration_and_join(root):
    con = analytics.connect(root)
    assert con.execute("SELECT count(*), sum(iteration) FROM samples").fetchone() == (18, 27)
    assert con.execute("SELECT count(*) FROM problems").fetchone() == (7,)
    assert con.execute("SELECT count(*) FROM scored_samples WHERE reward IS NULL").fetchone() == (0,)
    # 3 policies x 3 test problems x (1 greedy + 4 sampled)
    assert con.execute("SELECT count(*), sum(iteration) FROM eval_samples").fetchone() == (45, 45)
    assert con.execute("SELECT list(DISTINCT iteration ORDER BY iteration) FROM finetune_log").fetchone() == ([1, 2],)


def test_fixture_evaluations_match_eval_samples(root):
    """The hand-written evaluations rows agree with the eval_samples they summarize."""
    con = analytics.connect(root)
    mismatches = con.execute("""
        WITH g AS (SELECT iteration, problem_id, extracted_answer, reward = 1 AS ok
                   FROM eval_samples WHERE mode = 'greedy'),
             s AS (SELECT iteration, problem_id, count(*)::INTEGER AS k,
                          (count(*) FILTER (WHERE reward = 1))::INTEGER AS c
                   FROM eval_samples WHERE mode = 'sampled' GROUP BY ALL)
        SELECT e.iteration, e.problem_id FROM evaluations AS e
        JOIN g USING (iteration, problem_id) JOIN s USING (iteration, problem_id)
        WHERE e.greedy_answer IS DISTINCT FROM g.extracted_answer OR e.greedy_correct <> g.ok
           OR e.k <> s.k OR e.n_correct <> s.c OR e.pass_at_1 <> s.c / s.k
           OR e.pass_at_k <> (s.c > 0)::DOUBLE
    """).fetchall()
    assert mismatches == []
    assert con.execute("SELECT count(*) FROM evaluations").fetchone() == (9,)


def test_new_iteration_is_seen_without_reconnecting(tmp_path):
    store = ParquetStore(str(tmp_path))
    store.write_table("samples", [_sample_row("p1", 0, 5, "stop", 1)], schemas.SAMPLES, iteration=1)
    con = analytics.connect(str(tmp_path))
    assert con.execute("SELECT count(*) FROM samples").fetchone() == (1,)
    store.write_table("samples", [_sample_row("p1", 0, 5, "stop", 2)], schemas.SAMPLES, iteration=2)
    assert con.execute("SELECT list(iteration ORDER BY iteration) FROM samples").fetchone() == ([1, 2],)


def test_samples_not_scored_yet(tmp_path):
    """Mid-iteration: samples written, rewards not yet. Rates are over scored samples only."""
    store = ParquetStore(str(tmp_path))
    store.write_table("samples", [_sample_row("p1", i, 7, "stop", 2) for i in range(3)], schemas.SAMPLES, iteration=2)
    root = str(tmp_path)
    assert analytics.run_query(root, "pass_rate_per_iteration").rows() == [(2, 3, 0, 0, None)]
    assert analytics.run_query(root, "answer_format_adherence").rows() == [(2, 3, 0, 0, None, 0, 0.0)]
    assert analytics.run_query(root, "samples_per_problem").rows() == [(2, "p1", None, 3, 0, None)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query_empty_store(tmp_path, name):
    df = analytics.run_query(str(tmp_path / "nothing-here"), name)
    assert df.height == 0
    assert df.columns == EXPECTED[name][0]


def test_empty_views_have_the_written_columns(tmp_path):
    """An empty view has the same column names and types as a view over written files."""
    written = ParquetStore(str(tmp_path / "written"))
    for table in TABLES:
        written.write_table(table.name, table.schema.empty_table(), table.schema,
                            iteration=0 if table.partitioned else None)
    full, empty = analytics.connect(written.root), analytics.connect(str(tmp_path / "empty"))
    for view in [t.name for t in TABLES] + ["scored_samples"]:
        describe = f"SELECT column_name, column_type FROM (DESCRIBE {view})"
        assert full.execute(describe).fetchall() == empty.execute(describe).fetchall(), view
    assert empty.execute("SELECT column_type FROM (DESCRIBE samples) WHERE column_name = 'iteration'").fetchone() == ("BIGINT",)


def test_memory_root():
    root = f"memory://restem-test-{uuid.uuid4().hex}"
    write_history(ParquetStore(root))
    try:
        for name in EXPECTED:
            df = analytics.run_query(root, name)
            assert_rows(df.columns, df.rows(), name)
    finally:
        fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_module_cli(root, capsys):
    assert analytics.main(["--root", root, "pass_rate_per_iteration"]) == 0
    out = capsys.readouterr().out
    assert "0.222222" in out and "0.666667" in out
    assert analytics.main(["--root", root, "--set", "iteration=2", "samples_per_problem"]) == 0
    out = capsys.readouterr().out
    assert "shape: (3, 6)" in out
    assert analytics.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == analytics.list_queries()
    assert set(EXPECTED) < set(analytics.list_queries())  # every query is tested here or in test_sql_experiments


# -- DuckDB CLI ---------------------------------------------------------------------------
def _duckdb_binary() -> str | None:
    venv_bin = Path(sys.executable).parent / "duckdb"
    return str(venv_bin) if venv_bin.exists() else shutil.which("duckdb")


DUCKDB = _duckdb_binary()
needs_cli = pytest.mark.skipif(DUCKDB is None, reason="duckdb CLI not installed (pip install duckdb-cli)")


def duckdb_cli(*commands: str, cwd: Path = REPO, json_mode: bool = True):
    args = [DUCKDB] + (["-json"] if json_mode else [])
    for command in commands:
        args += ["-c", command]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout or "[]") if json_mode else proc.stdout


@needs_cli
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query_cli(root, name):
    rows = duckdb_cli(f"SET VARIABLE data_root = '{root}'", ".read sql/views.sql", f".read sql/{name}.sql")
    columns = list(rows[0]) if rows else EXPECTED[name][0]
    assert_rows(columns, [tuple(r.values()) for r in rows], name)


@needs_cli
def test_query_cli_parameter(root):
    rows = duckdb_cli(f"SET VARIABLE data_root = '{root}'", ".read sql/views.sql",
                      "SET VARIABLE iteration = 2", ".read sql/samples_per_problem.sql")
    assert [(r["iteration"], r["problem_id"], r["n_correct"]) for r in rows] == [(2, "p1", 3), (2, "p2", 1), (2, "p3", 2)]


@needs_cli
def test_cli_empty_store(tmp_path):
    for name in EXPECTED:
        assert duckdb_cli(f"SET VARIABLE data_root = '{tmp_path}'", ".read sql/views.sql", f".read sql/{name}.sql") == []


@needs_cli
def test_cli_documented_command_with_default_root(root, tmp_path):
    """The command a user types in the repository root, where data_root defaults to 'data'."""
    os.symlink(REPO / "sql", tmp_path / "sql")
    os.symlink(root, tmp_path / "data")
    out = duckdb_cli(".read sql/views.sql", ".read sql/pass_rate_per_iteration.sql", cwd=tmp_path, json_mode=False)
    assert "0.2222222222222222" in out and "0.6666666666666666" in out
