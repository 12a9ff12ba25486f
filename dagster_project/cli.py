"""`restem`: run the ReST^EM loop through Dagster from the command line.

Every step runs as a job of the project's Definitions against the persistent
instance in DAGSTER_HOME (default data/dagster_home), so `make ui` afterwards shows
every run and materialization. Steps already materialized are skipped (pass
--force to redo them), which makes re-running the command resume where it stopped.

Flags become an explicit `Settings` (flags win over RESTEM_* variables) and the
Definitions are built from it; the CLI never changes its own environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path


def _settings(args: argparse.Namespace):
    """Flags over RESTEM_* variables; a registered experiment's profile unless --profile is given."""
    from restem_assets.environment import Settings, absolute_root
    from restem_assets.experiments import read_registry
    from restem_assets.store.tables import ParquetStore

    flags = dict(data_root=args.data_root, dagster_home=args.dagster_home, experiment=getattr(args, "experiment", None))
    settings = Settings.from_env(profile=args.profile, **flags)
    if settings.experiment != "default" and args.profile is None and "profile" not in Settings.environment_fields():
        known = read_registry(ParquetStore(absolute_root(settings.data_root)))
        if settings.experiment in known:
            settings = Settings.from_env(profile=known[settings.experiment].profile, **flags)
    return settings


def _overrides(args: argparse.Namespace, settings, kept: bool = True) -> dict:
    """What this command sets on top of the profile: `--set resource.field=value` flags, else the experiment's
    recorded settings (`definitions.recorded_settings`: a named one's overrides, and for any, the recorded value
    of a default changed since; `kept=False` leaves those out, for the record), and `--iterations N` as
    `rest.target_iterations`."""
    from dagster_project.definitions import recorded_settings
    from restem_assets.experiments import parse_overrides

    items = getattr(args, "overrides", None) or []
    if items:
        overrides = parse_overrides(items)
    else:
        overrides, pinned = recorded_settings(settings)
        if not kept:
            overrides = {resource: {f: v for f, v in fields.items() if f not in pinned.get(resource, {})}
                         for resource, fields in overrides.items()}
            overrides = {resource: fields for resource, fields in overrides.items() if fields}
    if getattr(args, "iterations", None) is not None:
        overrides = {**overrides, "rest": {**overrides.get("rest", {}), "target_iterations": args.iterations}}
    return overrides


def _root_cause(result) -> str:
    """One line per failed step: the innermost error's type and message, each said once (not Dagster's
    wrappers, not the run-level failure that only repeats a step's)."""
    lines = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        while error is not None and error.cause is not None:
            error = error.cause
        if error is None or (event.step_key is None and lines):
            continue
        message = (error.message.strip().splitlines() or [""])[0].strip()  # the statement, not a log tail
        qualified, sep, rest = message.partition(": ")
        if sep and qualified.rsplit(".", 1)[-1] == error.cls_name:  # "pkg.mod.Error: text" says the type twice
            message = rest.strip()
        line = f"{event.step_key}: {error.cls_name}: {message}" if event.step_key else f"{error.cls_name}: {message}"
        if line not in lines:
            lines.append(line)
    checks = [e.event_specific_data.check_name for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed]
    lines += [f"check {name} failed" for name in checks]
    return "; ".join(lines)


def _execute(defs, instance, job_name: str, partition: str | None, assets: tuple[str, ...] | None = None,
             experiment: str = "default") -> float:
    import dagster as dg

    from dagster_project.run_guard import process_tags, report_stop, stop_requested
    from restem_assets.experiments import key_prefix

    prefix = key_prefix(experiment)
    job = defs.resolve_job_def(job_name)
    label = f"{job_name}[{partition}]" if partition is not None else job_name
    if assets:
        label += f" (resuming at {assets[0]})"
    if prefix:
        label = f"{experiment}: {label}"
    print(f"==> {label}", flush=True)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                    tags={**process_tags(), "restem/experiment": experiment},
                                    asset_selection=[dg.AssetKey([*prefix, a]) for a in assets] if assets else None)
    seconds = time.perf_counter() - t0
    signum = stop_requested()
    if signum is not None:  # even when the step finished: the interrupt may have been swallowed on the way
        raise SystemExit(report_stop(signum, during=label))
    if not result.success:
        raise SystemExit(f"{label} failed after {seconds:.0f}s: {_root_cause(result) or 'see the run in the webserver'}")
    print(f"    {label} done in {seconds:.0f}s", flush=True)
    return seconds


