"""Run one untrusted Python program in its own process, isolated and bounded.

Why this shape: ReST^EM on code scores thousands of model-written programs, and a
model that is rewarded for passing tests will, sooner or later, write programs that
fork-bomb, fill the disk, read secrets or kill their judge. Each program therefore
runs in a fresh process tree with

* OS-level isolation via bubblewrap where the machine allows it (detected once per
  host process and cached): new mount, pid, net, ipc and uts namespaces; only `/usr`
  (with the /bin, /lib symlinks), the dynamic loader's cache, the interpreter's prefix
  and the program itself are visible (read-only); `/work`
  (the working directory) and `/tmp` are size-capped tmpfs mounts that vanish with
  the sandbox; no network but loopback of its own; all capabilities dropped.
* an unprivileged uid: as root, every sandbox gets its own uid (RLIMIT_NPROC is not
  enforced for uid 0, and a unique uid keeps one sandbox's fork bomb or `kill(-1)`
  away from its neighbours). Without root the kernel enforces NPROC for our uid anyway.
* rlimits set in the sandboxed process before the program starts (hard = soft, so the
  program cannot raise them): CPU seconds, address space (RLIMIT_AS), processes
  (RLIMIT_NPROC), file size (RLIMIT_FSIZE), open files, no core dumps.
* an empty environment, a wall-clock deadline after which the whole process group
  (and, as root, every process of the sandbox uid) is SIGKILLed, and stdout/stderr
  read through capped buffers: a program printing gigabytes is killed at the cap,
  the host keeps at most `stdout_bytes`/`stderr_bytes`.

Where bubblewrap cannot build a sandbox, programs run with rlimits alone (plus a uid
drop and a network namespace where root allows them), `logging.warning` says so
loudly once, and every `SandboxResult` carries `isolation.degraded = True`. What the
fallback cannot do: hide the host's files (world-readable/-writable paths such as
/tmp stay reachable) or its process list; without root the program even shares the
host's uid. `detect_isolation("rlimits"|"bwrap")` overrides the "auto" choice.

Programs run on the host's own interpreter (its prefix is bound read-only) with
`-I -S`: standard library only, no site-packages. The job's source is compiled once
on the host and shipped as bytecode next to it, so sandboxes skip compiling it.

A job may ask for a private result channel: a pipe the host reads, open as fd 3 in
the sandboxed process only (never inherited by its children). restem's code judge
reports verdicts through it, so nothing the program prints can pose as a verdict.
"""

from __future__ import annotations

import collections
import errno
import functools
import importlib.util
import json
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)

CHANNEL_FD = 3  # where the result channel is open inside the sandbox
SANDBOX_MAIN = "/sandbox/main.py"  # the job's source inside a bwrap sandbox
SANDBOX_WORKDIR = "/work"

# Runs first in the sandboxed interpreter: applies the limits, scrubs the environment
# (Python itself adds LC_CTYPE under the C locale; bwrap adds PWD), moves the result
# channel to fd 3, restores exit()/quit() that `-S` drops, then runs the job's source
# as __main__ (from the host's bytecode next to it when the interpreter's magic number
# matches, which saves compiling it in every sandbox).
# argv: main_path, limits ("RLIMIT_X=soft:hard,..."), channel fd (-1 for none), job argv...
_PRELUDE = r"""
import os, sys, resource, builtins, marshal, _sitebuiltins, _frozen_importlib_external
_main, _lim, _ch = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _item in _lim.split(","):
    _name, _, _pair = _item.partition("=")
    _soft, _, _hard = _pair.partition(":")
    resource.setrlimit(getattr(resource, _name), (int(_soft), int(_hard)))
if _ch >= 0:
    if _ch != 3:
        os.dup2(_ch, 3, inheritable=False)
        os.close(_ch)
    else:
        os.set_inheritable(3, False)
os.environ.clear()
builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
sys.argv = [_main] + sys.argv[4:]
with open(_main + "c", "rb") as _f:
    _code = _f.read()
if _code[:4] == _frozen_importlib_external.MAGIC_NUMBER:
    _code = marshal.loads(_code[4:])
else:
    with open(_main, "rb") as _f:
        _code = compile(_f.read(), _main, "exec")
del _f, _lim, _ch, _item, _name, _pair, _soft, _hard
exec(_code, {"__name__": "__main__", "__file__": _main, "__builtins__": builtins})
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (the whole tree, except where noted)."""

    wall_s: float = 10.0  # wall clock for the whole run, startup included
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process
    nproc: int = 32  # RLIMIT_NPROC: processes + threads of the sandbox uid
    fsize_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file it may write
    nofile: int = 256  # RLIMIT_NOFILE
    stdout_bytes: int = 1 << 20  # kept on the host; more output kills the run
    stderr_bytes: int = 64 << 10
    channel_bytes: int = 16 << 20
    tmpfs_bytes: int = 64 << 20  # size of /work and of /tmp under bwrap

    def rlimits(self) -> dict[str, tuple[int, int]]:
        cpu = max(1, int(self.cpu_s))
        return {
            "RLIMIT_CPU": (cpu, cpu + 1),  # SIGXCPU at soft, SIGKILL at hard
            "RLIMIT_AS": (self.memory_bytes, self.memory_bytes),
            "RLIMIT_NPROC": (self.nproc, self.nproc),
            "RLIMIT_FSIZE": (self.fsize_bytes, self.fsize_bytes),
            "RLIMIT_NOFILE": (self.nofile, self.nofile),
            "RLIMIT_CORE": (0, 0),
        }


