"""What a user reads when a command cannot run: one line naming the setting, exit 2, before any step runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project import cli
from restem_assets.training.finetune import TRAINER_DIR_PREFIX, remove_dead_trainer_dirs

RESTEM = str(Path(sys.executable).with_name("restem"))


@pytest.mark.parametrize("argv, message", [
    (["--set", "rest.samples_per_problem=abc"], "rest.samples_per_problem: input should be a valid integer"),
    (["--set", "nosuch.field=1"], "no resource named 'nosuch'"),
    (["--set", "rest.nosuch=1"], "resource 'rest' has no field 'nosuch'"),
    (["--set", "rest.temperature=-1"], "rest.temperature must be a finite number >= 0, got -1"),
    (["--set", "engine.kind=fast"], "engine.kind must be 'auto', 'transformers' or 'vllm'"),
])
def test_a_bad_setting_is_one_line_and_nothing_runs(tmp_path, argv, message):
    """As a user runs it (the installed entry point): rc 2, one line on stderr, no step started, no instance."""
    home, root = tmp_path / "home", tmp_path / "data"
    proc = subprocess.run([RESTEM, "run", "--profile", "tiny", "--data-root", str(root), "--dagster-home", str(home),
                           *argv], capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
    assert "==>" not in proc.stdout and not (root / "problems").exists()


def test_an_unknown_profile_is_refused_by_the_parser_listing_every_profile(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--profile", "nosuch"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and "tiny_easy" in err


def test_help_lists_every_profile(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for name in ("default", "code", "ci", "tiny_easy", "tiny"):
        assert name in out


def test_rescore_of_an_iteration_that_does_not_exist_names_it(tmp_path, capsys):
    from restem_assets.store.schemas import REWARDS, SAMPLES
    from restem_assets.store.tables import ParquetStore

    store = ParquetStore(str(tmp_path))
    store.write_table("samples", [], SAMPLES, 1)
    store.write_table("rewards", [], REWARDS, 1)
    assert cli.main(["rescore", "--iteration", "9", "--data-root", str(tmp_path), "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"restem rescore: iteration 9 has no samples and rewards under {tmp_path} "
                           "(iterations that have: 1)")


class _Error:
    def __init__(self, cls_name, message, cause=None):
        self.cls_name, self.message, self.cause = cls_name, message, cause


class _Event:
    def __init__(self, step_key, error):
        self.step_key, self.is_failure, self.event_type_value = step_key, True, "STEP_FAILURE"
        self.event_specific_data = type("D", (), {"error": error})()


def test_a_failure_summary_says_each_cause_once():
    """Dagster wraps the step's error and repeats it in the run failure; the summary names it once, by its
    first line (a vLLM worker's message ends with its log tail, whose last line may be any warning)."""
    inner = _Error("VLLMWorkerError", "VLLMWorkerError: the vLLM worker exited with code -9; its last log lines:\n"
                   "WARNING: something is deprecated")
    wrapped = _Error("DagsterExecutionStepExecutionError", "Error occurred while executing op", cause=inner)
    run_failure = _Error("DagsterRunFailure", "ValueError: a repeat")
    result = type("R", (), {"all_events": [_Event("samples", wrapped), _Event(None, run_failure)]})()
    assert cli._root_cause(result) == "samples: VLLMWorkerError: the vLLM worker exited with code -9; its last log lines:"


def test_dead_trainer_scratch_directories_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"{TRAINER_DIR_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{TRAINER_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "restem-trainer-notapid"
    for d in (gone, live, other):
        d.mkdir()
    assert remove_dead_trainer_dirs(str(tmp_path)) == [gone]
    assert not gone.exists() and live.exists() and other.exists()
