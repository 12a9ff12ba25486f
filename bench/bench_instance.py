"""Instance storage under concurrent runs: SQLite (DAGSTER_HOME's files) against PostgreSQL (`restem serve`'s).

N stand-in runs start at once (N = 1, 4, 8 by default), each a real Dagster run in its own process on the
instance, as the daemon's run workers are: a job of `--ops` ops, each writing `--events` log events and
`--materializations` partitioned asset materializations (what restem's stages write: progress lines,
materializations, checks), no model. Measured per storage and N, in the same run:

  launch latency   from a worker's `execute_job` call to its RUN_START event in storage (median, max);
  event writes/s   events the N runs stored, over the wall time from the first start to the last end;
  failed runs      runs that did not succeed, and how many failed on storage ("database is locked").

Each storage is created once before the N runs start (as a deployment's first command does).

PostgreSQL runs as its own server from Debian's binaries (dagster_project/postgres_server.py, as `restem
serve` starts it), on localhost; SQLite is Dagster's default layout in a fresh DAGSTER_HOME.

    python -m bench.bench_instance [--runs 1,4,8] [--ops 4] [--events 40] [--materializations 10]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import parse_args, write_result


def standin_job(ops: int, events: int, materializations: int):
    import dagster as dg

    def make_op(i: int):
        @dg.op(name=f"stage_{i}")
        def stage(context, _previous=None):
            for e in range(events):
                context.log.info(f"stage {i}: progress {e}/{events}")
            for m in range(materializations):
                yield dg.AssetMaterialization(asset_key=["bench", f"table_{i}_{m}"],
                                              partition=context.run.tags.get("bench/partition", "0"),
                                              metadata={"rows": m, "stage": i})
            yield dg.Output(i)

        return stage

    @dg.job(name="standin")
    def standin():
        previous = None
        for i in range(ops):
            previous = make_op(i)(previous) if previous is not None else make_op(i)()

    return standin


def _job():
    cfg = json.loads(os.environ["BENCH_INSTANCE_JOB"])
    return standin_job(cfg["ops"], cfg["events"], cfg["materializations"])


def worker(home: str, index: int) -> dict:
    """One stand-in run on the instance at `home` (a process of its own, as a run worker is)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(home)
    t0 = time.time()
    error = None
    try:
        result = dg.execute_job(dg.reconstructable(_job), instance=instance, tags={"bench/partition": str(index)})
        run_id, ok = result.run_id, result.success
    except Exception as exc:  # noqa: BLE001 - a storage failure is a result here
        run_id, ok, error = None, False, f"{type(exc).__name__}: {exc}"
    started = None
    if run_id:
        starts = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
        started = starts[0].timestamp if starts else None
        logs = instance.all_logs(run_id)
        events = len(logs)
        if not ok:  # a step's or the run's failure, as Dagster recorded it
            error = "; ".join(str(e.dagster_event.event_specific_data.error.message).strip()[:300]
                              for e in logs if e.is_dagster_event and e.dagster_event.is_failure
                              and getattr(e.dagster_event.event_specific_data, "error", None)) or "run failed"
    else:
        events = 0
    return {"index": index, "ok": ok, "error": error, "submitted": t0, "started": started, "ended": time.time(),
            "events": events}


def measure(home: Path, n: int) -> dict:
    procs = []
    env = dict(os.environ, DAGSTER_HOME=str(home))
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.bench_instance", "--worker", str(home),
                                       "--index", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    results, locked = [], 0
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": err.strip()[-300:], "events": 0}
        locked += not result["ok"] and "database is locked" in (out + err + (result.get("error") or ""))
        results.append(result)
    latencies = [r["started"] - r["submitted"] for r in results if r.get("started")]
    t_first = min(r["submitted"] for r in results if "submitted" in r) if any("submitted" in r for r in results) else 0
    t_last = max(r["ended"] for r in results if "ended" in r) if any("ended" in r for r in results) else 0
    events = sum(r["events"] for r in results)
    return {"runs": n, "failed": sum(not r["ok"] for r in results), "database_locked": locked,
            "launch_latency_median_s": statistics.median(latencies) if latencies else None,
            "launch_latency_max_s": max(latencies) if latencies else None,
            "events": events, "wall_s": t_last - t_first,
            "events_per_s": events / (t_last - t_first) if t_last > t_first else None,
            "errors": sorted({r["error"] for r in results if r.get("error")})[:3]}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    args = parse_args(__doc__, argv, runs="1,4,8", ops=4, events=40, materializations=10,
                      worker={}, index=0)
    os.environ["BENCH_INSTANCE_JOB"] = json.dumps({"ops": args.ops, "events": args.events,
                                                   "materializations": args.materializations})
    if args.worker:
        print(json.dumps(worker(args.worker, args.index)), flush=True)
        return
    from dagster_project.instance import dagster_yaml
    from dagster_project.postgres_server import PostgresCluster

    counts = [int(n) for n in args.runs.split(",")]
    results: dict[str, list[dict]] = {"sqlite": [], "postgres": []}
    base = Path(tempfile.mkdtemp(prefix="restem-bench-instance-", dir="/tmp"))
    os.chmod(base, 0o755)  # the `postgres` user (root runs) must reach the cluster directory
    cluster = PostgresCluster(directory=base / "pg", port=_free_port(), password="bench")
    cluster.ensure()
    cluster.start()
    os.environ.update(cluster.env())
    try:
        for n in counts:
            for storage in ("sqlite", "postgres"):
                home = base / f"{storage}-{n}"
                home.mkdir()
                (home / "dagster.yaml").write_text(dagster_yaml(storage))
                if storage == "postgres":  # a fresh database per N, as a fresh SQLite home
                    cluster.empty_database()
                # the instance's storage created once, as `restem serve` or the first command does: N processes
                # creating a fresh SQLite home's tables at once race (table ... already exists), which is not
                # what a running deployment sees
                import dagster as dg

                dg.DagsterInstance.from_config(str(home)).dispose()
                row = measure(home, n)
                results[storage].append(row)
                print(f"{storage:8} N={n}: latency median {row['launch_latency_median_s']}, "
                      f"{row['events_per_s']} events/s, failed {row['failed']} (locked {row['database_locked']})",
                      flush=True)
    finally:
        cluster.stop()
    write_result("instance", {"args": vars(args) | {"worker": None}, "results": results})


if __name__ == "__main__":
    main()