@dataclass(frozen=True)
class SandboxJob:
    """One program to run: Python `source` executed as __main__ with `stdin` on fd 0."""

    source: str
    stdin: bytes = b""
    argv: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    channel: bool = False  # open a private result pipe on fd 3


@dataclass(frozen=True)
class Isolation:
    """What this host can actually enforce; detected once per process."""

    mode: str  # "bwrap" | "rlimits"
    fs_isolated: bool  # only /usr, the interpreter and the job are visible
    pid_isolated: bool  # own pid namespace
    net_isolated: bool  # own network namespace (no route out)
    uid_dropped: bool  # runs under its own uid, not the host's (needs root)
    nproc_enforced: bool  # runs as a non-root uid, so the kernel enforces RLIMIT_NPROC
    python: str  # interpreter used inside the sandbox
    reason: str = ""  # why bwrap was not used, when it was not

    @property
    def degraded(self) -> bool:
        return self.mode != "bwrap"


@dataclass
class SandboxResult:
    returncode: int | None  # exit status; -N: killed by signal N (also when bwrap reports 128 + N)
    stdout: bytes
    stderr: bytes
    channel: bytes | None  # what the program wrote to fd 3 (None without a channel)
    timed_out: bool  # the wall deadline killed it
    output_limited: bool  # it wrote more than a cap allows and was killed
    wall_s: float
    isolation: Isolation
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_limited

    def isolation_dict(self) -> dict:
        return {**asdict(self.isolation), "degraded": self.isolation.degraded}


class SandboxError(RuntimeError):
    """The sandbox itself could not be started (not the program's fault)."""


# -- uids ---------------------------------------------------------------------------
_UID_BASE = 1_000_000
_SLOTS = 256


class _UidPool:
    """Unique unprivileged uids for concurrent sandboxes of this host process.

    uid = base + pid * 256 + slot: distinct across live host processes (pids are
    unique) and across threads of one process (slots), so a sweep of one sandbox's
    uid can never hit another sandbox. Slots are reused least-recently first, and a
    uid that still owns processes (e.g. killed children not yet reaped by init, which
    would count against RLIMIT_NPROC) is held back until they are gone.
    """

    def __init__(self):
        self._free = collections.deque(range(_SLOTS))
        self._dirty: list[int] = []
        self._cond = threading.Condition()

    @staticmethod
    def _base() -> int:
        return _UID_BASE + (os.getpid() % (1 << 22)) * _SLOTS

    def acquire(self) -> int:
        with self._cond:
            while True:
                if self._dirty and not self._free:
                    busy = _uids_with_processes()
                    clean = [s for s in self._dirty if self._base() + s not in busy]
                    self._dirty = [s for s in self._dirty if s not in clean]
                    self._free.extend(clean)
                if self._free:
                    return self._base() + self._free.popleft()
                self._cond.wait(timeout=0.05)

    def release(self, uid: int, clean: bool = True) -> None:
        with self._cond:
            slot = uid - self._base()
            (self._free if clean else self._dirty).append(slot)
            self._cond.notify()


