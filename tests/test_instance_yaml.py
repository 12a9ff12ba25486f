"""The instance's dagster.yaml: restem keeps its own current, and never undoes a user's edit without a word."""

from __future__ import annotations

from dagster_project.instance import DAGSTER_YAML, persistent_instance, prepare_dagster_home, written_by_restem

# The last dagster.yaml restem wrote before the sha256 stamp (commit 2405246), first line and all.
OLD_TEMPLATE = """\
# Written by restem. One torch-heavy step at a time: two at once on a small CPU host slow each other down.
# Never two runs of the same partition at once (whatever max_concurrent_runs says); the assets
# also lock their partition, so this holds for runs this queue does not see (the restem CLI).
# Run monitoring fails runs whose worker process died, freeing their pool slots.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 1
    tag_concurrency_limits:
      - key: dagster/partition
        limit: 1
        value:
          applyLimitPerUniqueValue: true
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
telemetry:
  enabled: false
"""


def test_a_new_home_gets_restems_stamped_file_and_no_note(tmp_path, capsys):
    home = prepare_dagster_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML and written_by_restem(DAGSTER_YAML)
    prepare_dagster_home(home)
    assert capsys.readouterr().err == ""


def test_an_edit_of_restems_file_is_kept_and_said_once(tmp_path, capsys):
    home = prepare_dagster_home(tmp_path / "home")
    config = home / "dagster.yaml"
    edited = config.read_text().replace("max_concurrent_runs: 1", "max_concurrent_runs: 4")
    config.write_text(edited)
    instance = persistent_instance(home)  # what `restem run` does on start
    assert config.read_text() == edited
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"keeping your {config}" in err and "sets every key" in err


def test_the_issues_case_an_edited_file_under_the_old_marker_is_kept(tmp_path, capsys):
    """Issue 23: `max_concurrent_runs: 4` under the old first line `# Written by restem.` was silently undone."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / "dagster.yaml"
    edited = OLD_TEMPLATE.replace("max_concurrent_runs: 1", "max_concurrent_runs: 4")
    config.write_text(edited)
    prepare_dagster_home(home)
    assert config.read_text() == edited
    assert "keeping your" in capsys.readouterr().err


def test_an_unedited_old_version_of_restems_file_is_brought_up_to_date(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    config = home / "dagster.yaml"
    for old in (OLD_TEMPLATE,
                "# Written by restem. One torch-heavy step at a time: two on 2 cores slow each other 3x.\n"
                "concurrency:\n  pools:\n    default_limit: 1\n  runs:\n    max_concurrent_runs: 1\n"
                "telemetry:\n  enabled: false\n"):
        config.write_text(old)
        prepare_dagster_home(home)
        assert config.read_text() == DAGSTER_YAML
    assert capsys.readouterr().err == ""


def test_a_users_file_names_the_restem_defaults_it_lacks(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    config = home / "dagster.yaml"
    mine = "concurrency:\n  runs:\n    max_concurrent_runs: 4\n"
    config.write_text(mine)
    persistent_instance(home)
    assert config.read_text() == mine
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("restem: keeping your")
    assert "concurrency.runs.tag_concurrency_limits" in lines[0] and "run_monitoring" in lines[0]
    assert "max_concurrent_runs" not in lines[0]  # what the user set is not "lacking"


def test_the_deploy_configs_use_the_shared_instances_postgres_settings():
    """Issue 22 item 4: deploy/ray and deploy/k8s point at the PostgreSQL storage of `restem serve`, taken from one
    place (instance.POSTGRES_STORAGE, postgres_server.PostgresCluster's defaults), credentials only by name."""
    from pathlib import Path

    import yaml

    from dagster_project.instance import POSTGRES_STORAGE, dagster_yaml, storage_kind
    from dagster_project.postgres_server import PostgresCluster

    deploy = Path(__file__).resolve().parent.parent / "deploy"
    ours = yaml.safe_load(POSTGRES_STORAGE)["storage"]
    assert yaml.safe_load((deploy / "ray" / "dagster.yaml").read_text())["storage"] == ours
    assert ours["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    values = yaml.safe_load((deploy / "k8s" / "values.yaml").read_text())
    defaults = PostgresCluster(directory=Path("/nonexistent"))
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert (values["postgresql"]["postgresqlUsername"], values["postgresql"]["postgresqlDatabase"],
            values["postgresql"]["postgresqlScheme"]) == (defaults.user, defaults.db, ours["postgres"]["postgres_db"]["scheme"])
    assert "postgresqlPassword" not in values["postgresql"]
    assert storage_kind(dagster_yaml("postgres")) == "postgres" and storage_kind(dagster_yaml("sqlite")) == "sqlite"


def test_restems_postgres_file_is_kept_postgres_and_needs_its_login(tmp_path, monkeypatch):
    """The CLI keeps a shared home's PostgreSQL dagster.yaml (never rewrites it to SQLite) and, without the login,
    says which variables are missing and where `restem serve` keeps them."""
    import pytest

    from dagster_project.instance import InstanceConfigError, dagster_yaml, prepare_dagster_home

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "shared"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml("postgres"))
    with pytest.raises(InstanceConfigError, match=r"DAGSTER_PG_HOST, .*DAGSTER_PG_DB are not set.*postgres.env"):
        prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == dagster_yaml("postgres")
    (home / "postgres.env").write_text("DAGSTER_PG_HOST=127.0.0.1\nDAGSTER_PG_PORT=5999\nDAGSTER_PG_USER=u\n"
                                       "DAGSTER_PG_PASSWORD=p\nDAGSTER_PG_DB=d\n")
    prepare_dagster_home(home)
    import os

    assert os.environ["DAGSTER_PG_PORT"] == "5999"
    assert "password: {env: DAGSTER_PG_PASSWORD}" in (home / "dagster.yaml").read_text()
