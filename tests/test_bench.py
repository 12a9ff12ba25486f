"""The benchmark suite runs end to end (small workloads) and renders its report.

Only the parts without the model: the engine and orchestration benchmarks need
minutes of CPU and run with `make bench`. Results go to a temporary folder, never
over the published bench/results.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_suite_writes_report(tmp_path):
    env = dict(os.environ, RESTEM_BENCH_RESULTS=str(tmp_path / "results"))
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "reward,sql,memory", "--out", str(out)],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = out.read_text()
    for section in ("Math reward throughput", "DuckDB latency", "Peak memory", "Targets"):
        assert section in report
    data = json.loads((tmp_path / "results" / "all.json").read_text())
    queries = data["benchmarks"]["sql"]["result"]["queries"]
    from restem_assets.analytics import list_queries

    assert sorted(queries) == list_queries()  # every sql/ query was timed
    assert data["benchmarks"]["reward"]["result"]["numeric"]["correct"] == 100  # half of 200 are right
    assert not (PROJECT / "bench" / "results" / "all.json").exists() or \
        json.loads((PROJECT / "bench" / "results" / "all.json").read_text()).get("mode") != "quick"
