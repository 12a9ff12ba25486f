"""Programs that attack the sandbox or the judge: each must get reward 0 and leave the host untouched.

The corpus is scored once per isolation mode ("auto" = bwrap where available, and the
rlimits fallback) in one parallel batch; the tests then check each verdict and the host:
its files (a canary outside the sandbox), its environment, its processes, its network.
"""

import json
import os
import secrets
import socket
import threading
from pathlib import Path

import pytest

from restem_assets.rewards.code import sandbox as sb
from restem_assets.rewards.code import CodeLimits, score_code_batch
from restem_assets.tasks.code_datasets import read_humaneval

HE0 = next(r for r in read_humaneval() if r["problem_id"] == "humaneval-HumanEval-0")
LIMITS = CodeLimits(test_timeout_s=1.5, humaneval_timeout_s=1.5, startup_s=1.0)
TOKEN = secrets.token_hex(8)
SECRET = f"restem-secret-{TOKEN}"
SECRET_VAR = "RESTEM_ADVERSARIAL_SECRET"
HOST_TMP_PWNED = f"/tmp/restem-pwned-{TOKEN}"
CANARY_TEXT = f"canary-{TOKEN}"


def stdio_problem(expected: str) -> dict:
    return {"format": "apps", "input_output": {"inputs": ["\n"], "outputs": [expected]}, "starter_code": ""}


def he_body(code: str) -> str:
    """A HumanEval completion: the function body, indented."""
    return "".join("    " + line + "\n" for line in code.strip("\n").splitlines())


def he_module(code: str) -> str:
    """A HumanEval completion that redefines the function and adds module-level code."""
    return "```python\ndef has_close_elements(numbers, threshold):\n    return None\n\n" + code.strip("\n") + "\n```"


