"""Crash, re-run, share: real `restem` processes killed with SIGKILL at several points, then resumed.

Each test drives the installed `restem` command on the tiny profile with the real model, on its
own DAGSTER_HOME and data root, and checks what a user would: the next run finishes with no
hand work, every row exactly once, a consistent policy chain, no leftover temporary files,
nothing holding the `torch` pool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster_project.run_guard import IN_PROGRESS_RUN_STATUSES

from dagster_project.instance import persistent_instance
from restem_assets.store.tables import ParquetStore
from tests.e2e_helpers import wait_for

pytestmark = pytest.mark.slow

RESTEM = str(Path(sys.executable).with_name("restem"))
TRAIN, TEST, K, EVAL_K = 6, 4, 2, 2  # the tiny profile


class Loop:
    """`restem run` on one instance and data root, started and killed like a user (or the OOM killer) would."""

    def __init__(self, tmp_path: Path, model_path: str):
        self.tmp, self.data, self.home = tmp_path, tmp_path / "data", tmp_path / "home"
        self.env = dict(os.environ, RESTEM_BASE_MODEL=model_path, RESTEM_ENGINE="transformers", HF_HUB_OFFLINE="1")
        self.n = 0

    def argv(self, *extra: str) -> list[str]:
        return [RESTEM, "run", "--profile", "tiny", "--iterations", "1", "--no-stop", "--data-root", str(self.data),
                "--dagster-home", str(self.home), *extra]

    def start(self, *extra: str) -> tuple[subprocess.Popen, Path]:
        self.n += 1
        log = self.tmp / f"run{self.n}.log"
        self.tmpdir = self.tmp / f"tmp{self.n}"  # the run's TMPDIR: what it has in flight shows there
        self.tmpdir.mkdir()
        proc = subprocess.Popen(self.argv(*extra), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True, env=dict(self.env, TMPDIR=str(self.tmpdir)), cwd=self.tmp)
        return proc, log

    def fine_tuning(self) -> bool:
        """The latest run is inside `finetune()`: its trainer's work directory exists (removed when it returns)."""
        return any(self.tmpdir.glob("restem-trainer-*"))

    def run(self, *extra: str, timeout: float = 900) -> tuple[int, str]:
        proc, log = self.start(*extra)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        return rc, log.read_text()

    def kill_when(self, condition, *extra: str, timeout: float = 900) -> str:
        """Start a run and SIGKILL its whole process group as soon as `condition(log_text)` holds."""
        proc, log = self.start(*extra)
        try:
            while_running(proc, log, condition, timeout, "the kill point")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def leftovers(self) -> list[str]:
        return [str(p) for p in self.data.rglob("*") if ".tmp-" in p.name or ".staging" in p.parts]


def while_running(proc: subprocess.Popen, log: Path, condition, timeout: float, what: str) -> None:
    """Wait until `condition(log_text)` holds; fail at once, with the log's tail, if `proc` ends first."""

    def check() -> bool:
        text = log.read_text()
        if condition(text):
            return True
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {what}:\n{text[-3000:]}"
        return False

    wait_for(check, timeout, lambda: f"{what}:\n{log.read_text()[-3000:]}", interval=0.01)


def assert_consistent(loop: Loop) -> None:
    store = ParquetStore(str(loop.data))
    samples = store.read_table("samples", 1).to_pylist()
    pairs = [(r["problem_id"], r["sample_idx"]) for r in samples]
    assert len(pairs) == TRAIN * K and len(set(pairs)) == len(pairs), "every (problem, sample) exactly once"
    assert sorted(pairs) == sorted((r["problem_id"], r["sample_idx"]) for r in store.read_table("rewards", 1).to_pylist())
    for it in (0, 1):
        evals = store.read_table("eval_samples", it).to_pylist()
        keys = [(r["mode"], r["problem_id"], r["sample_idx"]) for r in evals]
        assert len(keys) == TEST * (1 + EVAL_K) and len(set(keys)) == len(keys)
    instance = persistent_instance(loop.home)
    from restem_assets.assets.policy_lineage import lookup_policy

    base, policy1 = lookup_policy(instance, 0), lookup_policy(instance, 1)
    assert {r["policy_path"] for r in samples} == {base.path}, "iteration 1 sampled from the base model"
    assert Path(policy1.path.removeprefix("file://")).is_dir()
    assert {r["policy_path"] for r in store.read_table("eval_samples", 1).to_pylist()} == {policy1.path}
    assert not instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
    info = instance.event_log_storage.get_concurrency_info("torch")
    assert not info.claimed_slots and not info.pending_steps, "nothing holds the torch pool"
    assert loop.leftovers() == []


