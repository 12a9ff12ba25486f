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


def quick_bench(tmp_path, only: str, timeout: int) -> tuple[str, dict]:
    """`python -m bench --quick --only ONLY` into tmp_path: (the rendered report, results/all.json)."""
    env = dict(os.environ, RESTEM_BENCH_RESULTS=str(tmp_path / "results"))
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", only, "--out", str(out)],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out.read_text(), json.loads((tmp_path / "results" / "all.json").read_text())


@pytest.mark.slow
def test_quick_suite_writes_report(tmp_path):
    report, data = quick_bench(tmp_path, "reward,sql,memory", timeout=600)
    for section in ("Math reward throughput", "DuckDB latency", "Peak memory", "Targets"):
        assert section in report
    queries = data["benchmarks"]["sql"]["result"]["queries"]
    from restem_assets.reporting.analytics import list_queries

    assert sorted(queries) == list_queries()  # every sql/ query was timed
    assert data["benchmarks"]["reward"]["result"]["numeric"]["correct"] == 100  # half of 200 are right
    assert not (PROJECT / "bench" / "results" / "all.json").exists() or \
        json.loads((PROJECT / "bench" / "results" / "all.json").read_text()).get("mode") != "quick"


@pytest.mark.slow
def test_gpu_bench_script_runs_on_cpu_with_a_tiny_shape(tmp_path, model_path):
    """bench/bench_gpu.py (what bench/gpu.sh runs on the device machine) end to end on CPU with a tiny random
    model: both generation configs produce tokens, and the shared-prefix loss starts where the plain loss does."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/bench_gpu.py", "--tokenizer", model_path, "--shape", "tiny",
                           "--device", "cpu", "--prompts", "4", "--k", "2", "--max-new-tokens", "8",
                           "--train-steps", "2", "--train-batch", "4", "--out", str(out)],
                          cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert all(r["tokens"] > 0 for r in data["generation"].values())
    base, shared = data["training"]["baseline"]["losses"], data["training"]["prefix_sharing"]["losses"]
    assert shared[0] == pytest.approx(base[0], rel=1e-4) and shared[-1] == pytest.approx(base[-1], rel=1e-3)


@pytest.mark.slow
def test_compute_and_finetune_benchmarks_report_the_speed_targets(tmp_path):
    """The compute-bound and fine-tune benchmarks (quick sizes) land in the report with their targets."""
    report, results = quick_bench(tmp_path, "compute,finetune", timeout=900)
    assert "## Compute bound" in report and "## M-step (fine-tune) speed" in report
    assert "fine-tune ≥ 3× baseline examples/s" in report
    data = results["benchmarks"]
    assert data["compute"]["result"]["dtypes"]["fp32"]["flops"] > 1e9
    ft = data["finetune"]["result"]
    assert ft["loss_ratio"] == pytest.approx(1.0, abs=0.02)  # the same training, computed faster


@pytest.mark.slow
def test_instance_storage_bench_runs_sqlite_and_postgres(tmp_path):
    """bench/bench_instance.py (issue 22): concurrent stand-in runs on SQLite and on a real PostgreSQL server."""
    report, results = quick_bench(tmp_path, "instance", timeout=900)
    rows = results["benchmarks"]["instance"]["result"]["results"]
    assert [r["runs"] for r in rows["sqlite"]] == [r["runs"] for r in rows["postgres"]] == [1, 2]
    for storage in ("sqlite", "postgres"):
        for r in rows[storage]:
            assert r["failed"] == 0 and r["events"] > 0 and r["launch_latency_median_s"] > 0, (storage, r)
    assert "## Instance storage under concurrent runs" in report and "| postgres | 2 |" in report
