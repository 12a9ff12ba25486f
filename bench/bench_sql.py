"""DuckDB latency of every query in sql/ over a synthetic sample history.

Writes `--rows` samples (and as many rewards) spread over `--iterations`
iterations, K=32 samples per problem, in the project's own layout: hive folders
`<table>/iteration=<i>/part-0.parquet` with the exact Arrow schemas of
restem_assets.store.schemas (checked after writing). The small tables (problems, sft_set,
eval tables, finetune_log) get realistic sizes. Each query runs through
restem_assets.reporting.analytics as users run it: one warm-up, then the median of 3.

    python -m bench.bench_sql [--rows 10000000] [--iterations 10] [--root /tmp/restem-bench-sql]
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from bench.results import parse_args, write_result

import duckdb
import pyarrow.parquet as pq

from restem_assets.reporting import analytics
from restem_assets.store import schemas

K = 32
TEST_PROBLEMS = 5000
EVAL_K = 4


def _copy(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 65536, COMPRESSION zstd)")


def build_history(root: Path, rows: int, iterations: int) -> dict:
    """Write the synthetic store; returns its row counts."""
    if root.exists():
        shutil.rmtree(root)
    per_iteration = rows // iterations
    problems = per_iteration // K
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    _copy(con, f"""
        SELECT 'p' || lpad(i::VARCHAR, 7, '0') AS problem_id,
               CASE WHEN i < {problems} THEN 'train' ELSE 'test' END AS split,
               'chain_sum' AS task, 'math' AS domain, 'math' AS verifier,
               'What is ' || i || ' + ' || (i * 7 % 100) || '?' AS question,
               (i + i * 7 % 100)::VARCHAR AS answer, NULL::VARCHAR AS solution, '{{}}' AS metadata
        FROM range({problems + TEST_PROBLEMS}) t(i)""", root / "problems" / "part-0.parquet")
    prompt = "'<|im_start|>system\\nYou are a careful assistant. Think step by step, then end with Answer: <number>.<|im_end|>\\n<|im_start|>user\\nWhat is ' || p || ' + ' || (p * 7 % 100) || '?<|im_end|>\\n<|im_start|>assistant\\n'"
    for it in range(1, iterations + 1):
        base = f"""FROM range({per_iteration}) t(r)
                   SELECT r // {K} AS p, (r % {K})::INTEGER AS sample_idx, hash(r, {it}) AS h"""
        _copy(con, f"""
            WITH s AS ({base})
            SELECT 'p' || lpad(p::VARCHAR, 7, '0') AS problem_id, sample_idx,
                   {prompt} AS prompt,
                   'Adding ' || p || ' and ' || (p * 7 % 100) || ' gives ' || (h % 200) || '.\\nAnswer: ' || (h % 200) AS completion,
                   (5 + h % 92)::INTEGER AS n_tokens,
                   CASE WHEN h % 50 = 0 THEN 'length' ELSE 'stop' END AS finish_reason,
                   'policy-{it - 1}' AS policy_id, '/models/iteration={it - 1}' AS policy_path, 'vllm' AS engine,
                   0.7::FLOAT AS temperature, 40::INTEGER AS top_k, 1.0::FLOAT AS top_p, 256::INTEGER AS max_new_tokens,
                   {it}::BIGINT AS seed, (sample_idx // 8)::INTEGER AS round,
                   CASE WHEN sample_idx >= {K} - 4 THEN 'hinted' ELSE 'self' END AS source
            FROM s""", root / "samples" / f"iteration={it}" / "part-0.parquet")
        _copy(con, f"""
            WITH s AS ({base})
            SELECT 'p' || lpad(p::VARCHAR, 7, '0') AS problem_id, sample_idx,
                   CASE WHEN h % 7 = 0 THEN NULL ELSE (h % 200)::VARCHAR END AS extracted_answer,
                   CASE WHEN h % 10 < {min(it, 5)} THEN 1.0 ELSE 0.0 END::FLOAT AS reward,
                   CASE WHEN h % 7 = 0 THEN 'no_answer' WHEN h % 10 < {min(it, 5)} THEN 'correct' ELSE 'wrong' END AS reason,
                   NULL::VARCHAR AS details, 'math' AS verifier, 'v1' AS verifier_version
            FROM s""", root / "rewards" / f"iteration={it}" / "part-0.parquet")
        _copy(con, f"""
            SELECT 'p' || lpad((r // 10)::VARCHAR, 7, '0') AS problem_id, (r % 10)::INTEGER AS sample_idx,
                   'prompt' AS prompt, 'Answer: ' || r AS completion, 12::INTEGER AS n_tokens,
                   CASE WHEN r % 10 = 9 THEN 'hinted' ELSE 'self' END AS source
            FROM range({min(problems, 20000) * 10 // 4}) t(r)""", root / "sft_set" / f"iteration={it}" / "part-0.parquet")
        _copy(con, """
            SELECT (r * 10)::INTEGER AS step, (r / 10.0)::DOUBLE AS epoch, (1.0 / (r + 1))::DOUBLE AS loss, 1e-5::DOUBLE AS learning_rate
            FROM range(100) t(r)""", root / "finetune_log" / f"iteration={it}" / "part-0.parquet")
    for it in range(0, iterations + 1):
        _copy(con, f"""
            SELECT 'p' || lpad(({problems} + r)::VARCHAR, 7, '0') AS problem_id, (r % 200)::VARCHAR AS greedy_answer,
                   hash(r, {it}) % 4 = 0 AS greedy_correct, {EVAL_K}::INTEGER AS k,
                   (hash(r, {it}) % 5)::INTEGER % {EVAL_K + 1} AS n_correct, 0.25::DOUBLE AS pass_at_1, 0.5::DOUBLE AS pass_at_k,
                   (r % 200)::VARCHAR AS majority_answer, hash(r, {it}) % 3 = 0 AS majority_correct
            FROM range({TEST_PROBLEMS}) t(r)""", root / "evaluations" / f"iteration={it}" / "part-0.parquet")
        _copy(con, f"""
            WITH s AS (FROM range({TEST_PROBLEMS * (EVAL_K + 1)}) t(r) SELECT r, r // {EVAL_K + 1} AS p, hash(r, {it}) AS h)
            SELECT CASE WHEN r % {EVAL_K + 1} = 0 THEN 'greedy' ELSE 'sampled' END AS mode,
                   'p' || lpad(({problems} + p)::VARCHAR, 7, '0') AS problem_id, (r % {EVAL_K + 1})::INTEGER AS sample_idx,
                   'prompt' AS prompt, 'Answer: ' || (h % 200) AS completion, 10::INTEGER AS n_tokens,
                   'stop' AS finish_reason, 'policy-{it}' AS policy_id, '' AS policy_path, 'vllm' AS engine,
                   1.0::FLOAT AS temperature, 0::INTEGER AS top_k, 0.95::FLOAT AS top_p, 256::INTEGER AS max_new_tokens,
                   0::BIGINT AS seed, 0::INTEGER AS round, 'self' AS source, (h % 200)::VARCHAR AS extracted_answer,
                   CASE WHEN h % 4 = 0 THEN 1.0 ELSE 0.0 END::FLOAT AS reward,
                   CASE WHEN h % 4 = 0 THEN 'correct' ELSE 'wrong' END AS reason, NULL::VARCHAR AS details,
                   'math' AS verifier, 'v1' AS verifier_version
            FROM s""", root / "eval_samples" / f"iteration={it}" / "part-0.parquet")
    con.close()
    _check_schemas(root)
    return {"samples": per_iteration * iterations, "rewards": per_iteration * iterations,
            "iterations": iterations, "train_problems": problems,
            "bytes_on_disk": sum(p.stat().st_size for p in root.rglob("*.parquet"))}


