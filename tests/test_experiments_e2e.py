"""The E-step strategy ablation from the CLI (six experiments), the human-data baseline and the analyses, end to end.

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


CONFIGS = ["uniform", "uniform_hints", "prop2diff", "prop2diff_hints", "fixed_hints", "fixed"]


def test_doc_block_is_what_this_test_runs():
    commands = doc_commands()
    runs = [c for c in commands if c.startswith(".venv/bin/restem run ")]
    assert [c.split("--experiment ")[1].split()[0] for c in runs] == CONFIGS
    assert runs[-1].endswith("--human-baseline") and all("--iterations 5" in c for c in runs)
    assert ".venv/bin/restem sql compare_experiments" in commands
    assert ".venv/bin/restem sql coverage_per_round" in commands


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
    con = analytics.connect(str(data))
    compare = analytics.run_query(str(data), "compare_experiments")
    iterations = {}
    for exp, it in zip(compare["experiment"], compare["iteration"]):
        iterations.setdefault(exp, []).append(it)
    assert set(iterations) == {"default", *CONFIGS}
    for name in CONFIGS:  # up to 5 iterations, stopping when validation stops improving
        its = sorted(iterations[name])
        assert its == list(range(len(its))) and 2 <= len(its) <= 6, (name, its)
        assert sorted(p.name for p in (data / f"experiment={name}" / "samples").iterdir()) == [
            f"iteration={i}" for i in its[1:]]
    settings = {r[0]: r[1:] for r in compare.select("experiment", "sampling", "hints").unique().rows()}
    assert settings["prop2diff_hints"] == ("prop2diff", True) and settings["fixed"] == ("fixed", False)
    # rounds: fixed K is one round of 4 per problem; the DART strategies several rounds, equal budget
    rounds = analytics.run_query(str(data), "coverage_per_round")
    fixed = rounds.filter((rounds["experiment"] == "fixed") & (rounds["iteration"] == 1))
    assert fixed.rows() and fixed["round"].to_list() == [0] and fixed["samples"][0] == 8 * 4
    uniform = rounds.filter((rounds["experiment"] == "uniform") & (rounds["iteration"] == 1))
    assert uniform["source"].unique().to_list() == ["self"] and uniform["round"].to_list()[0] == 0
    assert uniform["problems_sampled"][0] == 8 and uniform["samples"][0] == 8  # round_samples=1
    hinted = con.execute("SELECT count(*) FROM all_samples WHERE source = 'hinted' AND experiment NOT LIKE '%hints'"
                         ).fetchone()[0]
    assert hinted == 0
    assert "source" in outputs[".venv/bin/restem sql audit_by_source"]
    assert "tokens_so_far" in outputs[".venv/bin/restem sql coverage_per_round"]
    keys = con.execute("SELECT count(*), count(DISTINCT (experiment, iteration, problem_id, sample_idx)) "
                       "FROM all_samples").fetchone()
    assert keys[0] == keys[1]
    out = outputs[".venv/bin/restem sql compare_experiments"]
    assert out.startswith("shape: (") and ", 20)" in out.splitlines()[0]  # polars truncates the names

    # the human-data baseline: as many examples as fixed's iteration-1 SFT set (at most one per train problem)
    fixed_sft = con.execute("SELECT count(*) FROM all_sft_set WHERE experiment = 'fixed' AND iteration = 1").fetchone()[0]
    human = con.execute("SELECT experiment, count(*) FROM all_human_sft_set GROUP BY ALL").fetchall()
    assert human == [("fixed", min(fixed_sft, 8))]
    assert con.execute("SELECT count(*) FROM all_human_evaluations WHERE experiment = 'fixed'").fetchone() == (4,)
    report = (data / "experiment=fixed" / "reports" / "progress.md").read_text()
    assert "| human data |" in report and "Human-data baseline" in report
    assert "Experiments side by side" in report and "| 1 | prop2diff | prop2diff |" in report
    assert "vs human data" in report and "every experiment" in report
    assert "Per-problem learning" in report and "Greedy pass@1 by difficulty" in report and "Cost per iteration" in report
    assert (data / "experiment=fixed" / "reports" / "progress.png").stat().st_size > 10_000
    assert "newly_solved" in outputs[".venv/bin/restem sql problem_learning"]
    assert "base_success_rate" in outputs[".venv/bin/restem sql difficulty_buckets"]

    # cost: every stage of every iteration, priced at 0.05 per CPU hour
    cost = analytics.run_query(str(data), "cost_per_iteration", cpu_hour_price=0.05)
    fixed_cost = cost.filter(cost["experiment"] == "fixed")
    assert set(fixed_cost.filter(fixed_cost["iteration"] == 1)["stage"]) == {"samples", "rewards", "sft_set", "finetune", "evaluation",
                                                            "human_finetune", "human_evaluation", "all"}
    total = fixed_cost.filter((fixed_cost["iteration"] == 1) & (fixed_cost["stage"] == "all")).row(0, named=True)
    assert total["cpu_seconds"] > 0 and total["generated_tokens"] > 0 and total["prompt_tokens"] > 0
    assert total["cost"] == pytest.approx(total["cpu_seconds"] / 3600 * 0.05)

    # one instance holds every experiment's materializations, each under its own keys
    instance = dg.DagsterInstance.from_config(str(home))
    for prefix in ([], *([c] for c in CONFIGS)):
        assert "1" in instance.get_materialized_partitions(dg.AssetKey([*prefix, "finetune"]))
    assert instance.get_materialized_partitions(dg.AssetKey("finetune")) == {"1"}
    assert instance.get_latest_materialization_event(dg.AssetKey(["fixed", "human_baseline"])) is not None

    # what the asset page plots per partition: numeric pass@1 / pass@k / maj@k and the fine-tune's loss
    def metadata(name: str, partition: str) -> dict:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["fixed", name]), asset_partitions=[partition]), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    for p in ("0", "1"):
        assert all(isinstance(metadata("evaluation", p)[k], float) for k in ("greedy_pass_at_1", "pass_at_k", "maj_at_k"))
    assert isinstance(metadata("finetune", "1")["final_loss"], float)

    # a named experiment keeps its configuration: asking for another K is refused, naming it
    proc = subprocess.run(shlex.split(".venv/bin/restem run --experiment fixed --set rest.samples_per_problem=8"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "rest.samples_per_problem: 4 -> 8" in proc.stderr, proc.stderr[-2000:]
    # ... and running it again with its own settings resumes: nothing left to do
    again = run(".venv/bin/restem run --experiment fixed --iterations 1 --no-stop")
    assert "done: 1 iterations" in again and "iteration[" not in again.split("done: 1 iterations")[0]