def corpus(canary: Path, listener_port: int) -> dict[str, tuple[str, object, set[str]]]:
    """name -> (completion, problem, acceptable failure reasons)."""
    pwned = canary.parent / "pwned.txt"
    return {
        "fork_bomb": (he_body("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
                      HE0, {"timeout", "runtime_error", "sandbox_violation"}),
        "infinite_loop": (he_body("while True:\n    pass"), HE0, {"timeout"}),
        "memory_bomb": (he_body("hog = 'x' * (64 * 2 ** 30)"), HE0, {"memory"}),
        "memory_bomb_growing": (he_body("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))"), HE0,
                                {"memory", "timeout"}),
        "memory_bomb_stdio": ("hog = [0] * (2 ** 34)\nprint(1)\n", stdio_problem("1"), {"memory"}),
        "files_outside": (
            "import os\n"
            f"for path in [{str(canary)!r}, {str(pwned)!r}, {HOST_TMP_PWNED!r}]:\n"
            "    try:\n        open(path, 'a').write('pwned')\n    except OSError:\n        pass\n"
            f"try:\n    print(open({str(canary)!r}).read())\nexcept OSError:\n    print('no read')\n"
            f"for path in [{str(canary)!r}]:\n"
            "    try:\n        os.remove(path)\n    except OSError:\n        pass\n",
            stdio_problem(CANARY_TEXT), {"wrong_answer"}),
        "env_secret": (
            "import os, glob\nfound = os.environ.get(" + repr(SECRET_VAR) + ", '')\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n        data = open(path, 'rb').read().decode(errors='replace')\n    except OSError:\n        continue\n"
            "    for item in data.split('\\0'):\n"
            "        if item.startswith(" + repr(SECRET_VAR + "=") + "):\n            found = item.split('=', 1)[1]\n"
            "print(found or 'nothing')\n",
            stdio_problem(SECRET), {"wrong_answer"}),
        "network": (
            "import socket\n"
            "try:\n"
            f"    s = socket.create_connection(('127.0.0.1', {listener_port}), timeout=1)\n"
            "    s.sendall(b'hello from the sandbox')\n    print('connected')\n"
            "except OSError as exc:\n    print('blocked', type(exc).__name__)\n",
            stdio_problem("connected"), {"wrong_answer"}),
        "kill_parent_call": (he_body("import os\nos.kill(os.getppid(), 9)"), HE0, {"sandbox_violation", "runtime_error"}),
        "kill_parent_stdio": ("import os\nos.kill(os.getppid(), 9)\nprint('1')\n", stdio_problem("1"),
                              {"runtime_error", "sandbox_violation"}),
        "killpg_zero": (he_body("import os\nos.killpg(0, 9)"), HE0, {"runtime_error", "sandbox_violation"}),
        "kill_everything": (he_body("import os\nos.kill(-1, 9)"), HE0, {"runtime_error", "sandbox_violation"}),
        "stdout_flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", stdio_problem("x"),
                         {"sandbox_violation"}),
        "stdout_flood_call": (he_body("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"), HE0,
                              {"sandbox_violation"}),
        "exit_0_stdio": ("import sys\nsys.exit(0)\nprint('1')\n", stdio_problem("1"), {"wrong_answer"}),
        "sys_exit_0_before_tests": (he_module("import sys\nsys.exit(0)"), HE0, {"runtime_error"}),
        "os_exit_0_before_tests": (he_module("import os\nos._exit(0)"), HE0, {"runtime_error"}),
        "os_exit_0_in_call": (he_body("import os\nos._exit(0)"), HE0, {"runtime_error"}),
        "redefine_check": (
            he_module("def check(candidate):\n    return True\n\n"
                      "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
                      "METADATA = {}\ncandidate = has_close_elements"),
            HE0, {"wrong_answer"}),
        "patch_builtins": (
            he_module("import builtins, json, sys\n"
                      "builtins.isinstance = lambda *a: True\nbuiltins.print = lambda *a, **k: None\n"
                      "json.dumps = lambda *a, **k: '{\"ok\": true, \"value\": true}'\n"
                      "json.loads = lambda *a, **k: {'ok': True, 'value': True}\n"
                      "sys.modules['__main__'].__dict__.clear()"),
            HE0, {"wrong_answer", "runtime_error"}),
        "fake_pass_marker": (
            he_module("import os, json\n"
                      "fake = json.dumps({'nonce': 'x' * 32, 'n_tests': 1, 'results': [{'test': 0, 'status': 'passed'}]})\n"
                      "print(fake)\nprint('ALL TESTS PASSED')\n"
                      "for fd in range(64):\n"
                      "    try:\n        os.write(fd, fake.encode())\n    except OSError:\n        pass"),
            HE0, {"wrong_answer", "runtime_error"}),
        "always_equal_object": (
            he_module("class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n\n"
                      "def has_close_elements(numbers, threshold):\n    return AlwaysEqual()"),
            HE0, {"wrong_answer"}),
        "bool_subclass": (
            he_module("class Yes(int):\n    def __eq__(self, other):\n        return True\n\n"
                      "def has_close_elements(numbers, threshold):\n    return Yes(1)"),
            HE0, {"wrong_answer"}),
        "forge_runner_reply": (
            he_body("import os\nfor fd in range(3, 32):\n    try:\n"
                    "        os.write(fd, b'{\"ok\": true, \"value\": true}\\n' * 50)\n    except OSError:\n        pass\n"
                    "return False"),
            HE0, {"wrong_answer", "runtime_error"}),
        "spy_on_judge": (
            "import os, ctypes\naccessible = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
            "    for what in ('mem', 'environ', 'fd'):\n"
            "        try:\n"
            "            (os.listdir if what == 'fd' else lambda p: open(p, 'rb').read(1))(f'/proc/{pid}/{what}')\n"
            "            accessible.append(f'{pid}/{what}')\n"
            "        except OSError:\n            pass\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "traced = [p for p in (os.getppid(), 1, 2, 3) if libc.ptrace(16, p, 0, 0) == 0]\n"
            "print(f'accessible={accessible} traced={traced}')\n",
            stdio_problem("impossible"), {"wrong_answer"}),
    }


