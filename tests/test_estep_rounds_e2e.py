"""Issue 20: the E-step in rounds with the real model, through the installed `restem` command: rounds are
recorded per sample, (problem_id, sample_idx) stays unique, hinted rows are kept apart, and an E-step
SIGKILLed in a later round resumes to exactly the rows of an uninterrupted one."""

from __future__ import annotations

import subprocess

import pyarrow.parquet as pq
import pytest

from restem_assets.store.tables import ParquetStore
from tests.test_recovery import RESTEM, Loop

pytestmark = pytest.mark.slow

ROUNDS = ["--set", "rest.sampling=prop2diff", "--set", "rest.round_samples=1", "--set", "rest.target_correct=2",
          "--set", "rest.max_samples_per_problem=4", "--set", "rest.hints=true", "--set", "rest.hint_samples=1",
          "--set", "rest.checkpoint_rows=1"]


def estep(loop: Loop) -> list[str]:
    return [RESTEM, "estep", "--profile", "tiny", "--iteration", "1", *ROUNDS,
            "--data-root", str(loop.data), "--dagster-home", str(loop.home)]


def samples(loop: Loop) -> dict:
    rows = ParquetStore(str(loop.data)).read_table("samples", 1).to_pylist()
    keys = [(r["problem_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)), "a (problem_id, sample_idx) pair was written twice"
    return {(r["problem_id"], r["sample_idx"]): (r["round"], r["source"], r["completion"]) for r in rows}


def staged_rounds(loop: Loop) -> set[int]:
    staged = loop.data / ".staging" / "samples" / "iteration=1"
    out: set[int] = set()
    for chunk in staged.glob("*/chunk-*.parquet"):
        try:
            out |= set(pq.read_table(chunk, columns=["round"]).column("round").to_pylist())
        except Exception:  # noqa: BLE001 - a chunk being renamed into place
            pass
    return out


def test_rounds_with_the_real_model_resume_after_sigkill_in_a_later_round(tmp_path, model_path):
    whole = Loop(tmp_path / "whole", model_path)
    whole.tmp.mkdir()
    done = subprocess.run(estep(whole), env=whole.env, cwd=whole.tmp, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = samples(whole)
    rounds = {r for r, _, _ in expected.values()}
    assert len(rounds) >= 2, f"one round only: {sorted(rounds)}"
    assert "round 1" in done.stdout + done.stderr
    tokens = subprocess.run([RESTEM, "sql", "coverage_per_round", "--data-root", str(whole.data),
                             "--dagster-home", str(whole.home)], env=whole.env, cwd=whole.tmp, capture_output=True,
                            text=True, timeout=300)
    assert tokens.returncode == 0 and "tokens_so_far" in tokens.stdout, tokens.stdout + tokens.stderr

    killed = Loop(tmp_path / "killed", model_path)
    killed.tmp.mkdir()
    killed.argv = lambda *extra: estep(killed)
    killed.kill_when(lambda _: any(r >= 1 for r in staged_rounds(killed)))
    rc, log = killed.run()
    assert rc == 0 and "kept from an interrupted run" in log, log[-3000:]
    assert samples(killed) == expected
