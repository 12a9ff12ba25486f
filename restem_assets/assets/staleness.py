"""Which materializations are stale: Dagster's data-version staleness, closed over everything built on it.

Every iteration asset's data version changes with each run that materializes it, the
policy's with each fine-tune (reported as an observation), the problems' only with their
content. So re-running iteration i (e.g. with another learning rate) makes samples[i+1]
and evaluation[i] STALE in Dagster, with the cause named.

Dagster's resolver marks only those direct consumers (the webserver's STALE badge does too):
rewards[i+1], sft_set[i+1], finetune[i+1] and what policy[i+1] fed stay "fresh" there although
they were built on the old model. restem's view is the closure: an asset partition is stale when
any asset partition it was built from (through the graph's partition mappings, and from finetune[i]
to the policy[i] it reported) is stale, with the root named. The loop driver, the sensor and the
progress report read it from here.

Dagster has no public API for stale status (only the webserver's GraphQL shows it), so this module is
restem's one user of Dagster internals: see "Dagster internals we still use" in ARCHITECTURE.md;
tests/test_dagster_internals.py fails when an upgrade breaks them.
"""

from collections import deque
from datetime import datetime, timezone

import dagster as dg

ITERATION_ASSETS = ("samples", "rewards", "sft_set", "finetune")  # in the order one iteration runs them
# Reported, not computed: finetune[i] reports policy[i] (policy_lineage.report_policy), an edge the asset graph
# does not have (it would be a cycle between asset keys); base_model reports policy[0] but is never stale.
REPORTED_BY = {"finetune": "policy"}
_ORDER = (*ITERATION_ASSETS, "policy", "evaluation")  # within one partition: what is built before what

Node = tuple[str, int]  # (asset name without the experiment's prefix, partition)


def _name(asset_key: dg.AssetKey, prefix: tuple[str, ...]) -> str:
    path = asset_key.path
    return dg.AssetKey(path[len(prefix):] if tuple(path[:len(prefix)]) == prefix else path).to_user_string()


def _direct(instance: dg.DagsterInstance, asset_graph, keys: list[Node],
            prefix: tuple[str, ...]) -> dict[Node, tuple[str, str]]:
    """Dagster's stale status: (asset, partition) -> (its first cause, the root: what changed), stale ones only."""
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
            upstream = "an upstream asset" if dep is None else _name(dep.asset_key, prefix) + (
                f"[{dep.partition_key}]" if dep.partition_key is not None else "")
            text = f"{cause.reason if cause else 'stale'} ({upstream})"
            if cause is not None and cause.children:  # the dependency's own change, e.g. "has a new data version"
                root = f"{upstream} {cause.children[0].reason}"
            else:
                root = f"{name}[{partition}] {cause.reason if cause else 'is stale'}"
            out[(name, partition)] = (text, root)
    return out


def stale_causes(instance: dg.DagsterInstance, asset_graph, keys: list[Node],
                 prefix: tuple[str, ...] = ()) -> dict[Node, str]:
    """Dagster's stale status for each (asset, partition) of the experiment with key prefix `prefix`, with its
    first cause; the keys and the causes' upstream names are given without the prefix. Only direct consumers of
    a change are stale here (as in the webserver): `stale_closure` adds what was built on them."""
    return {node: text for node, (text, _) in _direct(instance, asset_graph, keys, prefix).items()}


def stale_closure(instance: dg.DagsterInstance, asset_graph, keys: list[Node],
                  prefix: tuple[str, ...] = ()) -> dict[Node, str]:
    """(asset, partition) -> why, for each of `keys` (materialized partitions) that Dagster marks stale or that
    was built, at any distance, on one that is: "built on stale samples[2] (root: policy[1] has a new data
    version)". The walk follows the graph's partition mappings through materialized partitions of any asset
    (policy included, reached from the finetune that reported it)."""
    direct = _direct(instance, asset_graph, keys, prefix)
    out = {node: text for node, (text, _) in direct.items()}
    roots = {node: root for node, (_, root) in direct.items()}
    materialized: dict[str, set[int]] = {}

    def is_materialized(name: str, partition: int) -> bool:
        if name not in materialized:
            materialized[name] = {int(p) for p in instance.get_materialized_partitions(dg.AssetKey([*prefix, name]))}
        return partition in materialized[name]

    def children(name: str, partition: int) -> list[Node]:
        found = [(REPORTED_BY[name], partition)] if name in REPORTED_BY else []
        for child in asset_graph.get_children_partitions(dg.AssetKey([*prefix, name]), str(partition)):
            if child.partition_key is not None:  # unpartitioned consumers (progress, human_baseline) are not tracked
                found.append((_name(child.asset_key, prefix), int(child.partition_key)))
        return found

    queue = deque(sorted(direct, key=lambda n: (n[1], _ORDER.index(n[0]) if n[0] in _ORDER else len(_ORDER))))
    while queue:
        name, partition = queue.popleft()
        for child in children(name, partition):
            if child in out or not is_materialized(*child):
                continue
            out[child] = f"built on stale {name}[{partition}] (root: {roots[(name, partition)]})"
            roots[child] = roots[(name, partition)]
            queue.append(child)
    wanted = set(keys)
    return {node: why for node, why in out.items() if node in wanted}


def asset_graph(prefix: tuple[str, ...] = ()):
    """restem's asset graph (for a step context that has no repository, e.g. `execute_in_process`), with the
    keys of the experiment whose key prefix is `prefix`. (`Definitions(assets=...).resolve_asset_graph()` would
    need no private import but demands the assets' resources, which this graph never uses.)"""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    from restem_assets.assets import ALL_ASSETS  # here, not at import: this module is imported by those assets
    from restem_assets.assets.namespace import prefix_assets

    return AssetGraph.from_assets([dg.AssetsDefinition(specs=[a]) if isinstance(a, dg.AssetSpec) else a
                                   for a in prefix_assets(ALL_ASSETS, prefix)])


def stale_materializations(instance: dg.DagsterInstance, graph, prefix: tuple[str, ...] = ()) -> dict[Node, str]:
    """(asset, partition) -> why, over every materialized partition of the iteration assets and of `evaluation`
    (of the experiment with key prefix `prefix`): Dagster's stale ones and everything built on them."""
    keys = [(name, int(p)) for name in (*ITERATION_ASSETS, "evaluation")
            for p in sorted(instance.get_materialized_partitions(dg.AssetKey([*prefix, name])), key=int)]
    return stale_closure(instance, graph, keys, prefix)
