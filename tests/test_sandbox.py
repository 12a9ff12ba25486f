"""The sandbox: limits, empty environment, temporary directory, output caps, pool bounds."""

import logging
import os
import tempfile
import time

import pytest

from restem_assets.rewards.code import sandbox as sb

BWRAP = sb.detect_isolation("auto").mode == "bwrap"
MODES = ["auto", "rlimits"]  # "auto" is bwrap where the machine allows it


def run(source: str, mode: str, stdin: bytes = b"", **limits) -> sb.SandboxResult:
    return sb.run(sb.SandboxJob(source, stdin=stdin, limits=sb.Limits(**limits)), mode=mode)


def test_detection_is_cached_and_reports_what_it_found():
    iso = sb.detect_isolation()
    assert sb.detect_isolation() is iso
    if iso.mode == "bwrap":
        assert iso.fs_isolated and iso.pid_isolated and iso.net_isolated and not iso.degraded
    assert iso.nproc_enforced
    if os.geteuid() == 0:
        assert iso.uid_dropped


def test_forced_fallback_warns_loudly(caplog):
    sb._warned.clear()
    sb._detected.pop("rlimits", None)
    with caplog.at_level(logging.WARNING, logger="restem_assets.rewards.code.sandbox"):
        iso = sb.detect_isolation("rlimits")
    assert iso.degraded and "DEGRADED" in caplog.text
    result = run("print('hi')", "rlimits")
    assert result.stdout == b"hi\n" and result.isolation.degraded and result.warnings


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="sandbox mode"):
        sb.detect_isolation("docker")


@pytest.mark.parametrize("mode", MODES)
def test_stdin_stdout_exit_status(mode):
    result = run("import sys\nx = sys.stdin.read()\nprint(x.upper(), end='')\nsys.exit(3)", mode, b"hello")
    assert (result.stdout, result.returncode, result.timed_out) == (b"HELLO", 3, False)


@pytest.mark.parametrize("mode", MODES)
def test_source_that_does_not_compile_reports_its_syntax_error(mode):
    result = run("print('unclosed'\n", mode)
    assert result.returncode == 1 and b"SyntaxError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_environment_is_empty_and_uid_unprivileged(mode, monkeypatch):
    monkeypatch.setenv("RESTEM_FAKE_SECRET", "hunter2")
    result = run("import os\nprint(len(os.environ), os.getuid())", mode)
    n_env, uid = result.stdout.split()
    assert n_env == b"0"
    if os.geteuid() == 0:
        assert int(uid) != 0


@pytest.mark.parametrize("mode", MODES)
def test_working_directory_is_temporary_and_removed(mode):
    before = set(os.listdir(tempfile.gettempdir()))
    result = run("import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())", mode)
    assert result.returncode == 0, result.stderr
    cwd = result.stdout.decode().strip()
    if mode == "rlimits":
        assert cwd.startswith(tempfile.gettempdir()) and not os.path.exists(cwd)
    else:
        assert cwd == sb.SANDBOX_WORKDIR  # a tmpfs that vanishes with the sandbox
    assert not {d for d in set(os.listdir(tempfile.gettempdir())) - before if d.startswith("restem-sbx-")}


@pytest.mark.parametrize("mode", MODES)
def test_result_channel_is_private_to_the_process(mode):
    src = (
        "import os, subprocess, sys\n"
        "os.write(3, b'from-main')\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; os.write(3, b\"from-child\")'])\n"
        "print(child.returncode)\n"
    )
    result = sb.run(sb.SandboxJob(src, channel=True), mode=mode)
    assert result.channel == b"from-main"
    assert result.stdout.strip() != b"0"  # fd 3 is not inherited: the child's write fails


@pytest.mark.parametrize("mode", MODES)
def test_wall_clock_kills_the_whole_tree(mode):
    src = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '60'], start_new_session=True)\n"  # escapes the process group
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    result = run(src, mode, wall_s=1.0)
    assert result.timed_out and time.monotonic() - start < 5
    assert sb.leftover_processes() == []


@pytest.mark.parametrize("mode", MODES)
def test_cpu_limit(mode):
    start = time.monotonic()
    result = run("while True:\n    pass\n", mode, cpu_s=1, wall_s=20)
    assert result.returncode in (-24, -9)  # SIGXCPU at the soft limit, SIGKILL at the hard one
    assert not result.timed_out and time.monotonic() - start < 10


@pytest.mark.parametrize("mode", MODES)
def test_memory_limit(mode):
    result = run("x = bytearray(2 << 30)\n", mode, memory_bytes=256 << 20)
    assert result.returncode == 1 and b"MemoryError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_file_size_limit(mode):
    result = run("open('big', 'wb').write(b'x' * (2 << 20))\n", mode, fsize_bytes=1 << 20)
    assert result.returncode != 0 and b"File too large" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_process_limit_is_enforced(mode):
    src = (
        "import os, time\n"
        "n = 0\n"
        "for _ in range(60):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "    n += 1\n"
        "print(n)\n"
    )
    if not sb.detect_isolation(mode).nproc_enforced:
        pytest.skip("the sandbox runs as root here, and the kernel does not enforce RLIMIT_NPROC for root")
    result = run(src, mode, nproc=8)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 8  # root would not be limited at all
    assert sb.leftover_processes() == []


@pytest.mark.parametrize("mode", MODES)
def test_output_is_capped_and_the_writer_killed(mode):
    start = time.monotonic()
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", mode, stdout_bytes=1 << 20)
    assert result.output_limited and len(result.stdout) <= 1 << 20
    assert time.monotonic() - start < 5


def test_run_many_keeps_order_and_bounds_workers():
    jobs = [sb.SandboxJob(f"print({i})") for i in range(6)]
    results = sb.run_many(jobs, max_workers=64)
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(6)]
    assert sb.max_parallel(64) == os.cpu_count()
    assert sb.max_parallel(1) == 1
    assert sb.run_many([]) == []
    with pytest.raises(ValueError):
        sb.max_parallel(0)


def test_uids_are_unique_per_concurrent_sandbox():
    uids = [sb._uids.acquire() for _ in range(4)]
    try:
        assert len(set(uids)) == 4 and all(u >= sb._UID_BASE for u in uids)
    finally:
        for u in uids:
            sb._uids.release(u)
