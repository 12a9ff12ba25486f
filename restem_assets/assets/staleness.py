"""Which materializations are stale: Dagster's data-version staleness, as the webserver shows it.

Every iteration asset's data version changes with each run that materializes it, the
policy's with each fine-tune (reported as an observation), the problems' only with their
content. So re-running iteration i (e.g. with another learning rate) makes samples[i+1]
and evaluation[i] STALE, with the cause named; the loop driver and the progress report
read it from here.

Dagster has no public API for stale status (only the webserver's GraphQL shows it), so this module is
restem's one user of Dagster internals: see "Dagster internals we still use" in ARCHITECTURE.md;
tests/test_dagster_internals.py fails when an upgrade breaks them.
"""

from datetime import datetime, timezone

import dagster as dg

ITERATION_ASSETS = ("samples", "rewards", "sft_set", "finetune")  # in the order one iteration runs them


def stale_causes(instance: dg.DagsterInstance, asset_graph, keys: list[tuple[str, int]],
                 prefix: tuple[str, ...] = ()) -> dict[tuple[str, int], str]:
    """Dagster's stale status for each (asset, partition) of the experiment with key prefix `prefix`, with its
    first cause; the keys and the causes' upstream names are given without the prefix."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus

    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=datetime.now(timezone.utc), last_event_id=None),
                          instance=instance, asset_graph=asset_graph)
    resolver = CachingStaleStatusResolver(instance, asset_graph, view)
    out = {}
    for name, partition in keys:
        key = dg.AssetKey([*prefix, name])
        if resolver.get_status(key, str(partition)) == StaleStatus.STALE:
            causes = resolver.get_stale_causes(key, str(partition))
            cause = causes[0] if causes else None
            dep = cause.dependency if cause is not None else None
            upstream = "an upstream asset" if dep is None else dg.AssetKey(
                dep.asset_key.path[len(prefix):] if tuple(dep.asset_key.path[:len(prefix)]) == prefix
                else dep.asset_key.path).to_user_string() + (
                f"[{dep.partition_key}]" if dep.partition_key is not None else "")
            out[(name, partition)] = f"{cause.reason if cause else 'stale'} ({upstream})"
    return out


def asset_graph(prefix: tuple[str, ...] = ()):
    """restem's asset graph (for a step context that has no repository, e.g. `execute_in_process`), with the
    keys of the experiment whose key prefix is `prefix`. (`Definitions(assets=...).resolve_asset_graph()` would
    need no private import but demands the assets' resources, which this graph never uses.)"""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    from restem_assets.assets import ALL_ASSETS  # here, not at import: this module is imported by those assets
    from restem_assets.assets.namespace import prefix_assets

    return AssetGraph.from_assets([dg.AssetsDefinition(specs=[a]) if isinstance(a, dg.AssetSpec) else a
                                   for a in prefix_assets(ALL_ASSETS, prefix)])


def stale_materializations(instance: dg.DagsterInstance, graph, prefix: tuple[str, ...] = ()) -> dict[tuple[str, int], str]:
    """(asset, partition) -> why, over every materialized partition of the iteration assets and of `evaluation`
    (of the experiment with key prefix `prefix`)."""
    keys = [(name, int(p)) for name in (*ITERATION_ASSETS, "evaluation")
            for p in sorted(instance.get_materialized_partitions(dg.AssetKey([*prefix, name])), key=int)]
    return stale_causes(instance, graph, keys, prefix)