def test_sigkill_anywhere_then_resume(tmp_path, model_path):
    loop = Loop(tmp_path, model_path)
    staged = loop.data / ".staging" / "samples" / "iteration=1"

    # 1. during sampling: some crash-safe chunks of samples[1] are written, the rest is not
    loop.kill_when(lambda _: any(staged.glob("*/chunk-*.parquet")))
    kept = len(list(staged.glob("*/chunk-*.parquet")))
    assert kept >= 1

    # 2. between steps: samples[1] is published, the rest of the iteration is not
    log = loop.kill_when(lambda _: (loop.data / "samples" / "iteration=1" / "part-0.parquet").exists())
    assert "marked failed" in log, "the killed run was left STARTED and must be failed by the next driver"
    assert "kept from an interrupted run" in log, "finished chunks are kept, only missing samples generated"

    # 3. during the fine-tune
    log = loop.kill_when(lambda text: "fine-tuning" in text and loop.fine_tuning())
    assert "resuming at" in log or "==> iteration[1]" in log

    # 4. the next run completes without any hand work
    rc, log = loop.run()
    assert rc == 0, log[-3000:]
    assert "done: 1 iterations" in log
    assert_consistent(loop)


def test_sigkill_during_a_parquet_write_keeps_the_old_table_and_is_cleaned(tmp_path):
    """A writer killed mid-write leaves the previous table intact and only a temporary file, which
    the next driver removes."""
    root = tmp_path / "data"
    store = ParquetStore(str(root))
    from restem_assets.store.schemas import SFT_SET

    old = [{"problem_id": "p", "sample_idx": 0, "prompt": "P", "completion": "old", "n_tokens": 1, "source": "self"}]
    store.write_table("sft_set", old, SFT_SET, 1)
    before = (root / "sft_set" / "iteration=1" / "part-0.parquet").read_bytes()
    writer = (
        "import sys; from restem_assets.store.tables import ParquetStore; from restem_assets.store.schemas import SFT_SET\n"
        "row = {'problem_id': 'p', 'sample_idx': 0, 'prompt': 'P' * 200, 'completion': 'new' * 100, 'n_tokens': 1, 'source': 'self'}\n"
        "with ParquetStore(sys.argv[1]).writer('sft_set', SFT_SET, 1) as w:\n"
        "    for _ in range(100000): w.write([row] * 64)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(root)], start_new_session=True)
    part_dir = root / "sft_set" / "iteration=1"

    def well_inside_the_write() -> bool:  # 1 MiB: dozens of row groups written, many more to come
        assert proc.poll() is None, "the writer ended before the kill"
        return any(p.name.startswith(".part-0.parquet.tmp-") and p.stat().st_size >= 2**20 for p in part_dir.iterdir())

    wait_for(well_inside_the_write, 120, "the writer to be 1 MiB into the new table", interval=0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (part_dir / "part-0.parquet").read_bytes() == before, "readers still see the old, whole table"
    assert pq.read_table(part_dir / "part-0.parquet").num_rows == 1
    orphans = [p for p in part_dir.iterdir() if ".tmp-" in p.name]
    assert orphans
    from dagster_project.run_guard import remove_orphans

    assert sorted(remove_orphans(str(root))) == sorted(str(p) for p in orphans)
    assert [p.name for p in part_dir.iterdir()] == ["part-0.parquet"]


def test_a_second_driver_is_refused_naming_the_first(tmp_path, model_path):
    loop = Loop(tmp_path, model_path)
    first, log = loop.start()
    try:
        while_running(first, log, lambda text: "==> " in text, 300, "the first driver's first job")
        rc, second = loop.run(timeout=120)
        assert rc == 2
        assert "another restem driver is running on this instance" in second
        assert f"pid {first.pid}" in second
        assert first.poll() is None, "the first driver goes on"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_rerunning_an_iteration_makes_what_used_it_stale(tmp_path, model_path):
    """Re-materializing finetune[1] (as from the launchpad) writes a new model beside the old one and
    turns evaluation[1] stale; `restem run` refuses to say done and `--from-iteration 1` redoes it."""
    loop = Loop(tmp_path, model_path)
    rc, log = loop.run()
    assert rc == 0, log[-3000:]
    from dagster_project.definitions import build_definitions
    from dagster_project.loop_state import read_loop_state
    from dagster_project.run_guard import process_tags
    from restem_assets.assets.policy_lineage import lookup_policy
    from restem_assets.environment import Settings

    instance = persistent_instance(loop.home)
    first = lookup_policy(instance, 1)
    defs = build_definitions(Settings(profile="tiny", data_root=str(loop.data), base_model=loop.env["RESTEM_BASE_MODEL"],
                                      engine="transformers"))
    result = defs.resolve_job_def("iteration").execute_in_process(
        instance=instance, partition_key="1", asset_selection=[dg.AssetKey("finetune")], tags=process_tags())
    assert result.success
    second = lookup_policy(instance, 1)
    assert second.path != first.path and Path(first.path.removeprefix("file://")).is_dir(), "the old model is kept"
    state = read_loop_state(instance, defs.resolve_asset_graph())
    assert set(state.stale) == {("evaluation", 1)} and "policy[1]" in state.stale[("evaluation", 1)]

    rc, log = loop.run()
    assert rc == 3 and "stale: evaluation[1]" in log and "--from-iteration 1" in log
    assert "done" not in log.splitlines()[-1]

    rc, log = loop.run("--from-iteration", "1")
    assert rc == 0 and "done: 1 iterations" in log, log[-3000:]
    assert read_loop_state(instance, defs.resolve_asset_graph()).stale == {}
    report = (loop.data / "reports" / "progress.md").read_text()
    assert "| 1 |" in report and "left out" not in report
    assert len(list((loop.data / "models" / "iteration=1").glob("version=*"))) == 3


def test_sigterm_stops_the_driver_and_the_next_run_resumes(tmp_path, model_path):
    loop = Loop(tmp_path, model_path)
    proc, log = loop.start()
    staged = loop.data / ".staging" / "eval_samples" / "iteration=0"
    # mid-step: evaluate[0] has written its first crash-safe chunk and has more to generate
    while_running(proc, log, lambda text: "==> evaluate[0]" in text and any(staged.glob("*/chunk-*.parquet")), 300,
                  "evaluate[0] under way")
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"SIGTERM did not stop the driver:\n{log.read_text()[-2000:]}") from None
    assert rc == 128 + signal.SIGTERM, f"the driver did not stop on SIGTERM (rc {rc}):\n{log.read_text()[-4000:]}"
    instance = persistent_instance(loop.home)
    assert not instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))), \
        "the interrupted run is not left STARTED"
    rc, text = loop.run()
    assert rc == 0 and "done: 1 iterations" in text, text[-3000:]
    assert_consistent(loop)


