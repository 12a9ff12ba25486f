"""Real local services for the scale-out tests: a Ray cluster and an S3 server on 127.0.0.1.

Each is a subprocess in a session of its own, stopped by signalling that process group
only (never `ray stop`, which kills every Ray process on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_up(port: int) -> bool:
    """Whether a Dagster webserver answers on localhost:`port`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def dagster_dev(log_path: Path, env: dict, startup_s: float = 180):
    """`dagster dev` (webserver + daemon) from the project root with `env`, its output in `log_path`; yields its
    port once /server_info answers, and stops the whole process group on exit."""
    from tests.e2e_helpers import wait_for

    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: proc.poll() is not None or server_up(port), startup_s, "the webserver", interval=2.0)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            yield port
        finally:
            _stop_group(proc, grace_s=60)


def _stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the group left behind (raylet's workers)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def local_ray_cluster(tmp_dir: Path, num_cpus: int = 2, dashboard: bool = True):
    """`ray start --head --block` on 127.0.0.1 with `num_cpus` CPUs; yields (gcs address, dashboard URL)."""
    port, dash_port = free_port(), free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    # a short temp dir: Ray's unix socket paths must stay under 107 characters
    ray_tmp = Path("/tmp") / f"rt{os.getpid()}-{port}"
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={ray_tmp}", "--disable-usage-stats"]
    cmd += (["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"] if dashboard
            else ["--include-dashboard=false"])
    log = open(tmp_dir / "ray-head.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address, dashboard_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}"
    try:
        _wait_for(lambda: _ray_up(address, dashboard_url if dashboard else None), proc, 120, tmp_dir / "ray-head.log")
        yield address, dashboard_url
    finally:
        _stop_group(proc)
        log.close()
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


def _ray_up(address: str, dashboard_url: str | None) -> bool:
    host, port = address.split(":")
    with socket.socket() as s:
        if s.connect_ex((host, int(port))) != 0:
            return False
    if dashboard_url is None:
        return True
    try:  # the job API answers once the dashboard's job head is up
        with urllib.request.urlopen(f"{dashboard_url}/api/version", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _wait_for(ready, proc: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{proc.args[0]} not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def local_s3_server(tmp_dir: Path, bucket: str = "restem"):
    """moto's S3 server (`moto_server`) on 127.0.0.1 with one bucket; yields the environment that points
    boto/s3fs at it (credentials and AWS_ENDPOINT_URL_S3, as a deployment would set them)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_dir / "moto.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint}
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(up, proc, 60, log_path)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        yield env
    finally:
        _stop_group(proc, grace_s=5)
        log.close()
