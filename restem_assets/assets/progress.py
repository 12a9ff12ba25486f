"""The unpartitioned `progress` asset: every iteration's metrics in one table and chart."""

import base64
import posixpath

import dagster as dg
import polars as pl

from restem_assets.assets.namespace import key, prefix_of
from restem_assets.assets.resources import StorageResource
from restem_assets.assets.staleness import asset_graph, stale_materializations
from restem_assets.store.atomic import write_bytes
from restem_assets.reporting.progress_report import analyses_chart_png, analyses_markdown, analysis_frames, progress_frame, progress_markdown

TIMED_STAGES = ("samples", "rewards", "sft_set", "finetune", "evaluation")


def stage_timings(instance: dg.DagsterInstance, prefix: tuple[str, ...] = ()) -> dict[int, dict[str, float]]:
    """Latest wall_seconds per stage and iteration, from the materializations' metadata."""
    out: dict[int, dict[str, float]] = {}
    for stage in TIMED_STAGES:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key(stage, prefix)),
                                                  limit=1000).records
        for rec in sorted(records, key=lambda r: r.storage_id):  # later records overwrite earlier ones
            mat = rec.asset_materialization
            if mat is None or mat.partition is None or "wall_seconds" not in mat.metadata:
                continue
            out.setdefault(int(mat.partition), {})[stage] = float(mat.metadata["wall_seconds"].value)
    return out


def stale_rows(instance: dg.DagsterInstance, iterations: list[int], prefix: tuple[str, ...] = ()) -> dict[int, str]:
    """Iteration -> why its row is stale: any of its stages (or its evaluation) is."""
    out: dict[int, str] = {}
    stale = stale_materializations(instance, asset_graph(prefix), prefix)
    for (name, i), why in sorted(stale.items(), key=lambda kv: kv[0][1]):
        if i in iterations:
            out.setdefault(i, f"{name}[{i}] is stale: {why}")
    return out


@dg.asset(
    deps=["evaluation", "finetune", "sft_set", "rewards"],
    group_name="evaluation",
    description="Per-iteration table (greedy pass@1, pass@k, maj@k, correct samples, coverage, train loss, stage "
    "times, the human-data baseline's row) and chart, computed with DuckDB over all iterations; then the "
    "experiments side by side, per-problem learning, difficulty buckets and cost.",
)
def progress(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    store = storage.store()
    prefix = prefix_of(context)
    df = progress_frame(storage.shared_root(), storage.storage_options, storage.experiment)
    omitted = stale_rows(context.instance, df["iteration"].to_list(), prefix)
    if omitted:  # a row would mix generations (e.g. an old evaluation with a newer fine-tune): leave it out
        df = df.filter(~pl.col("iteration").is_in(list(omitted)))
    frames = analysis_frames(storage.shared_root(), storage.storage_options, storage.experiment)
    table = (progress_markdown(df, stage_timings(context.instance, prefix), omitted, human=frames["human"])
             + analyses_markdown(frames, storage.experiment))
    png = analyses_chart_png(df, frames)
    report_dir = store.table_dir("reports")
    for name, payload in (("progress.md", table.encode()), ("progress.png", png)):
        write_bytes(store.fs, posixpath.join(report_dir, name), payload)
    context.log.info("progress:\n%s", table)

    latest = df.row(-1, named=True) if df.height else {}
    return dg.MaterializeResult(
        metadata={
            "iterations_evaluated": df.height,
            "latest_greedy_pass_at_1": float(latest.get("greedy_pass_at_1") or 0.0),
            "table": dg.MetadataValue.md(table),
            "chart": dg.MetadataValue.md(f"![progress](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "chart_path": dg.MetadataValue.path(store.url(posixpath.join(report_dir, "progress.png"))),
        }
    )