_uids = _UidPool()


def _is_root() -> bool:
    return os.geteuid() == 0


# -- command lines ------------------------------------------------------------------
def _host_python() -> tuple[str, str]:
    """(interpreter, prefix) of the base Python this host runs on (not a venv shim)."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _python_argv(python: str, main_path: str, limits: Limits, channel_fd: int, argv: Sequence[str]) -> list[str]:
    # -I: ignore PYTHON* env and user site; -S: no site (fast start, stdlib only); -B: no .pyc writes.
    rlimits = ",".join(f"{name}={soft}:{hard}" for name, (soft, hard) in limits.rlimits().items())
    return [python, "-I", "-S", "-B", "-c", _PRELUDE, main_path, rlimits, str(channel_fd), *argv]


@functools.lru_cache(maxsize=16)
def _bytecode(source: str, filename: str) -> bytes:
    """Magic number + marshalled code of `source`; a source that does not compile gets an
    empty blob, so the sandbox compiles it itself and reports the SyntaxError."""
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return b""
    return importlib.util.MAGIC_NUMBER + marshal.dumps(code)


def _ancestors(path: str) -> list[str]:
    parts, out = path.strip("/").split("/"), []
    for i in range(1, len(parts)):
        out.append("/" + "/".join(parts[:i]))
    return out


def _bwrap_argv(python: str, prefix: str, main_host_path: str, limits: Limits, uid: int | None) -> list[str]:
    argv = [
        "bwrap",
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--hostname", "sandbox",
    ]  # fmt: skip
    if uid is None:
        # Unprivileged: a user namespace is the only way in; forbid nesting another one.
        argv += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    else:
        # As root: keep only setuid/setgid so setpriv can drop to the sandbox uid.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = os.path.join("/", name)
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    for extra in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        if os.path.exists(extra):
            argv += ["--ro-bind", extra, extra]
    mounts = {prefix}
    if not python.startswith(prefix.rstrip("/") + "/"):
        mounts.add(os.path.dirname(python))
    for m in sorted(mounts):
        if m == "/usr" or m.startswith("/usr/"):
            continue
        for d in _ancestors(m):
            argv += ["--perms", "0755", "--dir", d]
        argv += ["--ro-bind", m, m]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.tmpfs_bytes), "--perms", "1777", "--tmpfs", "/tmp",
        "--size", str(limits.tmpfs_bytes), "--perms", "0777", "--tmpfs", SANDBOX_WORKDIR,
        "--ro-bind", os.path.dirname(main_host_path), os.path.dirname(SANDBOX_MAIN),
        "--chdir", SANDBOX_WORKDIR,
    ]  # fmt: skip
    if uid is not None:
        argv += _setpriv_argv(uid)
    return argv


def _setpriv_argv(uid: int) -> list[str]:
    return [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all", "--no-new-privs", "--",
    ]  # fmt: skip


# -- detection ----------------------------------------------------------------------
_PROBE = r"""
import json, os, sys
ifaces = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
print(json.dumps({"uid": os.getuid(), "pid": os.getpid(), "ifaces": ifaces, "env": dict(os.environ),
                  "root_entries": sorted(os.listdir("/")), "prefix": sys.prefix}))
