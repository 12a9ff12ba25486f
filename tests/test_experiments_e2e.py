"""Two experiments side by side from the CLI, the human-data baseline and the analyses, end to end.

The ablation commands of docs/experiments.md run as written (from the repository root, that file's own block), with
the real embedded model on the `tiny_easy` profile, a persistent Dagster instance and a data root in
tmp_path chosen through the environment (RESTEM_PROFILE, RESTEM_DATA_ROOT, DAGSTER_HOME). Before them
the `default` experiment runs first, as data written before experiments existed: it must stay intact.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from restem_assets.reporting import analytics

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
COMMANDS_DOC = REPO / "docs" / "experiments.md"  # the ablation-commands block lives here


def doc_commands() -> list[str]:
    text = COMMANDS_DOC.read_text()
    block = re.search(r"<!-- ablation-commands[^>]*-->\n```bash\n(.*?)```\n<!-- end ablation-commands -->", text, re.S)
    assert block, "docs/experiments.md has no ablation-commands block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_doc_block_is_what_this_test_runs():
    commands = doc_commands()
    assert commands[0].startswith(".venv/bin/restem run --experiment k4 ")
    assert any("--human-baseline" in c for c in commands)
    assert ".venv/bin/restem sql compare_experiments" in commands


def test_two_experiments_side_by_side_with_the_human_baseline(tmp_path, model_path):
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    env = dict(os.environ, RESTEM_PROFILE="tiny_easy", RESTEM_DATA_ROOT=str(data), DAGSTER_HOME=str(home),
               RESTEM_BASE_MODEL=model_path, RESTEM_ENGINE="transformers", HF_HUB_OFFLINE="1")

    def run(command: str) -> str:
        proc = subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    # the default experiment, as before experiments existed: no --experiment
    run(".venv/bin/restem run --iterations 1 --no-stop")
    default_samples = sorted(p.name for p in (data / "samples").iterdir())
    outputs = {command: run(command) for command in doc_commands()}

    # each experiment's tables in its own namespace; the default experiment's untouched
    assert sorted(p.name for p in (data / "samples").iterdir()) == default_samples == ["iteration=1"]
    for name in ("k4", "k8"):
        assert sorted(p.name for p in (data / f"experiment={name}" / "samples").iterdir()) == ["iteration=1", "iteration=2"]
        assert list((data / f"experiment={name}" / "models" / "iteration=2").glob("version=*/config.json"))
    con = analytics.connect(str(data))
    # K=4 vs K=8 on the same 8 train problems
    assert con.execute("SELECT experiment, iteration, count(*) FROM all_samples GROUP BY ALL ORDER BY 1, 2").fetchall() == [
        ("default", 1, 16), ("k4", 1, 32), ("k4", 2, 32), ("k8", 1, 64), ("k8", 2, 64)]

    compare = analytics.run_query(str(data), "compare_experiments")
    assert sorted(zip(compare["experiment"], compare["iteration"])) == [
        ("default", 0), ("default", 1), ("k4", 0), ("k4", 1), ("k4", 2), ("k8", 0), ("k8", 1), ("k8", 2)]
    ks = dict(zip(compare["experiment"], compare["samples_per_problem"]))
    assert ks == {"default": 2, "k4": 4, "k8": 8}
    out = outputs[".venv/bin/restem sql compare_experiments"]
    assert "k4" in out and "k8" in out and "default" in out

    # the human-data baseline: as many examples as k8's iteration-1 SFT set (at most one per train problem)
    k8_sft = con.execute("SELECT count(*) FROM all_sft_set WHERE experiment = 'k8' AND iteration = 1").fetchone()[0]
    human = con.execute("SELECT experiment, count(*) FROM all_human_sft_set GROUP BY ALL").fetchall()
    assert human == [("k8", min(k8_sft, 8))]
    assert con.execute("SELECT count(*) FROM all_human_evaluations WHERE experiment = 'k8'").fetchone() == (4,)
    report = (data / "experiment=k8" / "reports" / "progress.md").read_text()
    assert "| human data |" in report and "Human-data baseline" in report
    assert "Experiments side by side" in report and "| 2 | k4 | 4 |" in report
    assert "Per-problem learning" in report and "Greedy pass@1 by difficulty" in report and "Cost per iteration" in report
    assert "newly_solved" in outputs[".venv/bin/restem sql problem_learning"]
    assert "base_success_rate" in outputs[".venv/bin/restem sql difficulty_buckets"]

    # cost: every stage of every iteration, priced at 0.05 per CPU hour
    cost = analytics.run_query(str(data), "cost_per_iteration", cpu_hour_price=0.05)
    k8 = cost.filter(cost["experiment"] == "k8")
    assert set(k8.filter(k8["iteration"] == 1)["stage"]) == {"samples", "rewards", "sft_set", "finetune", "evaluation",
                                                            "human_finetune", "human_evaluation", "all"}
    total = k8.filter((k8["iteration"] == 1) & (k8["stage"] == "all")).row(0, named=True)
    assert total["cpu_seconds"] > 0 and total["generated_tokens"] > 0 and total["prompt_tokens"] > 0
    assert total["cost"] == pytest.approx(total["cpu_seconds"] / 3600 * 0.05)

    # one instance holds every experiment's materializations, each under its own keys
    instance = dg.DagsterInstance.from_config(str(home))
    for prefix in ([], ["k4"], ["k8"]):
        assert "1" in instance.get_materialized_partitions(dg.AssetKey([*prefix, "finetune"]))
    assert instance.get_materialized_partitions(dg.AssetKey("finetune")) == {"1"}
    assert instance.get_latest_materialization_event(dg.AssetKey(["k8", "human_baseline"])) is not None

    # what the asset page plots per partition: numeric pass@1 / pass@k / maj@k and the fine-tune's loss
    def metadata(name: str, partition: str) -> dict:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["k8", name]), asset_partitions=[partition]), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    for p in ("0", "1", "2"):
        assert all(isinstance(metadata("evaluation", p)[k], float) for k in ("greedy_pass_at_1", "pass_at_k", "maj_at_k"))
    assert all(isinstance(metadata("finetune", p)["final_loss"], float) for p in ("1", "2"))

    # a named experiment keeps its configuration: asking for another K is refused, naming it
    proc = subprocess.run(shlex.split(".venv/bin/restem run --experiment k4 --set rest.samples_per_problem=8"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "rest.samples_per_problem: 4 -> 8" in proc.stderr, proc.stderr[-2000:]
    # ... and running it again with its own settings resumes: nothing left to do
    again = run(".venv/bin/restem run --experiment k4 --iterations 2 --no-stop")
    assert "done: 2 iterations" in again and "iteration[" not in again.split("done: 2 iterations")[0]
