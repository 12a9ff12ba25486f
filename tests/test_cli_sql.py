"""`restem sql` as the README writes it, from the installed entry point, and from a non-editable install."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from restem_assets.reporting.analytics import list_queries

ROOT = Path(__file__).resolve().parent.parent
RESTEM = Path(sys.executable).with_name("restem")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def test_sql_list_prints_every_query():
    proc = run([str(RESTEM), "sql", "--list"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == list_queries() and "pass_rate_per_iteration" in proc.stdout


def test_unknown_query_is_one_line_naming_the_available_ones(tmp_path):
    proc = run([str(RESTEM), "sql", "no_such_query", "--data-root", str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no query named 'no_such_query'" in proc.stderr and "pass_rate_per_iteration" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sql_query_runs_on_an_empty_root(tmp_path):
    proc = run([str(RESTEM), "sql", "pass_rate_per_iteration", "--data-root", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert "iteration" in proc.stdout


@pytest.mark.slow
def test_non_editable_install_finds_the_sql_queries(tmp_path):
    """`pip install .` (a wheel, not the source tree) ships sql/ and `restem sql --list` works from it."""
    wheels = tmp_path / "wheels"
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                str(ROOT)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = wheels.glob("restem-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "restem_sql/views.sql" in names and "restem_sql/pass_rate_per_iteration.sql" in names
    target = tmp_path / "site"
    proc = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    code = ("import sys, dagster_project.cli as c, restem_assets.reporting.analytics as a; "
            "assert a.SQL_DIR.is_relative_to(sys.argv[1]), a.SQL_DIR; sys.exit(c.main(['sql', '--list']))")
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = run([sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == list_queries()
