"""A sensor that keeps the ReST^EM loop going from the webserver.

Turn it on and it launches, one at a time, whatever the loop needs next (set-up,
base evaluation, iteration i, evaluation of policy i) until `rest.target_iterations`
is reached or, with `rest.stop_when_no_improvement`, held-out greedy pass@1 stops
improving (Algorithm 1). Off by default; the CLI driver does the same thing without it.
"""

from __future__ import annotations

import dagster as dg

from dagster_project.jobs import evaluate_job, iteration_job, progress_job, setup_job
from dagster_project.loop_state import Step, next_step, read_loop_state
from dagster_project.run_guard import reap_dead_runs
from restem_assets.assets.policy_lineage import NOT_FINISHED_STATUSES
from restem_assets.assets.resources import ReSTResource

JOBS = {"setup": setup_job, "iteration": iteration_job, "evaluate": evaluate_job, "report_progress": progress_job}
_LOOP_JOBS = ("setup", "iteration", "evaluate", "report_progress")


def build_continue_rest_loop(jobs: dict | None = None, prefix: tuple[str, ...] = ()) -> dg.SensorDefinition:
    """The sensor for one experiment: its jobs (`dagster_project.jobs.build_jobs(prefix)`) and its assets."""
    jobs = jobs or JOBS

    @dg.sensor(name="continue_rest_loop" + "".join(f"_{p}" for p in prefix), jobs=[jobs[name] for name in _LOOP_JOBS], minimum_interval_seconds=20,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Continue ReST^EM until rest.target_iterations or until validation stops improving.")
    def continue_rest_loop(context: dg.SensorEvaluationContext, rest: ReSTResource):
        for run_id in reap_dead_runs(context.instance):
            context.log.warning("run %s was left STARTED by a restem process that is gone: marked failed", run_id)
        busy = context.instance.get_runs(filters=dg.RunsFilter(statuses=list(NOT_FINISHED_STATUSES)), limit=1)
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} is still in progress")
        graph = context.repository_def.asset_graph if context.repository_def is not None else None
        step = next_step(read_loop_state(context.instance, graph, prefix), rest.target_iterations,
                         rest.stop_when_no_improvement)
        if isinstance(step, str):
            return dg.SkipReason(step)
        return _run_request(step, prefix)

    return continue_rest_loop


def _run_request(step: Step, prefix: tuple[str, ...] = ()) -> dg.RunRequest:
    """No run key: a failed step must be retried, and the busy check above already keeps one run at a time."""
    return dg.RunRequest(job_name=JOBS[step.job].name, partition_key=step.partition,
                         asset_selection=[dg.AssetKey([*prefix, a]) for a in step.assets] if step.assets else None)


continue_rest_loop = build_continue_rest_loop()