def _check_schemas(root: Path) -> None:
    """The synthetic files must carry the project's exact Arrow schemas (the layout under test)."""
    expected = {"problems": schemas.PROBLEMS, "samples": schemas.SAMPLES, "rewards": schemas.REWARDS,
                "sft_set": schemas.SFT_SET, "eval_samples": schemas.EVAL_SAMPLES,
                "evaluations": schemas.EVALUATIONS, "finetune_log": schemas.FINETUNE_LOG}
    for table, schema in expected.items():
        path = next((root / table).rglob("*.parquet"))
        got = pq.read_schema(path)
        if [(f.name, f.type) for f in got] != [(f.name, f.type) for f in schema]:
            raise AssertionError(f"synthetic {table} does not match schemas.{table.upper()}:\n{got}\nvs\n{schema}")


def time_queries(root: Path, repeats: int = 3) -> dict[str, dict]:
    con = analytics.connect(str(root))
    out = {}
    try:
        for name in analytics.list_queries():
            df = analytics.query_df(con, name)  # warm-up: footers, OS page cache
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                analytics.query_df(con, name)
                times.append(time.perf_counter() - t0)
            out[name] = {"median_s": statistics.median(times), "max_s": max(times), "result_rows": df.height}
    finally:
        con.close()
    return out


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, rows=10_000_000, iterations=10, root="/tmp/restem-bench-sql",
                      keep={"action": "store_true", "help": "keep the synthetic store"})
    root = Path(args.root)
    t0 = time.perf_counter()
    sizes = build_history(root, args.rows, args.iterations)
    sizes["build_seconds"] = time.perf_counter() - t0
    queries = time_queries(root)
    if not args.keep:
        shutil.rmtree(root)
    print(f"{'query':<28}{'median s':>10}{'max s':>8}{'rows':>8}")
    for name, r in queries.items():
        print(f"{name:<28}{r['median_s']:>10.3f}{r['max_s']:>8.3f}{r['result_rows']:>8}")
    result = {"store": sizes, "queries": queries, "target_s": 1.0,
              "all_within_target": all(r["median_s"] <= 1.0 for r in queries.values())}
    write_result("sql", result)
    return result


if __name__ == "__main__":
    main()
