"""SIGTERM stops the driver after the step it interrupts, even where Python swallows the interrupt.

A signal handler that raises while a `__del__` runs only prints "Exception ignored in ..." and the
step goes on to succeed; CI once saw `restem run` exit 0 after SIGTERM that way. These tests send a
real SIGTERM to this process inside a real in-process Dagster run.
"""

from __future__ import annotations

import os
import signal
import time

import dagster as dg
import pytest

from dagster_project import cli, run_guard


@pytest.fixture
def sigterm_guard():
    previous = signal.getsignal(signal.SIGTERM)
    run_guard.stop_on_sigterm()
    yield
    run_guard.forget_stop_signals()
    signal.signal(signal.SIGTERM, previous)


class _TermOnDelete:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler's KeyboardInterrupt is raised here, and ignored


def _defs(body) -> dg.Definitions:
    @dg.asset
    def step():
        body()
        return 1

    return dg.Definitions(assets=[step], jobs=[dg.define_asset_job("job", selection=[step])])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt
def test_an_interrupt_swallowed_inside_del_still_stops_the_driver(sigterm_guard, capsys):
    def body():
        _TermOnDelete()  # deleted at once: SIGTERM arrives inside __del__

    with dg.instance_for_test() as instance:
        with pytest.raises(SystemExit) as stopped:
            cli._execute(_defs(body), instance, "job", None)
        assert stopped.value.code == 128 + signal.SIGTERM
        assert instance.get_runs()[0].status == dg.DagsterRunStatus.SUCCESS, "the step itself finished"
    assert "stopped by signal 15 during job" in capsys.readouterr().err


def test_an_interrupt_mid_step_fails_the_run_and_stops_the_driver(sigterm_guard, capsys):
    def body():
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached: the handler raises first")

    with dg.instance_for_test() as instance:
        with pytest.raises(SystemExit) as stopped:
            cli._execute(_defs(body), instance, "job", None)
        assert stopped.value.code == 128 + signal.SIGTERM
        assert instance.get_runs()[0].status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
    assert "stopped by signal 15 during job" in capsys.readouterr().err


def test_a_signal_dagster_records_and_forgets_between_steps_is_still_seen(sigterm_guard):
    """Outside user code a run sits in Dagster's `capture_interrupts`: SIGTERM there only sets a flag,
    which the run checks at its next step boundary and clears when it ends. A signal in the last
    window (after the last step, e.g. while the run's success is written) is lost to Dagster: the
    run is a success and, before the wake-up socket, the driver went on to the next run."""
    from dagster._utils.interrupts import capture_interrupts, check_captured_interrupt

    with capture_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        assert check_captured_interrupt(), "Dagster's handler, not the driver's, received it"
    assert not check_captured_interrupt(), "and Dagster forgot it when the context ended"
    assert run_guard.stop_requested() == signal.SIGTERM
    assert run_guard.stop_requested() == signal.SIGTERM, "asking again does not forget it either"


def test_without_a_signal_the_step_runs_on(sigterm_guard, capsys):
    """With the guard installed and no signal, the step runs, the run succeeds and the driver goes on:
    `_execute` returns (no SystemExit) the run's duration, measured around the run itself."""
    ran = []
    with dg.instance_for_test() as instance:
        t0 = time.perf_counter()
        seconds = cli._execute(_defs(lambda: ran.append(True)), instance, "job", None)
        elapsed = time.perf_counter() - t0
        assert ran == [True], "the step body ran"
        assert instance.get_runs()[0].status == dg.DagsterRunStatus.SUCCESS
    assert 0 < seconds <= elapsed, f"the run's duration {seconds} lies within the call's {elapsed}"
    assert run_guard.stop_requested() is None
    out = capsys.readouterr()
    assert "==> job" in out.out and "job done in" in out.out and "stopped by signal" not in out.err
