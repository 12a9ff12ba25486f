"""What the asset modules share: the torch pool, progress logging, problem reads, markdown previews, partition
locks, cost metering, and the staged, metered block every generating stage runs in."""

import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg

from restem_assets.assets.policy_lineage import require_policy
from restem_assets.assets.resources import EngineResource, ReSTResource, StorageResource
from restem_assets.generation.sampling import StagedGeneration
from restem_assets.models.policies import Policy
from restem_assets.reporting.costs import STAGE_COSTS, StageMeter, stage_table
from restem_assets.store.locks import FileLock, LockHeldError
from restem_assets.store.tables import ParquetStore

TORCH_POOL = "torch"  # one torch-heavy step at a time: two on a small CPU host slow each other down


def partition_policy(context: dg.AssetExecutionContext, offset: int = 0) -> tuple[int, Policy]:
    """The running partition's iteration and the policy its stage generates from, policy[iteration + offset]
    (samples[i] from policy[i-1], evaluation[i] and transfer_evaluation[i] from policy[i]); see `require_policy`."""
    iteration = int(context.partition_key)
    return iteration, require_policy(context, iteration + offset)


def read_problems(store: ParquetStore, split: str | None = None) -> list[dict]:
    rows = store.read_table("problems").to_pylist()
    return [r for r in rows if split is None or r["split"] == split]


def progress_logger(context: dg.AssetExecutionContext, label: str, every_s: float = 15.0):
    """A ProgressFn that logs to Dagster at most every `every_s` seconds (and at the end)."""
    from tqdm import tqdm

    bar = tqdm(total=None, desc=label, unit="prompt")
    state = {"last": 0.0, "t0": time.perf_counter()}

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        now = time.perf_counter()
        if done == total or now - state["last"] >= every_s:
            state["last"] = now
            context.log.info("%s: %d/%d prompts (%.0f s)", label, done, total, now - state["t0"])
        if done == total:
            bar.close()

    return progress


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int = 80, limit: int = 10) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c), width) for c in columns) + " |\n" for r in rows[:limit])
    return head + body


@contextmanager
def partition_lock(context: dg.AssetExecutionContext, root: str, name: str):
    """One writer per partition, whatever launched it: an exclusive lock on `<root>/.locks/<name>.lock`.

    A second run that would write the same partition fails at once, naming the run that
    writes it. Local data roots only (object stores have no such lock; runs there are
    serialized by the instance's per-partition run limit, see dagster_project/instance.py).
    """
    if "://" in root:
        yield
        return
    lock = FileLock(Path(root) / ".locks" / f"{name}.lock")
    try:
        lock.acquire(owner={"run": context.run.run_id})
    except LockHeldError as exc:
        raise dg.Failure(description=f"{name} is being written by another run ({exc}); not writing it twice at once")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def metered(context: dg.AssetExecutionContext, store: ParquetStore, stage: str, iteration: int, rest=None):
    """Measure the block (restem_assets/reporting/costs.py) and, when it succeeds, write its `stage_costs` row."""
    meter = StageMeter()
    with meter:
        yield meter
    row = meter.row(context.run.run_id, getattr(rest, "cpu_hour_price", None), getattr(rest, "gpu_hour_price", None))
    store.write_table(stage_table(stage), [row], STAGE_COSTS, iteration)


def loop_plan(store: ParquetStore, rest: ReSTResource) -> int:
    """The tokens the whole loop is expected to generate, from the problems' split sizes and `rest`."""
    splits = store.read_table("problems", columns=["split"]).column("split").to_pylist() \
        if store.exists("problems") else []
    train = splits.count("train")
    return rest.settings().planned_tokens(train, len(splits) - train)


@contextmanager
def generation_stage(context: dg.AssetExecutionContext, storage: StorageResource, rest: ReSTResource,
                     engine: EngineResource, stage: str, partition: int, lock: str | None, label: str,
                     planned_tokens: int | None = None, **staged) -> Iterator[StagedGeneration]:
    """The block of every stage that generates from a policy (samples, evaluation, transfer_evaluation, the
    human baseline): the partition's lock (`lock`; None: the caller holds one), the stage metered into
    `stage_costs` (`stage`, `partition`), and a StagedGeneration of `staged` (table, schema, request, policy,
    needed, max_new_tokens, done_columns) with the configured engine and crash-safe chunk sizes, published
    when the block ends without an error. `planned_tokens`: what the engine that serves this stage is expected
    to generate over the whole run (default: the loop's plan from the problems and `rest`, the same in the
    CLI and the webserver), which `engine.kind=auto` weighs against vLLM's start-up."""
    store = storage.store()
    if planned_tokens is None:
        planned_tokens = loop_plan(store, rest)
    opener = functools.partial(engine.open, planned_tokens=planned_tokens)
    with partition_lock(context, storage.root, lock) if lock else nullcontext(), \
            metered(context, store, stage, partition, rest) as meter, \
            StagedGeneration(store, partition=partition, opener=opener, meter=meter,
                             flush_rows=rest.checkpoint_rows, flush_seconds=rest.checkpoint_seconds, **staged) as gen:
        if gen.done:
            context.log.info("%s: %d completions kept from an interrupted run", label, len(gen.done))
        yield gen