def _open(args: argparse.Namespace):
    """(settings, Definitions, persistent instance) for a command's flags."""
    from dagster_project.definitions import build_definitions
    from dagster_project.instance import persistent_instance

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # for the libraries: restem never contacts a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = _settings(args)
    return settings, build_definitions(settings, _overrides(args, settings)), persistent_instance(settings.dagster_home)


def _recover(instance, root: str) -> None:
    """Before driving: fail runs whose process died (freeing their pool slots) and, when no run is
    left in flight, delete the temporary files killed writers left behind."""
    import dagster as dg

    from dagster_project.run_guard import IN_PROGRESS_RUN_STATUSES, reap_dead_runs, remove_orphans

    for run_id in reap_dead_runs(instance):
        print(f"restem: run {run_id} was left STARTED by a process that is gone: marked failed, slots freed", flush=True)
    if not instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)), limit=1):
        removed = remove_orphans(root)
        if removed:
            print(f"restem: removed {len(removed)} temporary file(s) left by interrupted writers", flush=True)


@contextlib.contextmanager
def _driving(args: argparse.Namespace):
    """(settings, Definitions, instance) while this process is the instance's one driver, after recovery.

    Raises LockHeldError (naming the other driver) unless `args.wait`; SIGTERM stops it like Ctrl-C.
    """
    from dagster_project.run_guard import driver_lock, stop_on_sigterm

    stop_on_sigterm()
    settings, defs, instance = _open(args)
    with driver_lock(Path(instance.root_directory), wait=getattr(args, "wait", False)):
        root = defs.resources["storage"].root
        print(f"restem: profile {settings.profile}, experiment {settings.experiment}, "
              f"DAGSTER_HOME={instance.root_directory}, data root {root}", flush=True)
        _recover(instance, root)
        _say_kept(args, settings)
        _register(args, settings, defs)
        yield settings, defs, instance


def _say_kept(args: argparse.Namespace, settings) -> None:
    """Name the settings an existing experiment keeps from its record where a default changed since."""
    from dagster_project.definitions import describe_kept, recorded_settings

    if getattr(args, "overrides", None):
        return  # --set flags: the registry compares them with the record and refuses a difference
    kept = recorded_settings(settings)[1]
    if kept:
        print(f"restem: experiment {settings.experiment} keeps the settings it was recorded with where a default "
              f"changed since: {describe_kept(kept)} (a new --experiment or --data-root takes today's defaults)",
              flush=True)


def _close_engines() -> None:
    """Close the run's engine and say how many engines it started and how many policies were swapped into a
    running one; the plan is reset for the next command in this process."""
    from restem_assets.generation.engine_pool import POOL

    print(f"    engines started: {POOL.starts}, policy weights swapped into a running engine: {POOL.swaps}", flush=True)
    POOL.close()


