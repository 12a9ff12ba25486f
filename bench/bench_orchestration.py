"""Dagster's overhead on one ReST^EM iteration: the same stages through Dagster and as plain calls.

Dagster path: what `restem run` does, the `iteration` job (samples -> rewards ->
sft_set -> finetune, with its blocking checks) and then the `evaluate` job, each
`execute_in_process` on a persistent instance (sqlite event log in a temporary
DAGSTER_HOME). Plain path: the same pure functions the assets call, in the same
order with the same settings, writing the same Parquet tables, with no Dagster at
all. Both use the transformers engine (same seeds, same work) and alternate
`--rounds` times; the overhead is (Dagster - plain) / Dagster on the fastest round
of each, which filters out a noisy neighbour.

    python -m bench.bench_orchestration [--train 32] [--test 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.results import write_result

ENGINE = dict(kind="transformers", batch_size=64)


def settings(train: int, test: int) -> tuple[dict, dict]:
    task = {"kind": "reasoning_gym", "name": "chain_sum", "train_size": train, "test_size": test,
            "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    rest = {"samples_per_problem": 8, "max_new_tokens": 48, "eval_samples": 4, "eval_max_new_tokens": 48,
            "finetune_max_steps": 8, "batch_size": 8}
    return task, rest


def prepare(root: Path, task: dict) -> None:
    """The problems table (not timed)."""
    from restem_assets.assets.resources import TaskResource
    from restem_assets.store.schemas import PROBLEMS
    from restem_assets.store.tables import ParquetStore
    from restem_assets.tasks.loading import load_problems

    ParquetStore(str(root)).write_table("problems", load_problems(TaskResource(**task).spec()), PROBLEMS)


def plain_iteration(root: Path, model: str, rest_cfg: dict) -> float:
    """samples, rewards, sft_set, finetune, evaluation as plain function calls (same logic as the assets)."""
    from restem_assets.assets.resources import ReSTResource
    from restem_assets.evaluation.held_out import evaluate_policy
    from restem_assets.training.finetune import conversational_records, finetune
    from restem_assets.generation import make_engine
    from restem_assets.models.policies import Policy
    from restem_assets.generation.sampling import sample_rows
    from restem_assets.store.schemas import EVAL_SAMPLES, EVALUATIONS, FINETUNE_LOG, REWARDS, SAMPLES, SFT_SET
    from restem_assets.rewards import score_samples
    from restem_assets.training.sft_selection import SftSelector
    from restem_assets.store.tables import ParquetStore

    rest = ReSTResource(**rest_cfg)
    store = ParquetStore(str(root))
    t0 = time.perf_counter()
    problems = store.read_table("problems").to_pylist()
    by_id = {p["problem_id"]: p for p in problems}
    train = [p for p in problems if p["split"] == "train"]
    test = [p for p in problems if p["split"] == "test"]
    base = Policy("base", model)
    engine = make_engine(ENGINE["kind"], model, batch_size=ENGINE["batch_size"])
    try:
        with store.writer("samples", SAMPLES, 1) as w:
            sample_rows(engine, train, rest.estep_params(1), base, w)
    finally:
        engine.close()
    with store.writer("rewards", REWARDS, 1) as w:
        for batch in store.iter_batches("samples", 1, batch_size=2048, columns=["problem_id", "sample_idx", "completion"]):
            w.write(score_samples(batch.to_pylist(), by_id))
    correct = {(r["problem_id"], r["sample_idx"]) for r in store.read_table("rewards", 1).to_pylist() if r["reward"] == 1.0}
    selector = SftSelector(rest.max_per_problem)
    for s in store.read_table("samples", 1).to_pylist():
        if (s["problem_id"], s["sample_idx"]) in correct:
            selector.add(s, 1.0)
    rows = selector.rows()
    if not rows:
        raise RuntimeError("empty SFT set: nothing to fine-tune on")
    store.write_table("sft_set", rows, SFT_SET, 1)
    records = conversational_records(store.read_table("sft_set", 1).to_pylist(), by_id)
    result = finetune(model, records, Path(store.table_dir("models", 1)), rest.finetune_settings(1))
    store.write_table("finetune_log", result.log, FINETUNE_LOG, 1)
    engine = make_engine(ENGINE["kind"], store.table_dir("models", 1), batch_size=ENGINE["batch_size"])
    try:
        with store.writer("eval_samples", EVAL_SAMPLES, 1) as w:
            evaluations, _ = evaluate_policy(engine, test, rest.greedy_params(), rest.eval_sampling_params(),
                                             Policy("iteration=1", store.table_dir("models", 1)), by_id, w)
    finally:
        engine.close()
    store.write_table("evaluations", evaluations, EVALUATIONS, 1)
    return time.perf_counter() - t0


def dagster_iteration(root: Path, home: Path, model: str, task: dict, rest_cfg: dict) -> float:
    """The `iteration` and `evaluate` jobs on a persistent instance, as `restem run` executes them."""
    import dagster as dg

    from restem_assets.assets import ALL_ASSETS
    from dagster_project.instance import persistent_instance
    from dagster_project.jobs import ALL_JOBS
    from restem_assets.assets.resources import EngineResource, ModelResource, ReSTResource, StorageResource, TaskResource

    instance = persistent_instance(home)
    defs = dg.Definitions(assets=ALL_ASSETS, jobs=ALL_JOBS, resources={
        "storage": StorageResource(root=str(root)), "model": ModelResource(base_model=model),
        "task": TaskResource(**task), "rest": ReSTResource(**rest_cfg), "engine": EngineResource(**ENGINE)})
    defs.resolve_job_def("setup").execute_in_process(instance=instance)  # problems + policy[0], not timed
    t0 = time.perf_counter()
    for job, partition in (("iteration", "1"), ("evaluate", "1")):
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition)
        if not result.success:
            raise RuntimeError(f"{job}[{partition}] failed")
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--test", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    from restem_assets.models.model_cache import ensure_default_model

    model = str(ensure_default_model())
    task, rest_cfg = settings(args.train, args.test)
    times: dict[str, list[float]] = {"plain": [], "dagster": []}
    work = Path(tempfile.mkdtemp(prefix="restem-bench-orch-"))
    try:
        for r in range(args.rounds):
            for mode in ("plain", "dagster"):
                root = work / f"{mode}-{r}"
                if mode == "plain":
                    prepare(root, task)
                    seconds = plain_iteration(root, model, rest_cfg)
                else:
                    seconds = dagster_iteration(root, work / f"home-{r}", model, task, rest_cfg)
                times[mode].append(seconds)
                print(f"round {r}: {mode:<8}{seconds:8.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plain, dagster = min(times["plain"]), min(times["dagster"])
    result = {"train_problems": args.train, "test_problems": args.test, "settings": rest_cfg, "seconds": times,
              "plain_s": plain, "dagster_s": dagster, "overhead_share": (dagster - plain) / dagster, "target_share": 0.05}
    print(f"plain {plain:.1f} s, dagster {dagster:.1f} s: overhead {100 * result['overhead_share']:.1f}% "
          f"of the iteration (target <= 5%)")
    write_result("orchestration", result)
    return result


if __name__ == "__main__":
    main()
