"""DuckDB views over restem's Parquet history, and the named queries in `sql/`.

Every table is a folder of Parquet files (see storage.py), so any question about
the sample history is one SELECT over a view per table. The views are defined
once, in `sql/views.sql`, which both `connect()` and the DuckDB CLI execute:

    duckdb -c "SET VARIABLE data_root = 'data'" -c ".read sql/views.sql" \\
           -c ".read sql/pass_rate_per_iteration.sql"

`sql/views.sql` is generated from `TABLES` and the Arrow schemas (so an empty
view has exactly the columns a written table will have); after changing either,
run `python -m restem_assets.reporting.analytics --write-views`. A test fails until you do.

Query parameters are DuckDB variables: `run_query(root, "samples_per_problem",
iteration=1)` does `SET VARIABLE iteration = 1`, which a query reads with
`getvariable('iteration')`; on the CLI add `-c "SET VARIABLE iteration = 1"`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from restem_assets.store import schemas
from restem_assets.reporting.costs import STAGE_COSTS
from restem_assets.experiments import DEFAULT_EXPERIMENT, EXPERIMENTS
from restem_assets.store.tables import DEFAULT_DATA_ROOT, CorruptTableError

# sql/ ships as the package `restem_sql` (see pyproject.toml), so a non-editable install finds it too.
SQL_DIR = Path(str(importlib.resources.files("restem_sql")))
VIEWS_PATH = SQL_DIR / "views.sql"


class UnknownQueryError(KeyError):
    """A query name that is not one of sql/*.sql."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    partitioned: bool = True  # files under iteration=<i>/, which becomes the `iteration` column
    per_experiment: bool = True  # one copy per experiment (restem_assets/experiments.py): views carry `experiment`
    level: str = ""  # a hive folder level above iteration=<i> (stage_costs: stage=<stage>), a VARCHAR column


# Every table that gets a view. Adding a table is one line here plus --write-views.
TABLES: tuple[Table, ...] = (
    Table("problems", schemas.PROBLEMS, partitioned=False),
    Table("samples", schemas.SAMPLES),
    Table("rewards", schemas.REWARDS),
    Table("sft_set", schemas.SFT_SET),
    Table("evaluations", schemas.EVALUATIONS),
    Table("eval_samples", schemas.EVAL_SAMPLES),
    Table("finetune_log", schemas.FINETUNE_LOG),
    Table("reward_audit", schemas.REWARD_AUDIT),
    Table("rescores", schemas.RESCORES),
    Table("transfer_evaluations", schemas.TRANSFER_EVALUATIONS),
    Table("transfer_samples", schemas.TRANSFER_SAMPLES),
    Table("human_sft_set", schemas.SFT_SET),
    Table("human_finetune_log", schemas.FINETUNE_LOG),
    Table("human_eval_samples", schemas.EVAL_SAMPLES),
    Table("human_evaluations", schemas.EVALUATIONS),
    Table("stage_costs", STAGE_COSTS, level="stage"),
    Table("experiments", EXPERIMENTS, partitioned=False, per_experiment=False),
)

# Views built on the table views; hand-written, appended to views.sql as is.
DERIVED_VIEWS = """\
-- sample_outcomes: per iteration, the training samples drawn and those cut off at max_new_tokens, and of
-- their rewards how many are scored, correct (reward 1) and answered (an answer was extracted). Samples
-- and rewards are aggregated separately and then joined on the small aggregates (rewards rows are one per
-- sample by construction): at 10M samples this is several times faster than joining row by row through
-- scored_samples.
CREATE OR REPLACE VIEW sample_outcomes AS
WITH s AS (
    SELECT iteration, count(*) AS n_samples, count(*) FILTER (WHERE finish_reason = 'length') AS n_truncated
    FROM samples GROUP BY iteration
), r AS (
    SELECT iteration, count(reward) AS n_scored, count(*) FILTER (WHERE reward = 1) AS n_correct,
           count(*) FILTER (WHERE reason <> 'no_answer') AS n_answered
    FROM rewards GROUP BY iteration
)
SELECT s.iteration, s.n_samples, s.n_truncated, coalesce(r.n_scored, 0) AS n_scored,
       coalesce(r.n_correct, 0) AS n_correct, coalesce(r.n_answered, 0) AS n_answered
FROM s
LEFT JOIN r USING (iteration);

-- scored_samples: every training sample with its reward; reward IS NULL = not scored yet.
CREATE OR REPLACE VIEW scored_samples AS
SELECT s.*, r.extracted_answer, r.reward, r.reason, r.details
FROM samples AS s
LEFT JOIN rewards AS r USING (iteration, problem_id, sample_idx);

-- all_problem_status: per experiment, policy (iteration) and problem, solved or not. Test problems:
-- greedy_solved (greedy decoding correct) and sampled_solved (any of the k evaluation samples, pass@k).
-- Train problems: sampled_solved = any of the K E-step samples drawn from that policy (rewards of
-- iteration + 1) correct; greedy_solved is NULL (train problems are not decoded greedily).
CREATE OR REPLACE VIEW all_problem_status AS
SELECT experiment, iteration, problem_id, 'test' AS split, greedy_correct AS greedy_solved,
       n_correct > 0 AS sampled_solved
FROM all_evaluations
UNION ALL
SELECT experiment, iteration - 1 AS iteration, problem_id, 'train' AS split, NULL::BOOLEAN AS greedy_solved,
       bool_or(reward = 1) AS sampled_solved
FROM all_rewards GROUP BY experiment, iteration, problem_id;
CREATE OR REPLACE VIEW problem_status AS FROM all_problem_status WHERE experiment = getvariable('experiment');
"""

_HEADER = """\
-- GENERATED by `python -m restem_assets.reporting.analytics --write-views` from TABLES in
-- restem_assets/reporting/analytics.py and the Arrow schemas; edit those, not this file.
--
-- One view per restem table over the Parquet files under the variable data_root
-- (default 'data', relative to the current directory). Each table has two views:
-- all_<table> over every experiment (column `experiment`: 'default' for files under
-- <data_root>/<table>/, NAME for files under <data_root>/experiment=NAME/<table>/), and
-- <table>, the rows of the experiment in the variable `experiment` (default 'default').
-- From the repository root:
--   duckdb -c "SET VARIABLE data_root = 'data'" -c ".read sql/views.sql" -c ".read sql/pass_rate_per_iteration.sql"
-- A table with no files yet gets an empty view with the same columns, so every
-- query runs (and returns no rows) on a fresh store. Whether a table has files is
-- checked when this file runs: re-read it after a table's first write. New
-- iterations of a table that had files are picked up by every query.
-- Creating the views opens no Parquet file: each is created while its restem_has_*
-- flag is false (the empty branch) and the flags are set at the end. DuckDB binds a
-- view again on every query, so a corrupt file fails only the queries that read it.

SET VARIABLE data_root = coalesce(getvariable('data_root'), 'data');
SET VARIABLE experiment = coalesce(getvariable('experiment'), 'default');
"""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duckdb_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """(name, DuckDB type) per column, as DuckDB itself maps the Arrow types."""
    rel = duckdb.connect().from_arrow(schema.empty_table())
    return [(name, str(dtype)) for name, dtype in zip(rel.columns, rel.types)]


EXPERIMENT_DIR = "experiment=*"  # named experiments' tables: <data_root>/experiment=NAME/<table>/...


def _file_pattern(table: Table, named: bool = False) -> str:
    """The table's files relative to the data root (what the view reads); `named`: those of named experiments."""
    levels = "*/" * (int(table.partitioned) + int(bool(table.level)))
    pattern = f"{table.name}/{levels}*.parquet"
    return f"{EXPERIMENT_DIR}/{pattern}" if named else pattern