"""

_detected: dict[str, Isolation] = {}
_detect_lock = threading.Lock()
_warned: set[str] = set()


def _probe(isolation: Isolation, limits: Limits) -> dict:
    result = _run(SandboxJob(_PROBE, limits=limits), isolation)
    if result.returncode != 0:
        raise SandboxError(f"probe exited {result.returncode}: {result.stderr.decode(errors='replace')[-500:]}")
    return json.loads(result.stdout)


def _detect_bwrap(python: str, prefix: str) -> Isolation | str:
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (run scripts/setup_system.sh)"
    root = _is_root()
    if root and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing, so bwrap cannot drop to an unprivileged uid"
    iso = Isolation("bwrap", True, True, True, root, True, python)
    try:
        info = _probe(iso, Limits(wall_s=20))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"bwrap probe failed: {exc}"
    problems = []
    if info["ifaces"] != ["lo"]:
        problems.append(f"network interfaces visible: {info['ifaces']}")
    if info["uid"] == 0:
        problems.append("program runs as uid 0")
    if info["pid"] > 10:
        problems.append(f"no pid namespace (pid {info['pid']})")
    if info["prefix"] != prefix:
        problems.append(f"interpreter prefix {info['prefix']} is not {prefix}")
    if info["env"]:
        problems.append(f"environment not empty: {sorted(info['env'])}")
    if "root" in info["root_entries"] and not prefix.startswith("/root"):
        problems.append("host / is visible")
    if problems:
        return "bwrap sandbox incomplete: " + "; ".join(problems)
    return iso


def _detect_fallback(python: str, reason: str) -> Isolation:
    """rlimits, plus a uid drop and a network namespace where root makes them possible."""
    root = _is_root()
    net, uid_ok, chosen = False, False, python
    if root:
        candidates = [python] + [p for p in (f"/usr/bin/python3.{sys.version_info.minor}", "/usr/bin/python3") if os.path.exists(p)]
        for cand in candidates:
            iso = Isolation("rlimits", False, False, False, True, True, cand, reason)
            try:
                info = _probe(iso, Limits(wall_s=20))
            except Exception:  # noqa: BLE001
                continue  # e.g. the interpreter lives under a directory the sandbox uid cannot enter
            # An interpreter under a directory the uid cannot enter may still start, but with
            # another installation's libpython and stdlib: insist on its own prefix.
            if info["uid"] != 0 and os.path.realpath(cand).startswith(info["prefix"].rstrip("/") + "/"):
                uid_ok, chosen = True, cand
                break
        if uid_ok and shutil.which("unshare"):
            iso = Isolation("rlimits", False, False, True, True, True, chosen, reason)
            try:
                net = _probe(iso, Limits(wall_s=20))["ifaces"] == ["lo"]
            except Exception:  # noqa: BLE001
                net = False
    return Isolation("rlimits", False, False, net, uid_ok, uid_ok or not root, chosen, reason)


def detect_isolation(mode: str = "auto") -> Isolation:
    """The isolation this host supports; `mode` "auto" prefers bwrap, "rlimits" forces the fallback."""
    if mode not in ("auto", "bwrap", "rlimits"):
        raise ValueError(f"sandbox mode must be 'auto', 'bwrap' or 'rlimits', got {mode!r}")
    with _detect_lock:
        if mode in _detected:
            return _detected[mode]
        python, prefix = _host_python()
        if mode == "rlimits":
            iso = _detect_fallback(python, "forced by mode='rlimits'")
        else:
            found = _detect_bwrap(python, prefix)
            if isinstance(found, Isolation):
                iso = found
            elif mode == "bwrap":
                raise SandboxError(f"bwrap sandbox requested but unavailable: {found}")
            else:
                iso = _detect_fallback(python, found)
        _detected[mode] = iso
    if iso.degraded and iso.reason not in _warned:
        _warned.add(iso.reason)
        log.warning(
            "restem sandbox DEGRADED: untrusted programs run with rlimits only "
            "(no filesystem or pid isolation; network isolated: %s; own uid: %s; NPROC enforced: %s). Reason: %s",
            iso.net_isolated, iso.uid_dropped, iso.nproc_enforced, iso.reason,
        )
    return iso


# -- one run ------------------------------------------------------------------------
def run(job: SandboxJob, mode: str = "auto") -> SandboxResult:
    """Run one job in a fresh sandbox and return what it did; never raises for the program's faults."""
    return _run(job, detect_isolation(mode))


