"""The `problems` asset: train and test splits of the configured task."""


import dagster as dg
import pyarrow.compute as pc

from restem_assets.assets.resources import StorageResource, TaskResource
from restem_assets.assets.common import markdown_table
from restem_assets.store.schemas import PROBLEMS
from restem_assets.store.tables import table_fingerprint
from restem_assets.tasks.loading import load_problems
from restem_assets.tasks.spec import TaskSpec


def task_source(spec: TaskSpec) -> str:
    """Where a task's problems come from, as an error message names it."""
    if spec.kind == "reasoning_gym":
        return f"reasoning_gym task {spec.name!r}"
    if spec.train_path and spec.test_path:
        return f"{spec.kind} task (train_path={spec.train_path}, test_path={spec.test_path})"
    if spec.train_path:
        return f"{spec.kind} task (train_path={spec.train_path}, test carved with test_fraction={spec.test_fraction})"
    return f"{spec.kind} task (bundled problems)"


def check_splits(spec: TaskSpec, n_train: int, n_test: int) -> None:
    """Both splits must have problems: no E-step trains on an empty train split, no evaluation runs on an empty test."""
    empty = [name for name, n in (("train", n_train), ("test", n_test)) if n == 0]
    if empty:
        sizes = f"train_size={spec.train_size}, test_size={spec.test_size}"
        raise ValueError(f"{task_source(spec)} gives {n_train} train and {n_test} test problems: "
                         f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty ({sizes}); "
                         "problems table not written")


@dg.asset(
    group_name="data",
    description="Problems of the configured task with a stable problem_id, split into disjoint train and test sets.",
    check_specs=[dg.AssetCheckSpec("splits_disjoint_by_content", asset="problems", blocking=True,
                                   description="no test question also appears in train")],
)
def problems(context: dg.AssetExecutionContext, storage: StorageResource, task: TaskResource) -> dg.MaterializeResult:
    spec = task.spec()
    try:
        table = load_problems(spec)
        split = table.column("split")
        n_train = pc.sum(pc.equal(split, "train")).as_py() or 0
        check_splits(spec, n_train, table.num_rows - n_train)  # before writing: a bad load leaves the old table as is
    except (ValueError, FileNotFoundError) as exc:  # the source's own message names the file and what is wrong
        raise dg.Failure(description=f"problems: {exc}") from exc
    store = storage.store()
    store.write_table("problems", table, PROBLEMS)
    questions = table.column("question").to_pylist()
    train_q = {q for q, s in zip(questions, split.to_pylist()) if s == "train"}
    overlap = sum(1 for q, s in zip(questions, split.to_pylist()) if s == "test" and q in train_q)
    preview = table.slice(0, 5).to_pylist()
    context.log.info("problems: %d train, %d test -> %s", n_train, table.num_rows - n_train, store.table_path("problems"))
    return dg.MaterializeResult(
        # content, not run: loading the same problems again leaves every iteration built on them fresh
        data_version=dg.DataVersion(table_fingerprint(table)),
        metadata={
            "dagster/row_count": table.num_rows,
            "train": n_train,
            "test": table.num_rows - n_train,
            "task": f"{spec.kind}:{spec.name}" if spec.kind == "reasoning_gym" else spec.kind,
            "path": dg.MetadataValue.path(store.url(store.table_path("problems"))),
            "preview": dg.MetadataValue.md(markdown_table(preview, ["problem_id", "split", "question", "answer"])),
        },
        check_results=[dg.AssetCheckResult(check_name="splits_disjoint_by_content", passed=overlap == 0,
                                           metadata={"test_questions_in_train": overlap})],
    )