def _glob(table: Table, named: bool = False) -> str:
    return f"getvariable('data_root') || '/{_file_pattern(table, named)}'"


def _flag(table: Table, named: bool = False) -> str:
    return f"restem_has_{'experiment_' if named else ''}{table.name}"


def _view_sql(table: Table) -> str:
    types = ([(table.level, "VARCHAR")] if table.level else []) + ([("iteration", "BIGINT")] if table.partitioned else [])
    hive_types = "{" + ", ".join(f"'{n}': '{t}'" for n, t in [*types, ("experiment", "VARCHAR")]) + "}"
    named_options = f"hive_partitioning = true, hive_types = {hive_types}, union_by_name = true"
    if table.partitioned:
        default_types = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types) + "}"
        options = f"hive_partitioning = true, hive_types = {default_types}, union_by_name = true"
        columns = _duckdb_types(table.schema) + types
    else:
        options = "hive_partitioning = false, union_by_name = true"
        columns = _duckdb_types(table.schema)
    if table.per_experiment:
        columns = columns + [("experiment", "VARCHAR")]
    empty = "SELECT\n" + ",\n".join(f'        NULL::{dtype} AS "{name}"' for name, dtype in columns) + "\n    LIMIT 0"
    # the typed empty row set first, by name: files written before a column existed read it as NULL
    default = f"(FROM read_parquet({_glob(table)}, {options}))"
    layout = "one folder per iteration" if table.partitioned else "unpartitioned"
    flag = _flag(table)
    if not table.per_experiment:
        read = f"({empty})\nUNION ALL BY NAME\n{default}"
        return (
            f"-- {table.name} ({layout}, one for all experiments)\n"
            f"SET VARIABLE {flag} = false;\n"
            f"CREATE OR REPLACE VIEW {table.name} AS FROM query(CASE WHEN getvariable('{flag}')\n"
            f"    THEN {_sql_string(read)}\n"
            f"    ELSE {_sql_string(empty)}\n"
            f"    END);\n"
        )
    default = (f"(SELECT *, {_sql_string(DEFAULT_EXPERIMENT)} AS experiment "
               f"FROM read_parquet({_glob(table)}, {options}))")
    named = f"(FROM read_parquet({_glob(table, named=True)}, {named_options}))"
    named_flag = _flag(table, named=True)

    def union(*parts: str) -> str:
        return "\nUNION ALL BY NAME\n".join([f"({empty})", *parts])

    return (
        f"-- {table.name} ({layout}; all_{table.name}: every experiment, {table.name}: getvariable('experiment'))\n"
        f"SET VARIABLE {flag} = false;\n"
        f"SET VARIABLE {named_flag} = false;\n"
        f"CREATE OR REPLACE VIEW all_{table.name} AS FROM query(CASE\n"
        f"    WHEN getvariable('{flag}') AND getvariable('{named_flag}') THEN {_sql_string(union(default, named))}\n"
        f"    WHEN getvariable('{flag}') THEN {_sql_string(union(default))}\n"
        f"    WHEN getvariable('{named_flag}') THEN {_sql_string(union(named))}\n"
        f"    ELSE {_sql_string(empty)}\n"
        f"    END);\n"
        f"CREATE OR REPLACE VIEW {table.name} AS FROM all_{table.name} WHERE experiment = getvariable('experiment');\n"
    )