def test_an_e_step_killed_mid_sampling_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path, model_path):
    """Issue 23: each sample is seeded by what it is, so SIGKILL mid-E-step and a re-run give exactly the
    samples an uninterrupted E-step writes (same engine, same dtype); before, 9 of 10 regenerated ones differed."""
    def estep(loop: Loop) -> list[str]:
        return [RESTEM, "estep", "--profile", "tiny", "--iteration", "1", "--set", "rest.checkpoint_rows=1",
                "--data-root", str(loop.data), "--dagster-home", str(loop.home)]

    def completions(loop: Loop) -> dict:
        rows = ParquetStore(str(loop.data)).read_table("samples", 1).to_pylist()
        return {(r["problem_id"], r["sample_idx"]): r["completion"] for r in rows}

    whole = Loop(tmp_path / "whole", model_path)
    whole.tmp.mkdir()
    assert subprocess.run(estep(whole), env=whole.env, cwd=whole.tmp, capture_output=True, timeout=900).returncode == 0
    expected = completions(whole)
    assert len(expected) == TRAIN * K

    killed = Loop(tmp_path / "killed", model_path)
    killed.tmp.mkdir()
    killed.argv = lambda *extra: estep(killed)
    staged = killed.data / ".staging" / "samples" / "iteration=1"
    killed.kill_when(lambda _: any(staged.glob("*/chunk-*.parquet")))
    import pyarrow.parquet as pq

    kept = sum(pq.read_metadata(p).num_rows for p in staged.glob("*/chunk-*.parquet"))
    assert 1 <= kept < TRAIN * K, f"the kill came after {kept} of {TRAIN * K} samples were staged"
    rc, log = killed.run()
    assert rc == 0 and "kept from an interrupted run" in log, log[-3000:]
    assert completions(killed) == expected
