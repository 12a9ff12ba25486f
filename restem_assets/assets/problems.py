"""The `problems` asset: train and test splits of the configured task."""


import dagster as dg
import pyarrow.compute as pc

from restem_assets.assets.resources import StorageResource, TaskResource
from restem_assets.assets.common import markdown_table
from restem_assets.schemas import PROBLEMS
from restem_assets.tasks.loading import load_problems


@dg.asset(
    group_name="data",
    description="Problems of the configured task with a stable problem_id, split into disjoint train and test sets.",
    check_specs=[dg.AssetCheckSpec("splits_disjoint_by_content", asset="problems", blocking=True,
                                   description="no test question also appears in train")],
)
def problems(context: dg.AssetExecutionContext, storage: StorageResource, task: TaskResource) -> dg.MaterializeResult:
    spec = task.spec()
    table = load_problems(spec)
    store = storage.store()
    store.write_table("problems", table, PROBLEMS)
    split = table.column("split")
    questions = table.column("question").to_pylist()
    train_q = {q for q, s in zip(questions, split.to_pylist()) if s == "train"}
    overlap = sum(1 for q, s in zip(questions, split.to_pylist()) if s == "test" and q in train_q)
    n_train = pc.sum(pc.equal(split, "train")).as_py() or 0
    preview = table.slice(0, 5).to_pylist()
    context.log.info("problems: %d train, %d test -> %s", n_train, table.num_rows - n_train, store.table_path("problems"))
    return dg.MaterializeResult(
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