def _flags_sql() -> str:
    lines = []
    for t in TABLES:
        lines.append(f"SET VARIABLE {_flag(t)} = (SELECT count(*) > 0 FROM glob({_glob(t)}));\n")
        if t.per_experiment:
            lines.append(f"SET VARIABLE {_flag(t, True)} = (SELECT count(*) > 0 FROM glob({_glob(t, True)}));\n")
    return "-- Which tables have files, set only now that every view exists (see the header).\n" + "".join(lines)


def views_sql() -> str:
    """The text of sql/views.sql, rendered from TABLES and DERIVED_VIEWS."""
    return "\n".join([_HEADER] + [_view_sql(t) for t in TABLES] + [DERIVED_VIEWS, _flags_sql()])


def write_views(path: Path = VIEWS_PATH) -> Path:
    path.write_text(views_sql())
    return path


def connect(root: str = DEFAULT_DATA_ROOT, storage_options: Mapping[str, Any] | None = None,
            experiment: str = DEFAULT_EXPERIMENT) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with restem's views over the store at `root`; the views without
    the `all_` prefix show `experiment` (the variable of that name, which a query may change).

    Local roots are read by DuckDB directly; any other fsspec root (s3://, memory://, ...)
    is read through the fsspec filesystem registered on this connection.
    """
    fs, path = url_to_fs(root, **dict(storage_options or {}))
    path = path.rstrip("/") or "/"
    con = duckdb.connect()
    if isinstance(fs, LocalFileSystem):
        data_root = path
    else:
        con.register_filesystem(fs)
        data_root = fs.unstrip_protocol(path)
    con.execute("SET VARIABLE data_root = ?", [data_root])
    con.execute("SET VARIABLE experiment = ?", [experiment])
    con.execute(VIEWS_PATH.read_text())
    return con


def list_queries() -> list[str]:
    """Names of the queries in sql/ (every .sql file except views.sql)."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.name != VIEWS_PATH.name)


def query_path(name: str) -> Path:
    name = name.removesuffix(".sql")
    if name not in list_queries():
        raise UnknownQueryError(f"no query named {name!r}; available: {', '.join(list_queries())}")
    return SQL_DIR / f"{name}.sql"


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def query_df(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pl.DataFrame:
    """Run a named query on an open connection; `params` are set as DuckDB variables for it."""
    sql = query_path(name).read_text()
    for key in params:
        if not _IDENTIFIER.fullmatch(key):
            raise ValueError(f"parameter name {key!r} is not a plain identifier")
    try:
        for key, value in params.items():
            con.execute(f"SET VARIABLE {key} = ?", [value])
        try:
            return con.sql(sql).pl()
        except duckdb.Error as exc:
            bad = _unreadable_files(con, exc)
            if not bad:
                raise
            raise CorruptTableError(f"query {name!r} failed: " + "; ".join(bad)) from exc
    finally:
        for key in params:  # a shared connection must not see them in the next query
            con.execute(f"RESET VARIABLE {key}")


_QUOTED_PARQUET = re.compile(r"""['"]([^'"\n]+?\.parquet)['"]""")
_TABLE_FILE = re.compile(r"(?:^|/)(?P<table>[^/]+)/(?:stage=[^/]+/)?(?:iteration=(?P<iteration>-?\d+)/)?[^/]+\.parquet$")
_EXPERIMENT_FILE = re.compile(r"/experiment=(?P<experiment>[^/]+)/[^/]+/(?:iteration=-?\d+/)?[^/]+\.parquet$")
# What reading a bad file raises: DuckDB names the file in IO / invalid-input errors; a corrupt
# page that passes the footer check can surface as a bare duckdb.Error (e.g. a thrift exception).
_FILE_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException,
                duckdb.SerializationException)


def _reason(exc: BaseException, path: str | None = None) -> str:
    """The first line of a DuckDB error, without its class prefix or the (already named) path."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"^[A-Za-z ]*Error: ", "", line)
    if path:
        line = line.replace(f" '{path}'", "").replace(f' "{path}"', "")
    return line


def _describe_file(path: str, reason: str) -> str:
    """"table 'rewards' (iteration 1): <path> is not a readable Parquet file (<reason>)"."""
    m = _TABLE_FILE.search(path)
    if m and m["table"] in {t.name for t in TABLES}:
        where = f"table '{m['table']}'" + (f" (iteration {m['iteration']})" if m["iteration"] is not None else "")
        named = _EXPERIMENT_FILE.search(path)
        if named:
            where += f" of experiment '{named['experiment']}'"
    else:
        where = "a table"
    return f"{where}: {path} is not a readable Parquet file ({reason})"


def _table_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table file under the connection's data root, listed by DuckDB (so remote roots work too)."""
    try:
        root = con.execute("SELECT getvariable('data_root')").fetchone()[0]
    except duckdb.Error:
        return []
    files = []
    for table in TABLES if root else ():
        for named in (False, True) if table.per_experiment else (False,):
            try:
                rows = con.execute("SELECT file FROM glob(?)", [f"{root}/{_file_pattern(table, named)}"]).fetchall()
            except duckdb.Error:
                continue
            files += [row[0] for row in rows]
    return files


def _unreadable_files(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> list[str]:
    """For a failed query: a description of each table file it could not read ([] if the failure is not that).

    The files DuckDB's message names, then the footer of every table file, then (only if
    neither finds one) every table file read in full: slow on a big store, but only ever
    done for a query that has already failed.
    """
    message = str(exc)
    if not (isinstance(exc, _FILE_ERRORS) or type(exc) is duckdb.Error or ".parquet" in message):
        return []
    found: dict[str, str] = {path: _reason(exc, path) for path in _QUOTED_PARQUET.findall(message)}
    files = [f for f in _table_files(con) if f not in found]
    for check in ("SELECT count(*) FROM parquet_file_metadata(?)",
                  "SELECT bit_xor(hash(t)) FROM read_parquet(?) AS t"):  # footer, then every column of every row
        if found:
            break
        for path in files:
            try:
                con.execute(check, [path]).fetchall()
            except duckdb.Error as bad:
                found[path] = _reason(bad, path)
    return [_describe_file(path, reason) + "; re-materialize it or remove the file" for path, reason in found.items()]


def run_query(
    root: str, name: str, *, storage_options: Mapping[str, Any] | None = None,
    experiment: str = DEFAULT_EXPERIMENT, **params: Any
) -> pl.DataFrame:
    """Run the query `sql/<name>.sql` over the store at `root` (views of `experiment`); see query_df for params."""
    con = connect(root, storage_options, experiment)
    try:
        return query_df(con, name, **params)
    finally:
        con.close()


def _parse_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings -> query parameters (ints and floats converted)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        params[key] = _parse_value(value)
    return params


def print_query(root: str, name: str | None, params: Sequence[str] = (), list_only: bool = False,
                experiment: str = DEFAULT_EXPERIMENT) -> int:
    """What `restem sql` prints: the query names, or one query's table; a bad name or parameter is one line."""
    if list_only or not name:
        print("\n".join(list_queries()))
        return 0
    try:
        df = run_query(root, name, experiment=experiment, **parse_params(params))
    except (UnknownQueryError, ValueError) as exc:
        print(f"restem sql: {exc}", file=sys.stderr)
        return 2
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80):
        print(df)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m restem_assets.reporting.analytics",
        description="Run one of restem's SQL queries (sql/*.sql) over a data root and print the table.",
    )
    parser.add_argument("query", nargs="?", help="query name, e.g. pass_rate_per_iteration")
    parser.add_argument("--root", default=DEFAULT_DATA_ROOT, help="data root, a local path or fsspec URL (default: data)")
    parser.add_argument(
        "--set", dest="params", action="append", default=[], metavar="NAME=VALUE",
        help="query parameter, set as a DuckDB variable (repeatable), e.g. --set iteration=1",
    )
    parser.add_argument("--list", action="store_true", help="list the query names and exit")
    parser.add_argument("--write-views", action="store_true", help="regenerate sql/views.sql and exit")
    args = parser.parse_args(argv)
    if args.write_views:
        print(f"wrote {write_views()}")
        return 0
    return print_query(args.root, args.query, args.params, args.list)


if __name__ == "__main__":
    sys.exit(main())
