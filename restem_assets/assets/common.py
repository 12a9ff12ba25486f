"""What the asset modules share: the torch pool, progress logging, problem reads, markdown previews."""

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from restem_assets.reporting.costs import STAGE_COSTS, StageMeter, stage_table
from restem_assets.store.locks import FileLock, LockHeldError
from restem_assets.store.tables import ParquetStore

TORCH_POOL = "torch"  # one torch-heavy step at a time: two on a small CPU host slow each other down


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
