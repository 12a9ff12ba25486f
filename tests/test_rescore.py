"""`restem rescore`: an iteration's samples scored again into `rescores`; rescore_diff lists what flipped."""

import json
import subprocess
import sys
from pathlib import Path

from restem_assets.reporting.analytics import run_query
from restem_assets.rewards.rescore import rescore_iteration
from restem_assets.rewards.provenance import verifier_version
from restem_assets.store.schemas import PROBLEMS, REWARDS, SAMPLES
from restem_assets.store.tables import ParquetStore

RESTEM = Path(sys.executable).with_name("restem")
QUESTION = "State the final answer to the following arithmetic problem: 12 + 7 ="


def write_iteration(store: ParquetStore) -> None:
    store.write_table("problems", [{"problem_id": "p", "split": "train", "task": "chain_sum", "domain": "math",
                                    "verifier": "math", "question": QUESTION, "answer": "19", "solution": "",
                                    "metadata": "{}"}], PROBLEMS)
    completions = ["12 + 7 = 19\nAnswer: 19", "Answer: 12 + 7", "Answer: 18", "Answer: 19. No wait, Answer: 18"]
    samples = [{"problem_id": "p", "sample_idx": i, "prompt": "P", "completion": c, "n_tokens": 5,
                "finish_reason": "stop", "policy_id": "base", "policy_path": "/m", "engine": "transformers",
                "temperature": 0.7, "top_k": 40, "top_p": 1.0, "max_new_tokens": 96, "seed": 0, "round": 0, "source": "self"}
               for i, c in enumerate(completions)]
    store.write_table("samples", samples, SAMPLES, 1)
    # what an older, lenient grader recorded: the restated question and the retracted answer passed
    old = [("19", 1.0, "correct"), ("12 + 7", 1.0, "correct"), ("18", 0.0, "wrong"), ("19", 1.0, "correct")]
    store.write_table("rewards", [{"problem_id": "p", "sample_idx": i, "extracted_answer": a, "reward": r,
                                   "reason": why, "details": None, "verifier": "math", "verifier_version": "old0000"}
                                  for i, (a, r, why) in enumerate(old)], REWARDS, 1)


def test_rescore_writes_a_side_table_and_counts_flips(tmp_path):
    store = ParquetStore(str(tmp_path / "data"))
    write_iteration(store)
    summary = rescore_iteration(store, 1)
    assert (summary.samples, summary.lost, summary.gained) == (4, 2, 0)
    rescored = store.read_table("rescores", 1).to_pylist()
    assert {r["verifier_version"] for r in rescored} == {verifier_version("math")}
    assert [r["reward"] for r in store.read_table("rewards", 1).to_pylist()] == [1.0, 1.0, 0.0, 1.0]  # untouched
    diff = run_query(str(tmp_path / "data"), "rescore_diff")
    assert diff["sample_idx"].to_list() == [1, 3]
    assert diff["old_version"].to_list() == ["old0000"] * 2
    assert diff["new_reason"].to_list()[0] == "expression" and diff["new_reward"].to_list() == [0.0, 0.0]


def test_rescore_command_as_documented(tmp_path):
    write_iteration(ParquetStore(str(tmp_path / "data")))
    proc = subprocess.run([str(RESTEM), "rescore", "--iteration", "1", "--data-root", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert out["verdicts_changed"] == 2 and out["lost_reward"] == 2
    proc = subprocess.run([str(RESTEM), "sql", "rescore_diff", "--data-root", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "expression" in proc.stdout, proc.stderr


def test_rewards_written_before_provenance_existed_still_diff(tmp_path):
    """Iterations scored by an older restem have no verifier columns: they read as NULL, and rescoring works."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = ParquetStore(str(tmp_path / "data"))
    write_iteration(store)
    path = tmp_path / "data" / "rewards" / "iteration=1" / "part-0.parquet"
    old = pq.read_table(path).drop_columns(["verifier", "verifier_version"])
    assert "verifier" not in old.schema.names
    pq.write_table(old, path)
    rescore_iteration(store, 1)
    diff = run_query(str(tmp_path / "data"), "rescore_diff")
    assert diff["sample_idx"].to_list() == [1, 3] and diff["old_version"].to_list() == [None, None]
    assert set(diff["new_version"].to_list()) == {verifier_version("math")}
