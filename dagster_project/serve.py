"""`restem serve`: the shared deployment on one machine: PostgreSQL, dagster-daemon and dagster-webserver.

Dagster's own `dagster dev` is a local development set-up (SQLite files, both services in one process
tree). A team shares what Dagster recommends instead (docs/deploy.md): instance storage on PostgreSQL
(postgres_server.py), the daemon (run queue, sensors, backfills, run monitoring, run retries) and the
webserver as two long-lived processes. This supervisor starts the three, restarts the daemon or the
webserver when one dies (kill -9, OOM), and on SIGTERM / Ctrl-C stops both cleanly (then the database
server, when it started it). Runs are launched by the daemon in their own processes, so they go on
while the webserver restarts, and the daemon's run monitoring resumes watching them after it restarts.

The webserver binds 127.0.0.1 by default: Dagster OSS has no login (docs/deploy.md shows the
authenticating reverse proxy to put in front of it). Every experiment (`default`, those in the data
root's registry, and any `--experiment`) is its own code location, so one webserver shows them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster_project.instance import prepare_dagster_home, storage_kind
from dagster_project.postgres_server import PostgresCluster
from restem_assets.environment import Settings, absolute_root
from restem_assets.experiments import DEFAULT_EXPERIMENT, check_name, read_registry
from restem_assets.store.tables import ParquetStore

LOCATION_TEMPLATE = '''\
# Written by `restem serve`: the code location of experiment {name!r} (dagster_project/serve.py).
from dagster_project.definitions import experiment_definitions

defs = experiment_definitions({name!r})
'''
RESTARTS_PER_MINUTE = 5


def experiments_to_serve(settings: Settings, named: Sequence[str]) -> list[str]:
    """`default`, every experiment in the data root's registry, and the named ones, each once, in that order."""
    names = [DEFAULT_EXPERIMENT, *sorted(read_registry(ParquetStore(absolute_root(settings.data_root))))]
    for name in named:
        names.append(check_name(name))
    return list(dict.fromkeys(names))


def write_workspace(home: Path, experiments: Sequence[str]) -> Path:
    """`<home>/workspace.yaml` with one code location per experiment (files under `<home>/locations/`)."""
    locations = home / "locations"
    locations.mkdir(exist_ok=True)
    entries = []
    for name in experiments:
        path = locations / f"{name}.py"
        path.write_text(LOCATION_TEMPLATE.format(name=name))
        entries.append({"python_file": {"relative_path": f"locations/{name}.py", "location_name": name}})
    workspace = home / "workspace.yaml"
    workspace.write_text("# Written by `restem serve`: one code location per experiment.\n"
                         + json.dumps({"load_from": entries}, indent=2) + "\n")  # JSON is YAML
    return workspace


@dataclass
class Service:
    """One supervised process (its own process group, so stopping it stops what it started)."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "a")
        out.write(f"\n--- restem serve: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        out.flush()
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        out.close()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _signal_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def webserver_up(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def serve(settings: Settings, experiments: Sequence[str], host: str, port: int, pg_dir: str | None,
          startup_timeout: float = 300) -> int:
    """Run the shared deployment until SIGTERM / SIGINT; returns the exit code."""
    home = Path(settings.dagster_home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    from dagster_project.migrate import sqlite_history

    history = sqlite_history(home)
    if history:
        print(f"restem serve: {home} holds SQLite history ({history}); carry it over first with `restem "
              f"migrate-instance --from {home} --dagster-home <new home>` and serve the new home "
              "(docs/deploy.md)", file=sys.stderr)
        return 2
    cluster = PostgresCluster.for_home(home, pg_dir)
    created = cluster.ensure()
    started = cluster.start()
    print(f"restem serve: PostgreSQL {'created and ' if created else ''}{'started' if started else 'running'} "
          f"on 127.0.0.1:{cluster.port} ({cluster.directory})", flush=True)
    env = {**os.environ, **settings.environ(), **cluster.env(), "DAGSTER_HOME": str(home)}
    os.environ.update(cluster.env())
    prepare_dagster_home(home, storage="postgres")
    if storage_kind((home / "dagster.yaml").read_text()) != "postgres":
        if started:
            cluster.stop()
        print(f"restem serve: {home / 'dagster.yaml'} is your own (edited) file and does not put the instance on "
              "PostgreSQL; add restem's storage block (dagster_project/instance.py, POSTGRES_STORAGE)", file=sys.stderr)
        return 2
    names = experiments_to_serve(settings, experiments)
    workspace = write_workspace(home, names)
    bin_dir = Path(sys.executable).parent  # the venv's, whether or not it is on PATH
    services = [
        Service("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], home / "logs" / "daemon.log",
                env),
        Service("webserver", [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)],
                home / "logs" / "webserver.log", env),
    ]
    stopping: list[int] = []

    def request_stop(signum, _frame):
        stopping.append(signum)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for service in services:
            service.start()
        deadline = time.monotonic() + startup_timeout
        while not webserver_up(host, port) and not stopping:
            if time.monotonic() > deadline or services[1].exited() is not None:
                print(f"restem serve: the webserver did not come up; see {services[1].log}", file=sys.stderr)
                return 1
            time.sleep(1)
        if not stopping:
            print(f"restem serve: webserver on http://{host}:{port} (experiments: {', '.join(names)}); daemon and "
                  f"webserver logs in {home / 'logs'}; Ctrl-C or SIGTERM stops both", flush=True)
        while not stopping:
            for service in services:
                rc = service.exited()
                if rc is None:
                    continue
                now = time.monotonic()
                service.restarts = [t for t in service.restarts if now - t < 60] + [now]
                if len(service.restarts) > RESTARTS_PER_MINUTE:
                    print(f"restem serve: the {service.name} exited {len(service.restarts)} times in a minute "
                          f"(last code {rc}); stopping. See {service.log}", file=sys.stderr, flush=True)
                    code = 1
                    stopping.append(0)
                    break
                print(f"restem serve: the {service.name} exited (code {rc}); restarting it", flush=True)
                service.start()
            time.sleep(1)
    finally:
        for service in reversed(services):
            service.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if started:
            cluster.stop()
        print("restem serve: webserver and daemon stopped" + (", PostgreSQL stopped" if started else ""), flush=True)
    return code