def _register(args: argparse.Namespace, settings, defs, replace: bool = False) -> None:
    """Record the experiment's resolved configuration, or refuse one that differs from its record (`default`
    included). `restem run --force` redoes everything with the new one instead: `cmd_run` replaces the record
    (`replace`) once that is done, so an interrupted --force leaves the old record and is refused again."""
    from restem_assets.assets.resources import resolved_config
    from restem_assets.environment import absolute_root
    from restem_assets.experiments import Experiment, ExperimentConfigError, register
    from restem_assets.store.tables import ParquetStore

    overrides = _overrides(args, settings, kept=False)  # a kept default is the record's config, not a flag
    exp = Experiment(settings.experiment, settings.profile, overrides, resolved_config(defs.resources))
    try:
        register(ParquetStore(absolute_root(settings.data_root)), exp, replace=replace)
    except ExperimentConfigError:
        if not (getattr(args, "command", None) == "run" and getattr(args, "force", False)):
            raise
        print(f"restem: --force with settings other than experiment {exp.name!r} was created with: everything is "
              "redone from set-up, and its record is replaced when that is done", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from dagster_project.loop_state import (ITERATION_ASSETS, Step, next_step, read_loop_state, refresh_step,
                                            stale_message)
    from restem_assets.experiments import key_prefix

    with _driving(args) as (settings, defs, instance):
        root = defs.resources["storage"].root
        graph = defs.resolve_asset_graph()
        exp = settings.experiment
        prefix = key_prefix(exp)
        iterations = defs.resources["rest"].target_iterations
        if args.force or args.from_iteration is not None:
            first = 0 if args.force else args.from_iteration
            if first <= 0:
                _execute(defs, instance, "setup", None, experiment=exp)
            for i in range(max(first, 0), iterations + 1):
                if i:
                    _execute(defs, instance, "iteration", str(i), experiment=exp)
                _execute(defs, instance, "evaluate", str(i), experiment=exp)
            if args.force:
                _register(args, settings, defs, replace=True)
        refreshed: set[Step] = set()
        while True:
            state = read_loop_state(instance, graph, prefix)
            step = next_step(state, iterations, not args.no_stop, refresh_stale=args.refresh_stale)
            if isinstance(step, str):
                print(f"restem: {step}", flush=True)
                if step.startswith("stale"):
                    return 3
                break
            assert isinstance(step, Step)
            if args.refresh_stale and step == refresh_step(state, iterations):
                if step in refreshed:  # redone, yet still stale: say so instead of redoing it forever
                    print(f"restem: still stale after it was redone: {stale_message(state)}", flush=True)
                    return 3
                refreshed.add(step)
                names = (step.assets or ITERATION_ASSETS) if step.job == "iteration" else ("evaluation",)
                print(f"restem: refreshing stale {', '.join(f'{n}[{step.partition}]' for n in names)}", flush=True)
            _execute(defs, instance, step.job, step.partition, step.assets, experiment=exp)
        if args.human_baseline:
            import dagster as dg

            if instance.get_latest_materialization_event(dg.AssetKey([*prefix, "human_baseline"])) is None:
                _execute(defs, instance, "human_data_baseline", None, experiment=exp)
            else:
                print("    human_baseline already materialized", flush=True)
        _execute(defs, instance, "report_progress", None, experiment=exp)
        _close_engines()
    report = Path(root) / "reports" / "progress.md"
    if report.exists():
        print("\n" + report.read_text())
        print(f"chart: {report.with_suffix('.png')}")
    return 0


def cmd_estep(args: argparse.Namespace) -> int:
    """Only the first half of an iteration: set-up, then samples -> rewards -> sft_set."""
    with _driving(args) as (settings, defs, instance):
        exp = settings.experiment
        timings = {"setup": _execute(defs, instance, "setup", None, experiment=exp)}
        timings["estep"] = _execute(defs, instance, "estep", str(args.iteration), experiment=exp)
    store = defs.resources["storage"].store()
    rewards = store.read_table("rewards", args.iteration).column("reward").to_pylist()
    summary = {
        "iteration": args.iteration,
        "problems": store.num_rows("problems"),
        "samples": store.num_rows("samples", args.iteration),
        "correct": int(sum(rewards)),
        "pass_rate": sum(rewards) / len(rewards) if rewards else 0.0,
        "sft_set": store.num_rows("sft_set", args.iteration),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    """Evaluate every policy the loop has evaluated (or --iteration I) on rest.transfer_benchmarks."""
    import dagster as dg

    from restem_assets.reporting.analytics import print_query
    from restem_assets.experiments import key_prefix

    with _driving(args) as (settings, defs, instance):
        prefix = key_prefix(settings.experiment)
        if not defs.resources["rest"].transfer_benchmarks:
            print("restem transfer: rest.transfer_benchmarks is empty for this profile (e.g. use --profile code)",
                  file=sys.stderr)
            return 2
        evaluated = {int(p) for p in instance.get_materialized_partitions(dg.AssetKey([*prefix, "evaluation"]))}
        done = {int(p) for p in instance.get_materialized_partitions(dg.AssetKey([*prefix, "transfer_evaluation"]))}
        wanted = [args.iteration] if args.iteration is not None else sorted(evaluated)
        if not wanted:
            print("restem transfer: no policy has been evaluated yet: run `restem run` first", file=sys.stderr)
            return 2
        todo = [i for i in wanted if args.force or i not in done]
        for i in sorted(set(wanted) - set(todo)):
            print(f"    transfer[{i}] already materialized (--force redoes it)", flush=True)
        if todo:
            try:
                for i in todo:
                    _execute(defs, instance, "transfer", str(i), experiment=settings.experiment)
            finally:
                _close_engines()
    return print_query(settings.data_root, "transfer_pass_rate", experiment=settings.experiment)


def cmd_rescore(args: argparse.Namespace) -> int:
    """Score iteration i's samples again with the current verifiers (into `rescores`) and count what changed."""
    from restem_assets.assets.resources import build_resources
    from restem_assets.rewards.rescore import rescore_iteration

    store = build_resources(_settings(args))["storage"].store()
    scored = [i for i in store.iterations("rewards") if store.exists("samples", i)]
    if args.iteration not in scored:
        print(f"restem rescore: iteration {args.iteration} has no samples and rewards under {store.root} "
              f"(iterations that have: {', '.join(map(str, scored)) or 'none'})", file=sys.stderr)
        return 2
    s = rescore_iteration(store, args.iteration)
    print(json.dumps({"iteration": s.iteration, "samples": s.samples, "verdicts_changed": s.reason_changed,
                      "gained_reward": s.gained, "lost_reward": s.lost, "new_reasons": dict(s.new_reasons)}, indent=2))
    print("details: restem sql rescore_diff")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from restem_assets.reporting.analytics import print_query

    settings = _settings(args)
    return print_query(settings.data_root, args.query, args.params, args.list, experiment=settings.experiment)


def cmd_ui(args: argparse.Namespace) -> int:
    """`dagster dev` (webserver and daemon) on a SQLite instance; on the shared PostgreSQL instance only a
    webserver, since its daemon is `restem serve`'s (two daemons on one instance would both launch runs)."""
    from dagster_project.instance import prepare_dagster_home, storage_kind

    settings = _settings(args)
    home = prepare_dagster_home(settings.dagster_home)
    env = {**os.environ, **settings.environ(), "DAGSTER_HOME": str(home)}
    # the dagster beside this interpreter: `make ui` runs restem from the venv without the venv on PATH
    bin_dir = Path(sys.executable).parent
    if storage_kind((home / "dagster.yaml").read_text()) == "postgres":
        print(f"dagster-webserver on the shared PostgreSQL instance, DAGSTER_HOME={home} (its daemon: restem serve)",
              flush=True)
        webserver = str(bin_dir / "dagster-webserver")
        workspace = home / "workspace.yaml"
        target = ["-w", str(workspace)] if workspace.is_file() else ["-m", "dagster_project.definitions"]
        os.execve(webserver, [webserver, *target, "-h", args.host, "-p", str(args.port)], env)
    print(f"dagster dev with DAGSTER_HOME={home}", flush=True)
    dagster = str(bin_dir / "dagster")
    os.execve(dagster, [dagster, "dev", "--host", args.host, "--port", str(args.port)], env)


def cmd_serve(args: argparse.Namespace) -> int:
    from dagster_project.serve import serve

    args.experiment = None  # every experiment is served; `--experiment` adds names to `args.experiments`
    return serve(_settings(args), args.experiments, args.host, args.port, args.pg_dir)


def cmd_migrate_instance(args: argparse.Namespace) -> int:
    """Copy the history of the instance at --from into this command's instance (--dagster-home)."""
    import dagster as dg

    from dagster_project.instance import prepare_dagster_home
    from dagster_project.migrate import copy_instance

    source_home = Path(args.source).expanduser().resolve()
    if not (source_home / "dagster.yaml").is_file() and not (source_home / "history").is_dir():
        print(f"restem: {source_home} is not a Dagster instance (no dagster.yaml, no history/)", file=sys.stderr)
        return 2
    target_home = prepare_dagster_home(_settings(args).dagster_home)
    if target_home == source_home:
        print("restem: --from and --dagster-home are the same instance", file=sys.stderr)
        return 2
    source = dg.DagsterInstance.from_config(str(prepare_dagster_home(source_home)))
    target = dg.DagsterInstance.from_config(str(target_home))
    stats = copy_instance(source, target)
    print(f"restem: copied {stats.runs} runs ({stats.events} events), {stats.backfills} backfills and "
          f"{stats.instigators} sensor states from {source_home} to {target_home}"
          + (f"; {stats.skipped_runs} runs were there already" if stats.skipped_runs else ""), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from restem_assets.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="restem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--profile", choices=sorted(PROFILES), metavar="PROFILE",
                       help=f"{' | '.join(PROFILES)} (else $RESTEM_PROFILE, else default)")
        p.add_argument("--data-root", help="where tables and models go (else $RESTEM_DATA_ROOT, else ./data)")
        p.add_argument("--dagster-home", help="the Dagster instance directory (else $DAGSTER_HOME, else ./data/dagster_home)")
        p.add_argument("--experiment", help="the named experiment (else $RESTEM_EXPERIMENT, else default): its own "
                       "tables under <data root>/experiment=NAME and asset keys NAME/...")

    p = sub.add_parser("run", help="base evaluation plus N ReST^EM iterations, then the progress table")
    common(p)
    p.add_argument("--iterations", type=int, default=None,
                   help="how many iterations (sets rest.target_iterations; default: the profile's, 2)")
    p.add_argument("--no-stop", action="store_true", help="keep going even when validation stops improving")
    redo = p.add_mutually_exclusive_group()
    redo.add_argument("--force", action="store_true", help="re-materialize every step, set-up included (with "
                      "settings other than the experiment's record: redo it with them, then record them)")
    redo.add_argument("--from-iteration", type=int, metavar="I",
                      help="redo iterations I..N (and their evaluations), e.g. after iteration I's inputs changed")
    redo.add_argument("--refresh-stale", action="store_true",
                      help="redo only the stale steps, in order, keeping what made them stale (e.g. a model "
                      "re-trained from the launchpad); then continue the loop")
    p.add_argument("--wait", action="store_true", help="if another driver runs on this instance, wait for it")
    p.add_argument("--human-baseline", action="store_true",
                   help="also fine-tune the base model on reference solutions (as many as iteration 1's SFT set) and "
                   "evaluate it: the human-data row of the progress table")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="RESOURCE.FIELD=VALUE",
                   help="change a setting of this experiment (repeatable), e.g. --set rest.samples_per_problem=4; "
                   "an existing experiment (default included) keeps the settings it was created with: other ones are "
                   "refused, unless --force redoes it with them")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("estep", help="set-up plus the E-step of one iteration (samples, rewards, sft_set)")
    common(p)
    p.add_argument("--iteration", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="RESOURCE.FIELD=VALUE",
                   help="change a setting (repeatable), as for `restem run`")
    p.set_defaults(func=cmd_estep)

    p = sub.add_parser("transfer", help="evaluate each evaluated policy on the transfer benchmarks (e.g. HumanEval)")
    common(p)
    p.add_argument("--iteration", type=int, default=None, help="only policy I (default: every evaluated policy)")
    p.add_argument("--force", action="store_true", help="redo policies already evaluated")
    p.add_argument("--wait", action="store_true", help="if another driver runs on this instance, wait for it")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("rescore", help="score an iteration's samples again with the current verifiers (sql: rescore_diff)")
    common(p)
    p.add_argument("--iteration", type=int, required=True)
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("sql", help="run a query from sql/ over the sample history (see --list)")
    common(p)
    p.add_argument("query", nargs="?", help="query name, e.g. pass_rate_per_iteration")
    p.add_argument("--list", action="store_true", help="list the query names and exit")
    p.add_argument("--set", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="query parameter, set as a DuckDB variable (repeatable), e.g. --set iteration=1")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("ui", help="start the Dagster webserver on the project's instance")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("serve", help="the shared deployment: PostgreSQL, dagster-daemon and dagster-webserver, "
                       "supervised (docs/deploy.md)")
    p.add_argument("--profile", choices=sorted(PROFILES), metavar="PROFILE",
                   help=f"{' | '.join(PROFILES)} (else $RESTEM_PROFILE, else default)")
    p.add_argument("--data-root", help="where tables and models go (else $RESTEM_DATA_ROOT, else ./data)")
    p.add_argument("--dagster-home", help="the shared instance's directory (else $DAGSTER_HOME, else ./data/dagster_home)")
    p.add_argument("--experiment", dest="experiments", action="append", default=[], metavar="NAME",
                   help="serve this experiment too (repeatable; default and the data root's registered ones always)")
    p.add_argument("--host", default="127.0.0.1", help="webserver address (default 127.0.0.1: Dagster has no login)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--pg-dir", default=None, help="the PostgreSQL cluster's directory (else $RESTEM_PG_DIR, else "
                   "postgres/ beside DAGSTER_HOME)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate-instance", help="copy an instance's history (e.g. the SQLite one) into this one "
                       "(e.g. the shared PostgreSQL one)")
    common(p)
    p.add_argument("--from", dest="source", required=True, metavar="DAGSTER_HOME",
                   help="the instance directory to copy from")
    p.set_defaults(func=cmd_migrate_instance)

    args = parser.parse_args(argv)
    from dagster_project.instance import InstanceConfigError
    from dagster_project.postgres_server import PostgresError
    from restem_assets.experiments import ExperimentConfigError
    from restem_assets.profiles import ConfigError
    from restem_assets.store.locks import LockHeldError

    try:
        return args.func(args)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C outside a run (inside one, `_execute` exits)
        from dagster_project.run_guard import report_stop, stop_requested

        return report_stop(stop_requested() or signal.SIGINT)
    except LockHeldError as exc:
        print(f"restem: {exc}", file=sys.stderr)
        return 2
    except (ExperimentConfigError, ConfigError, InstanceConfigError, PostgresError) as exc:
        print(f"restem: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
