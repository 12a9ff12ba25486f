"""Stage CPU accounting over the process tree (restem_assets/reporting/costs.py), with real child processes."""

import subprocess
import sys

import pytest

from restem_assets.reporting.costs import StageMeter, tree_cpu_between

# A child that burns `BURN` CPU seconds each time it reads a line, answers "done", and exits on EOF:
# a stand-in for the engine pool's vLLM worker, which lives across stages.
BURN = 0.6
WORKER = f"""
import sys, time
for line in sys.stdin:
    t = time.process_time()
    while time.process_time() - t < {BURN}:
        pass
    print("done", flush=True)
"""


@pytest.fixture
def worker():
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _burn(proc):
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def test_a_live_workers_cpu_lands_in_the_stage_it_served(worker):
    _burn(worker)  # before the stage: not this stage's
    with StageMeter() as meter:
        _burn(worker)
    assert BURN * 0.9 <= meter.cpu_seconds <= BURN * 2.5  # getrusage alone saw ~0 here: the worker is alive


def test_a_worker_reaped_in_the_stage_counts_only_its_time_since_the_start(worker):
    _burn(worker)
    _burn(worker)  # 1.2 s before the stage, which getrusage(RUSAGE_CHILDREN) reports in full once reaped
    with StageMeter() as meter:
        worker.stdin.close()
        worker.wait()
    assert meter.cpu_seconds < BURN * 0.5


def test_tree_cpu_between():
    a, b, c = (1, 0.0), (2, 0.0), (3, 0.0)
    # a ran 5 s during the stage; b started in it and ran 2 s; c ran 3 s before and was reaped (its 3 s + 1 s
    # arrive in own_after)
    assert tree_cpu_between(10.0, 15.0, {a: 20.0, c: 3.0}, {a: 25.0, b: 2.0}) == pytest.approx(5.0 + 5.0 + 2.0 - 3.0)
    assert tree_cpu_between(1.0, 1.0, {}, {}) == 0.0
    assert tree_cpu_between(1.0, 1.0, {c: 3.0}, {}) == 0.0  # gone but not reaped (yet): never negative