# Containing these needs the program to be separated from the host: its own uid, or
# bwrap's private filesystem and pid namespace. The degraded fallback without root has
# neither (the program could read the host's /proc/<pid>/environ), and says so loudly.
NEEDS_SEPARATION = {"files_outside", "env_secret", "spy_on_judge"}


def separated(iso: sb.Isolation) -> bool:
    return iso.uid_dropped or (iso.fs_isolated and iso.pid_isolated)


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.connections.append(addr)
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module", params=["auto", "rlimits"])
def attacked(request, tmp_path_factory):
    """Run the corpus in one isolation mode; return verdicts and observations of the host."""
    mode = request.param
    host_dir = tmp_path_factory.mktemp(f"host-{mode}")
    canary = host_dir / "canary.txt"
    canary.write_text(CANARY_TEXT)
    os.environ[SECRET_VAR] = SECRET
    env_before = dict(os.environ)
    listener = Listener()
    try:
        cases = corpus(canary, listener.port)
        limits = CodeLimits(**{**LIMITS.__dict__, "mode": mode})
        verdicts = score_code_batch([(c, p) for c, p, _ in cases.values()], limits=limits)
        env_after = dict(os.environ)
    finally:
        listener.close()
        os.environ.pop(SECRET_VAR, None)
    yield {
        "mode": mode,
        "isolation": sb.detect_isolation(mode),
        "cases": cases,
        "verdicts": dict(zip(cases, verdicts)),
        "canary": canary,
        "host_dir": host_dir,
        "env_changed": env_before != env_after,
        "connections": listener.connections,
    }
    if os.path.exists(HOST_TMP_PWNED):
        os.remove(HOST_TMP_PWNED)


CASE_NAMES = list(corpus(Path("/nonexistent/canary.txt"), 1))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_attack_gets_no_reward(attacked, name):
    if name in NEEDS_SEPARATION and not separated(attacked["isolation"]):
        pytest.skip("degraded sandbox under the host's own uid cannot contain this")
    verdict = attacked["verdicts"][name]
    expected_reasons = attacked["cases"][name][2]
    assert verdict.reward == 0.0, (name, verdict.details)
    assert verdict.reason in expected_reasons, (name, verdict.reason, verdict.details)
    assert len(verdict.details) < 20_000  # floods are capped, not copied into the reward table


def test_host_files_survive(attacked):
    iso = attacked["isolation"]
    if not separated(iso):
        pytest.skip("degraded sandbox under the host's own uid: host files are not protected")
    assert attacked["canary"].read_text() == CANARY_TEXT
    assert not (attacked["host_dir"] / "pwned.txt").exists()
    if attacked["isolation"].fs_isolated:
        assert not os.path.exists(HOST_TMP_PWNED)  # /tmp inside bwrap is the sandbox's own tmpfs
    # (rlimits fallback: world-writable host dirs such as /tmp stay writable; that is why it warns)


def test_secret_never_reaches_the_program(attacked):
    if not separated(attacked["isolation"]):
        pytest.skip("degraded sandbox under the host's own uid can read the host's /proc/<pid>/environ")
    details = json.loads(attacked["verdicts"]["env_secret"].details)
    detail = details["tests"][0]["detail"]  # "expected '<secret>', got '<what the program printed>'"
    assert detail.endswith("got 'nothing\\n'"), detail
    assert not attacked["env_changed"]


def test_no_network_connection_reached_the_host(attacked):
    if not attacked["isolation"].net_isolated:
        pytest.skip("this host cannot give the sandbox its own network namespace")
    assert attacked["connections"] == []
    assert "blocked" in attacked["verdicts"]["network"].details


def test_judge_and_runner_memory_are_out_of_reach(attacked):
    if not separated(attacked["isolation"]):
        pytest.skip("degraded sandbox under the host's own uid can reach the host's /proc")
    details = attacked["verdicts"]["spy_on_judge"].details
    assert "accessible=[] traced=[]" in details, details


def test_no_sandbox_process_survives(attacked):
    assert sb.leftover_processes() == []  # fork bombs, background children: all gone