def _run(job: SandboxJob, iso: Isolation) -> SandboxResult:
    root = _is_root()
    uid = _uids.acquire() if root and iso.uid_dropped else None
    tmp = tempfile.mkdtemp(prefix="restem-sbx-")
    chan_r, clean = None, False
    owned: list[int] = []  # fds this run must close; _communicate closes the write end early
    try:
        os.chmod(tmp, 0o755)
        main_path = os.path.join(tmp, "main.py")
        with open(main_path, "w", encoding="utf-8") as f:
            f.write(job.source)
        with open(main_path + "c", "wb") as f:
            f.write(_bytecode(job.source, SANDBOX_MAIN))
        for path in (main_path, main_path + "c"):
            os.chmod(path, 0o644)
        limits = job.limits
        if not root and iso.mode == "rlimits":
            # NPROC counts every process of our uid, the host's included.
            limits = _replace_nproc(limits, limits.nproc + _count_processes(os.getuid()))
        pass_fds: tuple[int, ...] = ()
        channel_fd = -1
        if job.channel:
            chan_r, chan_w = os.pipe()
            owned += [chan_r, chan_w]
            os.set_inheritable(chan_w, True)
            pass_fds, channel_fd = (chan_w,), chan_w

        popen_kw: dict = {}
        if iso.mode == "bwrap":
            argv = _bwrap_argv(iso.python, _host_python()[1], main_path, limits, uid) + _python_argv(
                iso.python, SANDBOX_MAIN, limits, channel_fd, job.argv
            )
            cwd = tmp
        else:
            work = os.path.join(tmp, "work")
            os.mkdir(work, 0o700)
            argv = _python_argv(iso.python, main_path, limits, channel_fd, job.argv)
            if uid is not None:
                os.chown(work, uid, uid)
                argv = _setpriv_argv(uid) + argv if shutil.which("setpriv") else argv
                if shutil.which("setpriv") is None:
                    popen_kw.update(user=uid, group=uid, extra_groups=[])
                if iso.net_isolated:
                    argv = ["unshare", "--net", "--"] + argv
            cwd = work
        result = _communicate(argv, cwd, job, limits, iso, pass_fds, chan_r, owned, popen_kw)
        clean = result.returncode is not None and not (result.timed_out or result.output_limited)
        return result
    finally:
        for fd in owned:
            _close(fd)
        if uid is not None:
            # Under bwrap a normal exit tears the pid namespace down with everything in it;
            # otherwise (or after a kill) look for, and kill, anything left under the uid.
            leftovers = False
            if not (iso.pid_isolated and clean):
                _sweep_uid(uid)
                leftovers = bool(processes_of_uid(uid))  # zombies until init reaps them
            _uids.release(uid, clean=not leftovers)
        shutil.rmtree(tmp, onerror=_force_remove)


def _start(argv, cwd, pass_fds, owned, popen_kw) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env={}, close_fds=True, pass_fds=pass_fds, start_new_session=True, **popen_kw,
        )  # fmt: skip
    except OSError as exc:
        raise SandboxError(f"cannot start sandbox ({argv[0]}): {exc}") from exc
    finally:
        for fd in pass_fds:  # only the sandbox holds the channel's write end now
            owned.remove(fd)
            os.close(fd)


