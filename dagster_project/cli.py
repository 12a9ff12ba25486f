"""`restem`: run the ReST^EM loop through Dagster from the command line.

Every step runs as a job of the project's Definitions against the persistent
instance in DAGSTER_HOME (default data/dagster_home), so `make ui` afterwards shows
every run and materialization. Steps already materialized are skipped (pass
--force to redo them), which makes re-running the command resume where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _set_env(args: argparse.Namespace) -> None:
    if getattr(args, "profile", None):
        os.environ["RESTEM_PROFILE"] = args.profile
    if getattr(args, "data_root", None):
        os.environ["RESTEM_DATA_ROOT"] = str(Path(args.data_root).resolve()) if "://" not in args.data_root else args.data_root
    if getattr(args, "dagster_home", None):
        os.environ["DAGSTER_HOME"] = str(Path(args.dagster_home).resolve())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _execute(defs, instance, job_name: str, partition: str | None) -> float:
    job = defs.resolve_job_def(job_name)
    label = f"{job_name}[{partition}]" if partition is not None else job_name
    print(f"==> {label}", flush=True)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
    seconds = time.perf_counter() - t0
    if not result.success:
        failures = [e.event_specific_data.error.message.strip().splitlines()[-1]
                    for e in result.all_events if e.is_failure and e.event_specific_data
                    and getattr(e.event_specific_data, "error", None)]
        checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and not e.event_specific_data.passed]
        why = "; ".join(failures) or "; ".join(f"check {c.event_specific_data.check_name} failed" for c in checks)
        raise SystemExit(f"{label} failed after {seconds:.0f}s: {why or 'see the run in the webserver'}")
    print(f"    {label} done in {seconds:.0f}s", flush=True)
    return seconds


def cmd_run(args: argparse.Namespace) -> int:
    _set_env(args)
    from dagster_project.instance import persistent_instance

    instance = persistent_instance()
    from dagster_project.definitions import defs
    from dagster_project.loop_state import Step, next_step, read_loop_state
    from dagster_project.profiles import profile_name

    print(f"restem: profile {profile_name()}, DAGSTER_HOME={os.environ['DAGSTER_HOME']}, "
          f"data root {os.environ.get('RESTEM_DATA_ROOT', 'data/')}", flush=True)
    if args.force:
        _execute(defs, instance, "setup", None)
        for i in range(0, args.iterations + 1):
            if i:
                _execute(defs, instance, "iteration", str(i))
            _execute(defs, instance, "evaluate", str(i))
    else:
        while True:
            step = next_step(read_loop_state(instance), args.iterations, not args.no_stop)
            if isinstance(step, str):
                print(f"restem: {step}")
                break
            assert isinstance(step, Step)
            _execute(defs, instance, step.job, step.partition)
    _execute(defs, instance, "report_progress", None)
    from dagster_project.resources import default_data_root

    report = Path(default_data_root()) / "reports" / "progress.md"
    if report.exists():
        print("\n" + report.read_text())
        print(f"chart: {report.with_suffix('.png')}")
    return 0


def cmd_estep(args: argparse.Namespace) -> int:
    """Only the first half of an iteration: set-up, then samples -> rewards -> sft_set."""
    _set_env(args)
    from dagster_project.instance import persistent_instance

    instance = persistent_instance()
    from dagster_project.definitions import defs
    from dagster_project.resources import default_data_root
    from restem_assets.storage import ParquetStore

    timings = {"setup": _execute(defs, instance, "setup", None)}
    timings["estep"] = _execute(defs, instance, "estep", str(args.iteration))
    store = ParquetStore(default_data_root())
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


def cmd_sql(args: argparse.Namespace) -> int:
    from restem_assets.analytics import main as sql_main

    _set_env(args)
    argv = ["--root", os.environ.get("RESTEM_DATA_ROOT", "data")] + args.rest
    return sql_main(argv)


def cmd_ui(args: argparse.Namespace) -> int:
    _set_env(args)
    from dagster_project.instance import prepare_dagster_home

    home = prepare_dagster_home()
    print(f"dagster dev with DAGSTER_HOME={home}", flush=True)
    os.execvp("dagster", ["dagster", "dev", "--host", args.host, "--port", str(args.port)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="restem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--profile", help="default | ci | tiny (sets RESTEM_PROFILE)")
        p.add_argument("--data-root", help="where tables and models go (sets RESTEM_DATA_ROOT)")
        p.add_argument("--dagster-home", help="the Dagster instance directory (sets DAGSTER_HOME)")

    p = sub.add_parser("run", help="base evaluation plus N ReST^EM iterations, then the progress table")
    common(p)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--no-stop", action="store_true", help="keep going even when validation stops improving")
    p.add_argument("--force", action="store_true", help="re-materialize steps that already exist")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("estep", help="set-up plus the E-step of one iteration (samples, rewards, sft_set)")
    common(p)
    p.add_argument("--iteration", type=int, default=1)
    p.set_defaults(func=cmd_estep)

    p = sub.add_parser("sql", help="run a query from sql/ over the sample history (see --list)")
    common(p)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("ui", help="start the Dagster webserver on the project's instance")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
