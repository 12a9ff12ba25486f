"""Issue 22: the shared deployment with real parts: `restem serve` starts a real PostgreSQL server and the daemon
and the webserver as separate supervised processes. Through the webserver's GraphQL API two named experiments
are launched at once on the tiny_easy profile, each as a backfill of 2 iterations plus its evaluation backfill,
while the daemon and then the webserver are killed with SIGKILL. Every run completes, iterations in order,
nothing twice, with the rows of a sequential CLI run on the same instance (same seeds); the CLI, `restem sql`,
`restem rescore` and `restem ui` work against the PostgreSQL instance; a second driver is refused, naming the
first; SIGTERM stops the services cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

from restem_assets.store.tables import ParquetStore
from restem_assets.experiments import experiment_root
from tests.cluster_helpers import free_port, server_up
from tests.e2e_helpers import wait_for
from tests.test_backfill_deadlock import LAUNCH_BACKFILL, backfill_status, graphql, timeline

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RESTEM = str(Path(sys.executable).with_name("restem"))
ITERATION_ASSETS = ["samples", "rewards", "sft_set", "finetune"]
EXPERIMENTS = ["alpha", "beta"]
DEADLINE_S = 35 * 60

SETUP = """
mutation Setup($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""


def children(pid: int) -> dict[str, int]:
    """The supervised services of `restem serve` (pid -> name by their command line)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == pid:
            if "dagster-daemon" in cmdline:
                out["daemon"] = int(proc.name)
            elif "dagster-webserver" in cmdline:
                out["webserver"] = int(proc.name)
    return out


def gql(port: int, query: str, variables: dict) -> dict:
    """GraphQL that rides out a webserver restart (connection refused while it comes back)."""
    return wait_for(lambda: _try(lambda: graphql(port, query, variables)), 300, "the webserver", interval=2.0)


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


@pytest.fixture
def deployment(tmp_path, model_path):
    # PostgreSQL runs as the `postgres` user under root, which cannot enter pytest's 0700 tmp dirs
    pg_dir = Path(tempfile.mkdtemp(prefix="restem-pg-", dir="/tmp"))
    os.chmod(pg_dir, 0o755)
    home, data = tmp_path / "shared_home", tmp_path / "data"
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), RESTEM_DATA_ROOT=str(data), RESTEM_BASE_MODEL=model_path,
               RESTEM_PROFILE="tiny_easy", RESTEM_ENGINE="transformers", HF_HUB_OFFLINE="1",
               DAGSTER_PG_PORT=str(free_port()), RESTEM_PG_DIR=str(pg_dir / "cluster"))
    env.pop("DAGSTER_PG_PASSWORD", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([RESTEM, "serve", *sum((["--experiment", e] for e in EXPERIMENTS), []),
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "webserver on http" in log.read_text() or proc.poll() is not None, 600,
                 lambda: f"restem serve to start:\n{log.read_text()[-3000:]}", interval=2.0)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc, port, home, data, env, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        subprocess.run(["bash", "-c", f"pkill -9 -f 'postgres -D {pg_dir}' || true"])


def launch_backfill(port: int, assets: list[str], partitions: list[str]) -> str:
    params = {"assetSelection": [{"path": a.split("/")} for a in assets], "partitionNames": partitions,
              "title": f"{','.join(assets)} {partitions}"}
    result = gql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def launch_setup(port: int, experiment: str) -> str:
    params = {"selector": {"repositoryLocationName": experiment, "repositoryName": "__repository__",
                           "jobName": "setup"}, "runConfigData": {}}
    result = gql(port, SETUP, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def samples_of(data: Path, experiment: str, iteration: int) -> dict:
    rows = ParquetStore(experiment_root(str(data), experiment)).read_table("samples", iteration).to_pylist()
    keys = [(r["problem_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)), f"{experiment} samples[{iteration}] has a row twice"
    return {k: r["completion"] for k, r in zip(keys, rows)}


def greedy_of(data: Path, experiment: str, iteration: int) -> dict:
    rows = ParquetStore(experiment_root(str(data), experiment)).read_table("evaluations", iteration).to_pylist()
    return {r["problem_id"]: (r["greedy_answer"], r["greedy_correct"]) for r in rows}


@pytest.mark.timeout(3600)
def test_two_experiments_backfilled_at_once_survive_sigkill_of_daemon_and_webserver(deployment, tmp_path):
    proc, port, home, data, env, log = deployment
    assert "postgres" in (home / "dagster.yaml").read_text() and "password: {env: DAGSTER_PG_PASSWORD}" in (
        home / "dagster.yaml").read_text()
    assert "DAGSTER_PG_PASSWORD=" in (home / "postgres.env").read_text()
    assert oct((home / "postgres.env").stat().st_mode)[-3:] == "600"
    services = children(proc.pid)
    assert set(services) == {"daemon", "webserver"}, services

    # set-up first (problems and policy[0]), then each experiment's iteration and evaluation backfills at once
    setups = [launch_setup(port, e) for e in EXPERIMENTS]
    os.environ.update({k: v for k, v in (l.split("=", 1) for l in (home / "postgres.env").read_text().splitlines()
                                         if l and not l.startswith("#"))})
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    wait_for(lambda: all(instance.get_run_by_id(r) and instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS
                         for r in setups), 900, "the set-up runs", interval=3.0)
    names = {}
    for e in EXPERIMENTS:
        names[launch_backfill(port, [f"{e}/{a}" for a in ITERATION_ASSETS], ["1", "2"])] = f"{e} iterations"
        names[launch_backfill(port, [f"{e}/evaluation"], ["0", "1", "2"])] = f"{e} evaluation"

    # kill -9 the daemon while a run is going, then the webserver: `restem serve` restarts each
    wait_for(lambda: instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])), 600,
             "a started run", interval=1.0)
    os.kill(services["daemon"], signal.SIGKILL)
    wait_for(lambda: children(proc.pid).get("daemon") not in (None, services["daemon"]), 60, "the daemon's restart")
    wait_for(lambda: len(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))) >= 5, 1200,
             "runs after the daemon's restart", interval=3.0)
    webserver = children(proc.pid)["webserver"]
    os.kill(webserver, signal.SIGKILL)
    running_at_kill = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED]))}
    wait_for(lambda: children(proc.pid).get("webserver") not in (None, webserver), 60, "the webserver's restart")
    wait_for(lambda: server_up(port), 300, "the restarted webserver", interval=2.0)

    def all_done():
        statuses = {n: backfill_status(port, b) for b, n in names.items()}
        return statuses if all(s not in ("REQUESTED", "CANCELING", "FAILING") for s in statuses.values()) else None

    try:
        statuses = wait_for(all_done, DEADLINE_S, "the four backfills", interval=10.0)
    finally:
        print(f"\n{timeline(instance, names)}\n--- restem serve ---\n{log.read_text()[-2000:]}", flush=True)
    assert set(statuses.values()) == {"COMPLETED_SUCCESS"}, statuses
    assert "the daemon exited" in log.read_text() and "the webserver exited" in log.read_text()
    # the runs that were in flight when the webserver died went on to finish
    assert all(instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS or
               instance.get_run_by_id(r).tags.get("dagster/auto_retry_run_id") for r in running_at_kill)

    for e in EXPERIMENTS:
        for asset in (*ITERATION_ASSETS, "evaluation"):
            key = dg.AssetKey([e, asset])
            assert {"1", "2"} <= instance.get_materialized_partitions(key), (e, asset)
        for partition in ("1", "2"):  # nothing twice: one samples materialization per partition
            records = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([e, "samples"]), asset_partitions=[partition]), limit=10).records
            assert len(records) == 1, (e, partition, len(records))
        # iterations in order: iteration 2 sampled policy[1] after the run that fine-tuned it ended
        finetune1 = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([e, "finetune"]), asset_partitions=["1"]), limit=1).records[0]
        samples2 = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([e, "samples"]), asset_partitions=["2"]), limit=1).records[0]
        assert instance.get_run_record_by_id(finetune1.run_id).end_time <= samples2.timestamp

    # the CLI on the shared instance: a sequential run of the same settings gives the same rows (same seeds)
    cli_env = {k: v for k, v in env.items() if not k.startswith("DAGSTER_PG_")}  # read from postgres.env
    seq_log = tmp_path / "seq.log"
    seq = subprocess.Popen([RESTEM, "run", "--experiment", "seq", "--iterations", "2", "--no-stop",
                            "--dagster-home", str(home)], cwd=tmp_path, env=cli_env, stdout=open(seq_log, "w"),
                           stderr=subprocess.STDOUT)
    # a second user's driver on another experiment meanwhile: refused, naming the first
    wait_for(lambda: "==> " in seq_log.read_text() or seq.poll() is not None, 300, "the first driver's first job")
    other = subprocess.run([RESTEM, "run", "--experiment", "gamma", "--iterations", "1", "--dagster-home", str(home)],
                           cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=300)
    assert seq.wait(timeout=1800) == 0, seq_log.read_text()[-3000:]
    assert other.returncode == 2, other.stderr
    assert "another restem driver is running on this instance" in other.stderr and f"pid {seq.pid}" in other.stderr
    for e in EXPERIMENTS:
        for it in (1, 2):
            assert samples_of(data, e, it) == samples_of(data, "seq", it), (e, it)
        for it in (0, 1, 2):
            assert greedy_of(data, e, it) == greedy_of(data, "seq", it), (e, it)
    assert "1" in instance.get_materialized_partitions(dg.AssetKey(["seq", "finetune"]))

    for argv in (["sql", "compare_experiments"], ["rescore", "--experiment", "alpha", "--iteration", "1"]):
        done = subprocess.run([RESTEM, *argv, "--dagster-home", str(home)], cwd=tmp_path, env=cli_env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    assert "alpha" in subprocess.run([RESTEM, "sql", "compare_experiments"], cwd=tmp_path, env=cli_env,
                                     capture_output=True, text=True, timeout=300).stdout

    # the launchpad: an E-step with another sampling strategy, as run config through the webserver (issue 20)
    params = {"selector": {"repositoryLocationName": "alpha", "repositoryName": "__repository__", "jobName": "estep"},
              "runConfigData": {"resources": {"rest": {"config": {"sampling": "prop2diff", "hints": True}}}},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "3"}]}}
    launched = gql(port, SETUP, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    wait_for(lambda: instance.get_run_by_id(run_id).status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE),
             900, "the launchpad's E-step", interval=3.0)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    rows = ParquetStore(experiment_root(str(data), "alpha")).read_table("samples", 3).to_pylist()
    assert len({r["round"] for r in rows}) >= 2, sorted({(r["round"], r["source"]) for r in rows})

    # `restem ui` on the PostgreSQL instance: a webserver of its own (the daemon stays serve's)
    ui_port = free_port()
    ui = subprocess.Popen([RESTEM, "ui", "--dagster-home", str(home), "--port", str(ui_port)], cwd=tmp_path,
                          env=cli_env, stdout=open(tmp_path / "ui.log", "w"), stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        wait_for(lambda: server_up(ui_port), 300, lambda: (tmp_path / "ui.log").read_text()[-2000:], interval=2.0)
        runs = graphql(ui_port, "{ runsOrError { ... on Runs { results { runId } } } }", {})
        assert len(runs["runsOrError"]["results"]) >= 10
        assert "dagster-daemon" not in subprocess.run(["ps", "-o", "args=", "--ppid", str(ui.pid)],
                                                      capture_output=True, text=True).stdout
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)

    # SIGTERM stops both services and the database it started
    pids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert "webserver and daemon stopped, PostgreSQL stopped" in log.read_text()
    time.sleep(1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values()), pids


def test_make_ui_and_make_serve_as_the_readme_writes_them(tmp_path):
    """`make ui` (dagster dev on the SQLite instance) and `make serve` (the shared deployment), as written, from a
    shell without the virtualenv on PATH; each stopped with SIGTERM. Both use the webserver's default port 3000."""
    pg_dir = Path(tempfile.mkdtemp(prefix="restem-pg-", dir="/tmp"))
    os.chmod(pg_dir, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env.update(RESTEM_DATA_ROOT=str(tmp_path / "data"), RESTEM_PG_DIR=str(pg_dir / "cluster"),
               DAGSTER_PG_PORT=str(free_port()), RESTEM_PROFILE="tiny")
    assert not server_up(3000), "port 3000 is taken: `make ui` and `make serve` use it"
    for target, home in (("ui", tmp_path / "sqlite_home"), ("serve", tmp_path / "shared_home")):
        log = tmp_path / f"make_{target}.log"
        proc = subprocess.Popen(["make", target], cwd=REPO, env={**env, "DAGSTER_HOME": str(home)},
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: server_up(3000) or proc.poll() is not None, 600,
                     lambda: f"make {target}:\n{log.read_text()[-3000:]}", interval=2.0)
            assert proc.poll() is None, log.read_text()[-3000:]
            locations = graphql(3000, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }",
                                {})["workspaceOrError"]["locationEntries"]
            wait_for(lambda: all(e["loadStatus"] == "LOADED" for e in graphql(
                3000, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }",
                {})["workspaceOrError"]["locationEntries"]), 300, "the code locations", interval=2.0)
            assert locations, log.read_text()[-2000:]
            storage = "postgres" if target == "serve" else "sqlite"
            assert (storage == "postgres") == ("postgres:" in (home / "dagster.yaml").read_text())
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        wait_for(lambda: not server_up(3000), 60, f"make {target} to stop")
    assert "webserver and daemon stopped, PostgreSQL stopped" in (tmp_path / "make_serve.log").read_text()