class _Pump:
    """Feeds the job's stdin and drains stdout, stderr and the result channel without blocking,
    each capped; stops at the deadline, at a cap, or shortly after the process exits."""

    def __init__(self, proc: subprocess.Popen, stdin: bytes, caps: dict[int, int]):
        self.proc = proc
        self.caps = caps
        self.bufs = {fd: bytearray() for fd in caps}
        self.sel = selectors.DefaultSelector()
        for fd in self.bufs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ)
        self.pending = memoryview(stdin)
        self.stdin_fd = proc.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        if self.pending:
            self.sel.register(self.stdin_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        self.open_readers = set(self.bufs)
        self.timed_out = self.limited = False

    def _write_stdin(self) -> None:
        try:
            n = os.write(self.stdin_fd, self.pending[:65536])
            self.pending = self.pending[n:]
        except (BrokenPipeError, OSError):
            self.pending = self.pending[:0]
        if not self.pending:
            self.sel.unregister(self.stdin_fd)
            self.proc.stdin.close()

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            self.open_readers.discard(fd)
            return
        room = self.caps[fd] - len(self.bufs[fd])
        self.bufs[fd] += data[: max(room, 0)]
        if len(data) > room:
            self.limited = True

    def run(self, deadline: float) -> None:
        proc, exited_at = self.proc, None
        while self.open_readers or (self.pending and not proc.stdin.closed):
            now = time.monotonic()
            if proc.poll() is not None and exited_at is None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # leftover children may hold the pipes open; do not wait for them
            if now >= deadline:
                self.timed_out = True
                break
            for key, _ in self.sel.select(timeout=min(0.05, deadline - now)):
                if key.fd == self.stdin_fd:
                    self._write_stdin()
                else:
                    self._read(key.fd)
            if self.limited:
                break
        if proc.poll() is None and not (self.timed_out or self.limited):
            # Streams closed but the process lingers: give it until the deadline.
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.timed_out = True


def _communicate(argv, cwd, job, limits, iso, pass_fds, chan_r, owned, popen_kw) -> SandboxResult:
    start = time.monotonic()
    proc = _start(argv, cwd, pass_fds, owned, popen_kw)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    caps = {out_fd: limits.stdout_bytes, err_fd: limits.stderr_bytes}
    if chan_r is not None:
        caps[chan_r] = limits.channel_bytes
    pump = _Pump(proc, job.stdin, caps)
    try:
        pump.run(start + limits.wall_s)
    finally:
        _kill_group(proc)
        pump.sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
    returncode = proc.returncode
    if iso.mode == "bwrap" and returncode is not None and returncode > 128:
        returncode = 128 - returncode  # bwrap reports "killed by signal N" as exit status 128 + N
    warnings = []
    if iso.degraded:
        warnings.append(f"degraded isolation (rlimits only): {iso.reason}")
    return SandboxResult(
        returncode=returncode,
        stdout=bytes(pump.bufs[out_fd]),
        stderr=bytes(pump.bufs[err_fd]),
        channel=bytes(pump.bufs[chan_r]) if chan_r is not None else None,
        timed_out=pump.timed_out,
        output_limited=pump.limited,
        wall_s=time.monotonic() - start,
        isolation=iso,
        warnings=warnings,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's whole process group (bwrap's --die-with-parent takes the pid namespace along)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log.error("sandbox process %d did not die after SIGKILL", proc.pid)


def _sweep_uid(uid: int) -> None:
    """Kill every process left under the sandbox uid (children that escaped the process group)."""
    if not _uid_has_processes(uid):
        return
    try:
        subprocess.run(
            ["kill", "-9", "-1"], user=uid, group=uid, extra_groups=[], env={},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("could not sweep processes of sandbox uid %d: %s", uid, exc)


def _proc_table() -> list[tuple[int, int, str]]:
    """(pid, real uid, state) of every process (from /proc/<pid>/status: a non-dumpable
    process's /proc directory is owned by root, so its stat() would mislead)."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            table.append((int(entry), int(fields["Uid"].split()[0]), fields["State"].strip()[:1]))
        except (OSError, KeyError, ValueError):
            continue
    return table


def processes_of_uid(uid: int) -> list[int]:
    """Pids (zombies included) whose real uid is `uid`."""
    return [pid for pid, puid, _ in _proc_table() if puid == uid]


def own_sandbox_uids() -> range:
    """The uids this host process gives its sandboxes (when running as root)."""
    base = _UidPool._base()
    return range(base, base + _SLOTS)


def leftover_processes() -> list[int]:
    """Live (non-zombie) processes under this host process's sandbox uids; should be empty between runs."""
    wanted = own_sandbox_uids()
    return [pid for pid, uid, state in _proc_table() if uid in wanted and state != "Z"]


def _uid_has_processes(uid: int) -> bool:
    return bool(processes_of_uid(uid))


def _uids_with_processes() -> set[int]:
    return {uid for _, uid, _ in _proc_table()}


def _count_processes(uid: int) -> int:
    count = 0
    for pid in processes_of_uid(uid):
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            count += 1
    return count


def _replace_nproc(limits: Limits, nproc: int) -> Limits:
    from dataclasses import replace

    return replace(limits, nproc=nproc)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise


def _force_remove(func, path, exc_info) -> None:
    """rmtree helper: a program may have chmod-ed its files read-only; make them removable."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        log.warning("could not remove sandbox file %s", path)


# -- many runs ----------------------------------------------------------------------
def max_parallel(max_workers: int | None = None) -> int:
    """Worker count for sandbox pools: never more than the host's CPUs."""
    cpus = os.cpu_count() or 1
    if max_workers is None:
        return cpus
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    return min(max_workers, cpus)


def run_many(jobs: Iterable[SandboxJob], max_workers: int | None = None, mode: str = "auto") -> list[SandboxResult]:
    """Run jobs with at most min(max_workers, cpu_count) sandboxes at once; results in job order."""
    jobs = list(jobs)
    if not jobs:
        return []
    iso = detect_isolation(mode)
    with ThreadPoolExecutor(max_workers=max_parallel(max_workers), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda j: _run(j, iso), jobs))
