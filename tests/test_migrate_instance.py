"""Issue 22 item 3: `restem migrate-instance` carries a SQLite instance's history into the shared PostgreSQL one
(a real server): the same runs with their statuses and times, the same materialized partitions and metadata, the
sensor states; a second copy adds nothing, `restem serve` refuses a home with SQLite history, and the loop on
the new instance finds everything done."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import dagster_yaml
from dagster_project.postgres_server import PostgresCluster
from tests.cluster_helpers import free_port

pytestmark = pytest.mark.slow
RESTEM = str(Path(sys.executable).with_name("restem"))


@pytest.fixture
def postgres():
    pg_dir = Path(tempfile.mkdtemp(prefix="restem-pg-", dir="/tmp"))
    os.chmod(pg_dir, 0o755)
    cluster = PostgresCluster(directory=pg_dir / "cluster", port=free_port(), password="migrate-test")
    cluster.ensure()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_sqlite_history_moves_to_postgres(tmp_path, model_path, postgres):
    data, old, new = tmp_path / "data", tmp_path / "old_home", tmp_path / "new_home"
    env = {**os.environ, "RESTEM_BASE_MODEL": model_path, "RESTEM_ENGINE": "transformers", "HF_HUB_OFFLINE": "1",
           "RESTEM_PROFILE": "tiny", "RESTEM_DATA_ROOT": str(data)}
    for var in postgres.env():
        env.pop(var, None)

    def restem(*argv: str, home: Path, **extra) -> subprocess.CompletedProcess:
        return subprocess.run([RESTEM, *argv, "--dagster-home", str(home)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=1200, env={**env, **extra})

    done = restem("run", "--iterations", "1", "--no-stop", home=old)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    new.mkdir()
    (new / "dagster.yaml").write_text(dagster_yaml("postgres"))
    postgres.save_env(new / "postgres.env")  # as `restem serve` leaves it

    refused = restem("serve", home=old)
    assert refused.returncode == 2 and "SQLite history" in refused.stderr and "migrate-instance" in refused.stderr

    copied = restem("migrate-instance", "--from", str(old), home=new)
    assert copied.returncode == 0, copied.stderr[-3000:]
    source = dg.DagsterInstance.from_config(str(old))
    os.environ.update(postgres.env())
    target = dg.DagsterInstance.from_config(str(new))
    assert type(target.run_storage).__name__ == "PostgresRunStorage"
    runs = {r.dagster_run.run_id: r for r in source.get_run_records()}
    copied_runs = {r.dagster_run.run_id: r for r in target.get_run_records()}
    assert set(copied_runs) == set(runs) and len(runs) >= 4
    assert f"copied {len(runs)} runs" in copied.stdout
    for run_id, record in runs.items():
        twin = copied_runs[run_id]
        assert twin.dagster_run.status == record.dagster_run.status
        assert twin.start_time == pytest.approx(record.start_time) and twin.end_time == pytest.approx(record.end_time)
        assert len(target.all_logs(run_id)) == len(source.all_logs(run_id))
    for key in source.get_asset_keys():
        assert target.get_materialized_partitions(key) == source.get_materialized_partitions(key), key
        before = source.get_latest_materialization_event(key)
        after = target.get_latest_materialization_event(key)
        assert (before is None) == (after is None), key
        if before is not None:
            assert after.asset_materialization.metadata == before.asset_materialization.metadata, key
    assert {s.instigator_name for s in target.all_instigator_state()} == {
        s.instigator_name for s in source.all_instigator_state()}

    again = restem("migrate-instance", "--from", str(old), home=new)
    assert again.returncode == 0 and f"{len(runs)} runs were there already" in again.stdout
    assert len(target.get_run_records()) == len(runs)
    # the loop on the new instance: everything was done (nothing re-run), its lineage and staleness intact
    resumed = restem("run", "--iterations", "1", "--no-stop", home=new)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "done: 1 iterations" in resumed.stdout, resumed.stdout[-3000:]
    assert "iteration[" not in resumed.stdout.split("done: 1 iterations")[0], resumed.stdout[-3000:]
