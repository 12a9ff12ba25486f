"""The DuckDB views and every query in sql/, from Python and from the DuckDB CLI.

The fixture is a two-iteration history small enough that every expected number
below was computed by hand from the tables written in `write_history`.
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

from restem_assets import analytics, schemas
from restem_assets.analytics import EVALUATIONS, TABLES
from restem_assets.storage import ParquetStore

REPO = Path(__file__).resolve().parent.parent

# -- fixture history ----------------------------------------------------------------------
# (problem_id, split, task, domain); p4 is a train problem that was never sampled.
PROBLEMS = [
    ("p1", "train", "chain_sum", "math"),
    ("p2", "train", "chain_sum", "math"),
    ("p3", "train", "apps", "code"),
    ("p4", "train", "chain_sum", "math"),
    ("t1", "test", "chain_sum", "math"),
    ("t2", "test", "chain_sum", "math"),
]
# iteration -> (problem_id, sample_idx, reason, n_tokens, finish_reason); reward = 1 iff
# reason is 'correct' or 'passed'.
SAMPLES = {
    0: [
        ("p1", 0, "correct", 10, "stop"),
        ("p1", 1, "wrong", 20, "stop"),
        ("p1", 2, "correct", 30, "stop"),
        ("p2", 0, "no_answer", 100, "length"),
        ("p2", 1, "wrong", 40, "stop"),
        ("p2", 2, "no_answer", 100, "length"),
        ("p3", 0, "syntax_error", 50, "stop"),
        ("p3", 1, "runtime_error", 60, "stop"),
        ("p3", 2, "wrong_answer", 70, "stop"),
    ],
    1: [
        ("p1", 0, "correct", 12, "stop"),
        ("p1", 1, "correct", 18, "stop"),
        ("p1", 2, "correct", 30, "stop"),
        ("p2", 0, "correct", 80, "stop"),
        ("p2", 1, "wrong", 40, "stop"),
        ("p2", 2, "no_answer", 200, "length"),
        ("p3", 0, "passed", 25, "stop"),
        ("p3", 1, "timeout", 35, "stop"),
        ("p3", 2, "passed", 45, "stop"),
    ],
}
# iteration -> kept (problem_id, sample_idx); iteration 1 dropped p3/2 as a duplicate of p3/0.
SFT = {0: [("p1", 0), ("p1", 2)], 1: [("p1", 0), ("p1", 1), ("p1", 2), ("p2", 0), ("p3", 0)]}
# iteration -> (problem_id, mode, n, n_correct, greedy_correct, majority_answer, majority_correct)
EVALS = {
    0: [
        ("t1", "greedy", 1, 1, True, "4", True),
        ("t2", "greedy", 1, 0, False, "7", False),
        ("t1", "sampled", 4, 3, None, "4", True),
        ("t2", "sampled", 4, 0, None, "8", False),
    ],
    1: [
        ("t1", "greedy", 1, 1, True, "4", True),
        ("t2", "greedy", 1, 1, True, "9", True),
        ("t1", "sampled", 4, 4, None, "4", True),
        ("t2", "sampled", 4, 1, None, "8", False),
    ],
}


def _sample_row(pid, idx, n_tokens, finish, iteration):
    return {
        "problem_id": pid, "sample_idx": idx, "prompt": f"Q {pid}", "completion": f"A {pid}/{idx}",
        "n_tokens": n_tokens, "finish_reason": finish, "policy_id": "base" if iteration == 0 else f"iteration={iteration - 1}",
        "policy_path": "", "engine": "transformers", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "max_new_tokens": 100 if iteration == 0 else 200, "seed": 1234 + idx,
    }


def write_history(store: ParquetStore) -> None:
    store.write_table(
        "problems",
        [
            {"problem_id": pid, "split": split, "task": task, "domain": domain, "verifier": domain,
             "question": f"Q {pid}", "answer": "", "solution": "", "metadata": "{}"}
            for pid, split, task, domain in PROBLEMS
        ],
        schemas.PROBLEMS,
    )
    for it, rows in SAMPLES.items():
        store.write_table("samples", [_sample_row(p, i, n, f, it) for p, i, _, n, f in rows], schemas.SAMPLES, iteration=it)
        store.write_table(
            "rewards",
            [
                {"problem_id": p, "sample_idx": i, "extracted_answer": None if r == "no_answer" else "x",
                 "reward": 1.0 if r in ("correct", "passed") else 0.0, "reason": r, "details": None}
                for p, i, r, _, _ in rows
            ],
            schemas.REWARDS,
            iteration=it,
        )
        tokens = {(p, i): n for p, i, _, n, _ in rows}
        store.write_table(
            "sft_set",
            [{"problem_id": p, "sample_idx": i, "prompt": f"Q {p}", "completion": f"A {p}/{i}", "n_tokens": tokens[p, i]}
             for p, i in SFT[it]],
            schemas.SFT_SET,
            iteration=it,
        )
    for it, rows in EVALS.items():
        store.write_table("evaluations", [dict(zip(EVALUATIONS.names, r)) for r in rows], EVALUATIONS, iteration=it)


# -- expected results, by hand ------------------------------------------------------------
EXPECTED = {
    "pass_rate_per_iteration": (
        ["iteration", "n_samples", "n_scored", "n_correct", "pass_rate"],
        [(0, 9, 9, 2, 2 / 9), (1, 9, 9, 6, 6 / 9)],
    ),
    "samples_per_problem": (
        ["iteration", "problem_id", "task", "n_samples", "n_correct", "pass_rate"],
        [
            (0, "p1", "chain_sum", 3, 2, 2 / 3),
            (0, "p2", "chain_sum", 3, 0, 0.0),
            (0, "p3", "apps", 3, 0, 0.0),
            (1, "p1", "chain_sum", 3, 3, 1.0),
            (1, "p2", "chain_sum", 3, 1, 1 / 3),
            (1, "p3", "apps", 3, 2, 2 / 3),
        ],
    ),
    "problem_coverage": (
        ["iteration", "n_train_problems", "n_problems_sampled", "n_problems_solved", "coverage", "coverage_of_sampled"],
        [(0, 4, 3, 1, 1 / 4, 1 / 3), (1, 4, 3, 3, 3 / 4, 1.0)],
    ),
    "answer_format_adherence": (
        ["iteration", "n_samples", "n_scored", "n_answered", "answered_share", "n_truncated", "truncated_share"],
        [(0, 9, 9, 7, 7 / 9, 2, 2 / 9), (1, 9, 9, 8, 8 / 9, 1, 1 / 9)],
    ),
    "completion_length": (
        ["iteration", "finish_reason", "n_samples", "mean_tokens", "p50_tokens", "p90_tokens", "max_tokens"],
        [
            # stop 0: 10..70 step 10; p90 at rank 0.9*6 = 5.4 -> 60 + 0.4*10 = 64
            (0, "length", 2, 100.0, 100.0, 100.0, 100),
            (0, "stop", 7, 40.0, 40.0, 64.0, 70),
            (0, "all", 9, 480 / 9, 50.0, 100.0, 100),
            # stop 1: 12 18 25 30 35 40 45 80; p50 (30+35)/2; p90 at rank 6.3 -> 45 + 0.3*35
            (1, "length", 1, 200.0, 200.0, 200.0, 200),
            (1, "stop", 8, 285 / 8, 32.5, 55.5, 80),
            # all 1: ... 45 80 200; p90 at rank 7.2 -> 80 + 0.2*120
            (1, "all", 9, 485 / 9, 35.0, 104.0, 200),
        ],
    ),
    "reward_reasons": (
        ["iteration", "reason", "n", "share"],
        [
            (0, "correct", 2, 2 / 9),
            (0, "no_answer", 2, 2 / 9),
            (0, "wrong", 2, 2 / 9),
            (0, "runtime_error", 1, 1 / 9),
            (0, "syntax_error", 1, 1 / 9),
            (0, "wrong_answer", 1, 1 / 9),
            (1, "correct", 4, 4 / 9),
            (1, "passed", 2, 2 / 9),
            (1, "no_answer", 1, 1 / 9),
            (1, "timeout", 1, 1 / 9),
            (1, "wrong", 1, 1 / 9),
        ],
    ),
    "sft_set_per_iteration": (
        ["iteration", "n_examples", "n_problems", "mean_examples_per_problem", "max_examples_per_problem", "n_tokens"],
        [(0, 2, 1, 2.0, 2, 40), (1, 5, 3, 5 / 3, 3, 165)],
    ),
    "eval_accuracy": (
        ["iteration", "mode", "n_problems", "n_samples", "n_correct", "sample_accuracy",
         "greedy_accuracy", "majority_accuracy", "pass_at_n"],
        [
            (0, "greedy", 2, 2, 1, 0.5, 0.5, 0.5, 0.5),
            (0, "sampled", 2, 8, 3, 3 / 8, None, 0.5, 0.5),
            (1, "greedy", 2, 2, 2, 1.0, 1.0, 1.0, 1.0),
            (1, "sampled", 2, 8, 5, 5 / 8, None, 0.5, 1.0),
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
    assert analytics.list_queries() == sorted(EXPECTED)
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
    df = analytics.query_df(con, "samples_per_problem", iteration=1)
    assert df["iteration"].to_list() == [1, 1, 1]
    assert df["n_correct"].to_list() == [3, 1, 2]
    # the parameter does not leak into the next query on the same connection
    assert analytics.query_df(con, "samples_per_problem").height == 6


def test_views_expose_iteration_and_join(root):
    con = analytics.connect(root)
    assert con.execute("SELECT count(*), sum(iteration) FROM samples").fetchone() == (18, 9)
    assert con.execute("SELECT count(*) FROM problems").fetchone() == (6,)
    assert con.execute("SELECT count(*) FROM scored_samples WHERE reward IS NULL").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM eval_samples").fetchone() == (0,)  # not written: empty view


def test_new_iteration_is_seen_without_reconnecting(tmp_path):
    store = ParquetStore(str(tmp_path))
    store.write_table("samples", [_sample_row("p1", 0, 5, "stop", 0)], schemas.SAMPLES, iteration=0)
    con = analytics.connect(str(tmp_path))
    assert con.execute("SELECT count(*) FROM samples").fetchone() == (1,)
    store.write_table("samples", [_sample_row("p1", 0, 5, "stop", 1)], schemas.SAMPLES, iteration=1)
    assert con.execute("SELECT list(iteration ORDER BY iteration) FROM samples").fetchone() == ([0, 1],)


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
    assert analytics.main(["--root", root, "--set", "iteration=1", "samples_per_problem"]) == 0
    out = capsys.readouterr().out
    assert "shape: (3, 6)" in out
    assert analytics.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == sorted(EXPECTED)


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
                      "SET VARIABLE iteration = 1", ".read sql/samples_per_problem.sql")
    assert [(r["iteration"], r["problem_id"], r["n_correct"]) for r in rows] == [(1, "p1", 3), (1, "p2", 1), (1, "p3", 2)]


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
