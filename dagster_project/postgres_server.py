"""A PostgreSQL server for the shared Dagster instance, from Debian's packages (scripts/setup_system.sh).

`restem serve` keeps one cluster in a directory of its own (`RESTEM_PG_DIR`, else `postgres/` beside the
instance's DAGSTER_HOME). The server listens on localhost only and on a Unix socket inside that directory
(mode 0700); password logins (scram-sha-256) over TCP, the cluster owner alone over the socket. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user the package creates.

Credentials: DAGSTER_PG_USER / DAGSTER_PG_PASSWORD / DAGSTER_PG_DB / DAGSTER_PG_HOST / DAGSTER_PG_PORT from
the environment. When no password is given, `restem serve` makes one and keeps the five variables in
`<DAGSTER_HOME>/postgres.env` (mode 0600), which restem's commands read for that instance; dagster.yaml only
names the variables (`{env: DAGSTER_PG_PASSWORD}`), it never holds a credential.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from restem_assets.environment import PG_VARIABLES, postgres_dir, postgres_login

ENV_FILE = "postgres.env"
DEFAULT_PORT = 5433  # not Debian's own 5432, which a system cluster may hold


class PostgresError(RuntimeError):
    """The server could not be found, created, started or reached; the message says which and how to fix it."""


def find_binary(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    for bin_dir in reversed(versions):
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    raise PostgresError(f"PostgreSQL's {name} is not installed: run `sudo bash scripts/setup_system.sh` "
                        "(Debian package postgresql)")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (as `restem serve` writes them); {} when there is no file."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in PG_VARIABLES:
            out[key.strip()] = value.strip()
    return out


def connection_env(home: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The DAGSTER_PG_* variables of the instance at `home`: the environment's, else `<home>/postgres.env`."""
    return {**read_env_file(home / ENV_FILE), **postgres_login(environ)}


@dataclass(frozen=True)
class PostgresCluster:
    directory: Path
    port: int = DEFAULT_PORT
    user: str = "restem"
    password: str = ""
    db: str = "dagster"

    @classmethod
    def for_home(cls, home: Path, directory: str | None, environ: Mapping[str, str] | None = None) -> PostgresCluster:
        """The cluster of the instance at `home`: settings from the environment or the saved env file, a new
        password when there is none (saved with the rest, mode 0600)."""
        env = connection_env(home, environ)
        cluster = cls(directory=Path(directory or postgres_dir(environ) or home.parent / "postgres").resolve(),
                      port=int(env.get("DAGSTER_PG_PORT") or DEFAULT_PORT), user=env.get("DAGSTER_PG_USER") or "restem",
                      password=env.get("DAGSTER_PG_PASSWORD") or secrets.token_urlsafe(24),
                      db=env.get("DAGSTER_PG_DB") or "dagster")
        if not env.get("DAGSTER_PG_PASSWORD"):
            cluster.save_env(home / ENV_FILE)
        return cluster

    def env(self) -> dict[str, str]:
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db}

    def save_env(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# written by `restem serve`: the shared instance's PostgreSQL login (keep it private)\n")
            fh.writelines(f"{k}={v}\n" for k, v in self.env().items())
        os.replace(tmp, path)

    # -- running the server binaries as the cluster's owner -----------------------------------------------
    @property
    def _owner(self) -> str | None:
        """The OS user that owns the cluster: `postgres` when restem runs as root, else None (the caller)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresError("running as root, PostgreSQL needs the `postgres` system user: run "
                                "scripts/setup_system.sh (Debian package postgresql)") from exc
        return "postgres"

    def _run(self, argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        if self._owner:
            argv = ["runuser", "-u", self._owner, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd="/", **kwargs)
        if check and proc.returncode != 0:
            raise PostgresError(f"{' '.join(argv[argv.index('--') + 1:] if '--' in argv else argv)} failed: "
                                f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    def _psql(self, sql: str, db: str = "postgres") -> str:
        return self._run([find_binary("psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-d", db,
                          "-v", "ON_ERROR_STOP=1", "-tAc", sql]).stdout.strip()

    # -- life cycle ---------------------------------------------------------------------------------------
    def ensure(self) -> bool:
        """Create the cluster once (initdb); True when it was created now."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._owner:
            closed = [str(p) for p in self.directory.parents if p.stat().st_mode & 0o001 == 0]
            if closed:
                raise PostgresError(f"the `postgres` user cannot reach {self.directory}: {closed[0]} is not searchable "
                                    "by others (chmod o+x it, or put the cluster elsewhere with --pg-dir / RESTEM_PG_DIR)")
        self.socket_dir.mkdir(exist_ok=True)
        os.chmod(self.directory, 0o700)
        os.chmod(self.socket_dir, 0o700)
        if self._owner:
            for path in (self.directory, self.socket_dir):
                shutil.chown(path, self._owner, self._owner)
        self._run([find_binary("initdb"), "-D", str(self.data_dir), "--auth-local=trust",
                   "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions"])
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# restem serve: localhost and a private socket only\n"
                       "listen_addresses = 'localhost'\n"
                       f"unix_socket_directories = '{self.socket_dir}'\n"
                       "unix_socket_permissions = 0700\n"
                       "password_encryption = 'scram-sha-256'\n"
                       "max_connections = 200\n")
        return True

    def running(self) -> bool:
        return self._run([find_binary("pg_ctl"), "-D", str(self.data_dir), "status"], check=False).returncode == 0

    def start(self, timeout: float = 60) -> bool:
        """Start the server (and create the login role and database); False when it was already running."""
        if self.running():
            self._ensure_login()
            return False
        self._run([find_binary("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.directory / "server.log"),
                   "-o", f"-p {self.port}", "-w", "-t", str(int(timeout)), "start"])
        self._ensure_login()
        return True

    def _ensure_login(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                exists = self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{_quote(self.user)}'")
                break
            except PostgresError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        verb = "ALTER" if exists == "1" else "CREATE"
        self._psql(f"{verb} ROLE \"{self.user}\" LOGIN PASSWORD '{_quote(self.password)}'")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{_quote(self.db)}'") != "1":
            self._psql(f"CREATE DATABASE \"{self.db}\" OWNER \"{self.user}\"")

    def empty_database(self) -> None:
        """Drop the login's database and create it again, empty: a fresh instance, as a fresh SQLite home
        is (benchmarks and tests that measure a first start)."""
        self._psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self._psql(f'CREATE DATABASE "{self.db}" OWNER "{self.user}"')

    def stop(self) -> None:
        if self.running():
            self._run([find_binary("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


def _quote(text: str) -> str:
    if '"' in text or "\\" in text:
        raise PostgresError(f"PostgreSQL names and passwords here may not contain quotes or backslashes: {text!r}")
    return text.replace("'", "''")
