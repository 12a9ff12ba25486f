"""One writer per partition: a run that would write a partition another process is writing fails at once."""

import dagster as dg
import pytest

from restem_assets.assets import estep
from restem_assets.assets.resources import ReSTResource, StorageResource
from restem_assets.store.locks import FileLock, LockHeldError
from restem_assets.store.schemas import PROBLEMS, SAMPLES
from restem_assets.store.tables import ParquetStore


def test_a_held_partition_lock_fails_the_second_writer_naming_the_holder(tmp_path):
    root = tmp_path / "data"
    store = ParquetStore(str(root))
    store.write_table("problems", [{"problem_id": "p", "split": "train", "task": "chain_sum", "domain": "math",
                                    "verifier": "math", "question": "1 + 1 =", "answer": "2", "solution": "",
                                    "metadata": "{}"}], PROBLEMS)
    store.write_table("samples", [{"problem_id": "p", "sample_idx": 0, "prompt": "P", "completion": "Answer: 2",
                                   "n_tokens": 3, "finish_reason": "stop", "policy_id": "base", "policy_path": "/m",
                                   "engine": "transformers", "temperature": 0.7, "top_k": 40, "top_p": 1.0,
                                   "max_new_tokens": 8, "seed": 0, "round": 0, "source": "self"}], SAMPLES, 1)
    holder = FileLock(root / ".locks" / "iteration=1.lock").acquire(owner={"run": "the-other-run"})
    try:
        result = dg.materialize([estep.rewards], partition_key="1", raise_on_error=False,
                                resources={"storage": StorageResource(root=str(root))})
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message
        assert "iteration=1 is being written by another run" in message and "the-other-run" in message
        assert not store.exists("rewards", 1)
    finally:
        holder.release()
    ok = dg.materialize([estep.rewards], partition_key="1", resources={"storage": StorageResource(root=str(root))})
    assert ok.success and store.num_rows("rewards", 1) == 1


def test_file_lock_is_exclusive_and_released(tmp_path):
    a = FileLock(tmp_path / "x.lock").acquire(owner={"run": "a"})
    with pytest.raises(LockHeldError, match="run a"):
        FileLock(tmp_path / "x.lock").acquire()
    a.release()
    FileLock(tmp_path / "x.lock").acquire().release()
